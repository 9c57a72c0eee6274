/**
 * Exact-width access: every width at every alignment, little-endian layout,
 * bounds, bad offsets and values, bulk readValues/writeValues.
 */
import {expect} from 'chai'

import type {Mapping, Width} from '../../src/native/index.js'
import {native, randomBytes, throwsCode} from './helpers.js'

describe('native: exact-width access', function () {
  const n = native()
  const SIZE = 64 * 1024
  let fd: number
  let m: Mapping

  before(() => {
    fd = n.memfd('iopmem-access', SIZE)
    m = n.map(fd, {mode: 'uc'})
  })
  after(() => {
    m.unmap()
    n.closeFd(fd)
  })

  const snapshot = (off: number, len: number) => {
    const b = Buffer.alloc(len)
    n.copyFrom(m, off, b, 'memcpy')
    return b
  }

  const readers = {
    1: (o: number) => BigInt(n.read8(m, o)),
    2: (o: number) => BigInt(n.read16(m, o)),
    4: (o: number) => BigInt(n.read32(m, o)),
    8: (o: number) => n.read64(m, o),
  } as const
  const writers = {
    1: (o: number, v: bigint) => n.write8(m, o, Number(v)),
    2: (o: number, v: bigint) => n.write16(m, o, Number(v)),
    4: (o: number, v: bigint) => n.write32(m, o, Number(v)),
    8: (o: number, v: bigint) => n.write64(m, o, v),
  } as const
  const widths: Width[] = [1, 2, 4, 8]

  for (const w of widths) {
    it(`${w * 8}-bit: round-trips at every aligned offset of a 64-byte window, refuses the rest with E_ALIGN`, () => {
      const base = 4096
      for (let k = 0; k < 64; k++) {
        const off = base + k
        if (off % w !== 0) {
          throwsCode(() => readers[w](off), 'E_ALIGN')
          throwsCode(() => writers[w](off, 0n), 'E_ALIGN')
          continue
        }
        const bytes = randomBytes(w)
        const v = w === 8 ? bytes.readBigUInt64LE(0) : BigInt(bytes.readUIntLE(0, w))
        n.copyTo(m, base, Buffer.alloc(64, 0xee), 'memcpy')
        writers[w](off, v)
        expect(readers[w](off)).to.equal(v)
        // Little-endian in memory, and nothing around it touched.
        const snap = snapshot(base, 64)
        expect(snap.subarray(k, k + w)).to.deep.equal(bytes.subarray(0, w))
        for (let i = 0; i < 64; i++) if (i < k || i >= k + w) expect(snap[i]).to.equal(0xee)
      }
    })

    it(`${w * 8}-bit: bounds — the last aligned slot works, past the end is ERANGE`, () => {
      const last = SIZE - w
      writers[w](last, 1n)
      expect(readers[w](last)).to.equal(1n)
      throwsCode(() => readers[w](SIZE), 'ERANGE')
      throwsCode(() => readers[w](SIZE + w), 'ERANGE')
      throwsCode(() => writers[w](SIZE, 0n), 'ERANGE')
      if (w > 1) throwsCode(() => readers[w](SIZE - w + 1), 'ERANGE')
      throwsCode(() => readers[w](2 ** 53 - 1), 'ERANGE')
    })
  }

  it('values: full range per width, and out-of-range or non-integer values are E_VALUE', () => {
    n.write8(m, 0, 0xff)
    expect(n.read8(m, 0)).to.equal(0xff)
    n.write16(m, 0, 0xffff)
    expect(n.read16(m, 0)).to.equal(0xffff)
    n.write32(m, 0, 0xffffffff)
    expect(n.read32(m, 0)).to.equal(0xffffffff)
    n.write64(m, 0, 0xffff_ffff_ffff_ffffn)
    expect(n.read64(m, 0)).to.equal(0xffff_ffff_ffff_ffffn)
    n.write64(m, 8, 2 ** 53 - 1)
    expect(n.read64(m, 8)).to.equal(2n ** 53n - 1n)
    n.write64(m, 8, 0x0123_4567_89ab_cdefn)
    expect(snapshot(8, 8)).to.deep.equal(Buffer.from([0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]))
    throwsCode(() => n.write8(m, 0, 256), 'E_VALUE')
    throwsCode(() => n.write8(m, 0, -1), 'E_VALUE')
    throwsCode(() => n.write16(m, 0, 0x10000), 'E_VALUE')
    throwsCode(() => n.write32(m, 0, 2 ** 32), 'E_VALUE')
    throwsCode(() => n.write32(m, 0, 1.5), 'E_VALUE')
    throwsCode(() => n.write32(m, 0, Number.NaN), 'E_VALUE')
    throwsCode(() => n.write32(m, 0, 1n as unknown as number), 'E_VALUE')
    throwsCode(() => n.write32(m, 0, '1' as unknown as number), 'E_VALUE')
    throwsCode(() => n.write64(m, 0, 2n ** 64n), 'E_VALUE')
    throwsCode(() => n.write64(m, 0, -1n), 'E_VALUE')
    throwsCode(() => n.write64(m, 0, 2 ** 53), 'E_VALUE')
  })

  it('offsets: negative, fractional, NaN and huge are ERANGE; strings E_ARG; BigInt accepted', () => {
    for (const bad of [-1, -8, 0.5, 4.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 64])
      throwsCode(() => n.read32(m, bad), 'ERANGE')
    throwsCode(() => n.read32(m, '4' as unknown as number), 'E_ARG')
    throwsCode(() => n.read32(m, undefined as unknown as number), 'E_ARG')
    n.write32(m, 16, 77)
    expect(n.read32(m, 16n as unknown as number)).to.equal(77)
    throwsCode(() => n.read32(m, -1n as unknown as number), 'ERANGE')
  })

  it('readValues returns the typed array of the width, one element per access', () => {
    const src = randomBytes(256)
    n.copyTo(m, 8192, src, 'memcpy')
    const u8 = n.readValues(m, 8192, 1, 256)
    expect(u8).to.be.instanceOf(Uint8Array)
    expect(Buffer.from(u8)).to.deep.equal(src)
    const u16 = n.readValues(m, 8192, 2, 128)
    expect(u16).to.be.instanceOf(Uint16Array)
    expect(u16[5]).to.equal(src.readUInt16LE(10))
    const u32 = n.readValues(m, 8192, 4, 64)
    expect(u32).to.be.instanceOf(Uint32Array)
    expect(u32[63]).to.equal(src.readUInt32LE(252))
    const u64 = n.readValues(m, 8192, 8, 32)
    expect(u64).to.be.instanceOf(BigUint64Array)
    expect(u64[31]).to.equal(src.readBigUInt64LE(248))
    expect(n.readValues(m, 8192, 4, 0).length).to.equal(0)
    throwsCode(() => n.readValues(m, 8194, 4, 1), 'E_ALIGN')
    throwsCode(() => n.readValues(m, SIZE - 8, 4, 3), 'ERANGE')
    throwsCode(() => n.readValues(m, 0, 8, 2 ** 60), 'ERANGE')
    throwsCode(() => n.readValues(m, 0, 3 as Width, 1), 'E_ARG')
  })

  it('writeValues takes typed arrays of the width or plain arrays', () => {
    const base = 12288
    expect(n.writeValues(m, base, 1, Uint8Array.from([1, 2, 3]))).to.equal(3)
    expect(Array.from(n.readValues(m, base, 1, 3))).to.deep.equal([1, 2, 3])
    n.writeValues(m, base, 2, Uint16Array.from([0xbeef, 0xcafe]))
    expect(Array.from(n.readValues(m, base, 2, 2))).to.deep.equal([0xbeef, 0xcafe])
    n.writeValues(m, base, 4, [0xdeadbeef, 1, 2])
    expect(Array.from(n.readValues(m, base, 4, 3))).to.deep.equal([0xdeadbeef, 1, 2])
    n.writeValues(m, base, 4, Int32Array.from([-1]))
    expect(n.read32(m, base)).to.equal(0xffffffff)
    n.writeValues(m, base, 8, [2n ** 64n - 1n, 5, 0n])
    expect(Array.from(n.readValues(m, base, 8, 3))).to.deep.equal([2n ** 64n - 1n, 5n, 0n])
    n.writeValues(m, base, 8, BigUint64Array.from([7n, 8n]))
    expect(n.read64(m, base + 8)).to.equal(8n)
    expect(n.writeValues(m, base, 4, [])).to.equal(0)
    throwsCode(() => n.writeValues(m, base, 4, Uint16Array.from([1])), 'E_ARG')
    throwsCode(() => n.writeValues(m, base, 2, [0x10000]), 'E_VALUE')
    throwsCode(() => n.writeValues(m, base, 2, ['x' as unknown as number]), 'E_VALUE')
    throwsCode(() => n.writeValues(m, base + 1, 2, [1]), 'E_ALIGN')
    throwsCode(() => n.writeValues(m, SIZE - 4, 4, [1, 2]), 'ERANGE')
    throwsCode(() => n.writeValues(m, base, 4, 'abc' as unknown as number[]), 'E_ARG')
  })
})
