/** PCI functions as sysfs shows them: BARs, drivers, p2pmem pools, NUMA node and the parent chain. */
import * as path from 'node:path'

import {isBdfName, normalizeBdf} from './bdf.js'
import {Exit, hex64, IopmemError} from '../sys/index.js'
import type {Host, ReadAhead, SysRead} from '../sys/index.js'
import {ConfigSpace, type FunctionIds, PCIE_TYPE_NAMES} from './config-space.js'
import {PciIds} from './ids.js'

/** struct resource flags, include/linux/ioport.h */
export const IORESOURCE = {
  IO: 0x100,
  MEM: 0x200,
  PREFETCH: 0x2000,
  READONLY: 0x4000,
  SIZEALIGN: 0x40000,
  MEM_64: 0x100000,
  DISABLED: 0x10000000,
  UNSET: 0x20000000,
  BUSY: 0x80000000,
} as const

export interface Bar {
  /** Resource index: 0-5 the BARs, 6 the expansion ROM, 7-12 the SR-IOV VF BARs. */
  index: number
  /** BAR0..BAR5, ROM, VF-BAR0..VF-BAR5 */
  name: string
  type: 'mem' | 'io'
  /** CPU physical start address, hex (0x…). */
  start: string
  /** CPU physical end address (inclusive), hex. */
  end: string
  size: number
  flags: string
  is64: boolean
  prefetchable: boolean
  readonly: boolean
  disabled: boolean
  unset: boolean
  /** `resourceN` exists: user space can mmap it (uncached). */
  mappable: boolean
  /** `resourceN_wc` exists: write-combining mapping is possible. */
  wc: boolean
}

export interface P2pmem {
  size: number
  available: number
  published: boolean
}

export interface Partition {
  name: string
  dev: string
  /** First sector (512 bytes) within the disk. */
  start: number
  size: number
}

export interface BlockDevice {
  name: string
  /** major:minor */
  dev: string
  /** Bytes. */
  size: number
  kind: 'nvme' | 'pmem' | 'iopmem' | 'other'
  /** queue/dax says the disk can do DAX. */
  dax: boolean
  logicalBlockSize?: number
  partitions: Partition[]
  /** Devices stacked on top (device-mapper, md), from holders/ of the disk and its partitions. */
  holders: string[]
}

export interface LinkInfo {
  currentSpeed?: string
  currentWidth?: number
  maxSpeed?: string
  maxWidth?: number
}

export interface PciFunction {
  bdf: string
  domain: number
  bus: number
  device: number
  function: number
  vendorId: string
  deviceId: string
  subsystemVendorId?: string
  subsystemDeviceId?: string
  revision?: string
  classCode: string
  vendorName?: string
  deviceName?: string
  className: string
  driver: string | null
  driverOverride: string | null
  iommuGroup: number | null
  numaNode: number | null
  enabled?: boolean
  link: LinkInfo | null
  bars: Bar[]
  p2pmem: P2pmem | null
  blockDevices: BlockDevice[]
  /** device-dax instances (daxX.Y) that sit on this function. */
  daxDevices: string[]
  /** BDF of the bridge above (pci_upstream_bridge), null on a root bus. */
  upstream: string | null
  /** The host bridge (root bus) this function hangs from, e.g. pci0000:00. */
  hostBridge: string
  isBridge: boolean
  /** PCIe port type from config space (root-port, switch-upstream, …), when readable. */
  pcieType?: string
  /** The sysfs device directory (under the host's sysfs root). */
  sysfsPath: string
}

export function barName(index: number): string {
  if (index < 6) return `BAR${index}`
  if (index === 6) return 'ROM'
  return `VF-BAR${index - 7}`
}

const hex = (n: number, w: number) => '0x' + n.toString(16).padStart(w, '0')

/** The largest CPU address (64 bits), and the largest BAR whose size a number holds exactly (2^53 bytes, 8 PiB). */
const MAX_ADDR = 0xffff_ffff_ffff_ffffn
const MAX_BAR = 1n << 53n

/** A sysfs value no kernel writes: refused rather than computed with. */
function corruptSysfs(host: Host, file: string, what: string): IopmemError {
  return new IopmemError(`${host.display(file)} is not plausible: ${what}. This sysfs is corrupt (or not a kernel's); nothing was done.`, {
    code: 'E_CORRUPT_SYSFS',
    exit: Exit.UNSUPPORTED,
    path: host.display(file),
    suggestions: ['Check what is mounted on /sys (or IOPMEM_SYSFS_ROOT).'],
  })
}

const RESOURCE_LINE = /^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s*$/i
/** A line of `resource` for a resource the function does not have (the kernel's `0x%016llx` three times, all zero). */
const UNUSED_RESOURCE = '0x0000000000000000 0x0000000000000000 0x0000000000000000'
const ZERO_HEX = /^0x0+$/
/** Most lines of a resource file are unused BARs, all zeros: no BigInt to build for them. */
const hexBig = (s: string): bigint => (ZERO_HEX.test(s) ? 0n : BigInt(s))

/** Parse a sysfs `resource` file: `0x%016llx 0x%016llx 0x%016llx` per line. */
export function parseResourceFile(text: string): Array<{index: number; start: bigint; end: bigint; flags: bigint}> {
  const out: Array<{index: number; start: bigint; end: bigint; flags: bigint}> = []
  let index = 0
  for (const line of text.split('\n')) {
    // Most lines are unused resources, written exactly so by the kernel: no pattern to match.
    if (line === UNUSED_RESOURCE) {
      out.push({index: index++, start: 0n, end: 0n, flags: 0n})
      continue
    }
    if (line.trim() === '') continue
    const m = RESOURCE_LINE.exec(line)
    if (m) out.push({index, start: hexBig(m[1]), end: hexBig(m[2]), flags: hexBig(m[3])})
    index++
  }
  return out
}

/** How much of `config` read() takes: the header and the capability list (see read()). */
const CONFIG_READ = 256
/** The attributes and links read() reads of a function that has them, and of its p2pmem directory. */
const FUNCTION_ATTRS = ['class', 'driver_override', 'numa_node', 'enable', 'current_link_speed', 'max_link_speed', 'current_link_width', 'max_link_width', 'resource']
const FUNCTION_LINKS = ['driver', 'iommu_group']
const P2PMEM_ATTRS = ['size', 'available', 'published']
/** What readDisk reads of every disk and partition (a partition's `start` it reads itself: partitions are few). */
const BLOCK_ATTRS = ['dev', 'size', 'queue/dax', 'queue/logical_block_size']
/** The device classes read() looks for under a function. */
const STORAGE_CLASSES = ['block', 'dax']

export interface ScanOptions {
  /** Look up names in pci.ids (default true). */
  names?: boolean
  /** Read block and dax devices (default true). */
  storage?: boolean
}

export class PciScanner {
  private names: PciIds | undefined
  private blockIndex: Map<string, string[]> | undefined
  private daxIndex: Map<string, string[]> | undefined

  constructor(
    readonly host: Host,
    readonly opts: ScanOptions = {},
  ) {}

  /** BDFs of every function visible in sysfs, sorted. */
  listBdfs(): string[] {
    return this.host.list(this.host.sys('bus/pci/devices')).filter((n) => isBdfName(n))
  }

  /** True when this machine (or container) shows no PCI bus at all. */
  pciVisible(): boolean {
    return this.host.exists(this.host.sys('bus/pci/devices'))
  }

  scanAll(): PciFunction[] {
    return this.readAll(this.listBdfs())
  }

  /**
   * read() of each function, with what read() asks of sysfs fetched first in
   * a few bulk reads (Host.readAhead): about 15 files per function and 6 per
   * block device, which one by one are most of `iopmem list`'s time.
   */
  readAll(bdfs: string[]): PciFunction[] {
    const view = this.host.readAhead()
    const scanner = this.over(view)
    const plan = scanner.fetchPlan(view, bdfs)
    for (let step = plan.next(); !step.done; step = plan.next()) view.fetch(step.value)
    return this.readWith(scanner, bdfs)
  }

  /**
   * readAll with the reads on the addon's threads (ReadAhead.fetchAsync): the
   * same functions, read the same way, while this thread goes on with other work.
   * With a signal, an abort stops it between its batches (it rejects).
   */
  async readAllAsync(bdfs: string[], signal?: AbortSignal): Promise<PciFunction[]> {
    const view = this.host.readAhead()
    // pci.ids (1.3 MB) is read beside the batches, not by the first name asked for.
    const names = this.opts.names !== false ? this.pciIds().preload() : undefined
    const scanner = this.over(view)
    const plan = scanner.fetchPlan(view, bdfs)
    // An aborted scan stops at the next step: no further batch, no model.
    for (let step = plan.next(); !step.done; step = plan.next()) {
      signal?.throwIfAborted()
      await view.fetchAsync(step.value)
    }
    await names
    signal?.throwIfAborted()
    return this.readWith(scanner, bdfs)
  }

  /** A scanner of the same options over a read-ahead view, sharing the pci.ids already open. */
  private over(view: ReadAhead): PciScanner {
    const scanner = new PciScanner(view, this.opts)
    scanner.names = this.names
    return scanner
  }

  private readWith(scanner: PciScanner, bdfs: string[]): PciFunction[] {
    const out = bdfs.map((b) => scanner.read(b))
    this.names = scanner.names
    return out
  }

  /**
   * What read() will read of these functions, in three batches for the view
   * to fetch, each fetched before the next is made: the bus links and class
   * directories; each function's directory and the class links; then the
   * attributes each directory has (read() reads only those) and each block
   * device's.
   */
  private *fetchPlan(view: ReadAhead, bdfs: string[]): Generator<SysRead[], void, void> {
    const storage = this.opts.storage !== false
    const classes = storage ? STORAGE_CLASSES.map((c) => view.sys('class', c)) : []
    yield [
      ...bdfs.map((b): SysRead => ({kind: 'link', path: view.sys('bus/pci/devices', b)})),
      ...classes.map((dir): SysRead => ({kind: 'list', path: dir})),
    ]
    const dirs = bdfs.map((b) => this.devicePath(b))
    yield [
      ...dirs.map((dir): SysRead => ({kind: 'list', path: dir})),
      ...classes.flatMap((dir) => view.list(dir).map((n): SysRead => ({kind: 'link', path: path.join(dir, n)}))),
    ]
    const last: SysRead[] = []
    for (const dir of dirs) {
      const entries = new Set(view.list(dir))
      last.push({kind: 'bytes', path: `${dir}/config`, length: CONFIG_READ})
      for (const f of FUNCTION_LINKS) if (entries.has(f)) last.push({kind: 'link', path: `${dir}/${f}`})
      for (const f of FUNCTION_ATTRS) if (entries.has(f)) last.push({kind: 'text', path: `${dir}/${f}`})
      if (entries.has('p2pmem')) for (const f of P2PMEM_ATTRS) last.push({kind: 'text', path: `${dir}/p2pmem/${f}`})
    }
    if (storage) {
      this.blockIndex ??= this.classIndex('block')
      for (const p of [...this.blockIndex.values()].flat()) {
        last.push({kind: 'exists', path: `${p}/partition`}, {kind: 'list', path: `${p}/holders`}, ...BLOCK_ATTRS.map((f): SysRead => ({kind: 'text', path: `${p}/${f}`})))
      }
    }
    yield last
  }

  /** Read one function; throws E_NO_DEVICE (exit 3) when it is not there. */
  get(bdfText: string): PciFunction {
    const bdf = normalizeBdf(bdfText)
    if (!this.host.exists(this.host.sys('bus/pci/devices', bdf))) {
      throw new IopmemError(`No PCI function ${bdf} on this machine.`, {
        code: 'E_NO_DEVICE',
        exit: Exit.NOT_FOUND,
        suggestions: ['Run `iopmem list --all` to see the functions that are present.'],
        details: {bdf},
      })
    }
    return this.read(bdf)
  }

  /** The function's sysfs directory, resolved through the bus link. */
  devicePath(bdf: string): string {
    const link = this.host.sys('bus/pci/devices', bdf)
    return this.host.resolveLink(link) ?? this.host.realpath(link) ?? link
  }

  read(bdf: string): PciFunction {
    const h = this.host
    const dir = this.devicePath(bdf)
    const entries = new Set(h.list(dir))
    const [domain, bus, devfn] = bdf.split(':')
    const [dev, fn] = devfn.split('.')
    // dir is normalized (devicePath): joining by hand spares path.join's normalizing, ~20 times per function.
    const file = (f: string) => `${dir}/${f}`
    // The header and the capability list (IDs, header type, PCIe port type) lie in the first
    // 256 bytes. The extended space beyond is not read here: as root the kernel reads each
    // dword of it from the device, 4 KiB per function, which `list` never needs.
    const config = this.configAt(file('config'), CONFIG_READ)
    const ids = this.ids(dir, config, entries)
    const classCode = h.readInt(file('class'), 16) ?? 0
    const parent = path.basename(path.dirname(dir))
    const hostBridge = this.hostBridgeOf(dir)
    const headerType = config?.headerType
    const isBridge = headerType === 1 || classCode >> 8 === 0x0604
    const pcieTypeNum = config?.pcieType
    const override = entries.has('driver_override') ? h.readTrim(file('driver_override')) : undefined
    const iommu = entries.has('iommu_group') ? h.linkName(file('iommu_group')) : undefined
    const numa = entries.has('numa_node') ? h.readInt(file('numa_node')) : undefined
    const enable = entries.has('enable') ? h.readTrim(file('enable')) : undefined
    const names = this.opts.names !== false
    const {vendor, device} = ids

    const fnInfo: PciFunction = {
      bdf,
      domain: Number.parseInt(domain, 16),
      bus: Number.parseInt(bus, 16),
      device: Number.parseInt(dev, 16),
      function: Number.parseInt(fn, 10),
      vendorId: hex(vendor, 4),
      deviceId: hex(device, 4),
      subsystemVendorId: optHex(ids.subsystemVendor, 4),
      subsystemDeviceId: optHex(ids.subsystemDevice, 4),
      revision: optHex(ids.revision, 2),
      classCode: hex(classCode, 6),
      vendorName: names ? this.pciIds().vendor(vendor) : undefined,
      deviceName: names ? this.pciIds().device(vendor, device) : undefined,
      className: names ? this.pciIds().className(classCode) : hex(classCode, 6),
      driver: entries.has('driver') ? h.linkName(file('driver')) ?? null : null,
      driverOverride: override === undefined || override === '(null)' || override === '' ? null : override,
      iommuGroup: iommu === undefined ? null : Number.parseInt(iommu, 10),
      numaNode: numa === undefined || numa < 0 ? null : numa,
      enabled: enable === undefined ? undefined : enable !== '0',
      link: entries.has('current_link_speed') || entries.has('max_link_speed') ? this.link(dir) : null,
      bars: this.bars(dir, entries),
      p2pmem: entries.has('p2pmem') ? this.p2pmem(dir) : null,
      blockDevices: this.opts.storage === false ? [] : this.blockDevices(dir),
      daxDevices: this.opts.storage === false ? [] : this.daxDevices(dir),
      upstream: isBdfName(parent) ? parent : null,
      hostBridge,
      isBridge,
      pcieType: pcieTypeNum === undefined ? undefined : PCIE_TYPE_NAMES[pcieTypeNum] ?? `type-${pcieTypeNum}`,
      sysfsPath: dir,
    }
    return fnInfo
  }

  /** Config space as far as we may read it (64 bytes unprivileged, 256/4096 as root). */
  config(bdf: string): ConfigSpace | undefined {
    return this.configAt(this.host.sys('bus/pci/devices', bdf, 'config'))
  }

  private configAt(file: string, length = 4096): ConfigSpace | undefined {
    const bytes = this.host.readBytes(file, length)
    return bytes && bytes.length > 0 ? new ConfigSpace(bytes) : undefined
  }

  /**
   * Vendor, device, revision and subsystem IDs. A type-0 header holds them all in
   * its first 64 bytes (what anyone may read of `config`), so one read serves
   * instead of five sysfs files. The files are read instead where config space
   * does not say what the kernel says: a bridge (its subsystem IDs live in a
   * capability), an SR-IOV VF (its ID registers read 0xffff; the kernel takes
   * them from the PF) and config space that is missing or short.
   */
  private ids(dir: string, config: ConfigSpace | undefined, entries: Set<string>): FunctionIds {
    const fromConfig = config?.typeZeroIds
    if (fromConfig && fromConfig.vendor !== 0xffff && !entries.has('physfn')) return fromConfig
    const num = (f: string) => this.host.readInt(path.join(dir, f), 16)
    return {
      vendor: num('vendor') ?? 0xffff,
      device: num('device') ?? 0xffff,
      revision: num('revision'),
      subsystemVendor: num('subsystem_vendor'),
      subsystemDevice: num('subsystem_device'),
    }
  }

  hostBridgeOf(dir: string): string {
    const devices = this.host.sys('devices')
    // A function's directory lies under devices/ (read() asks for each: slicing spares path.relative's work).
    const rel = (dir.startsWith(devices + '/') ? dir.slice(devices.length + 1) : path.relative(devices, dir)).split('/')
    const hb = rel.find((p) => p.startsWith('pci'))
    return hb ?? rel[0] ?? 'unknown'
  }

  private pciIds(): PciIds {
    this.names ??= PciIds.open()
    return this.names
  }

  private link(dir: string): LinkInfo | null {
    const h = this.host
    const speed = h.readTrim(`${dir}/current_link_speed`)
    const maxSpeed = h.readTrim(`${dir}/max_link_speed`)
    const width = h.readInt(`${dir}/current_link_width`)
    const maxWidth = h.readInt(`${dir}/max_link_width`)
    if (speed === undefined && maxSpeed === undefined && width === undefined && maxWidth === undefined) return null
    return {currentSpeed: speed, currentWidth: width, maxSpeed, maxWidth}
  }

  private bars(dir: string, entries: Set<string>): Bar[] {
    const text = this.host.read(`${dir}/resource`)
    if (text === undefined) return []
    const bars: Bar[] = []
    for (const r of parseResourceFile(text)) {
      if (r.index > 12) break // bridge windows follow on bridges
      const flags = Number(r.flags & 0xffffffffn)
      if (r.start === 0n && r.end === 0n && flags === 0) continue
      const isMem = (flags & IORESOURCE.MEM) !== 0
      const isIo = (flags & IORESOURCE.IO) !== 0
      if (!isMem && !isIo) continue
      if (r.end > MAX_ADDR || r.start > MAX_ADDR || (r.end >= r.start && r.end - r.start + 1n > MAX_BAR)) {
        throw corruptSysfs(this.host, `${dir}/resource`, `${barName(r.index)} spans ${r.start.toString(16)}-${r.end.toString(16)} (hex), more than any 64-bit address or BAR can`)
      }
      const size = r.end >= r.start && (r.start !== 0n || r.end !== 0n) ? Number(r.end - r.start + 1n) : 0
      bars.push({
        index: r.index,
        name: barName(r.index),
        type: isMem ? 'mem' : 'io',
        start: hex64(r.start),
        end: hex64(r.end),
        size,
        flags: '0x' + flags.toString(16).padStart(8, '0'),
        is64: (flags & IORESOURCE.MEM_64) !== 0,
        prefetchable: (flags & IORESOURCE.PREFETCH) !== 0,
        readonly: (flags & IORESOURCE.READONLY) !== 0,
        disabled: (flags & IORESOURCE.DISABLED) !== 0,
        unset: (flags & IORESOURCE.UNSET) !== 0,
        mappable: r.index < 6 && entries.has(`resource${r.index}`),
        wc: r.index < 6 && entries.has(`resource${r.index}_wc`),
      })
    }
    return bars
  }

  private p2pmem(dir: string): P2pmem | null {
    const p = path.join(dir, 'p2pmem')
    const size = this.host.readInt(path.join(p, 'size'))
    if (size === undefined) return null
    const available = this.host.readInt(path.join(p, 'available')) ?? 0
    if (size < 0 || !Number.isSafeInteger(size)) throw corruptSysfs(this.host, path.join(p, 'size'), `p2pmem size ${size}`)
    if (available < 0 || available > size) throw corruptSysfs(this.host, path.join(p, 'available'), `p2pmem available ${available} of a ${size}-byte pool`)
    return {
      size,
      available,
      published: this.host.readTrim(path.join(p, 'published')) === '1',
    }
  }

  /** Map each PCI function directory to the class entries (block, dax) that resolve beneath it. */
  private classIndex(cls: string): Map<string, string[]> {
    const idx = new Map<string, string[]>()
    const root = this.host.sys('class', cls)
    for (const name of this.host.list(root)) {
      const real = this.host.resolveLink(path.join(root, name))
      if (!real) continue
      const fnDir = nearestPciAncestor(real)
      if (!fnDir) continue
      const arr = idx.get(fnDir) ?? []
      arr.push(real)
      idx.set(fnDir, arr)
    }
    return idx
  }

  private blockDevices(dir: string): BlockDevice[] {
    this.blockIndex ??= this.classIndex('block')
    const entries = this.blockIndex.get(dir) ?? []
    // Entries are resolved links, normalized already (resolveLink): joined by hand, as fetchPlan joins them.
    const disks = entries.filter((p) => !this.host.exists(`${p}/partition`))
    return disks.map((p) => this.readDisk(p, entries))
  }

  readDisk(diskPath: string, siblings: string[] = []): BlockDevice {
    const h = this.host
    const name = path.basename(diskPath)
    const partitions: Partition[] = siblings
      .filter((p) => path.dirname(p) === diskPath && h.exists(path.join(p, 'partition')))
      .map((p) => ({
        name: path.basename(p),
        dev: h.readTrim(path.join(p, 'dev')) ?? '',
        start: h.readInt(path.join(p, 'start')) ?? 0,
        size: (h.readInt(path.join(p, 'size')) ?? 0) * 512,
      }))
    const holders = [diskPath, ...partitions.map((p) => path.join(diskPath, p.name))].flatMap((p) => h.list(`${p}/holders`))
    return {
      name,
      dev: h.readTrim(`${diskPath}/dev`) ?? '',
      size: (h.readInt(`${diskPath}/size`) ?? 0) * 512,
      kind: /^nvme\d+n\d+$/.test(name) ? 'nvme' : /^pmem\d+/.test(name) ? 'pmem' : /^iopmem\d+/.test(name) ? 'iopmem' : 'other',
      dax: h.readTrim(`${diskPath}/queue/dax`) === '1',
      logicalBlockSize: h.readInt(`${diskPath}/queue/logical_block_size`),
      partitions,
      holders,
    }
  }

  private daxDevices(dir: string): string[] {
    this.daxIndex ??= this.classIndex('dax')
    return (this.daxIndex.get(dir) ?? []).map((p) => path.basename(p))
  }
}

/** The deepest directory in a sysfs device path that is a PCI function. */
export function nearestPciAncestor(p: string): string | undefined {
  // A normalized absolute path (what resolveLink gives): its segments by slicing, not
  // path.dirname and path.basename at each level (thousands of calls in a large scan).
  if (p.startsWith('/') && !p.endsWith('/') && !p.includes('//')) {
    for (let end = p.length; end > 0; end = p.lastIndexOf('/', end - 1)) {
      const start = p.lastIndexOf('/', end - 1)
      if (isBdfName(p.slice(start + 1, end))) return p.slice(0, end)
    }
    return undefined
  }
  let cur = p
  while (cur !== path.dirname(cur)) {
    if (isBdfName(path.basename(cur))) return cur
    cur = path.dirname(cur)
  }
  return undefined
}

function optHex(n: number | undefined, w: number): string | undefined {
  return n === undefined ? undefined : hex(n, w)
}

/** Functions worth showing by default: memory BARs, p2pmem, or storage on them. */
export function hasDeviceMemory(f: PciFunction): boolean {
  return f.p2pmem !== null || f.bars.some((b) => b.type === 'mem' && b.size > 0 && b.index < 6) || f.blockDevices.length > 0
}

/** The largest memory BAR (index 0-5), or undefined. */
export function largestMemBar(f: PciFunction): Bar | undefined {
  return f.bars
    .filter((b) => b.type === 'mem' && b.index < 6 && b.size > 0)
    .reduce<Bar | undefined>((best, b) => (best === undefined || b.size > best.size ? b : best), undefined)
}
