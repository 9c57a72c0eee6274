import {expect} from 'chai'

import {formatBdf, isBdfName, normalizeBdf, parseBdf, tryParseBdf} from '../../src/lib/pci/bdf.js'
import {IopmemError} from '../../src/lib/sys/errors.js'

describe('BDF parsing', () => {
  const good: Array<[string, string]> = [
    ['0000:03:00.0', '0000:03:00.0'],
    ['03:00.0', '0000:03:00.0'],
    ['0000:AF:1F.7', '0000:af:1f.7'],
    ['10000:00:02.0', '10000:00:02.0'],
    ['ffff:ff:1f.7', 'ffff:ff:1f.7'],
  ]
  for (const [input, canon] of good) {
    it(`accepts ${input} as ${canon}`, () => {
      expect(normalizeBdf(input)).to.equal(canon)
      expect(formatBdf(parseBdf(input))).to.equal(canon)
    })
  }

  const bad = ['', ' 03:00.0', '03:00.0 ', '03:00.0\n', '3:00.0', '003:00.0', '03:0.0', '03:00', '03:00.8', '03:20.0', '000:03:00.0', '123456789:03:00.0', '0000:03:00.0/..', '../03:00.0', '0000:03:00.0;ls', 'g0:00.0', '0x03:00.0', '03-00-0', '0000:03:00.-1']
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      expect(tryParseBdf(input)).to.equal(undefined)
      expect(() => parseBdf(input)).to.throw(IopmemError, /Invalid PCI address/)
    })
  }

  it('explains a device number above 0x1f and a function above 7', () => {
    expect(() => parseBdf('03:20.0')).to.throw(/device number 0x20 is above 0x1f/)
    expect(() => parseBdf('03:00.9')).to.throw(/function number must be 0-7/)
  })

  it('errors carry code E_BDF_SYNTAX and exit 2', () => {
    try {
      parseBdf('nope')
      expect.fail('should throw')
    } catch (error) {
      expect((error as IopmemError).code).to.equal('E_BDF_SYNTAX')
      expect((error as IopmemError).exit).to.equal(2)
    }
  })

  it('isBdfName only matches canonical sysfs names', () => {
    expect(isBdfName('0000:03:00.0')).to.equal(true)
    expect(isBdfName('pci0000:00')).to.equal(false)
    expect(isBdfName('03:00.0')).to.equal(false)
    expect(isBdfName('0000:03:00.0x')).to.equal(false)
  })
})
