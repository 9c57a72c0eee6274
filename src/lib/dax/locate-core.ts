/**
 * The per-extent core of `locate`, with nothing in it that needs the host or
 * oclif, so a worker thread can run it too: turning a FIEMAP answer into
 * columns (clipped to the window, checked, totalled in one pass), joining two
 * halves of a file mapped in parallel, and writing the extents as JSON lines.
 */
import {ByteSink, compileFragment, type Fragment, putHex, putUint} from './bytesink.js'
import {FIEMAP_EXTENT} from '../../native/index.js'
import type {FiemapResult} from '../../native/types.js'

/** FIEMAP_EXTENT_* (include/uapi/linux/fiemap.h): the addon glue's table (importing it does not load the addon). */
export const EXTENT_FLAGS = FIEMAP_EXTENT

/**
 * The flags locate knows, in bit order: the name it shows, and for a flag that
 * leaves an extent without an address a device can use, the reason it gives.
 */
const FLAG_TABLE: Array<{bit: number; name: string; unusable?: string}> = [
  {bit: EXTENT_FLAGS.LAST, name: 'last'},
  {bit: EXTENT_FLAGS.UNKNOWN, name: 'unknown', unusable: 'its location is unknown'},
  {bit: EXTENT_FLAGS.DELALLOC, name: 'delalloc', unusable: 'it has no blocks yet (delayed allocation)'},
  {bit: EXTENT_FLAGS.ENCODED, name: 'encoded', unusable: 'its data is encoded (compressed) on the device'},
  {bit: EXTENT_FLAGS.DATA_ENCRYPTED, name: 'encrypted', unusable: 'its data is encrypted on the device'},
  {bit: EXTENT_FLAGS.NOT_ALIGNED, name: 'not-aligned', unusable: 'its data is not block aligned'},
  {bit: EXTENT_FLAGS.DATA_INLINE, name: 'inline', unusable: 'its data is inline in metadata'},
  {bit: EXTENT_FLAGS.DATA_TAIL, name: 'tail', unusable: 'its data is packed with other files (tail)'},
  {bit: EXTENT_FLAGS.UNWRITTEN, name: 'unwritten'},
  {bit: EXTENT_FLAGS.MERGED, name: 'merged'},
  {bit: EXTENT_FLAGS.SHARED, name: 'shared'},
]

/** The names locate uses for the flags, in bit order. */
export const FLAG_NAMES: Array<[number, string]> = FLAG_TABLE.map(({bit, name}) => [bit, name])

/** Why an extent with the flag has no usable address, for each flag that leaves it without one. */
export const WHY_UNUSABLE: Array<[number, string]> = FLAG_TABLE.flatMap(({bit, unusable}) => (unusable ? [[bit, unusable] as [number, string]] : []))

/** Flags that leave an extent without an address a device can use. */
export const UNUSABLE: number = WHY_UNUSABLE.reduce((all, [bit]) => all | bit, 0)

/** Flag names of an fe_flags value; unknown bits as one hex entry. */
export function flagNames(flags: number): string[] {
  const out: string[] = []
  let rest = flags >>> 0
  for (const [bit, name] of FLAG_NAMES) {
    if (rest & bit) {
      out.push(name)
      rest &= ~bit
    }
  }
  if (rest) out.push('0x' + (rest >>> 0).toString(16))
  return out
}

/** What scanning needs to know about the file and its device. */
export interface ScanContext {
  /** The window [wStart, wEnd) and whether extents are cut to it. */
  wStart: number
  wEnd: number
  clipped: boolean
  /** Added to fe_physical: the partition's offset in its disk. */
  partitionStart: number
  /** File size rounded up to the block size: extents starting there are preallocated past EOF. */
  eofBlock: number
  diskSize: number
  /**
   * The part of the window this FIEMAP answer is for, [from, to): extents are
   * cut to it. FIEMAP answers with whole blocks around the range asked (ext4,
   * xfs) or whole extents (others), so neighbouring answers overlap; cut to
   * their parts, they tile the window and join into exactly one pass.
   */
  from?: number
  to?: number
}

export interface UnusableExtent {
  fileOffset: number
  length: number
  flags: string[]
}

/** A run of extents contiguous in both file and device. */
interface Run {
  start: number
  length: number
}

/** Columns and totals of (part of) a file's extents. */
export interface Part {
  count: number
  fileOffset: Float64Array
  length: Float64Array
  deviceOffset: Float64Array
  flags: Uint32Array
  bytes: number
  /** Bytes of the window the extents cover. */
  covered: number
  unwritten: number
  unwrittenN: number
  shared: number
  sharedN: number
  unusableN: number
  /** The first few unusable extents. */
  unusable: UnusableExtent[]
  /** Index of the first usable extent that runs past the end of the disk, or -1. */
  outside: number
  beyondEof: number
  /** An offset or length of 2^53 or more was seen. */
  huge: boolean
  segments: number
  firstRun: Run
  lastRun: Run
  best: Run
}

const TWO32 = 4294967296
const MAX_UNUSABLE = 5

/** One pass over a FIEMAP answer: columns, clipped to the window, with every check and total. */
export function scanExtents(r: FiemapResult, ctx: ScanContext): Part {
  const c = r.count
  const L = new Uint32Array(r.logical.buffer, r.logical.byteOffset, c * 2)
  const P = new Uint32Array(r.physical.buffer, r.physical.byteOffset, c * 2)
  const N = new Uint32Array(r.length.buffer, r.length.byteOffset, c * 2)
  const F = r.flags
  const fo = new Float64Array(c)
  const ln = new Float64Array(c)
  const dv = new Float64Array(c)
  const fl = new Uint32Array(c)
  const {wStart, wEnd, clipped, partitionStart, eofBlock, diskSize} = ctx
  const from = ctx.from ?? -1
  const to = ctx.to ?? Infinity
  let k = 0
  let bytes = 0
  let covered = 0
  let unwritten = 0
  let unwrittenN = 0
  let shared = 0
  let sharedN = 0
  let unusableN = 0
  const unusable: UnusableExtent[] = []
  let outside = -1
  let beyondEof = 0
  let huge = false
  let segments = 0
  let runStart = 0
  let runLen = 0
  let bestStart = -1
  let bestLen = 0
  let firstLen = 0
  for (let i = 0; i < c; i++) {
    const j = 2 * i
    if (L[j + 1] > 0x1fffff || P[j + 1] > 0x1fffff || N[j + 1] > 0x1fffff) {
      huge = true
      break
    }
    let lo = L[j] + L[j + 1] * TWO32
    let ph = P[j] + P[j + 1] * TWO32
    let n = N[j] + N[j + 1] * TWO32
    const f = F[i]
    if (lo < from) {
      if (lo + n <= from) continue
      ph += from - lo
      n -= from - lo
      lo = from
    }
    if (lo + n > to) {
      if (lo >= to) continue
      n = to - lo
    }
    if (clipped) {
      const s = lo > wStart ? lo : wStart
      const e = lo + n < wEnd ? lo + n : wEnd
      if (e <= s) continue
      ph += s - lo
      n = e - s
      lo = s
    }
    const d = ph + partitionStart
    if (!clipped && lo + n > eofBlock) beyondEof += lo + n - (lo > eofBlock ? lo : eofBlock)
    bytes += n
    const ce = lo + n < wEnd ? lo + n : wEnd
    if (ce > lo) covered += ce - lo
    if (f & EXTENT_FLAGS.UNWRITTEN) unwritten += n
    if (f & EXTENT_FLAGS.SHARED) shared += n
    // One extent for what is contiguous in file and device with the same flags (LAST aside), whoever
    // split it: the filesystem, or the ranges FIEMAP was asked (the probe, the two halves).
    const m = k - 1
    if (k > 0 && lo === fo[m] + ln[m] && d === dv[m] + ln[m] && ((f ^ fl[m]) & ~EXTENT_FLAGS.LAST) === 0) {
      ln[m] += n
      fl[m] = f
      runLen += n
      if (f & UNUSABLE) {
        const u = unusable.at(-1)
        if (u && u.fileOffset === fo[m]) u.length = ln[m]
      } else if (outside < 0 && d + n > diskSize) outside = m
      continue
    }
    fo[k] = lo
    ln[k] = n
    dv[k] = d
    fl[k] = f
    if (f & UNUSABLE) {
      unusableN++
      if (unusable.length < MAX_UNUSABLE) unusable.push({fileOffset: lo, length: n, flags: flagNames(f)})
    } else if (d + n > diskSize && outside < 0) outside = k
    if (f & EXTENT_FLAGS.UNWRITTEN) unwrittenN++
    if (f & EXTENT_FLAGS.SHARED) sharedN++
    if (k > 0 && lo === fo[m] + ln[m] && d === dv[m] + ln[m]) runLen += n
    else {
      if (k > 0) {
        if (segments === 1) firstLen = runLen
        if (runLen > bestLen) {
          bestLen = runLen
          bestStart = runStart
        }
      }
      segments++
      runStart = k
      runLen = n
    }
    k++
  }
  if (k > 0) {
    if (segments === 1) firstLen = runLen
    if (runLen > bestLen) {
      bestLen = runLen
      bestStart = runStart
    }
  }
  return {
    count: k,
    fileOffset: fo.subarray(0, k),
    length: ln.subarray(0, k),
    deviceOffset: dv.subarray(0, k),
    flags: fl.subarray(0, k),
    bytes,
    covered,
    unwritten,
    unwrittenN,
    shared,
    sharedN,
    unusableN,
    unusable,
    outside,
    beyondEof,
    huge,
    segments,
    firstRun: {start: 0, length: k > 0 ? firstLen : 0},
    lastRun: {start: k > 0 ? runStart : 0, length: k > 0 ? runLen : 0},
    best: {start: bestStart, length: bestLen},
  }
}

function concat<T extends Float64Array | Uint32Array>(a: T, b: T, make: (n: number) => T): T {
  const out = make(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * The part for a followed by b (b's extents come after a's in the file),
 * exactly as if one pass had seen them all: an extent FIEMAP cut at the
 * boundary of the two ranges (it trims extents to the range asked) is one
 * extent again, runs that continue across the join are joined, the largest
 * run is the first longest, as one pass would pick it, and a's last extent
 * loses the LAST flag that FIEMAP gives the end of a range. (a's last JSON
 * line and b's first must be written after the join: see `merged`.)
 */
export function joinParts(a: Part, b: Part): Part & {merged: number} {
  if (a.count === 0) return {...b, merged: 0}
  if (b.count === 0) return {...a, merged: 0}
  const la = a.count - 1
  // FIEMAP (iomap) marks the last extent of the range asked LAST: a's end is not the file's.
  a.flags[la] &= ~EXTENT_FLAGS.LAST
  const aUnusable = a.unusable.map((u) => (u.fileOffset === a.fileOffset[la] ? {...u, flags: flagNames(a.flags[la])} : u))
  const joins = b.fileOffset[0] === a.fileOffset[la] + a.length[la] && b.deviceOffset[0] === a.deviceOffset[la] + a.length[la]
  // The same extent, cut in two by the ranges: one again.
  const m = joins && ((a.flags[la] ^ b.flags[0]) & ~EXTENT_FLAGS.LAST) === 0 ? 1 : 0
  const off = a.count - m
  const shift = (r: Run): Run => ({start: r.start + off, length: r.length})
  let segments = a.segments + b.segments
  let firstRun = a.firstRun
  let lastRun = shift(b.lastRun)
  // Candidates for the largest run, in file order; the first longest wins.
  const candidates: Run[] = []
  if (joins) {
    segments--
    const joined: Run = {start: a.lastRun.start, length: a.lastRun.length + b.firstRun.length}
    if (a.segments === 1) firstRun = joined
    if (b.segments === 1) lastRun = joined
    if (a.best.start !== a.lastRun.start) candidates.push(a.best)
    candidates.push(joined)
    if (b.best.start !== 0) candidates.push(shift(b.best))
  } else {
    candidates.push(a.best, shift(b.best))
  }
  let best: Run = {start: -1, length: 0}
  for (const r of candidates) if (r.length > best.length) best = r
  const f0 = b.flags[0]
  let unusable = [...aUnusable, ...b.unusable]
  const outside = a.outside >= 0 ? a.outside : b.outside >= 0 ? b.outside + off : -1
  const fileOffset = concat(a.fileOffset, b.fileOffset.subarray(m), (n) => new Float64Array(n))
  const length = concat(a.length, b.length.subarray(m), (n) => new Float64Array(n))
  const deviceOffset = concat(a.deviceOffset, b.deviceOffset.subarray(m), (n) => new Float64Array(n))
  const flags = concat(a.flags, b.flags.subarray(m), (n) => new Uint32Array(n))
  if (m) {
    length[la] += b.length[0]
    flags[la] = f0
    if (f0 & UNUSABLE) {
      // a's entry for its last extent (if listed) is now the whole extent; b's entry for its first goes.
      unusable = [...aUnusable.map((u) => (u.fileOffset === a.fileOffset[la] ? {...u, length: length[la], flags: flagNames(f0)} : u)), ...b.unusable.filter((u) => u.fileOffset !== b.fileOffset[0])]
    }
  }
  return {
    count: a.count + b.count - m,
    fileOffset,
    length,
    deviceOffset,
    flags,
    bytes: a.bytes + b.bytes,
    covered: a.covered + b.covered,
    unwritten: a.unwritten + b.unwritten,
    unwrittenN: a.unwrittenN + b.unwrittenN - (m && f0 & EXTENT_FLAGS.UNWRITTEN ? 1 : 0),
    shared: a.shared + b.shared,
    sharedN: a.sharedN + b.sharedN - (m && f0 & EXTENT_FLAGS.SHARED ? 1 : 0),
    unusableN: a.unusableN + b.unusableN - (m && f0 & UNUSABLE ? 1 : 0),
    unusable: unusable.slice(0, MAX_UNUSABLE),
    outside,
    beyondEof: a.beyondEof + b.beyondEof,
    huge: a.huge || b.huge,
    segments,
    firstRun,
    lastRun,
    best,
    merged: m,
  }
}

/** Extents [from, to) of a part, as views (for writing some of its JSON lines). */
export function sliceExtents(p: Pick<Part, 'fileOffset' | 'length' | 'deviceOffset' | 'flags'>, from: number, to: number): Pick<Part, 'count' | 'fileOffset' | 'length' | 'deviceOffset' | 'flags'> {
  const n = Math.max(0, to - from)
  return {count: n, fileOffset: p.fileOffset.subarray(from, from + n), length: p.length.subarray(from, from + n), deviceOffset: p.deviceOffset.subarray(from, from + n), flags: p.flags.subarray(from, from + n)}
}

/** What the JSON lines need besides the columns. */
export interface FormatParams {
  /** Logical block size, for lba/lbaCount (addressing "lba"). */
  lbs: number
  lbaMode: boolean
  /** CPU physical and PCI bus address of the disk's byte 0, hex; null when not given. */
  base: string | null
  busBase: string | null
  diskSize: number
}

/**
 * The extents as JSON lines, each `\n    {…}` preceded by a comma unless it
 * is the first of the document (`first`).
 */
export function formatExtents(p: Pick<Part, 'count' | 'fileOffset' | 'length' | 'deviceOffset' | 'flags'>, fmt: FormatParams, first: boolean, out: (chunk: Buffer) => void): void {
  const sink = new ByteSink(out)
  const F1 = compileFragment('\n    {"fileOffset":')
  const F1c = compileFragment(',\n    {"fileOffset":')
  const F2 = compileFragment(',"length":')
  const F3 = compileFragment(',"deviceOffset":')
  const F4 = compileFragment(',"physical":"')
  const F5 = compileFragment(',"busAddress":"')
  const F6 = compileFragment(',"lba":')
  const F7 = compileFragment(',"lbaCount":')
  const flagCache = new Map<number, Fragment>()
  let lastFlags = -1
  let lastFrag: Fragment = F1
  const {lbs, lbaMode} = fmt
  const base = fmt.base === null ? undefined : BigInt(fmt.base)
  const bus = fmt.busBase === null ? undefined : BigInt(fmt.busBase)
  const fits = (b: bigint | undefined) => b !== undefined && b + BigInt(fmt.diskSize) < BigInt(Number.MAX_SAFE_INTEGER)
  // Addresses as numbers when exact (always, in practice); else a BigInt per extent.
  const baseN = fits(base) ? Number(base) : -1
  const busN = fits(bus) ? Number(bus) : -1
  const slow = (base !== undefined && baseN < 0) || (bus !== undefined && busN < 0)
  const hasBase = base !== undefined
  const hasBus = bus !== undefined
  const {fileOffset, length, deviceOffset, flags} = p
  sink.reserve(1024)
  let buf = sink.buf
  let q = sink.pos
  // A line is under 300 bytes: flush when less than 1 KiB is left.
  let limit = buf.length - 1024
  for (let i = 0; i < p.count; i++) {
    if (q > limit) {
      sink.pos = q
      sink.flush()
      buf = sink.buf
      q = sink.pos
      limit = buf.length - 1024
    }
    const d = deviceOffset[i]
    const len = length[i]
    q = (i === 0 && first ? F1 : F1c)(buf, q)
    q = putUint(buf, q, fileOffset[i])
    q = F2(buf, q)
    q = putUint(buf, q, len)
    q = F3(buf, q)
    q = putUint(buf, q, d)
    if (hasBase) {
      if (!slow) {
        q = F4(buf, q)
        q = putHex(buf, q, baseN + d, 0, 16)
        buf[q++] = 34
        if (hasBus) {
          q = F5(buf, q)
          q = putHex(buf, q, busN + d, 0, 16)
          buf[q++] = 34
        }
      } else {
        q += buf.write(`,"physical":"0x${(base! + BigInt(d)).toString(16).padStart(16, '0')}"`, q) // as sys hex64; this module stays import-free for the worker
        if (hasBus) q += buf.write(`,"busAddress":"0x${(bus! + BigInt(d)).toString(16).padStart(16, '0')}"`, q)
      }
    }
    if (lbaMode) {
      const lba = Math.floor(d / lbs)
      q = F6(buf, q)
      q = putUint(buf, q, lba)
      q = F7(buf, q)
      q = putUint(buf, q, Math.ceil((d + len) / lbs) - lba)
    }
    const fl = flags[i]
    if (fl !== lastFlags) {
      let f = flagCache.get(fl)
      if (!f) {
        f = compileFragment(',"flags":' + JSON.stringify(flagNames(fl)) + '}')
        flagCache.set(fl, f)
      }
      lastFlags = fl
      lastFrag = f
    }
    q = lastFrag(buf, q)
  }
  sink.pos = q
  sink.flush()
}
