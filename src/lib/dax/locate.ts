/** `iopmem locate`: where a file's bytes lie on the device and in physical memory, from FIEMAP and sysfs. */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'

import {type BlockInfo, blockDirByDevNum, type DiskKind, type MemoryBacking, memoryBacking, nvmeNamespace, readBlock} from './blockdev.js'
import {ByteSink} from './bytesink.js'
import {Exit, IopmemError, packageRoot, usage} from '../sys/index.js'
import {classifyPath} from '../pci/index.js'
import type {Host} from '../sys/index.js'
import {mountDaxMode, type MountEntry, readMounts} from '../sys/index.js'
import {flagNames, type FormatParams, formatExtents, joinParts, type Part, type ScanContext, scanExtents, sliceExtents, WHY_UNUSABLE} from './locate-core.js'
import {formatBytes, hex64, SCHEMA_VERSION} from '../sys/index.js'
import type {FiemapResult} from '../../native/types.js'

/**
 * `iopmem locate`: from a file to the addresses a peer device can DMA to.
 *
 *   file ─statx─▶ st_dev, mount id, DAX flag
 *        ─FIEMAP (FIEMAP_FLAG_SYNC, paged to the LAST extent)─▶ fe_logical, fe_physical, fe_length, fe_flags
 *   st_dev ─/sys/dev/block/MAJ:MIN─▶ partition (start) ─▶ disk
 *   disk ─▶ fsdax pmem: namespace/pfn `resource` = CPU physical address of sector 0
 *        ─▶ iopmem: its PCI BAR (+ offset): CPU physical and PCI bus address of sector 0
 *        ─▶ NVMe / other: no memory; the answer is LBAs (device offset / logical block size)
 *
 *   device offset = partition start + fe_physical
 *   physical      = base + device offset;   bus address = bus base + device offset
 *
 * Safety: a file on device memory that is not DAX is refused (its data may
 * be in the page cache: an address would be a lie) unless the caller asks
 * for device offsets only; extents without a usable address (unknown,
 * delalloc, encoded, encrypted, not aligned, inline, tail) are refused;
 * unwritten and shared extents are warned about.
 *
 * Per-extent work is a few float operations on typed arrays (no BigInt, no
 * object per extent; locate-core.ts), and output is written byte by byte
 * (ByteSink). For --json on a file that a first FIEMAP probe shows to be
 * big, a worker thread maps and writes the second half of the window while
 * this thread does the first (locate-worker.ts); the halves are joined so
 * that the result is exactly that of one pass.
 */

export {EXTENT_FLAGS, FLAG_NAMES, flagNames, UNUSABLE} from './locate-core.js'

export type Addressing = 'memory' | 'lba' | 'offsets'

/** What locate needs from statx. */
export interface FileStat {
  size: number
  mode: number
  blksize: number
  devMajor: number
  devMinor: number
  mntId: bigint
  dax: boolean
  /** 512-byte blocks allocated (statx st_blocks): how big a job mapping it may be. */
  blocks?: number
}

/** The two system calls, replaceable for tests (the real ones come from the native addon). */
export interface FileOps {
  statx(file: string): FileStat
  fiemap(file: string, opts: {start: number; length: number | bigint; sync: boolean}): FiemapResult
}

let fileOps: FileOps | undefined

/** Install fake statx/FIEMAP (tests), or undefined for the addon's. */
export function setFileOps(ops: FileOps | undefined): void {
  fileOps = ops
}

async function currentFileOps(): Promise<FileOps> {
  if (fileOps) return fileOps
  const {loadNative} = await import('../../native/index.js')
  const n = loadNative()
  return {
    statx: (f) => n.statx(f),
    fiemap: (f, o) => n.fiemap(f, {start: o.start, length: o.length, sync: o.sync}),
  }
}

export interface LocateOptions {
  /** Start of the window, bytes (--offset). */
  offset?: number
  /** Length of the window, bytes (--size); default to the end of the file. */
  length?: number
  /** FIEMAP_FLAG_SYNC (default true; --no-sync turns it off). */
  sync?: boolean
  /** Give device offsets for a non-DAX file on device memory instead of refusing (no addresses then). */
  offsetsOnly?: boolean
  /**
   * The caller will print JSON: with the addon's FIEMAP (not with
   * setFileOps) and a window of 1 MiB or more, a probe of its first 1/64
   * decides whether a worker thread maps (and writes the JSON lines of) the
   * second half while this thread does the first; see splitPlan.
   */
  json?: boolean
}

/** The device chain of a file, as --json shows it under "device". */
export interface LocateDevice {
  /** The block device the filesystem is on, e.g. /dev/pmem0p1. */
  node: string
  /** Its major:minor (statx st_dev). */
  dev: string
  kind: Exclude<DiskKind, 'stacked'>
  /** The whole disk, e.g. /dev/pmem0. */
  disk: string
  diskSize: number
  /** Byte offset of the filesystem's device in the disk: the partition start, 0 for a whole disk. */
  partitionStart: number
  logicalBlockSize: number
  /** queue/dax of the disk. */
  daxCapable: boolean
  /** CPU physical address of the disk's byte 0 (memory addressing), hex. */
  base: string | null
  /** PCI bus address of the disk's byte 0 (BAR-backed disks), hex. */
  busBase: string | null
  /** The sysfs file the base came from. */
  source: string | null
  /** The BAR behind an iopmem disk. */
  pci: {bdf: string; bar: number; barOffset: number; barSource: 'driver' | 'largest-bar'} | null
  /** The namespace behind an NVMe disk: what an NVMe command needs with the LBAs. */
  nvme: {controller: string | null; nsid: number | null; bdf: string | null} | null
}

export interface LocateRun {
  fileOffset: number
  length: number
  deviceOffset: number
  physical: string | null
}

export interface LocateTotals {
  /** Extents reported (after clipping to the window). */
  extents: number
  /** Sum of their lengths. */
  bytes: number
  /** Bytes of the window (or of the file) no extent covers. */
  holeBytes: number
  unwrittenBytes: number
  sharedBytes: number
  /** Runs contiguous in both the file and the device: the scatter-gather entries a peer needs. */
  segments: number
  /** The longest such run. */
  largestRun: LocateRun | null
}

/**
 * `iopmem locate --json`:
 *
 * ```jsonc
 * {
 *   "file": "/mnt/dax/data.bin",            // absolute path
 *   "size": 8392704,                        // file size, bytes
 *   "window": {"offset": 0, "length": 8392704, "clipped": false},
 *                                           // clipped: --offset/--size given; extents are cut to the window
 *   "dax": true,                            // statx STATX_ATTR_DAX
 *   "synced": true,                         // FIEMAP_FLAG_SYNC used (false with --no-sync)
 *   "addressing": "memory" | "lba" | "offsets",
 *                                           // memory: CPU physical (and PCI bus) addresses (pmem, iopmem, DAX file)
 *                                           // lba: no memory behind the device (NVMe, other disks): use lba/lbaCount
 *                                           // offsets: --offsets-only on a non-DAX file: device offsets only
 *   "filesystem": {"type": "ext4", "mountPoint": "/mnt/dax", "daxMode": "always" | "inode" | "never" | null} | null,
 *   "device": {
 *     "node": "/dev/pmem0p1", "dev": "259:1", "kind": "pmem" | "iopmem" | "nvme" | "block",
 *     "disk": "/dev/pmem0", "diskSize": 536870912,
 *     "partitionStart": 2097152,            // bytes; 0 for a whole disk
 *     "logicalBlockSize": 512, "daxCapable": true,
 *     "base": "0x60000000" | null,          // CPU physical address of the disk's byte 0
 *     "busBase": "0xf8000000" | null,       // PCI bus address of the disk's byte 0 (BAR-backed only)
 *     "source": "/sys/devices/platform/e820_pmem/ndbus0/region0/namespace0.0/resource" | null,
 *     "pci": {"bdf": "0000:00:06.0", "bar": 2, "barOffset": 0, "barSource": "driver" | "largest-bar"} | null,
 *     "nvme": {"controller": "nvme0", "nsid": 1, "bdf": "0000:03:00.0"} | null
 *   },
 *   "totals": {
 *     "extents": 3, "bytes": 8392704, "holeBytes": 0, "unwrittenBytes": 0, "sharedBytes": 0,
 *     "segments": 2,                        // runs contiguous in file and device (scatter-gather entries)
 *     "largestRun": {"fileOffset": 0, "length": 6291456, "deviceOffset": 136314880, "physical": "0x68200000" | null} | null
 *   },
 *   "warnings": ["2 unwritten extents (8 KiB) read as zeros …"],
 *   "notes": ["…"],
 *   "extents": [                            // one per line, in file order
 *     {"fileOffset": 0, "length": 4194304, "deviceOffset": 136314880,
 *      "physical": "0x68200000",            // addressing "memory" only
 *      "busAddress": "0xf8200000",          // and with a PCI BAR behind the disk only
 *      "lba": 266240, "lbaCount": 8192,     // addressing "lba" only, in logicalBlockSize units
 *      "flags": ["last", "unwritten", "merged", "shared", …]}   // FIEMAP_EXTENT_* names; [] for none
 *   ]
 * }
 * ```
 *
 * Offsets and lengths are bytes (JSON numbers, exact below 2^53); addresses
 * are hex strings. deviceOffset counts from the start of the disk (partition
 * start included); fe_physical = deviceOffset − partitionStart.
 */
export interface LocateJson {
  schemaVersion: typeof SCHEMA_VERSION
  file: string
  size: number
  window: {offset: number; length: number; clipped: boolean}
  dax: boolean
  synced: boolean
  addressing: Addressing
  filesystem: {type: string; mountPoint: string; daxMode: 'always' | 'inode' | 'never' | null} | null
  device: LocateDevice
  totals: LocateTotals
  warnings: string[]
  notes: string[]
  extents: Array<{
    fileOffset: number
    length: number
    deviceOffset: number
    /** addressing "memory" only. */
    physical?: string
    /** BAR-backed devices only. */
    busAddress?: string
    /** addressing "lba" only. */
    lba?: number
    lbaCount?: number
    flags?: string[]
  }>
}


/** The result: extents as columns (typed arrays), plus everything around them. */
export class LocateResult {
  constructor(
    readonly head: Omit<LocateJson, 'extents'>,
    readonly count: number,
    readonly fileOffset: Float64Array,
    readonly length: Float64Array,
    readonly deviceOffset: Float64Array,
    readonly flags: Uint32Array,
    /** CPU physical base (memory addressing), bus base (BAR-backed). */
    readonly base: bigint | undefined,
    readonly busBase: bigint | undefined,
    /** The extents already written as JSON lines (the parallel path), in order. */
    private readonly body?: Uint8Array[],
  ) {}

  /** What formatExtents needs to write this result's lines. */
  formatParams(): FormatParams {
    return {lbs: this.lbaSize, lbaMode: this.addressing === 'lba', base: this.head.device.base, busBase: this.head.device.busBase, diskSize: this.head.device.diskSize}
  }

  get addressing(): Addressing {
    return this.head.addressing
  }

  get lbaSize(): number {
    return this.head.device.logicalBlockSize
  }

  /** CPU physical address of extent i, hex; null without memory addressing. */
  physical(i: number): string | null {
    return this.base === undefined ? null : hex64(this.base + BigInt(this.deviceOffset[i]))
  }

  busAddress(i: number): string | null {
    return this.busBase === undefined ? null : hex64(this.busBase + BigInt(this.deviceOffset[i]))
  }

  /** The documented JSON shape as an object (fine for thousands of extents; writeJson streams millions). */
  toJSON(): LocateJson {
    const extents: LocateJson['extents'] = new Array(this.count)
    const lbs = this.lbaSize
    const lbaMode = this.addressing === 'lba'
    for (let i = 0; i < this.count; i++) {
      const d = this.deviceOffset[i]
      const e: LocateJson['extents'][number] = {fileOffset: this.fileOffset[i], length: this.length[i], deviceOffset: d}
      if (this.base !== undefined) e.physical = this.physical(i)!
      if (this.busBase !== undefined) e.busAddress = this.busAddress(i)!
      if (lbaMode) {
        e.lba = Math.floor(d / lbs)
        e.lbaCount = Math.ceil((d + this.length[i]) / lbs) - e.lba
      }
      e.flags = flagNames(this.flags[i])
      extents[i] = e
    }
    return {...this.head, extents}
  }

  /** Write the JSON document in chunks: what `--json` prints. */
  writeJson(out: (chunk: Uint8Array) => void): void {
    const sink = new ByteSink(out)
    const head = JSON.stringify(this.head, null, 2)
    sink.ascii(head.slice(0, head.lastIndexOf('}')).trimEnd())
    sink.ascii(',\n  "extents": [')
    sink.flush()
    if (this.body) for (const chunk of this.body) out(chunk)
    else formatExtents(this, this.formatParams(), true, out)
    sink.ascii(this.count > 0 ? '\n  ]\n}\n' : ']\n}\n')
    sink.flush()
  }
}

function locateError(message: string, code: string, exit: (typeof Exit)[keyof typeof Exit], suggestions: string[] = [], details?: Record<string, unknown>): IopmemError {
  return new IopmemError(message, {code, exit, suggestions, details})
}

const S_IFMT = 0o170000
const S_IFREG = 0o100000

/** Check the path with plain fs calls first, for clear messages. */
function checkFile(host: Host, file: string): string {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw locateError(`No such file: ${file}`, 'E_NO_FILE', Exit.NOT_FOUND)
    if (code === 'EACCES' || code === 'EPERM') throw locateError(`Permission denied: ${file}`, code, Exit.PERMISSION, ['Run as a user that can read the file (or sudo).'])
    if (code === 'ELOOP') throw locateError(`${file}: too many levels of symbolic links`, 'ELOOP', Exit.USAGE)
    if (code === 'ENAMETOOLONG') throw locateError(`File name too long: ${file.slice(0, 80)}…`, 'ENAMETOOLONG', Exit.USAGE)
    throw error
  }
  if (!st.isFile()) {
    const what = st.isDirectory() ? 'a directory' : st.isBlockDevice() ? 'a block device' : st.isCharacterDevice() ? 'a character device' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'not a regular file'
    throw locateError(`${file} is ${what}: locate works on regular files.`, 'E_NOT_REGULAR', Exit.USAGE, [
      what === 'a block device' ? 'A block device has no extents: its offsets are its own; `iopmem list` shows where pmem and iopmem devices live.' : 'Give a file on a DAX filesystem, e.g. /mnt/dax/data.bin.',
    ])
  }
  // sysfs files look regular but have no extents: a BAR's resourceN is device memory itself.
  const c = classifyPath(host, file)
  if (c.kind === 'bar') throw locateError(`${file} is BAR${c.index} of ${c.bdf} (its sysfs resource file): it is device memory, not a file with extents.`, 'E_NOT_REGULAR', Exit.USAGE, ['`iopmem list` shows where the BAR is; `iopmem map` maps it.'])
  if (c.kind !== 'other') throw locateError(`${file} is a sysfs file (${host.display(c.file)}): locate works on files on a filesystem.`, 'E_NOT_REGULAR', Exit.USAGE)
  return path.resolve(file)
}

function mountFor(mounts: MountEntry[], st: FileStat): MountEntry | undefined {
  const id = Number(st.mntId)
  const dev = `${st.devMajor}:${st.devMinor}`
  return mounts.find((m) => m.id === id && m.dev === dev) ?? mounts.find((m) => m.id === id)
}

function daxRefusal(file: string, st: FileStat, b: BlockInfo, mount: MountEntry | undefined): IopmemError {
  const mode = mount ? mountDaxMode(mount) : undefined
  const where = mount ? `${mount.fstype} on ${b.node}, mounted on ${mount.target}` : `a filesystem on ${b.node}`
  const why =
    mode === 'inode'
      ? `it is mounted dax=inode and this file is not marked for DAX`
      : mode === 'never'
        ? 'it is mounted dax=never'
        : !b.disk.dax
          ? `${b.disk.name} cannot do DAX (queue/dax is 0)`
          : 'it is mounted without -o dax'
  return locateError(
    `${file} is not DAX (${where}: ${why}). Its data may live in the page cache, so a physical address would be a lie: ` +
      `a peer's DMA would miss what the CPU wrote, and the CPU would not see what the peer wrote.`,
    'E_NOT_DAX',
    Exit.REFUSED,
    [
      mode === 'inode'
        ? 'Mark it: `xfs_io -c "chattr +x" FILE` (or chattr +x on ext4) on an empty file, or mount with -o dax=always.'
        : `Mount with -o dax (\`iopmem mkfs-dax ${b.node} --mount DIR\` makes and mounts one).`,
      '--offsets-only shows its device offsets anyway, without addresses.',
    ],
    {dax: st.dax, mount: mount ? {target: mount.target, fstype: mount.fstype, daxMode: mode ?? null} : null},
  )
}

/**
 * Locate a file's extents. Throws IopmemError for everything a user can act
 * on (see the bad-input table for the full list).
 */
export async function locate(host: Host, fileArg: string, opts: LocateOptions = {}): Promise<LocateResult> {
  const file = checkFile(host, fileArg)
  const ops = await currentFileOps()
  const st = ops.statx(file)
  if ((st.mode & S_IFMT) !== S_IFREG) throw locateError(`${file} is not a regular file.`, 'E_NOT_REGULAR', Exit.USAGE)
  const sync = opts.sync !== false

  // The window.
  const clipped = opts.offset !== undefined || opts.length !== undefined
  const wStart = opts.offset ?? 0
  if (clipped && wStart >= st.size) {
    throw usage(
      st.size === 0 ? `--offset ${wStart} is past the end of ${file}: the file is empty.` : `--offset ${wStart} is past the end of ${file} (${st.size} bytes).`,
      'E_RANGE',
      [`Give an offset below ${st.size}.`],
    )
  }
  if (opts.length !== undefined && opts.length <= 0) throw usage('--size must be at least 1 byte.', 'E_RANGE')
  const wEnd = clipped ? Math.min(st.size, wStart + (opts.length ?? st.size)) : st.size
  const window = {offset: wStart, length: wEnd - wStart, clipped}

  // The device chain.
  const dev = `${st.devMajor}:${st.devMinor}`
  const mounts = readMounts(host)
  const mount = mountFor(mounts, st)
  if (st.devMajor === 0) {
    throw locateError(
      `${file} is on ${mount ? `${mount.fstype} (${mount.source} on ${mount.target})` : `device ${dev}`}, which has no block device of its own ` +
        '(tmpfs, overlayfs, btrfs, NFS, FUSE…): FIEMAP addresses there, if any, are not offsets on a device a peer could reach.',
      'E_NOT_BLOCK_BACKED',
      Exit.UNSUPPORTED,
      ['Put the file on ext4 or xfs on a pmem or iopmem device mounted with -o dax (see `iopmem mkfs-dax`).'],
    )
  }
  const dir = blockDirByDevNum(host, st.devMajor, st.devMinor)
  if (!dir) {
    throw locateError(`${file} is on block device ${dev}, which is not in ${host.display(host.sys('dev/block'))}.`, 'E_NO_BLOCK_DEVICE', Exit.NOT_FOUND, [
      'Is sysfs mounted (or IOPMEM_SYSFS_ROOT right)?',
    ])
  }
  const b = readBlock(host, dir)
  if (b.disk.kind === 'stacked') {
    throw locateError(
      `${file} is on ${b.node}, a stacked device (device-mapper or md over ${b.disk.slaves.join(', ') || 'other devices'}): its offsets are not offsets on the memory below, and locate does not translate them.`,
      'E_STACKED',
      Exit.UNSUPPORTED,
      ['Make the filesystem on the pmem or iopmem device itself (or a partition of it).'],
    )
  }
  const kind = b.disk.kind as LocateDevice['kind']
  const partitionStart = b.partition ? b.partition.start : 0
  const memoryKind = kind === 'pmem' || kind === 'iopmem'
  const warnings: string[] = []
  const notes: string[] = []
  let addressing: Addressing
  let backing: MemoryBacking | undefined
  if (memoryKind) {
    if (!st.dax && !opts.offsetsOnly) throw daxRefusal(file, st, b, mount)
    addressing = st.dax && !opts.offsetsOnly ? 'memory' : 'offsets'
    if (!st.dax) notes.push(`${path.basename(file)} is not DAX: device offsets only (--offsets-only); its data may be in the page cache, so no addresses are given`)
    else if (opts.offsetsOnly) notes.push('--offsets-only: device offsets only, no addresses')
    if (addressing === 'memory') {
      const r = memoryBacking(host, b.disk)
      notes.push(...r.notes)
      backing = r.backing
      if (!backing || (backing.kind === 'pmem' && backing.start === undefined)) {
        const why = backing?.kind === 'pmem' ? `${backing.source}: ${backing.unreadable}` : r.notes.join('; ') || 'nothing in sysfs says where it is'
        const root = backing?.kind === 'pmem' && backing.unreadable === 'it is readable by root only'
        throw locateError(`Cannot tell where ${b.disk.name}'s memory is (${why}).`, root ? 'E_NEEDS_ROOT' : 'E_NO_BASE', root ? Exit.PERMISSION : Exit.UNSUPPORTED, [
          ...(root ? ['Run as root (sudo): the kernel shows pmem addresses to root only.'] : []),
          '--offsets-only gives device offsets without addresses.',
        ])
      }
    }
  } else {
    addressing = 'lba'
    if (!st.dax) {
      notes.push(
        kind === 'nvme'
          ? `NVMe namespace: the answer is LBAs (${b.disk.logicalBlockSize}-byte blocks) for NVMe commands; the file is not DAX, so the page cache may hold newer data than the blocks (FIEMAP_FLAG_SYNC flushed it${sync ? '' : ' — not with --no-sync'}), and after a peer writes the blocks the cache is stale until dropped`
          : `${b.disk.name} is not device memory: the answer is device offsets and LBAs (${b.disk.logicalBlockSize}-byte blocks), not addresses`,
      )
    }
  }
  if (!sync) notes.push('--no-sync: FIEMAP without FIEMAP_FLAG_SYNC; data not yet written back may show as delalloc (no address)')

  // FIEMAP, and one pass over the extents: columns, checks, totals.
  const ctx: ScanContext = {
    wStart,
    wEnd,
    clipped,
    partitionStart,
    eofBlock: Math.ceil(st.size / (st.blksize || 4096)) * (st.blksize || 4096),
    diskSize: b.disk.size,
  }
  const fmt: FormatParams = {
    lbs: b.disk.logicalBlockSize,
    lbaMode: addressing === 'lba',
    base: addressing === 'memory' && backing?.start !== undefined ? hex64(backing.start) : null,
    busBase: addressing === 'memory' && backing?.kind === 'iopmem' && backing.busStart !== undefined ? hex64(backing.busStart) : null,
    diskSize: b.disk.size,
  }
  const fiemapFailed = (error: unknown): never => {
    const code = (error as {code?: string}).code
    if (code === 'EOPNOTSUPP' || code === 'ENOTTY' || code === 'ENOSYS') {
      throw locateError(`${mount?.fstype ?? 'This filesystem'} does not support FIEMAP: locate cannot map ${file}.`, 'E_NO_FIEMAP', Exit.UNSUPPORTED, [
        'Use ext4 or xfs.',
      ])
    }
    throw error
  }
  const U64 = 0xffff_ffff_ffff_ffffn
  let part: Part
  let body: Uint8Array[] | undefined
  const tail = (from: number): number | bigint => (clipped ? wEnd - from : U64 - BigInt(from))
  const map = (start: number, length: number | bigint, c: ScanContext): Part => {
    try {
      return scanExtents(ops.fiemap(file, {start, length, sync}), c)
    } catch (error) {
      return fiemapFailed(error)
    }
  }
  const plan = splitPlan(window, opts)
  if (!plan) {
    part = map(wStart, clipped ? window.length : U64, ctx)
  } else {
    // A first look at the start of the window tells whether the file is big enough to map in two threads.
    const probe = map(wStart, plan.probeEnd - wStart, {...ctx, to: plan.probeEnd})
    const estimate = probe.count * (window.length / (plan.probeEnd - wStart))
    const parallel = plan.force || estimate >= SPLIT_EXTENTS ? await startSecondHalf(file, plan.mid, tail(plan.mid), sync, {...ctx, from: plan.mid}, fmt) : undefined
    if (!parallel) {
      part = joinParts(probe, map(plan.probeEnd, tail(plan.probeEnd), {...ctx, from: plan.probeEnd}))
    } else {
      let a: Part
      try {
        a = joinParts(probe, map(plan.probeEnd, plan.mid - plan.probeEnd, {...ctx, from: plan.probeEnd, to: plan.mid}))
      } catch (error) {
        parallel.cancel()
        throw error
      }
      // The first half's lines while the worker maps the second; its last line waits for the join
      // (its LAST flag goes, and the second half's first extent may be the rest of it).
      const aChunks: Uint8Array[] = []
      const push = (c: Uint8Array) => aChunks.push(c)
      const la = a.count - 1
      if (la > 0) formatExtents(sliceExtents(a, 0, la), fmt, true, push)
      let second = await parallel.result
      if ('workerFailed' in second) {
        // No worker after all (e.g. its module could not load): map the second half here.
        const p = map(plan.mid, tail(plan.mid), {...ctx, from: plan.mid})
        const chunks: Uint8Array[] = []
        formatExtents(sliceExtents(p, 1, p.count), fmt, false, (c) => chunks.push(c))
        second = {part: p, chunks}
      }
      if ('error' in second) return fiemapFailed(second.error)
      const joined = joinParts(a, second.part)
      part = joined
      // The lines between: a's last (merged or not) and b's first unless merged into it.
      const from = Math.max(la, 0)
      const to = second.part.count > 0 ? a.count - joined.merged + 1 : part.count
      formatExtents(sliceExtents(part, from, to), fmt, la <= 0, push)
      body = [...aChunks, ...second.chunks]
    }
  }
  const {count: k, fileOffset: fo, length: ln, deviceOffset: dv, flags: fl, bytes, covered, unwritten, unwrittenN, shared, sharedN, unusableN, unusable, outside, beyondEof, segments} = part
  const diskSize = b.disk.size
  if (part.huge) throw locateError(`An extent of ${file} has an offset or length of 2^53 bytes or more: not a real device.`, 'E_RANGE', Exit.UNSUPPORTED)

  if (unusableN > 0) {
    const first = unusable.map((u) => `  file offset ${u.fileOffset} (${u.length} bytes): ${u.flags.join(', ')}`).join('\n')
    const reasons = WHY_UNUSABLE.filter(([bit]) => unusable.some((u) => u.flags.includes(flagNames(bit)[0]))).map(([, why]) => why)
    const delalloc = unusable.some((u) => u.flags.includes('delalloc'))
    throw locateError(
      `${unusableN} extent${unusableN === 1 ? '' : 's'} of ${file} ha${unusableN === 1 ? 's' : 've'} no usable address (${reasons.join('; ')}):\n${first}${unusableN > unusable.length ? `\n  … and ${unusableN - unusable.length} more` : ''}`,
      'E_UNUSABLE_EXTENT',
      Exit.REFUSED,
      [
        ...(delalloc && !sync ? ['Drop --no-sync: FIEMAP_FLAG_SYNC gives delayed allocations their blocks.'] : []),
        ...(delalloc && sync ? ['Run `sync FILE` and try again.'] : []),
        '--offset/--size can leave those bytes out of the window.',
      ],
      {extents: unusable, count: unusableN},
    )
  }
  if (outside >= 0) {
    throw locateError(
      `An extent of ${file} (file offset ${fo[outside]}, device offset ${dv[outside]}, ${ln[outside]} bytes) lies past the end of ${b.disk.name} (${diskSize} bytes): ` +
        'the filesystem\'s block numbers are not offsets on this device (a multi-device filesystem?).',
      'E_EXTENT_OUTSIDE',
      Exit.UNSUPPORTED,
    )
  }

  if (unwrittenN > 0) {
    warnings.push(
      `${unwrittenN} unwritten extent${unwrittenN === 1 ? '' : 's'} (${formatBytes(unwritten)}): allocated but never written (fallocate). ` +
        'They read as zeros through the file whatever a peer writes there, until the file itself writes them.',
    )
  }
  if (sharedN > 0) {
    warnings.push(
      `${sharedN} shared extent${sharedN === 1 ? '' : 's'} (${formatBytes(shared)}): the blocks also belong to other files (reflink, snapshot). ` +
        'A DMA write would change every file that shares them, bypassing copy-on-write.',
    )
  }
  const holeBytes = window.length - covered
  if (holeBytes > 0) notes.push(`${formatBytes(holeBytes)} of ${clipped ? 'the window' : 'the file'} ${holeBytes === 1 ? 'is a hole' : 'are holes'}: no blocks, nothing a peer can reach`)
  if (beyondEof > 0) notes.push(`${formatBytes(beyondEof)} of the extents lie past the end of the file (preallocated with fallocate --keep-size)`)

  const base = backing?.start
  const busBase = backing?.kind === 'iopmem' ? backing.busStart : undefined
  if (backing?.kind === 'iopmem') {
    if (busBase === undefined) notes.push(`the bus address of ${backing.bdf} ${backing.barName} could not be read from its config space`)
    else if (busBase !== backing.start) {
      const diff = busBase - backing.start
      const text = diff < 0n ? '-0x' + (-diff).toString(16) : '+0x' + diff.toString(16)
      notes.push(`PCI bus addresses differ from CPU physical ones by ${text} (host bridge offset): give a peer the bus address`)
    }
    notes.push('FS_DAX pages are not P2PDMA pages: a kernel driver DMA-mapping them gives the peer the CPU physical address and skips the P2PDMA path checks (`iopmem topo` applies them)')
  }
  const hex = (v: bigint | undefined) => (v === undefined ? null : hex64(v))
  const nv = nvmeNamespace(host, b.disk)
  const device: LocateDevice = {
    node: b.node,
    dev: b.dev,
    kind,
    disk: host.display(host.dev(b.disk.name)),
    diskSize,
    partitionStart,
    logicalBlockSize: b.disk.logicalBlockSize,
    daxCapable: b.disk.dax,
    base: hex(base),
    busBase: hex(busBase),
    source: backing ? (backing.kind === 'pmem' ? backing.source : backing.source ?? null) : null,
    pci: backing?.kind === 'iopmem' ? {bdf: backing.bdf, bar: backing.bar, barOffset: backing.offset, barSource: backing.barSource} : null,
    nvme: kind === 'nvme' ? {controller: nv.controller ?? null, nsid: nv.nsid ?? null, bdf: nv.bdf ?? null} : null,
  }
  const best = part.best
  const largestRun: LocateRun | null =
    best.start < 0
      ? null
      : {
          fileOffset: fo[best.start],
          length: best.length,
          deviceOffset: dv[best.start],
          physical: base === undefined ? null : hex64(base + BigInt(dv[best.start])),
        }
  const head: Omit<LocateJson, 'extents'> = {
    schemaVersion: SCHEMA_VERSION,
    file,
    size: st.size,
    window,
    dax: st.dax,
    synced: sync,
    addressing,
    filesystem: mount ? {type: mount.fstype, mountPoint: mount.target, daxMode: mountDaxMode(mount) ?? null} : null,
    device,
    totals: {extents: k, bytes, holeBytes, unwrittenBytes: unwritten, sharedBytes: shared, segments, largestRun},
    warnings,
    notes,
  }
  return new LocateResult(head, k, fo, ln, dv, fl, base, busBase, body)
}

/** Extents (estimated) from which a second thread pays for its start-up. */
const SPLIT_EXTENTS = 150_000

/**
 * How to map the window in parts (real FIEMAP, JSON output, a window of at
 * least 1 MiB): a probe of its first 1/64, then either the rest in one go,
 * or, when the probe suggests SPLIT_EXTENTS or more, the first half here and
 * the second in a worker. IOPMEM_LOCATE_SPLIT=off maps in one call;
 * =on always uses the worker (tests).
 */
function splitPlan(window: {offset: number; length: number}, opts: LocateOptions): {probeEnd: number; mid: number; force: boolean} | undefined {
  const knob = process.env.IOPMEM_LOCATE_SPLIT
  if (!opts.json || fileOps || knob === 'off') return undefined
  const force = knob === 'on'
  if (window.length < (force ? 4 * 4096 : 1 << 20)) return undefined
  const page = (n: number) => Math.floor(n / 4096) * 4096
  const probeEnd = window.offset + Math.max(4096, page(window.length / 64))
  // A little more than half here: the worker starts ~50 ms late (its own isolate and modules).
  const mid = Math.max(probeEnd + 4096, window.offset + page(window.length * 0.55))
  if (mid >= window.offset + window.length) return undefined
  return {probeEnd, mid, force}
}

type HalfResult = {part: Part; chunks: Uint8Array[]} | {error: Error} | {workerFailed: Error}

interface SecondHalf {
  /** Never rejects: a FIEMAP error comes back as {error}, a worker that could not run as {workerFailed}. */
  result: Promise<HalfResult>
  cancel(): void
}

/**
 * The worker's module. Unbundled (dist/, or src/ under tsx, which maps .js to
 * .ts) it sits beside this one; in the bundle this code is in a chunk and the
 * worker is an entry of its own (scripts/bundle.mjs).
 */
function workerUrl(): URL {
  if (/\/locate\.[jt]s$/.test(import.meta.url)) return new URL('./locate-worker.js', import.meta.url)
  return pathToFileURL(path.join(packageRoot(), 'dist', 'bundle', 'lib', 'dax', 'locate-worker.cjs'))
}

/**
 * Map [start, start+length) in a worker thread (FIEMAP, scan, and the JSON
 * lines when fmt is given) while the caller maps the first half. Undefined
 * when no worker can be started: the caller then maps everything itself.
 */
async function startSecondHalf(file: string, start: number, length: number | bigint, sync: boolean, ctx: ScanContext, fmt: FormatParams | undefined): Promise<SecondHalf | undefined> {
  let worker: import('node:worker_threads').Worker
  try {
    const {Worker} = await import('node:worker_threads')
    worker = new Worker(workerUrl(), {workerData: {file, start, length, sync, ctx, fmt}})
  } catch {
    return undefined
  }
  const result = new Promise<HalfResult>((resolve) => {
    worker.once('message', (m: {part?: Part; chunks?: Uint8Array[]; error?: {message: string; code?: string}}) => {
      if (m.error) resolve({error: Object.assign(new Error(m.error.message), {code: m.error.code})})
      else resolve({part: m.part!, chunks: m.chunks ?? []})
    })
    worker.once('error', (e) => resolve({workerFailed: e}))
    worker.once('exit', (code) => resolve({workerFailed: new Error(`locate worker exited (${code})`)}))
  })
  return {
    result,
    cancel() {
      void worker.terminate()
    },
  }
}
