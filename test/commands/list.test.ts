import {expect} from 'chai'

import {cli, cliProcess} from '../helpers/cli.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('iopmem list', () => {
  const fx = standardMachine()
  after(() => fx.cleanup())

  it('shows the functions with device memory in a table, bridges left out (--wide: every detail)', async () => {
    const r = await cli(['list', '--wide'], fx)
    expect(r.exit).to.equal(0)
    expect(r.stdout).to.match(/^BDF\s+ID\s+DEVICE\s+DRIVER\s+BARS\s+P2PMEM\s+STORAGE\s+LINK/)
    expect(r.stdout).to.contain(BDF.nvmeCmb).and.contain(BDF.ivshmem).and.contain(BDF.nvmeRoot)
    expect(r.stdout).not.to.contain(BDF.rootPort)
    expect(r.stdout).not.to.contain(BDF.hostBridge)
    expect(r.stdout).to.contain('BAR2 64 MiB 0x880000000 64-bit pref wc')
    expect(r.stdout).to.contain('63.9 MiB free')
    expect(r.stdout).to.contain('nvme1n1 256 MiB (1 part)')
    expect(r.stdout).to.match(/6 of 11 functions shown/)
    expect(r.stdout).not.to.match(/\u001B\[/) // NO_COLOR
  })

  it('fits $COLUMNS (80 when not a terminal), one line per function; the downgraded link and I/O BARs are marked', () => {
    for (const cols of ['80', '100', '60']) {
      const r = cliProcess(['list'], fx, {COLUMNS: cols})
      expect(r.exit, r.stderr).to.equal(0)
      for (const l of r.stdout.split('\n')) expect([...l].length, `COLUMNS=${cols}: ${l}`).to.be.at.most(Number(cols))
      // One line per function (6 shown), short BDFs as lspci prints them.
      expect(r.stdout.split('\n').filter((l) => /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] /.test(l))).to.have.length(6)
    }
    const r = cliProcess(['list'], fx, {COLUMNS: ''})
    expect(Math.max(...r.stdout.split('\n').map((l) => [...l].length))).to.be.at.most(80)
    expect(r.stdout).to.match(/^03:00\.0 .*64M pref \+1\s+63\.9M\s+nvme0n1\s+8\/16GT x4↓$/m)
    expect(r.stdout).to.match(/^00:02\.0 .*128K \+1 I\/O/m)
    const wide = cliProcess(['list', '--wide'], fx, {COLUMNS: '80'})
    expect(wide.stdout).to.contain('8/16 GT/s x4 ↓').and.to.match(/BAR2 32 B 0xc040 I\/O ports/)
    expect(wide.stdout).to.contain('Red Hat QEMU NVM Express Controller')
  })

  it('--all shows bridges and the host bridge', async () => {
    const r = await cli(['list', '--all', '--wide'], fx)
    expect(r.exit).to.equal(0)
    for (const b of Object.values(BDF)) expect(r.stdout).to.contain(b)
  })

  it('--json gives the complete documented shape', async () => {
    const r = await cli(['list', '--json'], fx)
    expect(r.exit).to.equal(0)
    expect(r.json.filter).to.equal('memory')
    expect(r.json.total).to.equal(11)
    const cmb = r.json.functions.find((f: any) => f.bdf === BDF.nvmeCmb)
    expect(cmb).to.include({vendorId: '0x1b36', deviceId: '0x0010', classCode: '0x010802', driver: 'nvme', upstream: BDF.switchDown0, hostBridge: 'pci0000:00', iommuGroup: 5, numaNode: 0})
    expect(cmb.sysfsPath).to.equal('/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/0000:02:00.0/0000:03:00.0')
    expect(cmb.p2pmem).to.deep.equal({size: 64 * 1024 * 1024 - 128 * 1024, available: 64 * 1024 * 1024 - 128 * 1024, published: true})
    expect(cmb.link).to.deep.equal({currentSpeed: '8.0 GT/s PCIe', currentWidth: 4, maxSpeed: '16.0 GT/s PCIe', maxWidth: 4})
    const bar2 = cmb.bars.find((b: any) => b.index === 2)
    expect(bar2).to.deep.include({name: 'BAR2', type: 'mem', start: '0x0000000880000000', end: '0x0000000883ffffff', size: 64 * 1024 * 1024, is64: true, prefetchable: true, wc: true, mappable: true, disabled: false})
    expect(cmb.blockDevices[0]).to.deep.include({name: 'nvme0n1', dev: '259:0', size: 256 * 1024 * 1024, kind: 'nvme', dax: false})
    const ivs = r.json.functions.find((f: any) => f.bdf === BDF.ivshmem)
    expect(ivs.driver).to.equal(null)
    expect(ivs.bars.map((b: any) => [b.name, b.wc])).to.deep.equal([
      ['BAR0', false],
      ['BAR2', true],
    ])
  })

  it('named functions, short form accepted and canonicalised', async () => {
    const r = await cli(['list', '03:00.0', '0000:00:04.0', '--json'], fx)
    expect(r.exit).to.equal(0)
    expect(r.json.filter).to.equal('selected')
    expect(r.json.functions.map((f: any) => f.bdf)).to.deep.equal([BDF.nvmeCmb, BDF.ivshmem])
  })

  it('never takes arguments from a piped stdin (oclif would, racily, after 10 ms)', () => {
    const r = cliProcess(['list', '--json'], fx, {}, '0000:77:00.0\n')
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.json.filter).to.equal('memory')
    const b = cliProcess(['bind', '--json'], fx, {}, `${BDF.ivshmem}\n`)
    expect(b.exit).to.equal(2)
    expect(b.json.error.code).to.equal('E_MISSING_BDF')
  })

  it('says clearly when no PCI bus is visible (containers), exit 7', async () => {
    const empty = new SysfsFixture()
    try {
      const r = await cli(['list'], empty)
      expect(r.exit).to.equal(7)
      expect(r.stderr).to.contain('No PCI devices are visible')
      expect(r.stderr).to.contain('container')
      const j = await cli(['list', '--json'], empty)
      expect(j.exit).to.equal(7)
      expect(j.json.error.code).to.equal('E_NO_PCI')
    } finally {
      empty.cleanup()
    }
  })
})
