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

/** What FIEMAP answers for [start, end): the overlapping extents, the last one marked LAST (iomap does). */
function query(all: Ext[], start: number, end: number): Ext[] {
  const hit = all.filter(([l, , len]) => l + len > start && l < end).map((e) => [...e] as Ext)
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
    it(`random layout ${seed}`, () => {
      const r = rng(seed)
      const all = layout(r, 1 + Math.floor(r() * 60))
      const end = all.at(-1)![0] + all.at(-1)![2]
      const clipped = r() < 0.4
      const wStart = clipped ? Math.floor(r() * end * 0.3) : 0
      const wEnd = clipped ? wStart + 1 + Math.floor(r() * (end - wStart)) : end - 100
      const ctx: ScanContext = {wStart, wEnd, clipped, partitionStart: 2 << 20, eofBlock: end, diskSize: 1 << 31}
      const whole = scanExtents(fakeFiemap(clipped ? query(all, wStart, wEnd) : all), ctx)
      const mid = wStart + Math.floor((wEnd - wStart) * r())
      const a = scanExtents(fakeFiemap(query(all, wStart, mid)), ctx)
      const b = scanExtents(fakeFiemap(query(all, mid, clipped ? wEnd : Number.MAX_SAFE_INTEGER)), {...ctx, dropBefore: mid})
      const joined = joinParts(a, b)
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
    const joined = joinParts(scanExtents(fakeFiemap(query(all, 0, 0x2000)), ctx), scanExtents(fakeFiemap(query(all, 0x2000, 1e15)), {...ctx, dropBefore: 0x2000}))
    expect(joined.segments).to.equal(1)
    expect(joined.best).to.deep.equal({start: 0, length: 0x4000})
    expect([...joined.flags]).to.deep.equal([0, 0, 0, X.LAST])
  })
})
