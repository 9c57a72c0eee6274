/**
 * Output for a million lines without a million strings: ASCII is written
 * straight into a byte buffer (numbers digit by digit, fixed fragments
 * copied byte by byte), handed on in chunks of about CHUNK bytes. `locate`
 * uses it for its JSON and its table, which is what lets a whole
 * `iopmem locate` process on a 1M-extent file beat `filefrag -v`.
 *
 * Two levels: ByteSink methods for ordinary use, and for hot loops the
 * module functions putBytes/putUint/putHex, which write at a position the
 * caller holds in a local variable after `reserve()` (no bounds check per
 * call: reserve enough for a whole line first).
 *
 * Numbers are JavaScript numbers holding integers below 2^53 (exact); a
 * bigger value must be written with ascii() from a BigInt's string.
 */
const CHUNK = 1 << 20
const HEX = Buffer.from('0123456789abcdef', 'latin1')
const scratch = new Uint8Array(32)
/** "00" … "99" as bytes: two digits per division. */
const PAIRS = Buffer.from(Array.from({length: 100}, (_, i) => String(i).padStart(2, '0')).join(''), 'latin1')

/** Writes a fixed fragment at p; returns the new position. */
export type Fragment = (buf: Uint8Array, p: number) => number

/**
 * A fixed piece of output (a JSON key, a separator) as a function of
 * straight-line constant stores: about ten times faster than copying the
 * bytes in a loop, which at a million lines is the difference that counts.
 * The text is always one of our own constants, never input.
 */
export function compileFragment(text: string): Fragment {
  const b = Buffer.from(text, 'utf8')
  const body = Array.from(b, (x, k) => `buf[p+${k}]=${x};`).join('') + `return p+${b.length}`
  // eslint-disable-next-line no-new-func
  return new Function('buf', 'p', body) as Fragment
}

/** Copy a short fragment at p; returns the new position. */
export function putBytes(buf: Uint8Array, p: number, b: Uint8Array): number {
  const n = b.length
  for (let k = 0; k < n; k++) buf[p++] = b[k]
  return p
}

/** Decimal digits of n (integer, 0 ≤ n < 2^53) at p, right-aligned in width; returns the new position. */
export function putUint(buf: Uint8Array, p: number, n: number, width = 0): number {
  if (n < 0x8000_0000) {
    const len = digits32(n)
    for (let k = len; k < width; k++) buf[p++] = 32
    return put32(buf, p + len, n | 0)
  }
  // Split so both halves are int32: integer division by constants is a multiply in optimised code.
  const hi = Math.floor(n / 1e8)
  const lo = (n - hi * 1e8) | 0
  const hlen = digits32(hi)
  for (let k = hlen + 8; k < width; k++) buf[p++] = 32
  p = put32(buf, p + hlen, hi | 0)
  return put32(buf, p + 8, lo, 8)
}

/** Decimal digits of an int32 ≥ 0. */
function digits32(n: number): number {
  if (n < 10) return 1
  if (n < 100) return 2
  if (n < 1000) return 3
  if (n < 10000) return 4
  if (n < 100000) return 5
  if (n < 1000000) return 6
  if (n < 10000000) return 7
  if (n < 100000000) return 8
  if (n < 1000000000) return 9
  return 10
}

/** Write int32 n ending just before `end` (zero-padded to `min` digits); returns end. */
function put32(buf: Uint8Array, end: number, n: number, min = 1): number {
  let e = end
  const stop = end - min
  while (n >= 100) {
    const q = (n / 100) | 0
    const r = (n - q * 100) << 1
    buf[--e] = PAIRS[r + 1]
    buf[--e] = PAIRS[r]
    n = q
  }
  if (n >= 10) {
    buf[--e] = PAIRS[(n << 1) + 1]
    buf[--e] = PAIRS[n << 1]
  } else buf[--e] = 48 + n
  while (e > stop) buf[--e] = 48
  return end
}

/** 0x-hex of n (integer, 0 ≤ n < 2^53) at p, right-aligned in width; returns the new position. */
export function putHex(buf: Uint8Array, p: number, n: number, width = 0, digits = 0): number {
  let i = 32
  if (n === 0) scratch[--i] = 48
  while (n > 0) {
    const q = Math.floor(n / 16)
    scratch[--i] = HEX[n - q * 16]
    n = q
  }
  while (32 - i < digits) scratch[--i] = 48
  scratch[--i] = 120 // x
  scratch[--i] = 48 // 0
  for (let k = 32 - i; k < width; k++) buf[p++] = 32
  while (i < 32) buf[p++] = scratch[i++]
  return p
}

export class ByteSink {
  /** The buffer being filled; hot loops write into it directly after reserve(). */
  buf: Buffer
  /** The next free byte of buf. */
  pos = 0
  /** Bytes handed to `out` so far. */
  flushed = 0

  /** `out` receives each full chunk; it keeps it (a fresh buffer every time). */
  constructor(private readonly out: (chunk: Buffer) => void) {
    this.buf = Buffer.allocUnsafe(CHUNK)
  }

  /** Make sure n bytes fit at pos (flushing first if not). */
  reserve(n: number): void {
    if (this.pos + n > this.buf.length) {
      this.flush()
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n)
    }
  }

  /** Hand what is buffered to the consumer. */
  flush(): void {
    if (this.pos === 0) return
    this.out(this.buf.subarray(0, this.pos))
    this.flushed += this.pos
    this.buf = Buffer.allocUnsafe(CHUNK)
    this.pos = 0
  }

  /** Bytes that are already encoded (a fragment made once with Buffer.from). */
  bytes(b: Uint8Array): void {
    this.reserve(b.length)
    if (b.length > 64) {
      this.buf.set(b, this.pos)
      this.pos += b.length
    } else this.pos = putBytes(this.buf, this.pos, b)
  }

  /** A string of text (UTF-8). */
  ascii(s: string): void {
    this.reserve(Buffer.byteLength(s))
    this.pos += this.buf.write(s, this.pos)
  }

  /** A non-negative integer (< 2^53) in decimal, right-aligned in `width` with spaces. */
  uint(n: number, width = 0): void {
    this.reserve(Math.max(20, width))
    this.pos = putUint(this.buf, this.pos, n, width)
  }

  /** A non-negative integer (< 2^53) in hex with 0x, right-aligned in `width`. */
  hex(n: number, width = 0): void {
    this.reserve(Math.max(20, width))
    this.pos = putHex(this.buf, this.pos, n, width)
  }

  /** `n` spaces. */
  spaces(n: number): void {
    if (n <= 0) return
    this.reserve(n)
    this.buf.fill(32, this.pos, this.pos + n)
    this.pos += n
  }
}

/** Digits of n in decimal (for column widths). */
export function decWidth(n: number): number {
  return digits(n, 10)
}

/** Characters of n in 0x-hex (for column widths). */
export function hexWidth(n: number): number {
  return 2 + digits(n, 16)
}

/** Digits of a non-negative integer in this base, without building the string. */
function digits(n: number, base: number): number {
  let w = 1
  while (n >= base) {
    n = Math.floor(n / base)
    w++
  }
  return w
}
