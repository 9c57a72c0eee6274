/** Block devices as sysfs shows them: disks, partitions, DAX capability, the memory behind them, and what uses them. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, usage} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {mountDaxMode, type MountEntry, readMounts} from '../sys/index.js'
import {largestMemBar, nearestPciAncestor, PciScanner} from '../pci/index.js'
import {deniedNote, processesUsing} from '../sys/index.js'

/**
 * Block devices as sysfs shows them, for mkfs-dax and locate: a device
 * (disk or partition) by name, by major:minor or by /dev path; what kind of
 * memory sits behind its disk (fsdax pmem namespace, an iopmem BAR, an NVMe
 * namespace, anything else); and who is using it.
 *
 * Sysfs facts relied on:
 *  - /sys/dev/block/MAJ:MIN and /sys/class/block/NAME link to the device's
 *    directory; a partition's directory sits inside its disk's and holds
 *    `partition` (its number) and `start` (in 512-byte sectors).
 *  - A disk's `queue/dax` is 1 when it can do DAX; `queue/logical_block_size`
 *    is its LBA size; `size` is in 512-byte sectors whatever the LBA size;
 *    `ro` is 1 when read-only; `holders/` and `slaves/` list stacking.
 *  - fsdax pmem: the disk's parent (its `device` link) is the libnvdimm
 *    device that owns it: `namespaceX.Y` (raw/legacy e820 memory: sector 0 is
 *    the namespace `resource`), or `pfnX.Y` (fsdax with a memmap reservation:
 *    `resource` is already the address of sector 0, i.e. namespace start +
 *    the info block's data offset). `btt` parents translate sectors: no
 *    memory address there. These `resource` files are root-only (0400).
 *  - An iopmem disk: its nearest PCI ancestor is the function whose BAR backs
 *    it. Which BAR (and where in it sector 0 lies) is read from the driver's
 *    attributes `iopmem/bar` and `iopmem/offset`, looked for in the disk's
 *    directory first, then in the PCI function's; without them, the
 *    function's largest memory BAR at offset 0 is assumed, and said so.
 */

export type DiskKind = 'pmem' | 'iopmem' | 'nvme' | 'stacked' | 'block'

export interface PartitionInfo {
  name: string
  dev: string
  /** Partition number. */
  number: number
  /** Byte offset of the partition in its disk. */
  start: number
  size: number
}

export interface DiskInfo {
  name: string
  dev: string
  sysDir: string
  size: number
  kind: DiskKind
  dax: boolean
  logicalBlockSize: number
  readOnly: boolean
  partitions: PartitionInfo[]
  /** holders/ of the disk and of its partitions. */
  holders: string[]
  /** slaves/ of the disk: non-empty for device-mapper and md. */
  slaves: string[]
}

export interface BlockInfo {
  /** The device's own name: a disk (pmem0) or a partition (pmem0p1). */
  name: string
  /** Its node, as the kernel names it: /dev/pmem0p1. */
  node: string
  dev: string
  sysDir: string
  size: number
  readOnly: boolean
  partition: PartitionInfo | null
  disk: DiskInfo
}

/** The memory behind a DAX-capable disk: where its sector 0 is. */
export type MemoryBacking =
  | {
      kind: 'pmem'
      /** The libnvdimm device whose `resource` gave the address: namespace0.0, pfn0.1. */
      nvdimm: string
      /** Its sysfs file, as the kernel names it. */
      source: string
      /** CPU physical address of the disk's sector 0; undefined when `resource` could not be read. */
      start?: bigint
      /** Why start is missing. */
      unreadable?: string
    }
  | {
      kind: 'iopmem'
      bdf: string
      bar: number
      barName: string
      /** Offset of sector 0 within the BAR. */
      offset: number
      barSize: number
      /** CPU physical address of sector 0: BAR start + offset. */
      start: bigint
      /** PCI bus address of sector 0 (BAR register + offset), as `lspci -b` gives the BAR; undefined when config space is unreadable. */
      busStart?: bigint
      /** Where the BAR index came from. */
      barSource: 'driver' | 'largest-bar'
      /** The sysfs file the BAR index was read from. */
      source?: string
    }

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$/

function kernelDev(host: Host, name: string): string {
  return host.display(host.dev(name))
}

/** The directory of a block device by name (disk or partition), or undefined. */
export function blockDirByName(host: Host, name: string): string | undefined {
  if (!NAME_RE.test(name)) return undefined
  const link = host.sys('class/block', name)
  if (!host.exists(link)) return undefined
  return host.resolveLink(link) ?? host.realpath(link)
}

/** The directory of a block device by major:minor, or undefined. */
export function blockDirByDevNum(host: Host, major: number, minor: number): string | undefined {
  const want = `${major}:${minor}`
  const link = host.sys('dev/block', want)
  if (host.exists(link)) return host.resolveLink(link) ?? host.realpath(link)
  // Older or partial trees: look through /sys/class/block.
  for (const name of host.list(host.sys('class/block'))) {
    const dir = blockDirByName(host, name)
    if (dir && host.readTrim(path.join(dir, 'dev')) === want) return dir
  }
  return undefined
}

/** Read a disk or partition directory. */
export function readBlock(host: Host, dir: string): BlockInfo {
  const isPart = host.exists(path.join(dir, 'partition'))
  const diskDir = isPart ? path.dirname(dir) : dir
  const disk = readDisk(host, diskDir)
  const name = path.basename(dir)
  const partition = isPart ? disk.partitions.find((p) => p.name === name) ?? readPartition(host, dir) : null
  const ro = host.readTrim(path.join(dir, 'ro')) === '1'
  return {
    name,
    node: kernelDev(host, name),
    dev: host.readTrim(path.join(dir, 'dev')) ?? '',
    sysDir: dir,
    size: partition ? partition.size : disk.size,
    readOnly: ro || disk.readOnly,
    partition,
    disk,
  }
}

function readPartition(host: Host, dir: string): PartitionInfo {
  return {
    name: path.basename(dir),
    dev: host.readTrim(path.join(dir, 'dev')) ?? '',
    number: host.readInt(path.join(dir, 'partition')) ?? 0,
    start: (host.readInt(path.join(dir, 'start')) ?? 0) * 512,
    size: (host.readInt(path.join(dir, 'size')) ?? 0) * 512,
  }
}

export function readDisk(host: Host, dir: string): DiskInfo {
  const name = path.basename(dir)
  const partitions = host
    .list(dir)
    .filter((e) => host.exists(path.join(dir, e, 'partition')))
    .map((e) => readPartition(host, path.join(dir, e)))
    .sort((a, b) => a.start - b.start)
  const holders = [dir, ...partitions.map((p) => path.join(dir, p.name))].flatMap((p) => host.list(path.join(p, 'holders')))
  const slaves = host.list(path.join(dir, 'slaves'))
  return {
    name,
    dev: host.readTrim(path.join(dir, 'dev')) ?? '',
    sysDir: dir,
    size: (host.readInt(path.join(dir, 'size')) ?? 0) * 512,
    kind: diskKind(host, dir, name, slaves),
    dax: host.readTrim(path.join(dir, 'queue/dax')) === '1',
    logicalBlockSize: host.readInt(path.join(dir, 'queue/logical_block_size')) ?? 512,
    readOnly: host.readTrim(path.join(dir, 'ro')) === '1',
    partitions,
    holders,
    slaves,
  }
}

function nvdimmParent(dir: string): {name: string; dir: string} | undefined {
  // .../region0/namespace0.0/block/pmem0 or .../region0/pfn0.1/block/pmem0
  let cur = path.dirname(dir)
  for (let i = 0; i < 3 && cur !== path.dirname(cur); i++, cur = path.dirname(cur)) {
    const b = path.basename(cur)
    if (/^(namespace|pfn|btt|dax)\d+\.\d+$/.test(b)) return {name: b, dir: cur}
  }
  return undefined
}

function diskKind(host: Host, dir: string, name: string, slaves: string[]): DiskKind {
  if (slaves.length > 0 || /^(dm-|md)\d+/.test(name)) return 'stacked'
  const nd = nvdimmParent(dir)
  if (nd) return nd.name.startsWith('btt') ? 'block' : 'pmem'
  if (/^iopmem\d+$/.test(name)) return 'iopmem'
  if (/^nvme\d+n\d+$/.test(name)) return 'nvme'
  return 'block'
}

/**
 * Where the disk's sector 0 is in memory (pmem and iopmem disks); undefined
 * for other kinds. Never throws: what could not be read is said in the result.
 */
export function memoryBacking(host: Host, disk: DiskInfo): {backing?: MemoryBacking; notes: string[]} {
  const notes: string[] = []
  if (disk.kind === 'pmem') {
    const nd = nvdimmParent(disk.sysDir)!
    const file = path.join(nd.dir, 'resource')
    const text = host.readTrim(file)
    const source = host.display(file)
    if (text === undefined || !/^0x[0-9a-f]+$/i.test(text)) {
      let why = 'it could not be read'
      try {
        fs.accessSync(file, fs.constants.R_OK)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'EACCES' || code === 'EPERM') why = 'it is readable by root only'
        else if (code === 'ENOENT') why = 'it does not exist'
      }
      return {backing: {kind: 'pmem', nvdimm: nd.name, source, unreadable: why}, notes}
    }
    return {backing: {kind: 'pmem', nvdimm: nd.name, source, start: BigInt(text)}, notes}
  }
  if (disk.kind === 'iopmem') {
    const fnDir = nearestPciAncestor(disk.sysDir)
    if (!fnDir) return {notes: [`${disk.name} has no PCI function above it in sysfs`]}
    const bdf = path.basename(fnDir)
    const scanner = new PciScanner(host, {names: false, storage: false})
    const fn = scanner.read(bdf)
    let bar: number | undefined
    let offset = 0
    let source: string | undefined
    for (const d of [path.join(disk.sysDir, 'iopmem'), path.join(fnDir, 'iopmem')]) {
      const b = host.readInt(path.join(d, 'bar'))
      if (b === undefined) continue
      bar = b
      source = host.display(path.join(d, 'bar'))
      offset = host.readInt(path.join(d, 'offset')) ?? 0
      break
    }
    let barSource: 'driver' | 'largest-bar' = 'driver'
    if (bar === undefined) {
      const big = largestMemBar(fn)
      if (!big) return {notes: [`${bdf} has no memory BAR`]}
      bar = big.index
      barSource = 'largest-bar'
      notes.push(`the iopmem driver does not say which BAR backs ${disk.name} (no iopmem/bar attribute): assumed ${big.name}, the largest memory BAR of ${bdf}, from its start`)
    }
    const b = fn.bars.find((x) => x.index === bar && x.type === 'mem')
    if (!b) return {notes: [...notes, `${bdf} has no memory BAR${bar}`]}
    if (disk.size > b.size - offset) notes.push(`${disk.name} (${disk.size} bytes) is larger than ${b.name} from offset ${offset} (${b.size - offset} bytes)`)
    const busBar = scanner.config(bdf)?.barBusAddress(bar)
    return {
      backing: {
        kind: 'iopmem',
        bdf,
        bar,
        barName: b.name,
        offset,
        barSize: b.size,
        start: BigInt(b.start) + BigInt(offset),
        busStart: busBar === undefined ? undefined : busBar + BigInt(offset),
        barSource,
        source,
      },
      notes,
    }
  }
  return {notes}
}

/** NVMe namespace facts an NVMe command needs: controller, nsid, the PCI function. */
export function nvmeNamespace(host: Host, disk: DiskInfo): {controller?: string; nsid?: number; bdf?: string} {
  if (disk.kind !== 'nvme') return {}
  const ctrlDir = path.dirname(disk.sysDir)
  const controller = /^nvme\d+$/.test(path.basename(ctrlDir)) ? path.basename(ctrlDir) : undefined
  const nsid = host.readInt(path.join(disk.sysDir, 'nsid'))
  const fn = nearestPciAncestor(disk.sysDir)
  return {controller, nsid, bdf: fn ? path.basename(fn) : undefined}
}

/**
 * A device argument (`/dev/pmem0`, `pmem0`, `/dev/disk/by-id/…`) to the block
 * device it names. Anything that is not a node directly under /dev (after
 * following symlinks) is refused before any other path is built from it.
 */
export function resolveDeviceArg(host: Host, arg: string, opts: {checkNode?: (p: string) => boolean} = {}): BlockInfo {
  const bad = () =>
    usage(`Invalid device ${JSON.stringify(arg.length > 80 ? arg.slice(0, 80) + '…' : arg)}: give a block device, e.g. /dev/pmem0 or pmem0.`, 'E_DEVICE_SYNTAX', [
      '`iopmem list` shows the pmem, iopmem and NVMe block devices.',
    ])
  if (arg === '' || /[\0\n\r\s]/.test(arg) || arg.length > 255) throw bad()
  let rel: string
  if (arg.startsWith('/dev/')) rel = arg.slice(5)
  else if (NAME_RE.test(arg)) rel = arg
  else throw bad()
  if (rel === '' || rel.split('/').some((c) => c === '..' || c === '.' || c === '')) throw bad()
  const nodePath = host.dev(rel)
  if (!host.exists(nodePath)) {
    throw new IopmemError(`No device ${host.display(nodePath)}.`, {
      code: 'E_NO_DEVICE',
      exit: Exit.NOT_FOUND,
      suggestions: ['`iopmem list` shows the pmem, iopmem and NVMe block devices; `lsblk` every block device.'],
      path: host.display(nodePath),
    })
  }
  const real = host.realpath(nodePath) ?? nodePath
  const devRoot = host.realpath(host.roots.dev) ?? host.roots.dev
  const name = path.relative(devRoot, real)
  const dir = !name.includes('/') && !name.startsWith('..') ? blockDirByName(host, name) : undefined
  const checkNode = opts.checkNode ?? defaultCheckNode(host)
  if (!dir || !checkNode(real)) {
    throw new IopmemError(`${arg} is not a block device.`, {
      code: 'E_NOT_BLOCK',
      exit: Exit.USAGE,
      suggestions: ['Give a pmem, iopmem or NVMe block device, e.g. /dev/pmem0; `iopmem list` shows them.'],
      path: arg,
    })
  }
  return readBlock(host, dir)
}

/** On the live /dev, a node must really be a block device; fixture trees hold plain files. */
function defaultCheckNode(host: Host): (p: string) => boolean {
  if (host.roots.dev !== '/dev') return () => true
  return (p) => {
    try {
      return fs.statSync(p).isBlockDevice()
    } catch {
      return false
    }
  }
}

export interface BlockUsage {
  kind: 'mount' | 'holder' | 'swap' | 'process'
  subject: string
  detail: string
  /** A process: its pid, command name and what it does with the node ("has /dev/x open", "maps /dev/x"). */
  pid?: number
  comm?: string
  what?: string
}

/**
 * Who uses the device: a mount of it (or, for a disk, of any of its
 * partitions; for a partition, of its whole disk), a holder (dm, md), active
 * swap, a process with its node open or mapped (as far as /proc lets us see).
 */
export function blockUsage(host: Host, b: BlockInfo, mounts: MountEntry[] = readMounts(host)): {uses: BlockUsage[]; unchecked: string[]} {
  const uses: BlockUsage[] = []
  const unchecked: string[] = []
  const names = new Map<string, string>() // dev → name
  names.set(b.dev, b.name)
  if (b.partition) names.set(b.disk.dev, b.disk.name)
  else for (const p of b.disk.partitions) names.set(p.dev, p.name)
  for (const m of mounts) {
    const n = names.get(m.dev)
    if (!n) continue
    const dax = mountDaxMode(m)
    uses.push({kind: 'mount', subject: m.target, detail: `/dev/${n} is mounted on ${m.target} (${m.fstype}${dax === 'always' || dax === 'inode' ? `, dax=${dax}` : ''})`})
  }
  const holderDirs = b.partition ? [b.sysDir, b.disk.sysDir] : [b.disk.sysDir, ...b.disk.partitions.map((p) => path.join(b.disk.sysDir, p.name))]
  for (const d of holderDirs) {
    for (const h of host.list(path.join(d, 'holders'))) {
      uses.push({kind: 'holder', subject: h, detail: `${h} is stacked on ${path.basename(d)} (device-mapper, md or similar)`})
    }
  }
  const nodeNames = new Set(names.values())
  const swaps = host.read(host.proc('swaps')) ?? ''
  for (const line of swaps.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)[0]
    if (f && f.startsWith('/dev/') && nodeNames.has(path.basename(f))) uses.push({kind: 'swap', subject: f, detail: `${f} is in use as swap`})
  }
  const devPaths = new Set([...nodeNames].map((n) => '/dev/' + n))
  const procs = processesUsing(host, (f) => devPaths.has(f))
  for (const u of procs.uses)
    uses.push({kind: 'process', subject: `${u.comm}[${u.pid}]`, pid: u.pid, comm: u.comm, what: u.what, detail: `process ${u.comm} (pid ${u.pid}) ${u.what}`})
  unchecked.push(...deniedNote(procs.denied))
  return {uses, unchecked}
}

/** DAX-capable disks on this machine, for suggestions. */
export function daxCapableDisks(host: Host): string[] {
  return host
    .list(host.sys('block'))
    .filter((n) => host.readTrim(host.sys('block', n, 'queue/dax')) === '1')
    .map((n) => '/dev/' + n)
}
