/**
 * `topo --probe`: the ground truth beside the kernel's verdict. For each
 * provider (published p2pmem) × client with a block device, one O_DIRECT read
 * of the client's disk into a chunk of the provider's p2pmem, compared byte
 * for byte with a normal read of the same range. Reads touch nothing.
 *
 * With `--write` (a region the user names): the other direction,
 * p2pmem → disk. The region is two probe lengths, A then B. Both are saved;
 * a pattern that differs from B in every byte is written to A with a normal
 * write; one O_DIRECT copy then moves A through the provider's p2pmem to B
 * (the disk reads into device memory, then writes from it); B is compared
 * with the pattern; A and B are restored from the saved copy and read back.
 * SIGINT/SIGTERM/SIGHUP are held until the restore of the pair in flight is
 * done; only SIGKILL or a crash between write and restore leaves the pattern.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {loadNative, type Mapping, type Native} from '../../native/index.js'
import {blockUsage, type BlockUsage, resolveDeviceArg} from '../dax/index.js'
import {analyzePair, PciScanner, type PciFunction} from '../pci/index.js'
import {acquireLocks, Exit, formatBytes, interruptedError, IopmemError, type Host, parseSize, SCHEMA_VERSION, type SignalGuard, usage} from '../sys/index.js'

export type ProbeOutcome = 'ok' | 'refused' | 'corrupt' | 'error'

export interface ProbePair {
  provider: string
  client: string
  /** The client's disk read, /dev/NAME. */
  device: string
  /** What the kernel's rules say (as `topo`): would P2PDMA map this pair. */
  kernel: 'yes' | 'no' | 'unknown' | 'n/a'
  read: ProbeRead
  /** --write only: p2pmem → disk, verified, and whether the region was put back byte-exact. */
  write?: ProbeRead & {restored: boolean}
  /** The probe and the kernel's verdict agree (ok ↔ yes, refused ↔ no, in each direction probed); null when the verdict is unknown or n/a. */
  agrees: boolean | null
}

export interface ProbeRead {
  result: ProbeOutcome
  /** refused/error: the errno name (EREMOTEIO when the kernel finds no P2P path). */
  errno?: string
  message?: string
  bytes: number
  /** corrupt: the first byte that differs from what was sent. */
  mismatchAt?: number
}

/** --write: the region of every client disk that may be overwritten (and is restored). */
export interface ProbeWritePlan {
  /** Bytes overwritten in each disk: two probe lengths (source half A, target half B). */
  bytes: number
  /** Each client disk and the byte offset of its region. */
  disks: Array<{name: string; node: string; offset: number}>
}

export interface ProbeResult {
  schemaVersion: typeof SCHEMA_VERSION
  /** Bytes read per pair, from offset 0 of each disk. */
  bytes: number
  /** --write: where each client disk was written (and restored); null for a read-only probe. */
  write: ProbeWritePlan | null
  pairs: ProbePair[]
  /** Pairs where the probe and the kernel disagree, or the bytes came back wrong: the headline. */
  mismatches: ProbePair[]
}

export const PROBE_BYTES = 64 * 1024

/** The client's first whole disk (an NVMe namespace, a pmem or iopmem disk). */
function diskOf(f: PciFunction): string | undefined {
  return f.blockDevices[0]?.name
}

/** Refuse before touching anything when the roots are not the live kernel's or the caller is not root. */
export function checkProbeAllowed(host: Host): void {
  if (!host.isLive) {
    throw new IopmemError('topo --probe moves real data: it runs only against the live kernel, not fixture roots (IOPMEM_SYSFS_ROOT…).', {
      code: 'E_NOT_LIVE',
      exit: Exit.UNSUPPORTED,
    })
  }
  if (!host.isRoot()) {
    throw new IopmemError('topo --probe needs root: it maps p2pmem and opens block devices with O_DIRECT.', {
      code: 'E_NOT_ROOT',
      exit: Exit.PERMISSION,
      suggestions: ['Run as root (sudo iopmem topo --probe).'],
    })
  }
}

/** A chunk of the provider's p2pmem (write-back, as the kernel hands it out), or the error outcome saying why not. */
function mapChunk(native: Native, provider: PciFunction, bytes: number): Mapping | ProbeRead {
  try {
    return native.map(path.join(provider.sysfsPath, 'p2pmem', 'allocate'), {length: bytes, mode: 'wb'})
  } catch (error) {
    const e = error as IopmemError
    return {result: 'error', errno: e.code, message: `mapping ${provider.bdf}'s p2pmem: ${e.message}`, bytes: 0}
  }
}

async function probeOne(native: Native, provider: PciFunction, device: string, bytes: number): Promise<ProbeRead> {
  const expected = Buffer.alloc(bytes)
  const fd = fs.openSync(device, fs.constants.O_RDONLY)
  try {
    const n = fs.readSync(fd, expected, 0, bytes, 0)
    if (n < bytes) return {result: 'error', errno: 'ESHORT', message: `${device} is shorter than ${bytes} bytes`, bytes: 0}
  } finally {
    fs.closeSync(fd)
  }
  const m = mapChunk(native, provider, bytes)
  if (!('unmap' in m)) return m
  try {
    // Every byte the device does not deliver then differs from what it should be.
    const sentinel = Buffer.from(expected.map((b) => ~b & 0xff))
    native.copyTo(m, 0, sentinel)
    try {
      await native.ioRun({src: device, length: bytes, bs: bytes, qd: 1, buffer: m, registerBuffers: false})
    } catch (error) {
      const e = error as IopmemError
      return {result: e.code === 'EREMOTEIO' ? 'refused' : 'error', errno: e.code, message: e.message, bytes: 0}
    }
    const got = Buffer.alloc(bytes)
    native.copyFrom(m, 0, got)
    const at = got.findIndex((b, i) => b !== expected[i])
    return at < 0 ? {result: 'ok', bytes} : {result: 'corrupt', bytes, mismatchAt: at}
  } finally {
    m.unmap()
  }
}

/** Probe every provider × client-with-a-disk pair among `bdfs` (providers: published p2pmem). */
export async function probePairs(host: Host, bdfs: string[], opts: {bytes?: number; write?: ProbeWritePlan; guard?: SignalGuard} = {}): Promise<ProbeResult> {
  checkProbeAllowed(host)
  const bytes = opts.bytes ?? PROBE_BYTES
  const {providers, clients, scanner} = probeFunctions(host, bdfs)
  const native = loadNative()
  const pairs: ProbePair[] = []
  for (const p of providers) {
    for (const c of clients) {
      const device = host.dev(diskOf(c)!)
      const kernel = analyzePair(scanner, p.bdf, c.bdf).p2p
      const read = await probeOne(native, p, device, bytes)
      const pair: ProbePair = {provider: p.bdf, client: c.bdf, device: host.display(device), kernel, read, agrees: null}
      if (opts.write) {
        const region = opts.write.disks.find((d) => d.name === diskOf(c))!
        pair.write = await probeWrite(native, p, device, region.offset, bytes)
        if (opts.guard && (await opts.guard.checkpoint())) {
          pairs.push(pair)
          throw interruptedError(`topo --probe --write stopped by ${opts.guard.signal} after ${pairs.length} pair(s); the region of every disk written so far is restored.`, opts.guard.signal, {
            state: pairs.every((x) => x.write?.restored !== false) ? 'restored' : 'not-restored',
            pairs,
          })
        }
      }
      pair.agrees = agreement(kernel, [read, ...(pair.write ? [pair.write] : [])])
      pairs.push(pair)
    }
  }
  const bad = (x: ProbePair) => x.agrees === false || x.read.result === 'corrupt' || x.write?.result === 'corrupt' || x.write?.restored === false
  return {schemaVersion: SCHEMA_VERSION, bytes, write: opts.write ?? null, pairs, mismatches: pairs.filter((x) => bad(x))}
}

function agreement(kernel: ProbePair['kernel'], runs: ProbeRead[]): boolean | null {
  if (kernel === 'unknown' || kernel === 'n/a' || runs.some((r) => r.result === 'error')) return null
  return runs.every((r) => (kernel === 'yes') === (r.result === 'ok'))
}

function probeFunctions(host: Host, bdfs: string[]): {providers: PciFunction[]; clients: PciFunction[]; scanner: PciScanner} {
  const scanner = new PciScanner(host, {names: false})
  const fns = bdfs.map((b) => scanner.get(b))
  return {providers: fns.filter((f) => f.p2pmem?.published), clients: fns.filter((f) => diskOf(f)), scanner}
}

function refuse(message: string, code: string, suggestions: string[], details?: Record<string, unknown>): IopmemError {
  return new IopmemError(message, {code, exit: Exit.REFUSED, suggestions, details})
}

/**
 * Check a --write request before anything is written: live root, and for each
 * client disk the region inside it, aligned to its logical block and the page,
 * writable, and the disk not in use (mounted, stacked, swap, open).
 */
export function planProbeWrite(host: Host, bdfs: string[], at: {offset?: number; lba?: number}, bytes = PROBE_BYTES): ProbeWritePlan {
  checkProbeAllowed(host)
  const {providers, clients} = probeFunctions(host, bdfs)
  const region = 2 * bytes
  const disks: ProbeWritePlan['disks'] = []
  for (const c of clients) {
    const b = resolveDeviceArg(host, diskOf(c)!)
    const lbs = b.disk.logicalBlockSize || 512
    const offset = at.lba === undefined ? (at.offset ?? 0) : at.lba * lbs
    if (offset % Math.max(lbs, 4096) !== 0)
      throw usage(`--${at.lba === undefined ? 'offset' : 'lba'} puts the region at byte ${offset} of ${b.node}: it must be a multiple of ${Math.max(lbs, 4096)} (O_DIRECT, the logical block and the page).`, 'E_ALIGN')
    if (offset + region > b.disk.size)
      throw usage(`The region (${formatBytes(region)} at byte ${offset}) ends past the end of ${b.node} (${formatBytes(b.disk.size)}).`, 'E_RANGE')
    if (b.disk.readOnly) throw refuse(`${b.node} is read-only; --write cannot probe it.`, 'E_READ_ONLY', ['Probe reads only (drop --write).'])
    const u = blockUsage(host, b)
    if (u.uses.length > 0) {
      throw refuse(
        `${b.node} is in use; topo --probe --write writes to it and refuses:\n${u.uses.map((x: BlockUsage) => `  - ${x.detail}`).join('\n')}`,
        'E_IN_USE',
        ['Unmount it or stop what holds it, or probe reads only (drop --write).'],
        {uses: u.uses},
      )
    }
    disks.push({name: b.disk.name, node: host.display(b.node), offset})
  }
  if (providers.length === 0 || disks.length === 0)
    throw usage('--write has nothing to write: it takes a function with published p2pmem and one with a block device.', 'E_NOTHING_TO_PROBE')
  return {bytes: region, disks}
}

/** The region flags of `topo --probe --write`, checked against each other before anything is read. */
export function probeWriteRequest(flags: {probe?: boolean; write?: boolean; offset?: string; lba?: string}): {offset?: number; lba?: number} | undefined {
  const region = flags.offset !== undefined || flags.lba !== undefined
  if (flags.write && !flags.probe) throw usage('--write is part of the probe: use it with --probe.', 'E_FLAG_COMBO')
  if (region && !flags.write) throw usage('--offset/--lba name the region --write may overwrite: add --write (and --probe).', 'E_FLAG_COMBO')
  if (!flags.write) return undefined
  if (!region)
    throw usage('--write needs the region it may overwrite: --offset BYTES or --lba N (it is saved first and restored after).', 'E_NO_REGION', [
      'Pick a region of each client disk whose loss you could bear, e.g. --offset 1G.',
    ])
  if (flags.offset !== undefined && flags.lba !== undefined) throw usage('Give --offset or --lba, not both.', 'E_FLAG_COMBO')
  if (flags.lba !== undefined) {
    if (!/^\d+$/.test(flags.lba) || !Number.isSafeInteger(Number(flags.lba))) throw usage(`--lba must be a whole number of logical blocks, not "${flags.lba}".`, 'E_LBA')
    return {lba: Number(flags.lba)}
  }
  return {offset: parseSize(flags.offset!, '--offset', {min: 0})}
}

/** Hold the disks' locks (the ones mkfs-dax takes) for the whole write probe. */
export async function lockProbeDisks(host: Host, plan: ProbeWritePlan, wait?: boolean): Promise<() => void> {
  const held = await acquireLocks(host, plan.disks.map((d) => ({name: `block-${d.name}`, what: d.node})), {wait})
  return () => {
    for (const h of held) h.release()
  }
}

async function probeWrite(native: Native, provider: PciFunction, device: string, offset: number, bytes: number): Promise<ProbeRead & {restored: boolean}> {
  const fd = fs.openSync(device, fs.constants.O_RDWR)
  const saved = Buffer.alloc(2 * bytes)
  let result: ProbeRead = {result: 'error', errno: 'ESHORT', message: `${device} is shorter than the region`, bytes: 0}
  let restored = true
  try {
    if (fs.readSync(fd, saved, 0, saved.length, offset) < saved.length) return {...result, restored}
    // Every byte of the pattern differs from what B holds, so a write that does not land shows.
    const pattern = Buffer.from(saved.subarray(bytes).map((b) => ~b & 0xff))
    restored = false
    try {
      fs.writeSync(fd, pattern, 0, bytes, offset)
      fs.fdatasyncSync(fd)
      result = await copyThrough(native, provider, device, offset, bytes)
      if (result.result === 'ok') {
        const got = Buffer.alloc(bytes)
        fs.readSync(fd, got, 0, bytes, offset + bytes)
        const at = got.findIndex((b, i) => b !== pattern[i])
        if (at >= 0) result = {result: 'corrupt', bytes, mismatchAt: at}
      }
    } finally {
      fs.writeSync(fd, saved, 0, saved.length, offset)
      fs.fdatasyncSync(fd)
      const back = Buffer.alloc(saved.length)
      fs.readSync(fd, back, 0, back.length, offset)
      restored = back.equals(saved)
    }
    return {...result, restored}
  } finally {
    fs.closeSync(fd)
  }
}

/** One O_DIRECT copy A → provider's p2pmem → B: the disk reads into device memory, then writes from it. */
async function copyThrough(native: Native, provider: PciFunction, device: string, offset: number, bytes: number): Promise<ProbeRead> {
  const m = mapChunk(native, provider, bytes)
  if (!('unmap' in m)) return m
  try {
    await native.ioRun({src: device, srcOffset: offset, dst: device, dstOffset: offset + bytes, length: bytes, bs: bytes, qd: 1, buffer: m, registerBuffers: false})
    return {result: 'ok', bytes}
  } catch (error) {
    const e = error as IopmemError
    return {result: e.code === 'EREMOTEIO' ? 'refused' : 'error', errno: e.code, message: e.message, bytes: 0}
  } finally {
    m.unmap()
  }
}
