/**
 * `topo --probe`: the ground truth beside the kernel's verdict. For each
 * provider (published p2pmem) × client with a block device, one O_DIRECT read
 * of the client's disk into a chunk of the provider's p2pmem, compared byte
 * for byte with a normal read of the same range. Reads only: nothing is
 * written to any disk.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {loadNative, type Native} from '../../native/index.js'
import {analyzePair, PciScanner, type PciFunction} from '../pci/index.js'
import {Exit, IopmemError, type Host} from '../sys/index.js'

export type ProbeOutcome = 'ok' | 'refused' | 'corrupt' | 'error'

export interface ProbePair {
  provider: string
  client: string
  /** The client's disk read, /dev/NAME. */
  device: string
  /** What the kernel's rules say (as `topo`): would P2PDMA map this pair. */
  kernel: 'yes' | 'no' | 'unknown'
  read: {
    result: ProbeOutcome
    /** refused/error: the errno name (EREMOTEIO when the kernel finds no P2P path). */
    errno?: string
    message?: string
    bytes: number
    /** corrupt: the first byte that differs from the normal read. */
    mismatchAt?: number
  }
  /** The probe and the kernel's verdict agree (ok ↔ yes, refused ↔ no); null when the verdict is unknown. */
  agrees: boolean | null
}

export interface ProbeResult {
  schemaVersion: 1
  /** Bytes read per pair, from offset 0 of each disk. */
  bytes: number
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

async function probeOne(native: Native, provider: PciFunction, device: string, bytes: number): Promise<ProbePair['read']> {
  const expected = Buffer.alloc(bytes)
  const fd = fs.openSync(device, fs.constants.O_RDONLY)
  try {
    const n = fs.readSync(fd, expected, 0, bytes, 0)
    if (n < bytes) return {result: 'error', errno: 'ESHORT', message: `${device} is shorter than ${bytes} bytes`, bytes: 0}
  } finally {
    fs.closeSync(fd)
  }
  let m
  try {
    m = native.map(path.join(provider.sysfsPath, 'p2pmem', 'allocate'), {length: bytes, mode: 'wb'})
  } catch (error) {
    const e = error as IopmemError
    return {result: 'error', errno: e.code, message: `mapping ${provider.bdf}'s p2pmem: ${e.message}`, bytes: 0}
  }
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
export async function probePairs(host: Host, bdfs: string[], opts: {bytes?: number} = {}): Promise<ProbeResult> {
  checkProbeAllowed(host)
  const bytes = opts.bytes ?? PROBE_BYTES
  const scanner = new PciScanner(host, {names: false})
  const fns = bdfs.map((b) => scanner.get(b))
  const providers = fns.filter((f) => f.p2pmem?.published)
  const clients = fns.filter((f) => diskOf(f))
  const native = loadNative()
  const pairs: ProbePair[] = []
  for (const p of providers) {
    for (const c of clients) {
      const device = host.dev(diskOf(c)!)
      const kernel = analyzePair(scanner, p.bdf, c.bdf).p2p
      const read = await probeOne(native, p, device, bytes)
      const agrees = kernel === 'unknown' || read.result === 'error' ? null : (kernel === 'yes') === (read.result === 'ok')
      pairs.push({provider: p.bdf, client: c.bdf, device: host.display(device), kernel, read, agrees})
    }
  }
  return {schemaVersion: 1, bytes, pairs, mismatches: pairs.filter((x) => x.agrees === false || x.read.result === 'corrupt')}
}
