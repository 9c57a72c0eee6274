import {expect} from 'chai'

import {formatBytes, formatRate, parseSize, roundRate} from '../../src/lib/sys/units.js'

describe('sizes', () => {
  it('formats in binary units', () => {
    expect(formatBytes(0)).to.equal('0 B')
    expect(formatBytes(256)).to.equal('256 B')
    expect(formatBytes(4096)).to.equal('4 KiB')
    expect(formatBytes(64 * 1024 * 1024)).to.equal('64 MiB')
    expect(formatBytes(64 * 1024 * 1024 - 128 * 1024)).to.equal('63.9 MiB')
    expect(formatBytes(1.5 * 1024 ** 3)).to.equal('1.5 GiB')
    expect(formatBytes(300 * 1024 ** 3)).to.equal('300 GiB')
  })

  it('parses decimal, hex and unit suffixes', () => {
    expect(parseSize('4096')).to.equal(4096)
    expect(parseSize('0x1000')).to.equal(4096)
    expect(parseSize('64K')).to.equal(65536)
    expect(parseSize('2MiB')).to.equal(2 * 1024 * 1024)
    expect(parseSize('1g')).to.equal(1024 ** 3)
    expect(parseSize('3 GB')).to.equal(3 * 1024 ** 3)
  })

  for (const bad of ['', 'x', '-1', '1.5G', '0x10K', '10Q', '1e6', '0x', '99999999999999999999']) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      expect(() => parseSize(bad, 'size')).to.throw(/Invalid size/)
    })
  }

  it('checks bounds', () => {
    expect(() => parseSize('1K', 'size', {min: 4096})).to.throw(/at least 4 KiB/)
    expect(() => parseSize('1G', 'size', {max: 1024})).to.throw(/at most 1 KiB/)
  })
})

describe('rates', () => {
  it('are rounded to 3 significant digits, in JSON (roundRate) and on screen (formatRate) alike', () => {
    expect(roundRate(12.3456)).to.equal(12.3)
    expect(roundRate(0.045678)).to.equal(0.0457)
    expect(roundRate(123_456.7)).to.equal(123_000)
    expect(roundRate(1.005)).to.equal(1)
    expect(roundRate(0)).to.equal(0)
    expect(roundRate(Number.POSITIVE_INFINITY)).to.equal(Number.POSITIVE_INFINITY)
    expect(formatRate(123_456.7)).to.equal('123000')
    expect(formatRate(0.045678)).to.equal('0.0457')
    expect(formatRate(7.5)).to.equal('7.5')
    for (const x of [3.14159, 98_765.4, 0.000_123_45]) expect(formatRate(x)).to.equal(String(roundRate(x)))
  })
})
