/**
 * What `iopmem map` does with a mapping: exact-width reads and writes,
 * hexdumps, pattern fills and verifies, copies from and to files. The
 * parsing and range checks run before anything is mapped, so bad input
 * never touches device memory; the operations take the addon's accessors.
 */
import * as fs from 'node:fs'

import type {CachingMode, CopyStrategy, FlushInstruction, Mapping, Native, UsedStrategy, Width} from '../../native/types.js'
import {Exit, IopmemError, usage} from '../sys/index.js'
import {STRATEGIES} from './target.js'
import {formatBytes, parseSize, roundRate} from '../sys/index.js'

/** The addon's accessors an operation needs. */
export type OpsNative = Pick<Native, 'readValues' | 'writeValues' | 'copyTo' | 'copyFrom' | 'flush'>

export const WIDTH_BITS = [8, 16, 32, 64] as const
export type WidthBits = (typeof WIDTH_BITS)[number]

const CHUNK = 4 << 20

/** Parse `--width` in bits (8, 16, 32, 64; `b8`/`32bit` not needed): returns bytes. */
export function parseWidth(text: string | undefined, dflt: WidthBits = 32): Width {
  if (text === undefined) return (dflt / 8) as Width
  const n = Number(text.trim())
  if (!(WIDTH_BITS as readonly number[]).includes(n) || !/^\d+$/.test(text.trim())) {
    throw usage(`Invalid --width ${JSON.stringify(text)}: an access is 8, 16, 32 or 64 bits wide.`, 'E_WIDTH')
  }
  return (n / 8) as Width
}

/** An offset or size: decimal or 0x hex, units K/M/G (parseSize), naming the flag. */
export function parseOffset(text: string, what: string): number {
  return parseSize(text, what)
}

/** A count: a positive integer (decimal or 0x hex). */
export function parseCount(text: string, what = '--count'): number {
  const t = text.trim()
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) throw usage(`Invalid ${what} ${JSON.stringify(text)}: expected a whole number, e.g. 4 or 0x10.`, 'E_COUNT')
  const n = Number(BigInt(t.toLowerCase()))
  if (!Number.isSafeInteger(n) || n < 1) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be at least 1.`, 'E_COUNT')
  return n
}

/** Values for `--value`: comma or space separated, decimal or 0x hex, each fitting the width. */
export function parseValues(text: string, width: Width): bigint[] {
  const parts = text.split(/[\s,]+/).filter((p) => p !== '')
  if (parts.length === 0) throw usage(`Invalid --value ${JSON.stringify(text)}: give one or more numbers, e.g. 0xdeadbeef or 1,2,3.`, 'E_VALUE')
  const max = (1n << BigInt(width * 8)) - 1n
  return parts.map((p) => {
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(p)) throw usage(`Invalid --value ${JSON.stringify(p)}: expected a non-negative number, decimal or 0x hex.`, 'E_VALUE')
    const v = BigInt(p.toLowerCase())
    if (v > max) throw usage(`Invalid --value ${p}: it does not fit ${width * 8} bits (at most ${hexw(max, width)}).`, 'E_VALUE', ['Pass --width 64 for a wider value.'])
    return v
  })
}

/** 0x-prefixed hex, zero-padded to the width. */
export function hexw(v: bigint | number, width: number): string {
  return '0x' + v.toString(16).padStart(width * 2, '0')
}

const hx = (n: number) => '0x' + n.toString(16)

/**
 * Check that [offset, offset + bytes) lies in a mapping of `length` bytes and
 * that offset (and bytes) are multiples of `align`. E_RANGE / E_ALIGN, exit 2.
 */
export function checkRange(length: number, offset: number, bytes: number, align: number, what: string): void {
  if (offset >= length) {
    throw usage(`${what} offset ${hx(offset)} is past the end of the mapping (${formatBytes(length)}: offsets 0x0-${hx(length - 1)}).`, 'E_RANGE')
  }
  if (offset + bytes > length) {
    throw usage(
      `${what}: ${formatBytes(bytes)} (${bytes} bytes) from ${hx(offset)} runs past the end of the mapping at ${hx(length)} (${formatBytes(length)}); at most ${length - offset} bytes fit there.`,
      'E_RANGE',
    )
  }
  if (offset % align !== 0) {
    throw usage(`${what} offset ${hx(offset)} is not aligned to ${align} bytes: ${align * 8}-bit accesses must be naturally aligned.`, 'E_ALIGN', [
      align > 1 ? `Use an offset that is a multiple of ${align}, or --width ${(align / 2) * 8 || 8}.` : '',
    ].filter(Boolean))
  }
  if (bytes % align !== 0) {
    throw usage(`${what} size ${bytes} is not a multiple of the ${align * 8}-bit access width.`, 'E_ALIGN')
  }
}

/** Check a copy strategy against the mode and direction. */
export function checkStrategy(mode: CachingMode, strategy: CopyStrategy, direction: 'in' | 'out'): void {
  if (strategy === 'auto') return
  const allowed = direction === 'in' ? STRATEGIES[mode].copyIn : STRATEGIES[mode].copyOut
  if (allowed.includes(strategy as UsedStrategy)) return
  const why =
    strategy === 'memcpy'
      ? `memcpy may use any access width and order, which ${mode} device memory must not see`
      : strategy === 'stream-load'
        ? 'stream-load is a way to read (copy out of) the mapping'
        : strategy === 'stream-store'
          ? 'stream-store is a way to write (copy into) the mapping'
          : 'it is not one of the strategies for this mode'
  throw usage(`--strategy ${strategy} cannot ${direction === 'in' ? 'copy into' : 'copy out of'} a ${mode} mapping: ${why}. Allowed: ${allowed.join(', ')} (auto: ${allowed[0]}).`, 'E_STRATEGY')
}

// ---- patterns -----------------------------------------------------------------------

/**
 * A fill/verify pattern. The byte at mapping offset `o` depends only on `o`,
 * so any sub-range of a fill verifies on its own. Spellings:
 *  - `zero`, `ones` (0xff), `0xNN` (one byte repeated);
 *  - `u8:V`, `u16:V`, `u32:V`, `u64:V`: V little-endian at every aligned
 *    offset of that width (what `--read --width N` shows back);
 *  - `bytes:HEX`: that byte string repeated (phase from offset 0, ≤ 4 KiB);
 *  - `inc`: each byte holds its offset & 0xff;
 *  - `addr`: each aligned 8-byte word holds its own offset (u64 LE): catches
 *    misrouted or aliased writes;
 *  - `random[:SEED]`: a reproducible pseudo-random stream (32-bit words,
 *    hash of the word index and SEED, default 1).
 */
export interface Pattern {
  /** The canonical spelling. */
  spec: string
  /** Fill `buf` with the pattern's bytes for mapping offsets [abs, abs + buf.length). */
  generate(buf: Buffer, abs: number): void
  /** Bytes after which the pattern repeats (0: never). */
  period: number
}

export function parsePattern(text: string): Pattern {
  const t = text.trim().toLowerCase()
  const bad = (why: string) =>
    usage(`Invalid pattern ${JSON.stringify(text)}: ${why}.`, 'E_PATTERN', [
      'Patterns: zero, ones, 0xNN, u8:V, u16:V, u32:V, u64:V, bytes:HEX, inc, addr, random[:SEED].',
    ])
  if (t === 'zero' || t === 'zeros') return periodic('zero', Buffer.from([0]))
  if (t === 'ones') return periodic('ones', Buffer.from([0xff]))
  if (/^0x[0-9a-f]{1,2}$/.test(t)) return periodic(t, Buffer.from([Number.parseInt(t.slice(2), 16)]))
  if (/^0x[0-9a-f]+$/.test(t)) throw bad('a bare 0x value is one byte (0x00-0xff); for a wider value say its width, e.g. u32:0xdeadbeef')
  let m = /^u(8|16|32|64):(0x[0-9a-f]+|\d+)$/.exec(t)
  if (m) {
    const w = Number(m[1]) / 8
    const v = BigInt(m[2])
    if (v >= 1n << BigInt(w * 8)) throw bad(`${m[2]} does not fit ${m[1]} bits`)
    const b = Buffer.alloc(w)
    for (let i = 0; i < w; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn)
    return periodic(`u${m[1]}:${hexw(v, w)}`, b)
  }
  if (/^u\d+:/.test(t)) throw bad('the widths are u8, u16, u32 and u64, with a decimal or 0x value')
  m = /^bytes:((?:[0-9a-f]{2})+)$/.exec(t)
  if (m) {
    const b = Buffer.from(m[1], 'hex')
    if (b.length > 4096) throw bad('bytes: is at most 4096 bytes long')
    return periodic(`bytes:${m[1]}`, b)
  }
  if (t.startsWith('bytes:')) throw bad('bytes: wants an even number of hex digits, e.g. bytes:deadbeef')
  if (t === 'inc') {
    const b = Buffer.alloc(256)
    for (let i = 0; i < 256; i++) b[i] = i
    return periodic('inc', b)
  }
  if (t === 'addr') return {spec: 'addr', period: 0, generate: (buf, abs) => words(buf, abs, addrWord)}
  m = /^random(?::(0x[0-9a-f]+|\d+))?$/.exec(t)
  if (m) {
    const seed = m[1] === undefined ? 1 : Number(BigInt(m[1]) & 0xffffffffn)
    if (m[1] !== undefined && BigInt(m[1]) > 0xffffffffn) throw bad('the random seed is a 32-bit number')
    return {spec: `random:${seed}`, period: 0, generate: (buf, abs) => words(buf, abs, (k) => randomWord(k, seed))}
  }
  throw bad('not a pattern iopmem knows')
}

function periodic(spec: string, unit: Buffer): Pattern {
  return {
    spec,
    period: unit.length,
    generate(buf, abs) {
      if (buf.length === 0) return
      const phase = abs % unit.length
      const rotated = phase === 0 ? unit : Buffer.concat([unit.subarray(phase), unit.subarray(0, phase)])
      buf.fill(rotated)
    },
  }
}

/** The 32-bit word k (at offset 4k) of the `addr` pattern: the u64 LE offset of its 8-byte word. */
function addrWord(k: number): number {
  const start = Math.floor(k / 2) * 8
  return k % 2 === 0 ? start % 2 ** 32 : Math.floor(start / 2 ** 32)
}

function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function randomWord(k: number, seed: number): number {
  const lo = k % 2 ** 32
  const hi = Math.floor(k / 2 ** 32)
  return fmix32((Math.imul(lo, 0x9e3779b1) ^ fmix32(hi + seed) ^ seed) >>> 0)
}

/** Fill buf (mapping offsets abs…) from a function of the 32-bit word index, little-endian. */
function words(buf: Buffer, abs: number, word: (k: number) => number): void {
  const first = Math.floor(abs / 4)
  const last = Math.floor((abs + buf.length - 1) / 4)
  const n = last - first + 1
  const tmp = new Uint32Array(n)
  for (let i = 0; i < n; i++) tmp[i] = word(first + i)
  const bytes = Buffer.from(tmp.buffer, tmp.byteOffset, tmp.byteLength)
  // Uint32Array is host-endian: x86 is little-endian, which is what the pattern means.
  bytes.copy(buf, 0, abs - first * 4, abs - first * 4 + buf.length)
}

// ---- operations ---------------------------------------------------------------------

/** Read `count` values of `width` bytes from `offset`: hex strings (exact for 64-bit). */
export function readOp(n: OpsNative, m: Mapping, offset: number, width: Width, count: number): string[] {
  const vals = n.readValues(m, offset, width, count)
  const out: string[] = new Array(count)
  for (let i = 0; i < count; i++) out[i] = hexw(vals[i] as number | bigint, width)
  return out
}

/** Write values (one volatile store each) from `offset`. */
export function writeOp(n: OpsNative, m: Mapping, offset: number, width: Width, values: bigint[]): number {
  const arr = width === 8 ? values : values.map((v) => Number(v))
  return n.writeValues(m, offset, width, arr)
}

/** Bytes of [offset, offset + size) read with exact `width` accesses, in memory order. */
export function dumpOp(n: OpsNative, m: Mapping, offset: number, size: number, width: Width): Buffer {
  const vals = n.readValues(m, offset, width, size / width)
  return Buffer.from(vals.buffer, vals.byteOffset, vals.byteLength)
}

/** Timing of a bulk operation. */
export interface BulkStats {
  strategy: UsedStrategy
  seconds: number
  /** 10^9 bytes per second. */
  gbps: number
}

const now = () => Number(process.hrtime.bigint()) / 1e9

/**
 * A bulk operation run chunk by chunk (4 MiB): it yields the bytes done
 * after each chunk and returns its stats. runBulk() runs one through; the
 * command runs it with runBulkUntil(), which stops between chunks when a
 * signal came, with the bytes done so far.
 */
export type Bulk<T> = Generator<number, T, void>

export function runBulk<T>(g: Bulk<T>): T {
  for (;;) {
    const r = g.next()
    if (r.done) return r.value
  }
}

/**
 * Run a bulk operation, asking `stop` after every chunk (a chunk takes
 * far less than a second): when it says stop, the operation is ended
 * between two chunks (its files closed) and the bytes done are returned.
 */
export async function runBulkUntil<T>(g: Bulk<T>, stop: () => Promise<boolean>): Promise<{value: T; done: number} | {value: undefined; done: number}> {
  let done = 0
  for (;;) {
    const r = g.next()
    if (r.done) return {value: r.value, done}
    done = r.value
    // After every chunk (a few µs beside a 4 MiB copy): with a time throttle a fast
    // machine finished the whole fill between two looks and missed the signal.
    if (await stop()) {
      g.return(undefined as never)
      return {value: undefined, done}
    }
  }
}

export const fillOp = (...a: Parameters<typeof fillOpChunks>) => runBulk(fillOpChunks(...a))
export const verifyOp = (...a: Parameters<typeof verifyOpChunks>) => runBulk(verifyOpChunks(...a))
export const copyInOp = (...a: Parameters<typeof copyInOpChunks>) => runBulk(copyInOpChunks(...a))
export const copyOutOp = (...a: Parameters<typeof copyOutOpChunks>) => runBulk(copyOutOpChunks(...a))

/** Fill [offset, offset + size) with a pattern; WB mappings are flushed to the device when `flush`. */
export function* fillOpChunks(
  n: OpsNative,
  m: Mapping,
  offset: number,
  size: number,
  pattern: Pattern,
  strategy: CopyStrategy,
  flush: boolean,
): Bulk<BulkStats & {flush: FlushInstruction | null}> {
  const chunk = Math.min(CHUNK, size)
  const buf = Buffer.allocUnsafe(chunk)
  const reusable = pattern.period > 0 && chunk % pattern.period === 0
  if (reusable) pattern.generate(buf, offset)
  let used: UsedStrategy = 'exact64'
  let copyTime = 0
  for (let done = 0; done < size; ) {
    const len = Math.min(chunk, size - done)
    const view = buf.subarray(0, len)
    if (!reusable) pattern.generate(view, offset + done)
    const t0 = now()
    used = n.copyTo(m, offset + done, view, strategy)
    copyTime += now() - t0
    done += len
    yield done
  }
  const f = flush ? n.flush(m, offset, size) : null
  return {strategy: used, seconds: copyTime, gbps: gbps(size, copyTime), flush: f}
}

/** One byte that differs from the pattern. */
export interface Mismatch {
  offset: number
  expected: string
  actual: string
}

/** Compare [offset, offset + size) with a pattern. Throws E_VERIFY_MISMATCH (exit 8) listing the first differences. */
export function* verifyOpChunks(n: OpsNative, m: Mapping, offset: number, size: number, pattern: Pattern, strategy: CopyStrategy): Bulk<BulkStats & {mismatches: 0}> {
  const chunk = Math.min(CHUNK, size)
  const got = Buffer.allocUnsafe(chunk)
  const want = Buffer.allocUnsafe(chunk)
  const reusable = pattern.period > 0 && chunk % pattern.period === 0
  if (reusable) pattern.generate(want, offset)
  let used: UsedStrategy = 'exact64'
  let copyTime = 0
  let bad = 0
  const first: Mismatch[] = []
  for (let done = 0; done < size; ) {
    const len = Math.min(chunk, size - done)
    const g = got.subarray(0, len)
    const w = want.subarray(0, len)
    if (!reusable) pattern.generate(w, offset + done)
    const t0 = now()
    used = n.copyFrom(m, offset + done, g, strategy)
    copyTime += now() - t0
    if (!g.equals(w)) {
      for (let i = 0; i < len; i++) {
        if (g[i] !== w[i]) {
          bad++
          if (first.length < 16) first.push({offset: offset + done + i, expected: hexw(w[i], 1), actual: hexw(g[i], 1)})
        }
      }
    }
    done += len
    yield done
  }
  if (bad > 0) {
    const f = first[0]
    throw new IopmemError(
      `Verify failed: ${bad} of ${size} bytes in ${hx(offset)}-${hx(offset + size - 1)} differ from pattern ${pattern.spec}; the first at ${hx(f.offset)}: expected ${f.expected}, found ${f.actual}.`,
      {
        code: 'E_VERIFY_MISMATCH',
        exit: Exit.MISMATCH,
        details: {offset, size, pattern: pattern.spec, strategy: used, mismatches: bad, first},
      },
    )
  }
  return {strategy: used, seconds: copyTime, gbps: gbps(size, copyTime), mismatches: 0}
}

/** Copy `size` bytes of a file (from its start) into the mapping at `offset`. */
export function* copyInOpChunks(n: OpsNative, m: Mapping, file: string, offset: number, size: number, strategy: CopyStrategy, flush: boolean): Bulk<BulkStats & {flush: FlushInstruction | null}> {
  const fd = fs.openSync(file, 'r')
  try {
    const stats = yield* inChunks(size, (view, done, copy) => {
      for (let got = 0; got < view.length; ) {
        const r = fs.readSync(fd, view, got, view.length - got, done + got)
        if (r === 0) throw new IopmemError(`${file} shrank while it was being copied (at ${done + got} bytes).`, {code: 'E_SHORT_READ', exit: Exit.FAILURE, path: file})
        got += r
      }
      copy(() => n.copyTo(m, offset + done, view, strategy))
    })
    return {...stats, flush: flush ? n.flush(m, offset, size) : null}
  } finally {
    fs.closeSync(fd)
  }
}

/** Copy [offset, offset + size) of the mapping into a file (created or truncated). */
export function* copyOutOpChunks(n: OpsNative, m: Mapping, file: string, offset: number, size: number, strategy: CopyStrategy): Bulk<BulkStats> {
  const fd = fs.openSync(file, 'w')
  try {
    return yield* inChunks(size, (view, done, copy) => {
      copy(() => n.copyFrom(m, offset + done, view, strategy))
      for (let put = 0; put < view.length; ) put += fs.writeSync(fd, view, put, view.length - put)
    })
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * `size` bytes in CHUNK-sized pieces through one buffer: `step` gets each
 * piece's view and position and runs the copy through `copy`, which times it
 * (file I/O is not counted) and keeps the strategy the engine reports. It yields the
 * bytes done after each piece, so the caller can stop between pieces on a signal.
 */
function* inChunks(size: number, step: (view: Buffer, done: number, copy: (f: () => UsedStrategy) => void) => void): Bulk<BulkStats> {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, size))
  let used: UsedStrategy = 'exact64'
  let copyTime = 0
  const copy = (f: () => UsedStrategy) => {
    const t0 = now()
    used = f()
    copyTime += now() - t0
  }
  for (let done = 0; done < size; ) {
    const view = buf.subarray(0, Math.min(buf.length, size - done))
    step(view, done, copy)
    done += view.length
    yield done
  }
  return {strategy: used, seconds: copyTime, gbps: gbps(size, copyTime)}
}

function gbps(bytes: number, seconds: number): number {
  return seconds > 0 ? roundRate(bytes / seconds / 1e9) : 0
}

// ---- hexdump ------------------------------------------------------------------------

/**
 * `hexdump -C` layout with mapping offsets: 16 bytes a line, ASCII on the
 * right, runs of identical lines squeezed to `*`.
 */
export function hexdump(buf: Buffer, base: number): string {
  const digits = Math.max(8, (base + buf.length).toString(16).length)
  const lines: string[] = []
  let prev: Buffer | undefined
  let squeezed = false
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, Math.min(i + 16, buf.length))
    if (prev && row.length === 16 && row.equals(prev) && i + 16 < buf.length) {
      if (!squeezed) lines.push('*')
      squeezed = true
      continue
    }
    squeezed = false
    prev = row
    const hexes: string[] = []
    for (let j = 0; j < 16; j++) hexes.push(j < row.length ? row[j].toString(16).padStart(2, '0') : '  ')
    const ascii = [...row].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('')
    lines.push(`${(base + i).toString(16).padStart(digits, '0')}  ${hexes.slice(0, 8).join(' ')}  ${hexes.slice(8).join(' ')}  |${ascii}|`)
  }
  lines.push((base + buf.length).toString(16).padStart(digits, '0'))
  return lines.join('\n')
}

/** Rows of values for `--read`: an offset, then up to 16 bytes' worth of values. */
export function valueRows(offset: number, width: Width, values: string[]): string[] {
  const per = 16 / width
  const digits = Math.max(8, (offset + values.length * width).toString(16).length)
  const rows: string[] = []
  for (let i = 0; i < values.length; i += per) {
    rows.push(`0x${(offset + i * width).toString(16).padStart(digits, '0')}: ${values.slice(i, i + per).join(' ')}`)
  }
  return rows
}
