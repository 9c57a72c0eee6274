import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {ConfigSpace, PcieType} from '../../src/lib/pci/config-space.js'
import {largestMemBar, parseResourceFile, PciScanner} from '../../src/lib/pci/sysfs.js'
import {PciIds} from '../../src/lib/pci/ids.js'
import {mountDaxMode, parseMountinfo} from '../../src/lib/sys/mounts.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('PCI model from sysfs', () => {
  const fx = standardMachine()
  const scanner = new PciScanner(fx.host())
  after(() => fx.cleanup())

  it('parses the resource file format, skipping unused lines', () => {
    const rows = parseResourceFile('0x00000000fe000000 0x00000000fe003fff 0x0000000000140204\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n')
    expect(rows).to.have.length(2)
    expect(rows[0]).to.deep.equal({index: 0, start: 0xfe000000n, end: 0xfe003fffn, flags: 0x140204n})
    expect(rows[1]).to.deep.equal({index: 1, start: 0n, end: 0n, flags: 0n})
  })

  it('parses an unused line the kernel writes as it parses the same line spaced or cased otherwise', () => {
    const zero = '0x0000000000000000 0x0000000000000000 0x0000000000000000'
    const used = '0x00000000fe000000 0x00000000fe003fff 0x0000000000140204'
    // The exact line (taken without matching the pattern) beside forms only the pattern takes.
    const text = [zero, used, ' 0x0 0x0 0x0 ', zero, '0X0000000000000000\t0x0000000000000000 0x0000000000000000', zero, ''].join('\n')
    expect(parseResourceFile(text)).to.deep.equal([
      {index: 0, start: 0n, end: 0n, flags: 0n},
      {index: 1, start: 0xfe000000n, end: 0xfe003fffn, flags: 0x140204n},
      {index: 2, start: 0n, end: 0n, flags: 0n},
      {index: 3, start: 0n, end: 0n, flags: 0n},
      {index: 4, start: 0n, end: 0n, flags: 0n},
      {index: 5, start: 0n, end: 0n, flags: 0n},
    ])
  })

  it('reads BARs with flags, 64-bit, prefetchable and WC from resourceN_wc', () => {
    const f = scanner.get(BDF.ivshmem)
    expect(f.bars.map((b) => b.name)).to.deep.equal(['BAR0', 'BAR2'])
    const bar2 = f.bars[1]
    expect(bar2).to.include({size: 64 * MiB, is64: true, prefetchable: true, wc: true, mappable: true, start: '0x0000000800000000'})
    expect(f.bars[0]).to.include({size: 256, is64: false, prefetchable: false, wc: false})
    expect(largestMemBar(f)?.index).to.equal(2)
  })

  it('IO BARs are typed io and not mappable', () => {
    const nic = scanner.get(BDF.nic)
    const io = nic.bars.find((b) => b.index === 2)!
    expect(io).to.include({type: 'io', size: 32, mappable: false})
  })

  it('flags disabled and unassigned BARs', () => {
    const f2 = new SysfsFixture()
    try {
      f2.add({bdf: '0000:05:00.0', vendor: 0x10ee, device: 0x9038, class: 0x058000, bars: [{index: 0, start: 0, size: 1 << 20, unset: true}, {index: 2, start: 0xd0000000, size: 256 * MiB, prefetch: true, disabled: true}]})
      const f = new PciScanner(f2.host()).get('05:00.0')
      expect(f.bars[0]).to.include({unset: true, size: 1 << 20})
      expect(f.bars[1]).to.include({disabled: true, prefetchable: true})
    } finally {
      f2.cleanup()
    }
  })

  it('reads the IDs as the kernel gives them: from the config header, from sysfs for a VF or a bridge', () => {
    const f2 = new SysfsFixture()
    try {
      f2.add({bdf: '0000:05:00.0', vendor: 0x1af4, device: 0x1110, class: 0x050000, revision: 2, subsystemVendor: 0x1af4, subsystemDevice: 0x1100})
      f2.add({bdf: '0000:05:00.1', vendor: 0x8086, device: 0x154c, class: 0x020000, revision: 1, subsystemVendor: 0x8086, subsystemDevice: 0x0001})
      f2.add({bdf: '0000:06:00.0', vendor: 0x10b5, device: 0x8747, class: 0x060400, secondaryBus: 7, subsystemVendor: 0x10b5, subsystemDevice: 0x8747})
      // A VF's vendor and device registers read 0xffff; the kernel takes its IDs from the PF.
      const vf = f2.fnDir('0000:05:00.1')
      const cfg = fs.readFileSync(path.join(vf, 'config'))
      cfg.writeUInt32LE(0xffffffff, 0)
      fs.writeFileSync(path.join(vf, 'config'), cfg)
      fs.symlinkSync('../0000:05:00.0', path.join(vf, 'physfn'))
      const s2 = new PciScanner(f2.host())
      const ids = (bdf: string) => {
        const f = s2.get(bdf)
        return [f.vendorId, f.deviceId, f.revision, f.subsystemVendorId, f.subsystemDeviceId]
      }
      expect(ids('05:00.0')).to.deep.equal(['0x1af4', '0x1110', '0x02', '0x1af4', '0x1100'])
      expect(ids('05:00.1')).to.deep.equal(['0x8086', '0x154c', '0x01', '0x8086', '0x0001'])
      expect(ids('06:00.0')).to.deep.equal(['0x10b5', '0x8747', '0x01', '0x10b5', '0x8747'])
    } finally {
      f2.cleanup()
    }
  })

  it('reads driver, override, IOMMU group, NUMA node, link and p2pmem', () => {
    const f = scanner.get(BDF.nvmeCmb)
    expect(f.driver).to.equal('nvme')
    expect(f.driverOverride).to.equal(null)
    expect(f.iommuGroup).to.equal(5)
    expect(f.numaNode).to.equal(0)
    expect(f.link).to.deep.equal({currentSpeed: '8.0 GT/s PCIe', currentWidth: 4, maxSpeed: '16.0 GT/s PCIe', maxWidth: 4})
    expect(f.p2pmem).to.deep.equal({size: 64 * MiB - 128 * 1024, available: 64 * MiB - 128 * 1024, published: true})
  })

  it('finds NVMe namespaces and partitions on the function', () => {
    const f = scanner.get(BDF.nvmePeer)
    expect(f.blockDevices).to.have.length(1)
    expect(f.blockDevices[0]).to.deep.include({name: 'nvme1n1', dev: '259:1', kind: 'nvme', size: 256 * MiB, logicalBlockSize: 512})
    expect(f.blockDevices[0].partitions).to.deep.equal([{name: 'nvme1n1p1', dev: '259:2', start: 2048, size: 128 * MiB}])
  })

  it('derives upstream bridges and host bridge from the device path', () => {
    expect(scanner.get(BDF.nvmeCmb).upstream).to.equal(BDF.switchDown0)
    expect(scanner.get(BDF.switchUp).upstream).to.equal(BDF.rootPort)
    expect(scanner.get(BDF.nvmeRoot).upstream).to.equal(null)
    expect(scanner.get(BDF.nvmeCmb).hostBridge).to.equal('pci0000:00')
    expect(scanner.get(BDF.rootPort).isBridge).to.equal(true)
    expect(scanner.get(BDF.rootPort).pcieType).to.equal('root-port')
  })

  it('names from pci.ids, with comments inside vendor blocks skipped', () => {
    const ids = PciIds.open()
    if (!ids.file) return // pci.ids not installed: names are optional
    expect(ids.vendor(0x8086)).to.equal('Intel Corporation')
    expect(ids.device(0x8086, 0x10d3)).to.equal('82574L Gigabit Network Connection')
    expect(ids.className(0x010802)).to.equal('Non-Volatile memory controller (NVM Express)')
    expect(ids.className(0x060400)).to.equal('PCI bridge')
  })

  it('names from a pci.ids of our own: UTF-8 names whole, comments in a block, the last line without a newline', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-ids-'))
    try {
      const file = path.join(dir, 'pci.ids')
      const text = [
        '# header comment',
        '10b5  PLX Technology, Inc.',
        '\t8747  PEX 8747 48-Lane, 5-Port PCI Express Gen 3 (8.0 GT/s) Switch',
        '15cf  Hilscher Gesellschaft für Systemautomation mbH',
        '# a comment inside the block',
        '\t0000  NetPLC / NetJACK',
        '\t0001  Überzähliges Gerät ²',
        'C 01  Mass storage controller',
        '\t08  Non-Volatile memory controller',
        '\t\t02  NVM Express',
        'C 06  Bridge',
        '\t04  PCI bridge',
      ].join('\n')
      fs.writeFileSync(file, text)
      // Read on first use, and read ahead (preload, as readAllAsync does): the same names.
      expectNames(new PciIds(file))
      expectNames(await preloaded(file))
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }

    async function preloaded(file: string): Promise<PciIds> {
      const ids = new PciIds(file)
      await ids.preload()
      fs.rmSync(file) // every name below must come from what preload read
      return ids
    }

    function expectNames(ids: PciIds): void {
      expect(ids.vendor(0x15cf)).to.equal('Hilscher Gesellschaft für Systemautomation mbH')
      expect(ids.device(0x15cf, 0x0001)).to.equal('Überzähliges Gerät ²')
      expect(ids.device(0x15cf, 0x0000)).to.equal('NetPLC / NetJACK')
      expect(ids.device(0x10b5, 0x0001)).to.equal(undefined) // not in 10b5's block, though 15cf has it
      expect(ids.vendor(0x1234)).to.equal(undefined)
      expect(ids.className(0x010802)).to.equal('Non-Volatile memory controller (NVM Express)')
      expect(ids.className(0x060400)).to.equal('PCI bridge') // the file's last line
      expect(ids.className(0x0c0330)).to.equal('Serial bus controller') // not in the file: the built-in name
    }
  })

  it('a pci.ids preload cannot read gives no names and does not reject', async () => {
    const ids = new PciIds(path.join(os.tmpdir(), 'iopmem-no-such-dir', 'pci.ids'))
    await ids.preload()
    expect(ids.vendor(0x8086)).to.equal(undefined)
    expect(ids.className(0x010802)).to.equal('Mass storage controller')
  })

  it('works without pci.ids', () => {
    const f = new PciScanner(fx.host())
    const saved = process.env.IOPMEM_PCI_IDS
    process.env.IOPMEM_PCI_IDS = ''
    try {
      const fn = f.get(BDF.nvmeCmb)
      expect(fn.vendorName).to.equal(undefined)
      expect(fn.className).to.equal('Mass storage controller')
    } finally {
      if (saved === undefined) delete process.env.IOPMEM_PCI_IDS
      else process.env.IOPMEM_PCI_IDS = saved
    }
  })

  it('an unknown BDF is E_NO_DEVICE, exit 3', () => {
    expect(() => scanner.get('0000:77:00.0')).to.throw(/No PCI function 0000:77:00.0/)
  })
})

describe('config space', () => {
  const fx = new SysfsFixture()
  after(() => fx.cleanup())

  it('finds the PCIe capability and ACS control', () => {
    const spec = {bdf: '0000:00:01.0', vendor: 1, device: 2, class: 0x060400, secondaryBus: 1, pcieType: PcieType.DOWNSTREAM, acsCtrl: 0x1d}
    const cs = new ConfigSpace(fx.configBytes(spec))
    expect(cs.pcieType).to.equal(PcieType.DOWNSTREAM)
    expect(cs.acsControl).to.equal(0x1d)
    expect(cs.headerType).to.equal(1)
  })

  it('says unknown (undefined) beyond the 64 bytes a normal user may read', () => {
    const spec = {bdf: '0000:00:01.0', vendor: 1, device: 2, class: 0x060400, secondaryBus: 1, pcieType: PcieType.ROOT_PORT, acsCtrl: 0x1d, configSize: 64}
    const cs = new ConfigSpace(fx.configBytes(spec))
    expect(cs.pcieType).to.equal(undefined)
    expect(cs.acsControl).to.equal(undefined)
    expect(cs.headerType).to.equal(1)
  })

  it('no ACS capability reads as 0', () => {
    const cs = new ConfigSpace(fx.configBytes({bdf: '0000:00:01.0', vendor: 1, device: 2, class: 0x010802, pcieType: PcieType.ENDPOINT}))
    expect(cs.acsControl).to.equal(0)
  })

  it('reads BAR bus addresses as lspci -b does', () => {
    const cs = new ConfigSpace(fx.configBytes({bdf: '0000:03:00.0', vendor: 1, device: 2, class: 0x010802, bars: [{index: 2, start: 0x880000000n, size: 64 * MiB, prefetch: true, is64: true}]}))
    expect(cs.barBusAddress(2)).to.equal(0x880000000n)
    expect(cs.barBusAddress(0)).to.equal(0n)
  })
})

describe('mountinfo', () => {
  it('parses fields, escapes and DAX options', () => {
    const text = '36 35 259:2 / /mnt/p\\040mem rw,relatime shared:1 - ext4 /dev/pmem0 rw,dax=always\n37 35 259:3 / /x rw - xfs /dev/iopmem0 rw,attr2,dax\n'
    const m = parseMountinfo(text)
    expect(m[0]).to.include({dev: '259:2', target: '/mnt/p mem', fstype: 'ext4', source: '/dev/pmem0'})
    expect(mountDaxMode(m[0])).to.equal('always')
    expect(mountDaxMode(m[1])).to.equal('always')
  })
})

describe('Host.read of procfs seq_files', () => {
  it('reads /proc/self/maps whole, past the page or so procfs hands out per read', async () => {
    const {Host} = await import('../../src/lib/sys/host.js')
    const keep = Array.from({length: 64}, () => Buffer.allocUnsafeSlow(1 << 20)) // more mappings
    const text = new Host().read('/proc/self/maps')!
    expect(keep.length).to.equal(64)
    expect(text.length, 'bigger than one procfs read').to.be.above(16384)
    expect(text.endsWith('\n')).to.equal(true)
    expect(text).to.contain('[stack]') // the last lines are there
  })
})

describe('implausible sysfs values are refused as a corrupt sysfs', () => {
  const rel = (fx: SysfsFixture, bdf: string) => fx.fnDir(bdf).slice(fx.sys.length + 1)
  const corrupt = (edit: (fx: SysfsFixture) => void, bdf: string, what: RegExp) => {
    const fx = standardMachine()
    try {
      edit(fx)
      let err: any
      try {
        new PciScanner(fx.host()).get(bdf)
      } catch (error) {
        err = error
      }
      expect(err?.code, String(err)).to.equal('E_CORRUPT_SYSFS')
      expect(err.exit).to.equal(7)
      expect(err.message).to.match(what)
    } finally {
      fx.cleanup()
    }
  }

  it('a BAR of 1.8e25 bytes', () => {
    corrupt(
      (fx) => fx.writeSys(`${rel(fx, BDF.ivshmem)}/resource`, '0x0000000000000000 0x0000000000000000 0x0000000000000000\n'.repeat(2) + '0x0000000800000000 0x00000ee6b2800000000fff 0x000000000014220c\n'),
      BDF.ivshmem,
      /resource is not plausible: BAR2 spans/,
    )
  })

  it('a negative p2pmem size, or more available than the pool', () => {
    corrupt((fx) => fx.writeSys(`${rel(fx, BDF.nvmeCmb)}/p2pmem/size`, '-4096\n'), BDF.nvmeCmb, /p2pmem\/size is not plausible: p2pmem size -4096/)
    corrupt((fx) => fx.writeSys(`${rel(fx, BDF.nvmeCmb)}/p2pmem/available`, '999999999999\n'), BDF.nvmeCmb, /available 999999999999 of a/)
  })
})
