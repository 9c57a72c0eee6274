/**
 * locate's core: a file mapped as two halves (two FIEMAP ranges, as the
 * parallel path does) and joined must equal one pass over the whole file,
 * field by field, for random extent layouts and split points, windows
 * included; and the JSON lines must be the same bytes.
 */
import {expect} from 'chai'

import {EXTENT_FLAGS as X, formatExtents, joinParts, type Part, type ScanContext, scanExtents} from '../../src/lib/dax/locate-core.js'
import {fakeFiemap} from '../helpers/dax.js'

type Ext = [number, number, number, number]

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function layout(r: () => number, n: number): Ext[] {
  const out: Ext[] = []
  let lo = Math.floor(r() * 4) * 4096
  let ph = 1 << 30
  for (let i = 0; i < n; i++) {
    const len = (1 + Math.floor(r() * 8)) * 4096
    let f = 0
    const x = r()
    if (x < 0.15) f |= X.UNWRITTEN
    else if (x < 0.25) f |= X.SHARED
    else if (x < 0.27) f |= X.DELALLOC
    out.push([lo, ph, len, f])
    lo += len + (r() < 0.5 ? 0 : Math.floor(r() * 4) * 4096)
    ph += len + (r() < 0.6 ? 0 : (1 + Math.floor(r() * 100)) * 4096)
  }
  out[out.length - 1][3] |= X.LAST
  return out
}

/**
 * What FIEMAP answers for [start, end): the overlapping extents, cut to the
 * range's blocks when `trim` (ext4 and xfs do: an extent across `end` comes
 * back ending at the block that holds `end`), the last one marked LAST
 * (iomap does).
 */
function query(all: Ext[], start: number, end: number, trim = false): Ext[] {
  const hit = all
    .filter(([l, , len]) => l + len > start && l < end)
    .map(([l, p, len, f]): Ext => {
      if (!trim) return [l, p, len, f]
      const s = Math.max(l, Math.floor(start / 4096) * 4096)
      const e = Math.min(l + len, Math.ceil(end / 4096) * 4096)
      return [s, p + s - l, e - s, f]
    })
  if (hit.length) hit[hit.length - 1][3] |= X.LAST
  return hit
}

const strip = (p: Part) => ({...p, fileOffset: [...p.fileOffset], length: [...p.length], deviceOffset: [...p.deviceOffset], flags: [...p.flags]})

function lines(p: Part): string {
  const chunks: Uint8Array[] = []
  formatExtents(p, {lbs: 512, lbaMode: true, base: null, busBase: null, diskSize: 2 ** 40}, true, (c) => chunks.push(c))
  return Buffer.concat(chunks).toString()
}

describe('locate core: two halves joined equal one pass', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const trim = seed % 2 === 0
    it(`random layout ${seed}${trim ? ', FIEMAP trimming extents to the range' : ''}`, () => {
      const r = rng(seed)
      const all = layout(r, 1 + Math.floor(r() * 60))
      const end = all.at(-1)![0] + all.at(-1)![2]
      const clipped = r() < 0.4
      const wStart = clipped ? Math.floor(r() * end * 0.3) : 0
      const wEnd = clipped ? wStart + 1 + Math.floor(r() * (end - wStart)) : end - 100
      const ctx: ScanContext = {wStart, wEnd, clipped, partitionStart: 2 << 20, eofBlock: end, diskSize: 1 << 31}
      const whole = scanExtents(fakeFiemap(clipped ? query(all, wStart, wEnd) : all), ctx)
      const mid = wStart + Math.floor((wEnd - wStart) * r())
      const a = scanExtents(fakeFiemap(query(all, wStart, mid, trim)), {...ctx, to: mid})
      const b = scanExtents(fakeFiemap(query(all, mid, clipped ? wEnd : Number.MAX_SAFE_INTEGER, trim)), {...ctx, from: mid})
      const {merged, ...joined} = joinParts(a, b)
      expect(merged).to.be.oneOf([0, 1])
      expect(strip(joined)).to.deep.equal(strip(whole))
      expect(lines(joined)).to.equal(lines(whole))
    })
  }

  it('runs joined across the split: one segment, the whole run is the largest', () => {
    const all: Ext[] = [
      [0, 0x10000, 0x1000, 0],
      [0x1000, 0x11000, 0x1000, 0],
      [0x2000, 0x12000, 0x1000, 0],
      [0x3000, 0x13000, 0x1000, X.LAST],
    ]
    const ctx: ScanContext = {wStart: 0, wEnd: 0x4000, clipped: false, partitionStart: 0, eofBlock: 0x4000, diskSize: 1 << 30}
    const joined = joinParts(scanExtents(fakeFiemap(query(all, 0, 0x2000)), {...ctx, to: 0x2000}), scanExtents(fakeFiemap(query(all, 0x2000, 1e15)), {...ctx, from: 0x2000}))
    expect(joined.segments).to.equal(1)
    expect(joined.best).to.deep.equal({start: 0, length: 0x4000})
    // Four FIEMAP extents contiguous in file and device with the same flags: one extent.
    expect([...joined.flags]).to.deep.equal([X.LAST])
    expect([...joined.length]).to.deep.equal([0x4000])
  })

  it('an extent FIEMAP cut at the split (it trims to the range asked) is one extent again, as filefrag and one pass see it', () => {
    // A 3 MiB file in one extent; the probe asked for its first 48 KiB (1/64), the rest separately.
    const all: Ext[] = [[0, 0x100000, 0x300000, X.LAST]]
    const ctx: ScanContext = {wStart: 0, wEnd: 0x300000, clipped: false, partitionStart: 0, eofBlock: 0x300000, diskSize: 1 << 30}
    const whole = scanExtents(fakeFiemap(all), ctx)
    const probe = scanExtents(fakeFiemap(query(all, 0, 49152, true)), {...ctx, to: 49152})
    const rest = scanExtents(fakeFiemap(query(all, 49152, 1e15, true)), {...ctx, from: 49152})
    const {merged, ...joined} = joinParts(probe, rest)
    expect(merged).to.equal(1)
    expect(joined.count).to.equal(1)
    expect(strip(joined)).to.deep.equal(strip(whole))
    expect(lines(joined)).to.equal(lines(whole))
  })

  it('a window that starts inside a block: the answer for the rest overlaps the probe (whole blocks) and nothing is lost or counted twice', () => {
    const all: Ext[] = [[0, 0x100000, 0x300000, X.LAST]]
    const ctx: ScanContext = {wStart: 12345, wEnd: 12345 + 1500000, clipped: true, partitionStart: 0, eofBlock: 0x300000, diskSize: 1 << 30}
    const whole = scanExtents(fakeFiemap(query(all, ctx.wStart, ctx.wEnd, true)), ctx)
    const probeEnd = 12345 + 20480
    const probe = scanExtents(fakeFiemap(query(all, ctx.wStart, probeEnd, true)), {...ctx, to: probeEnd})
    const rest = scanExtents(fakeFiemap(query(all, probeEnd, ctx.wEnd, true)), {...ctx, from: probeEnd})
    const {merged, ...joined} = joinParts(probe, rest)
    expect(merged).to.equal(1)
    expect([...joined.length]).to.deep.equal([1500000])
    expect(joined.covered).to.equal(1500000)
    expect(strip(joined)).to.deep.equal(strip(whole))
  })

  it('within one answer, pieces contiguous in file and device with the same flags are one extent; different flags stay apart', () => {
    const all: Ext[] = [
      [0, 0x10000, 0x1000, 0],
      [0x1000, 0x11000, 0x1000, 0],
      [0x2000, 0x12000, 0x1000, X.UNWRITTEN],
      [0x3000, 0x13000, 0x1000, X.UNWRITTEN | X.LAST],
    ]
    const ctx: ScanContext = {wStart: 0, wEnd: 0x4000, clipped: false, partitionStart: 0, eofBlock: 0x4000, diskSize: 1 << 30}
    const p = scanExtents(fakeFiemap(all), ctx)
    expect(p.count).to.equal(2)
    expect([...p.length]).to.deep.equal([0x2000, 0x2000])
    expect(p.unwrittenN).to.equal(1)
    expect(p.segments).to.equal(1)
  })
})
