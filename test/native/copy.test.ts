/**
 * Bulk copies: every strategy, under every vector ISA the CPU has, round-trips
 * random data at odd sizes, device offsets and host misalignments, on memfd,
 * a temp file, /dev/shm, anonymous memory and (where reserved) hugetlb pages;
 * bytes outside the range stay as they were on both sides. Plus flush() and
 * cpuFeatures().
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import type {CopyStrategy, IsaName, Mapping} from '../../src/native/index.js'
import {devShm, hugepagesFree, native, randomBytes, throwsCode, tmpDir} from './helpers.js'

const SIZES = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 257, 4095, 4097, 65537]
const BIG = (5 << 20) + 3 // past the 4 MiB line where stream-load stores to the host non-temporally
const DEV_OFFSETS = [0, 1, 6, 13, 64 + 5]
const HOST_SKEW = [0, 1, 3]
const GUARD = 64
const MAP_SIZE = 8 << 20

type Backing = {name: string; make(): {m: Mapping; done(): void} | undefined}

describe('native: bulk copies', function () {
  this.timeout(120000)
  const n = native()
  let scratch: ReturnType<typeof tmpDir>

  before(() => {
    scratch = tmpDir('iopmem-copy')
  })
  after(() => {
    n.setIsaLimit('best')
    scratch.cleanup()
  })

  const backings: Backing[] = [
    {
      name: 'memfd',
      make() {
        const fd = n.memfd('iopmem-copy', MAP_SIZE)
        const m = n.map(fd, {mode: 'wb'})
        return {m, done: () => (m.unmap(), n.closeFd(fd))}
      },
    },
    {
      name: 'temp file',
      make() {
        const file = path.join(scratch.dir, 'copy.bin')
        fs.writeFileSync(file, Buffer.alloc(0))
        fs.truncateSync(file, MAP_SIZE)
        const m = n.map(file, {mode: 'wb'})
        return {m, done: () => m.unmap()}
      },
    },
    {
      name: '/dev/shm file',
      make() {
        const shm = devShm()
        if (!shm) return undefined
        const file = path.join(shm, `iopmem-copy-${process.pid}`)
        fs.writeFileSync(file, Buffer.alloc(0))
        fs.truncateSync(file, MAP_SIZE)
        const m = n.map(file, {mode: 'wb'})
        fs.rmSync(file) // the mapping keeps it
        return {m, done: () => m.unmap()}
      },
    },
    {
      name: 'anonymous',
      make() {
        const m = n.mapAnonymous(MAP_SIZE)
        return {m, done: () => m.unmap()}
      },
    },
    {
      name: 'hugetlb memfd',
      make() {
        if (hugepagesFree() < MAP_SIZE / (2 << 20)) return undefined
        const fd = n.memfd('iopmem-copy-huge', MAP_SIZE, {hugetlb: true})
        const m = n.map(fd, {mode: 'wb'})
        return {m, done: () => (m.unmap(), n.closeFd(fd))}
      },
    },
  ]

  // The distinct ISA levels this CPU can run.
  const isas: IsaName[] = []
  for (const want of ['sse2', 'sse4.1', 'avx', 'avx2', 'avx512f'] as IsaName[]) {
    const got = n.setIsaLimit(want)
    if (!isas.includes(got)) isas.push(got)
  }
  n.setIsaLimit('best')

  const pairs: Array<[CopyStrategy, CopyStrategy]> = [
    ['memcpy', 'memcpy'],
    ['stream-store', 'stream-load'],
    ['exact64', 'exact64'],
    ['stream-store', 'exact64'],
    ['exact64', 'stream-load'],
  ]

  function roundTrip(m: Mapping, to: CopyStrategy, from: CopyStrategy, size: number, devOff: number, skew: number): void {
    const off = GUARD + devOff
    // Device side: a known background around the range.
    n.copyTo(m, 0, Buffer.alloc(off + size + GUARD, 0xa5), 'memcpy')
    const data = randomBytes(size + skew).subarray(skew) // host source misaligned by `skew`
    n.copyTo(m, off, data, to)
    const dev = Buffer.alloc(off + size + GUARD)
    n.copyFrom(m, 0, dev, 'memcpy')
    if (!dev.subarray(off, off + size).equals(data)) expect.fail(`copyTo ${to}: bytes differ (size ${size}, offset ${devOff}, skew ${skew})`)
    for (const i of [off - 1, off - GUARD, off + size, off + size + GUARD - 1])
      if (dev[i] !== 0xa5) expect.fail(`copyTo ${to}: byte ${i} outside the range changed (size ${size}, offset ${devOff})`)
    // Host side: a buffer with guards, misaligned by `skew`.
    const host = Buffer.alloc(size + 2 * GUARD + skew, 0x3c)
    const view = host.subarray(GUARD + skew, GUARD + skew + size)
    n.copyFrom(m, off, view, from)
    if (!view.equals(data)) expect.fail(`copyFrom ${from}: bytes differ (size ${size}, offset ${devOff}, skew ${skew})`)
    if (host[GUARD + skew - 1] !== 0x3c || host[GUARD + skew + size] !== 0x3c)
      expect.fail(`copyFrom ${from}: host bytes outside the buffer changed (size ${size})`)
  }

  for (const b of backings) {
    describe(`on ${b.name}`, () => {
      let h: {m: Mapping; done(): void} | undefined
      before(function () {
        h = b.make()
        if (!h) this.skip()
      })
      after(() => h?.done())

      for (const [to, from] of pairs) {
        it(`${to} → ${from} round-trips random data under every ISA (${isas.join(', ')})`, () => {
          for (const isa of isas) {
            n.setIsaLimit(isa)
            for (const size of SIZES) for (const devOff of DEV_OFFSETS) for (const skew of HOST_SKEW) roundTrip(h!.m, to, from, size, devOff, skew)
            for (const devOff of [0, 7]) for (const skew of [0, 1, 16]) roundTrip(h!.m, to, from, BIG, devOff, skew)
          }
          n.setIsaLimit('best')
        })
      }
    })
  }

  it("'auto' picks by mode: wc streams, uc is exact64 on writes and streams reads, wb/wt memcpy", () => {
    const fd = n.memfd('iopmem-auto', 1 << 16)
    const buf = randomBytes(4096)
    const back = Buffer.alloc(4096)
    const expectFor = {wc: ['stream-store', 'stream-load'], uc: ['exact64', 'stream-load'], wb: ['memcpy', 'memcpy'], wt: ['memcpy', 'memcpy']} as const
    for (const mode of ['wc', 'uc', 'wb', 'wt'] as const) {
      const m = n.map(fd, {mode})
      expect(n.copyTo(m, 8, buf)).to.equal(expectFor[mode][0])
      expect(n.copyFrom(m, 8, back, 'auto')).to.equal(expectFor[mode][1])
      expect(back.equals(buf)).to.equal(true)
      m.unmap()
    }
    n.closeFd(fd)
  })

  it('stream-load falls back to exact64 without SSE4.1', () => {
    const m = n.mapAnonymous(1 << 16)
    n.setIsaLimit('sse2')
    try {
      const hasSse41 = n.cpuFeatures().sse41
      expect(n.copyFrom(m, 0, Buffer.alloc(100), 'stream-load')).to.equal('exact64')
      n.setIsaLimit('best')
      expect(n.copyFrom(m, 0, Buffer.alloc(100), 'stream-load')).to.equal(hasSse41 ? 'stream-load' : 'exact64')
    } finally {
      n.setIsaLimit('best')
      m.unmap()
    }
  })

  it('takes Buffers, TypedArrays, DataViews and ArrayBuffers', () => {
    const m = n.mapAnonymous(1 << 16)
    const src = Uint32Array.from([1, 2, 3, 4])
    n.copyTo(m, 0, src)
    const ab = new ArrayBuffer(16)
    n.copyFrom(m, 0, ab)
    expect(Array.from(new Uint32Array(ab))).to.deep.equal([1, 2, 3, 4])
    const dv = new DataView(new ArrayBuffer(32), 8, 16)
    n.copyFrom(m, 0, dv, 'stream-load')
    expect(dv.getUint32(12, true)).to.equal(4)
    n.copyTo(m, 100, new Float64Array([1.5]))
    const f = new Float64Array(1)
    n.copyFrom(m, 100, f, 'exact64')
    expect(f[0]).to.equal(1.5)
    m.unmap()
  })

  it('refuses bad copies cleanly', () => {
    const m = n.mapAnonymous(4096)
    throwsCode(() => n.copyTo(m, 4000, Buffer.alloc(97)), 'ERANGE')
    throwsCode(() => n.copyFrom(m, 4097, Buffer.alloc(0)), 'ERANGE')
    n.copyTo(m, 4096, Buffer.alloc(0)) // empty copy at the very end is fine
    throwsCode(() => n.copyTo(m, 0, Buffer.alloc(8), 'stream-load'), 'E_STRATEGY')
    throwsCode(() => n.copyFrom(m, 0, Buffer.alloc(8), 'stream-store'), 'E_STRATEGY')
    throwsCode(() => n.copyTo(m, 0, Buffer.alloc(8), 'fast' as CopyStrategy), 'E_STRATEGY')
    throwsCode(() => n.copyTo(m, 0, 'abc' as unknown as Buffer), 'E_ARG')
    throwsCode(() => n.copyTo(m, 0, [1, 2] as unknown as Buffer), 'E_ARG')
    throwsCode(() => n.setIsaLimit('mmx' as IsaName), 'E_ARG')
    m.unmap()
  })

  it('cpuFeatures describes the CPU and the loops in use', () => {
    const f = n.cpuFeatures()
    expect(f.sse2).to.equal(true)
    for (const k of ['sse41', 'avx', 'avx2', 'avx512f', 'clflush', 'clflushopt', 'clwb'] as const) expect(f[k]).to.be.a('boolean')
    expect([32, 64, 128, 256]).to.include(f.cacheLine)
    if (f.avx2) expect(f.avx).to.equal(true)
    expect(f.flush).to.equal(f.clwb ? 'clwb' : f.clflushopt ? 'clflushopt' : f.clflush ? 'clflush' : 'sfence')
    expect(f.streamLoad).to.equal(f.avx512f ? 'avx512f' : f.avx2 ? 'avx2' : f.sse41 ? 'sse4.1' : 'none')
    expect(n.setIsaLimit('sse2')).to.equal('sse2')
    expect(n.cpuFeatures()).to.include({isa: 'sse2', streamStore: 'sse2', streamLoad: 'none'})
    n.setIsaLimit('best')
  })

  it('flush writes back a range with the best instruction and checks bounds', () => {
    const fd = n.memfd('iopmem-flush', 1 << 16)
    const m = n.map(fd, {mode: 'wb'})
    n.copyTo(m, 3, randomBytes(5000))
    expect(n.flush(m, 3, 5000)).to.equal(n.cpuFeatures().flush)
    expect(n.flush(m, 0, 0)).to.equal(n.cpuFeatures().flush)
    expect(n.flush(m, 0, 1 << 16)).to.equal(n.cpuFeatures().flush)
    throwsCode(() => n.flush(m, 1, 1 << 16), 'ERANGE')
    m.unmap()
    throwsCode(() => n.flush(m, 0, 64), 'E_UNMAPPED')
    n.closeFd(fd)
  })
})
