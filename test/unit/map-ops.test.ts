/**
 * The parsing, range checks, patterns and hexdump behind `iopmem map`'s
 * operations, and the operations themselves on a memfd through the addon.
 */
import {expect} from 'chai'

import {IopmemError} from '../../src/lib/sys/errors.js'
import {
  checkRange,
  checkStrategy,
  fillOp,
  hexdump,
  parseCount,
  parsePattern,
  parseValues,
  parseWidth,
  readOp,
  valueRows,
  verifyOp,
  writeOp,
} from '../../src/lib/map/ops.js'
import {loadNative} from '../../src/native/index.js'

function code(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(IopmemError)
    return (error as IopmemError).code
  }
  return 'none'
}

describe('map: operations', () => {
  it('widths are 8/16/32/64 bits, default 32', () => {
    expect(parseWidth(undefined)).to.equal(4)
    expect([8, 16, 32, 64].map((w) => parseWidth(String(w)))).to.deep.equal([1, 2, 4, 8])
    for (const bad of ['12', '4', '0x20', '32bit', '-8', '']) expect(code(() => parseWidth(bad)), bad).to.equal('E_WIDTH')
  })

  it('values fit their width, decimal or 0x, comma or space separated', () => {
    expect(parseValues('0xff,1 2', 1)).to.deep.equal([255n, 1n, 2n])
    expect(parseValues('0xffffffffffffffff', 8)).to.deep.equal([0xffffffffffffffffn])
    expect(code(() => parseValues('0x100', 1))).to.equal('E_VALUE')
    expect(code(() => parseValues('-1', 4))).to.equal('E_VALUE')
    expect(code(() => parseValues('1.5', 4))).to.equal('E_VALUE')
    expect(code(() => parseValues(',', 4))).to.equal('E_VALUE')
    expect(code(() => parseValues('0x1_0000_0000', 4))).to.equal('E_VALUE')
  })

  it('counts are positive integers', () => {
    expect(parseCount('0x10')).to.equal(16)
    for (const bad of ['0', '-1', '1K', 'x']) expect(code(() => parseCount(bad)), bad).to.equal('E_COUNT')
  })

  it('ranges: past the end, running over, misaligned', () => {
    expect(() => checkRange(4096, 4092, 4, 4, 'x')).not.to.throw()
    expect(code(() => checkRange(4096, 4096, 4, 4, 'x'))).to.equal('E_RANGE')
    expect(code(() => checkRange(4096, 4092, 8, 4, 'x'))).to.equal('E_RANGE')
    expect(code(() => checkRange(4096, 2, 4, 4, 'x'))).to.equal('E_ALIGN')
    expect(code(() => checkRange(4096, 0, 6, 4, 'x'))).to.equal('E_ALIGN')
  })

  it('strategies must suit the mode and the direction', () => {
    expect(() => checkStrategy('wc', 'stream-store', 'in')).not.to.throw()
    expect(() => checkStrategy('wb', 'memcpy', 'out')).not.to.throw()
    expect(code(() => checkStrategy('uc', 'memcpy', 'in'))).to.equal('E_STRATEGY')
    expect(code(() => checkStrategy('wc', 'stream-load', 'in'))).to.equal('E_STRATEGY')
    expect(code(() => checkStrategy('wc', 'stream-store', 'out'))).to.equal('E_STRATEGY')
  })

  it('patterns: the byte at an offset depends only on the offset', () => {
    for (const spec of ['zero', 'ones', '0xa5', 'u16:0xbeef', 'u32:0xdeadbeef', 'u64:0x0102030405060708', 'bytes:c0ffee', 'inc', 'addr', 'random', 'random:42']) {
      const p = parsePattern(spec)
      const whole = Buffer.alloc(300)
      p.generate(whole, 1000)
      for (const [from, len] of [[1001, 7], [1003, 100], [1100, 200]]) {
        const part = Buffer.alloc(len)
        p.generate(part, from)
        expect(part.equals(whole.subarray(from - 1000, from - 1000 + len)), `${spec} at ${from}`).to.equal(true)
      }
    }
    const u32 = Buffer.alloc(8)
    parsePattern('u32:0xdeadbeef').generate(u32, 0)
    expect(u32.readUInt32LE(4)).to.equal(0xdeadbeef)
    const addr = Buffer.alloc(16)
    parsePattern('addr').generate(addr, 0x1_0000_0000)
    expect(addr.readBigUInt64LE(8)).to.equal(0x1_0000_0008n)
    const r1 = Buffer.alloc(64)
    const r2 = Buffer.alloc(64)
    parsePattern('random:1').generate(r1, 0)
    parsePattern('random:2').generate(r2, 0)
    expect(r1.equals(r2)).to.equal(false)
    expect(parsePattern('random').spec).to.equal('random:1')
    expect(parsePattern('U32:3735928559').spec).to.equal('u32:0xdeadbeef')
    for (const bad of ['0xdeadbeef', 'u24:1', 'u8:256', 'bytes:abc', 'random:0x100000000', 'stripes', '']) expect(code(() => parsePattern(bad)), bad).to.equal('E_PATTERN')
  })

  it('hexdump: hexdump -C layout with mapping offsets and squeezed runs', () => {
    const b = Buffer.alloc(64)
    b.write('iopmem', 0)
    expect(hexdump(b, 0x1000).split('\n')).to.deep.equal([
      '00001000  69 6f 70 6d 65 6d 00 00  00 00 00 00 00 00 00 00  |iopmem..........|',
      '00001010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|',
      '*',
      '00001030  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|',
      '00001040',
    ])
    expect(valueRows(0x10, 4, ['0x00000001', '0x00000002'])).to.deep.equal(['0x00000010: 0x00000001 0x00000002'])
  })

  it('read, write, fill and verify through the addon on a memfd', () => {
    const n = loadNative()
    const fd = n.memfd('map-ops', 1 << 16)
    const m = n.map(fd, {mode: 'wc'})
    try {
      writeOp(n, m, 8, 8, [0x0102030405060708n])
      writeOp(n, m, 2, 2, [0xbeefn])
      expect(readOp(n, m, 8, 8, 1)).to.deep.equal(['0x0102030405060708'])
      expect(readOp(n, m, 0, 4, 1)).to.deep.equal(['0xbeef0000'])
      const p = parsePattern('random:7')
      const f = fillOp(n, m, 100, 50_000, p, 'auto', false)
      expect(f.strategy).to.equal('stream-store')
      expect(verifyOp(n, m, 100, 50_000, p, 'auto').mismatches).to.equal(0)
      expect(verifyOp(n, m, 1000, 10, p, 'exact64').strategy).to.equal('exact64')
      const want = Buffer.alloc(1)
      p.generate(want, 2000)
      writeOp(n, m, 2000, 1, [BigInt(want[0] ^ 0xff)])
      let e: IopmemError | undefined
      try {
        verifyOp(n, m, 100, 50_000, p, 'auto')
      } catch (error) {
        e = error as IopmemError
      }
      expect(e).to.include({code: 'E_VERIFY_MISMATCH', exit: 8})
      expect(e!.details).to.deep.include({mismatches: 1, first: [{offset: 2000, expected: `0x${want[0].toString(16).padStart(2, '0')}`, actual: `0x${(want[0] ^ 0xff).toString(16).padStart(2, '0')}`}]})
    } finally {
      m.unmap()
      n.closeFd(fd)
    }
  })
})
