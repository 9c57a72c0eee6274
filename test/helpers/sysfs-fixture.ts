/**
 * Fixture trees with the kernel's real file formats and symlink shapes:
 * /sys/devices/pci0000:00/…/BDF with `resource`, `config`, `driver` links,
 * /sys/bus/pci/{devices,drivers}, /sys/class/{block,dax}, /sys/kernel/iommu_groups,
 * /dev nodes (plain files) and /proc (cpuinfo, mountinfo, per-process fd links and maps).
 */
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {Host} from '../../src/lib/sys/host.js'

export interface BarSpec {
  index: number
  start: bigint | number
  size: number
  io?: boolean
  prefetch?: boolean
  is64?: boolean
  disabled?: boolean
  unset?: boolean
  /** resourceN_wc present (default: prefetchable memory BARs). */
  wc?: boolean
  /** Create resourceN as a sparse file of the BAR's size (default true for memory BARs). */
  file?: boolean
}

export interface NamespaceSpec {
  name: string
  dev: string
  sizeBytes: number
  lbs?: number
  dax?: boolean
  partitions?: Array<{name: string; dev: string; start: number; sizeBytes: number; holders?: string[]}>
  holders?: string[]
  /** slaves/ entries (device-mapper, md). */
  slaves?: string[]
  /** `ro` reads 1. */
  readOnly?: boolean
  /** NVMe namespace id (`nsid`). */
  nsid?: number
}

/** Legacy (e820) or fsdax pmem: region → namespace (→ pfn) → block/pmemN, as libnvdimm lays it out. */
export interface PmemSpec {
  /** Block device name, default pmem0. */
  name?: string
  dev?: string
  region?: number
  /** Physical address of the namespace (namespaceX.Y/resource). */
  start: bigint | number
  sizeBytes: number
  /** fsdax with a pfn device: its resource is start + dataOffset, and the disk is that much smaller. */
  pfn?: {name: string; dataOffset: number}
  /** Write no `resource` files (as a reader without the right to see them would find). */
  noResource?: boolean
  dax?: boolean
  partitions?: NamespaceSpec['partitions']
}

export interface FnSpec {
  bdf: string
  /** Upstream bridge BDF; omitted for a device on a root bus. */
  parent?: string
  vendor: number
  device: number
  class: number
  revision?: number
  subsystemVendor?: number
  subsystemDevice?: number
  driver?: string
  driverOverride?: string
  iommuGroup?: number
  numaNode?: number
  link?: {speed: string; width: number; maxSpeed?: string; maxWidth?: number}
  bars?: BarSpec[]
  /** Secondary bus number: makes this a type-1 (bridge) header. */
  secondaryBus?: number
  /** PCIe capability with this port type (PcieType). */
  pcieType?: number
  /** ACS extended capability with this control register value. */
  acsCtrl?: number
  /** Bytes of `config` the reader may see (64 as a normal user, 4096 as root for PCIe). */
  configSize?: number
  p2pmem?: {size: number; available?: number; published?: boolean}
  /** An NVMe controller with namespaces (nvme/nvmeN/nvmeNnM). */
  nvme?: {controller: string; namespaces: NamespaceSpec[]}
  /** Block devices directly under the function (e.g. an iopmem disk: iopmem0). */
  disks?: NamespaceSpec[]
  /** device-dax instances under the function (dax0.0). */
  dax?: string[]
}

export interface DriverSpec {
  name: string
  /** Classes matched by the driver's ID table (like nvme's PCI_CLASS_STORAGE_EXPRESS). */
  classes?: number[]
  /** vendor:device pairs in the ID table. */
  ids?: Array<[number, number]>
  /** Probe outcome: an errno name makes probe fail with it. */
  probe?: (bdf: string) => string | undefined
}

export interface MountSpec {
  /** Mount id (first field of mountinfo); default 100 + its index. */
  id?: number
  dev: string
  source: string
  target: string
  fstype: string
  options?: string
}

export interface ProcessSpec {
  pid: number
  comm: string
  fds?: string[]
  maps?: string[]
}

export class SysfsFixture {
  readonly root: string
  readonly sys: string
  readonly dev: string
  readonly proc: string
  readonly fns = new Map<string, FnSpec>()
  readonly drivers = new Map<string, DriverSpec>()
  private mounts: MountSpec[] = []

  constructor(root?: string) {
    this.root = root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-fx-'))
    this.sys = path.join(this.root, 'sys')
    this.dev = path.join(this.root, 'dev')
    this.proc = path.join(this.root, 'proc')
    for (const d of ['bus/pci/devices', 'bus/pci/drivers', 'devices', 'class/block', 'class/dax', 'block', 'dev/block', 'kernel/iommu_groups', 'module']) {
      fs.mkdirSync(path.join(this.sys, d), {recursive: true})
    }
    for (const f of ['bus/pci/drivers_probe', 'bus/pci/drivers_autoprobe', 'bus/pci/rescan']) {
      fs.writeFileSync(path.join(this.sys, f), f.endsWith('autoprobe') ? '1\n' : '')
    }
    fs.mkdirSync(this.dev, {recursive: true})
    fs.mkdirSync(path.join(this.proc, 'self'), {recursive: true})
    this.cpu('GenuineIntel', 6)
    this.writeMountinfo()
  }

  env(): Record<string, string> {
    return {IOPMEM_SYSFS_ROOT: this.sys, IOPMEM_DEV_ROOT: this.dev, IOPMEM_PROC_ROOT: this.proc}
  }

  host(opts: {writer?: import('../../src/lib/sys/host.js').SysfsWriter; uid?: number} = {}): Host {
    return new Host({roots: {sysfs: this.sys, dev: this.dev, proc: this.proc}, writer: opts.writer, uid: opts.uid ?? 0})
  }

  cleanup(): void {
    fs.rmSync(this.root, {recursive: true, force: true})
  }

  cpu(vendor: string, family: number): this {
    const body = [0, 1]
      .map((n) => `processor\t: ${n}\nvendor_id\t: ${vendor}\ncpu family\t: ${family}\nmodel\t\t: 1\nmodel name\t: Fixture CPU\n`)
      .join('\n')
    fs.writeFileSync(path.join(this.proc, 'cpuinfo'), body + '\n')
    return this
  }

  /** A host bridge directory: /sys/devices/pciDDDD:BB */
  hostBridgeDir(domain: string, bus: string): string {
    const d = path.join(this.sys, 'devices', `pci${domain}:${bus}`)
    fs.mkdirSync(d, {recursive: true})
    return d
  }

  fnDir(bdf: string): string {
    const spec = this.fns.get(bdf)
    if (!spec) throw new Error(`fixture: unknown function ${bdf}`)
    if (spec.parent) return path.join(this.fnDir(spec.parent), bdf)
    const [domain, bus] = bdf.split(':')
    return path.join(this.sys, 'devices', `pci${domain}:${bus}`, bdf)
  }

  driver(spec: DriverSpec): this {
    this.drivers.set(spec.name, spec)
    const d = path.join(this.sys, 'bus/pci/drivers', spec.name)
    fs.mkdirSync(d, {recursive: true})
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id', 'uevent']) fs.writeFileSync(path.join(d, f), '')
    fs.mkdirSync(path.join(this.sys, 'module', spec.name.replaceAll('-', '_')), {recursive: true})
    return this
  }

  add(spec: FnSpec): this {
    this.fns.set(spec.bdf, spec)
    const [domain, bus] = spec.bdf.split(':')
    if (!spec.parent) this.hostBridgeDir(domain, bus)
    const dir = this.fnDir(spec.bdf)
    fs.mkdirSync(dir, {recursive: true})
    const w = (f: string, v: string | Buffer) => fs.writeFileSync(path.join(dir, f), v)
    const hx = (n: number, width: number) => '0x' + n.toString(16).padStart(width, '0') + '\n'
    w('vendor', hx(spec.vendor, 4))
    w('device', hx(spec.device, 4))
    w('subsystem_vendor', hx(spec.subsystemVendor ?? spec.vendor, 4))
    w('subsystem_device', hx(spec.subsystemDevice ?? 0, 4))
    w('class', hx(spec.class, 6))
    w('revision', hx(spec.revision ?? 1, 2))
    w('driver_override', (spec.driverOverride ?? '(null)') + '\n')
    w('enable', '1\n')
    w('numa_node', `${spec.numaNode ?? -1}\n`)
    w('irq', '16\n')
    w('local_cpulist', '0-1\n')
    w('remove', '')
    w('rescan', '')
    if (spec.link) {
      w('current_link_speed', spec.link.speed + '\n')
      w('current_link_width', spec.link.width + '\n')
      w('max_link_speed', (spec.link.maxSpeed ?? spec.link.speed) + '\n')
      w('max_link_width', (spec.link.maxWidth ?? spec.link.width) + '\n')
    }
    w('resource', this.resourceText(spec))
    for (const bar of spec.bars ?? []) {
      if (bar.io || bar.file === false || bar.index > 5) continue
      const f = path.join(dir, `resource${bar.index}`)
      fs.writeFileSync(f, '')
      fs.truncateSync(f, bar.size)
      if (bar.wc ?? bar.prefetch) {
        fs.writeFileSync(f + '_wc', '')
        fs.truncateSync(f + '_wc', bar.size)
      }
    }
    w('config', this.configBytes(spec))
    if (spec.secondaryBus !== undefined) {
      const b = `${domain}:${spec.secondaryBus.toString(16).padStart(2, '0')}`
      fs.mkdirSync(path.join(dir, 'pci_bus', b), {recursive: true})
    }
    this.link(path.join(this.sys, 'bus/pci/devices', spec.bdf), dir)
    if (spec.iommuGroup !== undefined) {
      const g = path.join(this.sys, 'kernel/iommu_groups', String(spec.iommuGroup))
      fs.mkdirSync(path.join(g, 'devices'), {recursive: true})
      this.link(path.join(g, 'devices', spec.bdf), dir)
      this.link(path.join(dir, 'iommu_group'), g)
    }
    if (spec.driver) this.bindLinks(spec.bdf, spec.driver)
    if (spec.p2pmem) {
      const p = path.join(dir, 'p2pmem')
      fs.mkdirSync(p, {recursive: true})
      fs.writeFileSync(path.join(p, 'size'), `${spec.p2pmem.size}\n`)
      fs.writeFileSync(path.join(p, 'available'), `${spec.p2pmem.available ?? spec.p2pmem.size}\n`)
      fs.writeFileSync(path.join(p, 'published'), `${spec.p2pmem.published === false ? 0 : 1}\n`)
      fs.writeFileSync(path.join(p, 'allocate'), '')
    }
    if (spec.nvme) {
      const ctrl = path.join(dir, 'nvme', spec.nvme.controller)
      fs.mkdirSync(ctrl, {recursive: true})
      fs.writeFileSync(path.join(ctrl, 'dev'), '240:0\n')
      fs.writeFileSync(path.join(this.dev, spec.nvme.controller), '')
      for (const ns of spec.nvme.namespaces) this.disk(ctrl, ns)
    }
    for (const d of spec.disks ?? []) this.disk(dir, d)
    for (const dax of spec.dax ?? []) {
      const dd = path.join(dir, 'dax', dax)
      fs.mkdirSync(dd, {recursive: true})
      fs.writeFileSync(path.join(dd, 'dev'), '251:0\n')
      fs.writeFileSync(path.join(dd, 'size'), '0\n')
      this.link(path.join(this.sys, 'class/dax', dax), dd)
      fs.writeFileSync(path.join(this.dev, dax), '')
    }
    return this
  }

  /** A block disk under /sys/devices/<parentRel> (e.g. virtual/block, platform/…): returns its directory. */
  addDisk(parentRel: string, ns: NamespaceSpec): string {
    const parent = path.join(this.sys, 'devices', parentRel)
    fs.mkdirSync(parent, {recursive: true})
    this.disk(parent, ns)
    return path.join(parent, ns.name)
  }

  /** Legacy/fsdax pmem as libnvdimm shows it; returns the disk's directory. */
  pmem(spec: PmemSpec): string {
    const region = spec.region ?? 0
    const regionDir = path.join(this.sys, 'devices/platform/e820_pmem/ndbus0', `region${region}`)
    const nsDir = path.join(regionDir, `namespace${region}.0`)
    fs.mkdirSync(nsDir, {recursive: true})
    const hx = (n: bigint) => '0x' + n.toString(16) + '\n'
    const start = BigInt(spec.start)
    if (!spec.noResource) {
      fs.writeFileSync(path.join(regionDir, 'resource'), hx(start))
      fs.writeFileSync(path.join(nsDir, 'resource'), hx(start))
    }
    fs.writeFileSync(path.join(nsDir, 'size'), `${spec.sizeBytes}\n`)
    fs.writeFileSync(path.join(nsDir, 'mode'), spec.pfn ? 'fsdax\n' : 'raw\n')
    let owner = nsDir
    let size = spec.sizeBytes
    if (spec.pfn) {
      owner = path.join(regionDir, spec.pfn.name)
      fs.mkdirSync(owner, {recursive: true})
      if (!spec.noResource) fs.writeFileSync(path.join(owner, 'resource'), hx(start + BigInt(spec.pfn.dataOffset)))
      fs.writeFileSync(path.join(owner, 'mode'), 'pmem\n')
      this.link(path.join(owner, 'namespace'), nsDir)
      size -= spec.pfn.dataOffset
    }
    const name = spec.name ?? 'pmem0'
    const blockDir = path.join(owner, 'block')
    fs.mkdirSync(blockDir, {recursive: true})
    this.disk(blockDir, {name, dev: spec.dev ?? '259:0', sizeBytes: size, dax: spec.dax ?? true, partitions: spec.partitions})
    this.link(path.join(blockDir, name, 'device'), owner)
    return path.join(blockDir, name)
  }

  private disk(parent: string, ns: NamespaceSpec): void {
    const d = path.join(parent, ns.name)
    fs.mkdirSync(path.join(d, 'queue'), {recursive: true})
    fs.mkdirSync(path.join(d, 'holders'), {recursive: true})
    fs.mkdirSync(path.join(d, 'slaves'), {recursive: true})
    for (const sl of ns.slaves ?? []) fs.mkdirSync(path.join(d, 'slaves', sl), {recursive: true})
    fs.writeFileSync(path.join(d, 'ro'), ns.readOnly ? '1\n' : '0\n')
    if (ns.nsid !== undefined) fs.writeFileSync(path.join(d, 'nsid'), `${ns.nsid}\n`)
    this.link(path.join(this.sys, 'dev/block', ns.dev), d)
    fs.writeFileSync(path.join(d, 'dev'), ns.dev + '\n')
    fs.writeFileSync(path.join(d, 'size'), `${Math.floor(ns.sizeBytes / 512)}\n`)
    fs.writeFileSync(path.join(d, 'queue/logical_block_size'), `${ns.lbs ?? 512}\n`)
    fs.writeFileSync(path.join(d, 'queue/dax'), ns.dax ? '1\n' : '0\n')
    for (const h of ns.holders ?? []) fs.mkdirSync(path.join(d, 'holders', h), {recursive: true})
    this.link(path.join(this.sys, 'class/block', ns.name), d)
    this.link(path.join(this.sys, 'block', ns.name), d)
    fs.writeFileSync(path.join(this.dev, ns.name), '')
    for (const p of ns.partitions ?? []) {
      const pd = path.join(d, p.name)
      fs.mkdirSync(path.join(pd, 'holders'), {recursive: true})
      fs.writeFileSync(path.join(pd, 'dev'), p.dev + '\n')
      fs.writeFileSync(path.join(pd, 'partition'), '1\n')
      fs.writeFileSync(path.join(pd, 'start'), `${p.start}\n`)
      fs.writeFileSync(path.join(pd, 'size'), `${Math.floor(p.sizeBytes / 512)}\n`)
      fs.writeFileSync(path.join(pd, 'ro'), '0\n')
      this.link(path.join(this.sys, 'dev/block', p.dev), pd)
      for (const h of p.holders ?? []) fs.mkdirSync(path.join(pd, 'holders', h), {recursive: true})
      this.link(path.join(this.sys, 'class/block', p.name), pd)
      fs.writeFileSync(path.join(this.dev, p.name), '')
    }
  }

  private resourceText(spec: FnSpec): string {
    const lines: string[] = []
    for (let i = 0; i < 13; i++) {
      const bar = spec.bars?.find((b) => b.index === i)
      if (!bar) {
        lines.push(`0x${'0'.repeat(16)} 0x${'0'.repeat(16)} 0x${'0'.repeat(16)}`)
        continue
      }
      const start = BigInt(bar.start)
      const end = bar.unset && start === 0n ? BigInt(bar.size - 1) : start + BigInt(bar.size) - 1n
      let flags = bar.io ? 0x40101 : 0x40200
      if (!bar.io && bar.is64) flags |= 0x100000 | 0x4
      if (!bar.io && bar.prefetch) flags |= 0x2000 | 0x8
      if (bar.disabled) flags |= 0x10000000
      if (bar.unset) flags |= 0x20000000
      const h16 = (n: bigint) => '0x' + n.toString(16).padStart(16, '0')
      lines.push(`${h16(start)} ${h16(end)} ${h16(BigInt(flags))}`)
    }
    return lines.join('\n') + '\n'
  }

  /** Config space bytes: IDs, header type, BARs, a PCIe capability and optionally ACS. */
  configBytes(spec: FnSpec): Buffer {
    const b = Buffer.alloc(4096)
    b.writeUInt16LE(spec.vendor, 0)
    b.writeUInt16LE(spec.device, 2)
    b.writeUInt16LE(0x0006, 4)
    b.writeUInt8(spec.revision ?? 1, 8)
    b.writeUInt8(spec.class & 0xff, 9)
    b.writeUInt8((spec.class >> 8) & 0xff, 10)
    b.writeUInt8((spec.class >> 16) & 0xff, 11)
    const bridge = spec.secondaryBus !== undefined
    b.writeUInt8(bridge ? 1 : 0, 0x0e)
    if (!bridge) {
      // A type-0 header's subsystem IDs, as the sysfs files above say them.
      b.writeUInt16LE(spec.subsystemVendor ?? spec.vendor, 0x2c)
      b.writeUInt16LE(spec.subsystemDevice ?? 0, 0x2e)
    }
    for (const bar of spec.bars ?? []) {
      if (bar.index > (bridge ? 1 : 5)) continue
      const start = BigInt(bar.start)
      const off = 0x10 + bar.index * 4
      if (bar.io) {
        b.writeUInt32LE(Number(start & 0xfffffffcn) | 1, off)
        continue
      }
      let lo = Number(start & 0xfffffff0n)
      if (bar.is64) lo |= 0x4
      if (bar.prefetch) lo |= 0x8
      b.writeUInt32LE(lo >>> 0, off)
      if (bar.is64) b.writeUInt32LE(Number(start >> 32n), off + 4)
    }
    if (bridge) {
      const [, bus] = spec.bdf.split(':')
      b.writeUInt8(Number.parseInt(bus, 16), 0x18)
      b.writeUInt8(spec.secondaryBus!, 0x19)
      b.writeUInt8(spec.secondaryBus!, 0x1a)
    }
    if (spec.pcieType !== undefined) {
      b.writeUInt16LE(0x0016, 6) // status: capabilities list
      b.writeUInt8(0x40, 0x34)
      b.writeUInt8(0x10, 0x40)
      b.writeUInt8(0x00, 0x41)
      b.writeUInt16LE((spec.pcieType << 4) | 0x2, 0x42)
      if (spec.acsCtrl !== undefined) {
        b.writeUInt32LE(0x000d | (1 << 16) | (0 << 20), 0x100)
        b.writeUInt16LE(0x005f, 0x104) // ACS capability register
        b.writeUInt16LE(spec.acsCtrl, 0x106)
      } else {
        b.writeUInt32LE(0x0001 | (1 << 16), 0x100) // AER, end of list
      }
    }
    return b.subarray(0, spec.configSize ?? 4096)
  }

  /** Write (or replace) a file relative to the sysfs root, e.g. an attribute a driver would add. */
  writeSys(rel: string, value: string | Buffer): void {
    const f = path.join(this.sys, rel)
    fs.mkdirSync(path.dirname(f), {recursive: true})
    fs.writeFileSync(f, value)
  }

  private link(at: string, target: string): void {
    fs.mkdirSync(path.dirname(at), {recursive: true})
    fs.rmSync(at, {force: true})
    fs.symlinkSync(path.relative(path.dirname(at), target), at)
  }

  /** The links the driver core makes on a successful probe. */
  bindLinks(bdf: string, driver: string): void {
    const dir = this.fnDir(bdf)
    const drv = path.join(this.sys, 'bus/pci/drivers', driver)
    if (!fs.existsSync(drv)) this.driver({name: driver})
    this.link(path.join(dir, 'driver'), drv)
    this.link(path.join(drv, bdf), dir)
  }

  unbindLinks(bdf: string): void {
    const dir = this.fnDir(bdf)
    const drvLink = path.join(dir, 'driver')
    const target = fs.readlinkSync(drvLink)
    fs.rmSync(path.join(path.dirname(drvLink), target, bdf), {force: true})
    fs.rmSync(drvLink, {force: true})
  }

  currentDriver(bdf: string): string | undefined {
    try {
      return path.basename(fs.readlinkSync(path.join(this.fnDir(bdf), 'driver')))
    } catch {
      return undefined
    }
  }

  override(bdf: string): string | undefined {
    const v = fs.readFileSync(path.join(this.fnDir(bdf), 'driver_override'), 'utf8').trim()
    return v === '(null)' ? undefined : v
  }

  mount(m: MountSpec): this {
    this.mounts.push(m)
    this.writeMountinfo()
    return this
  }

  private writeMountinfo(): void {
    const base = ['22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw', '23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw']
    const lines = this.mounts.map(
      (m, i) => `${m.id ?? 100 + i} 1 ${m.dev} / ${m.target.replaceAll(' ', '\\040')} rw,relatime shared:${40 + i} - ${m.fstype} ${m.source} ${m.options ?? 'rw'}`,
    )
    fs.writeFileSync(path.join(this.proc, 'self/mountinfo'), [...base, ...lines].join('\n') + '\n')
  }

  /** A process with open files (fd links to kernel paths such as /sys/devices/…/resource2) and mapped files. */
  process(p: ProcessSpec): this {
    const d = path.join(this.proc, String(p.pid))
    fs.mkdirSync(path.join(d, 'fd'), {recursive: true})
    fs.writeFileSync(path.join(d, 'comm'), p.comm + '\n')
    for (const [i, f] of (p.fds ?? []).entries()) fs.symlinkSync(f, path.join(d, 'fd', String(i + 3)))
    const maps = (p.maps ?? []).map((f, i) => `7f00000${i}0000-7f00000${i}1000 rw-s 00000000 00:05 1234                       ${f}`)
    fs.writeFileSync(path.join(d, 'maps'), maps.join('\n') + (maps.length ? '\n' : ''))
    return this
  }

  /** Kernel path (as /proc/PID/fd shows it) of a file in a function's directory. */
  kernelPath(bdf: string, file: string): string {
    return '/sys' + path.join(this.fnDir(bdf), file).slice(this.sys.length)
  }

  /**
   * A digest of every path, type, link target and byte in the tree, except
   * the fixture's run/ (iopmem's lock files in run/lock/iopmem): a lock
   * file records who last held a device, not a change to it.
   */
  hash(): string {
    const h = createHash('sha256')
    const locks = path.join(this.root, 'run')
    const walk = (d: string) => {
      for (const name of fs.readdirSync(d).sort()) {
        const p = path.join(d, name)
        if (p === locks) continue
        const st = fs.lstatSync(p)
        const rel = path.relative(this.root, p)
        if (st.isSymbolicLink()) h.update(`L ${rel} -> ${fs.readlinkSync(p)}\n`)
        else if (st.isDirectory()) {
          h.update(`D ${rel}\n`)
          walk(p)
        } else {
          h.update(`F ${rel} ${st.size} `)
          if (st.size < 1 << 20) h.update(fs.readFileSync(p))
          h.update('\n')
        }
      }
    }
    walk(this.root)
    return h.digest('hex')
  }
}

/**
 * Inside a mocha `describe`: a `track` that keeps each fixture it is given and removes
 * them all after the suite.
 */
export function trackFixtures(): (fx: SysfsFixture) => SysfsFixture {
  const fixtures: SysfsFixture[] = []
  after(function () {
    this.timeout(120_000)
    for (const fx of fixtures) fx.cleanup()
  })
  return (fx) => {
    fixtures.push(fx)
    return fx
  }
}
