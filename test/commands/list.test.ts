import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {PCI_ACS_RR} from '../../src/lib/pci/config-space.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {daxMachine} from '../helpers/dax.js'
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
    expect(r.stdout).to.match(/^03:00\.0 .*64M pref \+1\s+63\.9M\s+nvme0n1\s+8\/16GT x4↓\s+-$/m)
    // An I/O BAR is port space: never in MEMORY, in a column of its own, and said so.
    expect(r.stdout).to.match(/^BDF .* MEMORY .* I\/O$/m)
    expect(r.stdout).to.match(/^00:02\.0 .*e1000e\s+128K\s+-\s+-\s+-\s+32B$/m)
    expect(r.stdout).to.contain('I/O: I/O port BARs (not memory).')
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

  it('--tree draws the hierarchy as lspci -tv, providers and the P2P group under the switch marked, within 80 columns', () => {
    const r = cliProcess(['list', '--tree'], fx, {COLUMNS: ''})
    expect(r.exit, r.stderr).to.equal(0)
    const lines = r.stdout.split('\n')
    for (const l of lines) expect([...l].length, l).to.be.at.most(80)
    expect(lines[0]).to.match(/^-\[0000:00\]-\+-00\.0 {2}Intel 82G33/)
    expect(r.stdout).to.match(/^ {11}\+-04\.0 {2}Red Hat Inter-VM shared memory$/m)
    // Root port → switch upstream → two downstream ports, each with its NVMe; the provider's marks kept whole.
    expect(r.stdout).to.match(/^ {11}\\-1c\.0-\[01-04\]----00\.0-\[02-04\]--\+-00\.0-\[03\]----00\.0 {2}\[A p2pmem 63\.9M\]$/m)
    expect(r.stdout).to.match(/^ {43}\\-01\.0-\[04\]----00\.0 {2}\[A\] Red Hat/m)
    expect(r.stdout).to.contain('[A] P2P group: 03:00.0, 04:00.0 under switch 01:00.0, no ACS redirect on the').and.not.to.contain('assumed')
    const wide = cliProcess(['list', '--tree', '--wide'], fx)
    expect(wide.stdout).to.contain('[A p2pmem 63.9M] Red Hat QEMU NVM Express Controller')
    const j = cliProcess(['list', '--tree', '--json'], fx)
    expect(j.json.schemaVersion).to.equal(1)
    expect(j.json.tree.groups).to.deep.equal([{name: 'A', switch: BDF.switchUp, members: [BDF.nvmeCmb, BDF.nvmePeer], acsKnown: true}])
    const rp = j.json.tree.hostBridges[0].children.find((n: any) => n.bdf === BDF.rootPort)
    expect(rp).to.deep.include({role: 'root-port', buses: [1, 4], provider: false})
    expect(rp.children[0]).to.deep.include({bdf: BDF.switchUp, role: 'switch-upstream', buses: [2, 4]})
    expect(rp.children[0].children[0].children[0]).to.deep.include({bdf: BDF.nvmeCmb, role: 'function', provider: true, group: 'A'})
  })

  it('--tree: ACS redirect on a downstream port breaks the P2P group; unreadable ACS (not root) is said to be assumed', () => {
    const user = standardMachine({configSize: 64})
    try {
      const r = cliProcess(['list', '--tree'], user, {COLUMNS: '80'})
      expect(r.stdout).to.contain('(ACS not readable without root: assumed)')
      expect(cliProcess(['list', '--tree', '--json'], user).json.tree.groups[0]).to.deep.include({members: [BDF.nvmeCmb, BDF.nvmePeer], acsKnown: false})
    } finally {
      user.cleanup()
    }
    const full = standardMachine({configSize: 4096})
    try {
      const spec = {...full.fns.get(BDF.switchDown1)!, acsCtrl: PCI_ACS_RR}
      fs.writeFileSync(path.join(full.fnDir(BDF.switchDown1), 'config'), full.configBytes(spec))
      const r = cliProcess(['list', '--tree', '--json'], full)
      expect(r.json.tree.groups).to.deep.equal([])
      const ok = standardMachine({configSize: 4096})
      try {
        expect(cliProcess(['list', '--tree', '--json'], ok).json.tree.groups[0]).to.deep.include({members: [BDF.nvmeCmb, BDF.nvmePeer], acsKnown: true})
      } finally {
        ok.cleanup()
      }
    } finally {
      full.cleanup()
    }
  })

  it('selects as lspci does: -s [[domain:]bus:][dev][.fn], -d [vendor]:[device][:class], --class, --driver, --p2pmem', async () => {
    const bdfs = async (...args: string[]) => {
      const r = await cli(['list', ...args, '--json'], fx)
      expect(r.exit, r.stdout).to.equal(0)
      expect(r.json.filter).to.equal('selected')
      return r.json.functions.map((f: any) => f.bdf)
    }
    expect(await bdfs('-s', '03:')).to.deep.equal([BDF.nvmeCmb])
    expect(await bdfs('-s', '02:')).to.deep.equal([BDF.switchDown0, BDF.switchDown1])
    expect(await bdfs('-s', '02:01')).to.deep.equal([BDF.switchDown1])
    expect(await bdfs('-s', '0000:00:1c.0')).to.deep.equal([BDF.rootPort])
    expect(await bdfs('-s', '*:*.0')).to.have.length(11)
    expect(await bdfs('-s', '1c')).to.deep.equal([BDF.rootPort])
    expect(await bdfs('-d', '1b36:0010')).to.deep.equal([BDF.nvmeRoot, BDF.nvmeCmb, BDF.nvmePeer])
    expect(await bdfs('-d', '104c:')).to.deep.equal([BDF.switchUp, BDF.switchDown0, BDF.switchDown1])
    expect(await bdfs('-d', '::0604')).to.deep.equal([BDF.rootPort, BDF.switchUp, BDF.switchDown0, BDF.switchDown1])
    expect(await bdfs('--class', 'nvme')).to.deep.equal([BDF.nvmeRoot, BDF.nvmeCmb, BDF.nvmePeer])
    expect(await bdfs('--class', '0x0200')).to.deep.equal([BDF.nic])
    expect(cliProcess(['list', '--class', 'host bridge', '--json'], fx).json.functions.map((f: any) => f.bdf)).to.deep.equal([BDF.hostBridge])
    expect(await bdfs('--driver', 'none')).to.deep.equal([BDF.hostBridge, BDF.vga, BDF.ivshmem])
    expect(await bdfs('--p2pmem')).to.deep.equal([BDF.nvmeCmb])
    expect(await bdfs('--class', 'nvme', '--driver', 'nvme', '-s', '04:')).to.deep.equal([BDF.nvmePeer])
    expect(await bdfs('-d', 'dead:')).to.deep.equal([])
    const r = await cli(['list', '-d', '1b36:0010', '--p2pmem', '--json'], fx)
    expect(r.json.selectors).to.deep.equal({id: '1b36:0010', p2pmem: true})
    const none = cliProcess(['list', '-d', 'dead:'], fx)
    expect(none.exit).to.equal(0)
    expect(none.stdout).to.match(/^No PCI function matches\./)
  })

  it('a malformed selector is a usage error naming the part (exit 2), and --tree takes none', async () => {
    for (const [flag, value, part] of [
      ['-s', '03:00.8', '"8"'],
      ['-s', '1:2:3:4', 'at most'],
      ['-s', '03:20', '"20"'],
      ['-d', '1b36', 'expected [vendor]:[device][:class]'],
      ['-d', '1b36:xyz', '"xyz"'],
      ['-d', '::storage', 'the class is 4 hex digits'],
    ]) {
      const r = await cli(['list', flag, value, '--json'], fx)
      expect(r.exit, `${flag} ${value}`).to.equal(2)
      expect(r.json.error.code).to.equal('E_SELECTOR')
      expect(r.json.error.message).to.contain(part)
    }
    const t = await cli(['list', '--tree', '-s', '03:'], fx)
    expect(t.exit).to.equal(2)
  })

  it('pmem regions and device-dax, not PCI, in a section of their own and in --json (regions)', async () => {
    const dx = await daxMachine()
    try {
      // A device-dax instance on region0 (libnvdimm devdax), as /sys/bus/dax shows it.
      const region = path.join(dx.sys, 'devices/platform/e820_pmem/ndbus0/region0')
      const daxDir = path.join(region, 'dax0.1/dax0.0')
      fs.mkdirSync(daxDir, {recursive: true})
      fs.writeFileSync(path.join(daxDir, 'size'), `${256 * 1024 * 1024}\n`)
      fs.writeFileSync(path.join(daxDir, 'target_node'), '1\n')
      fs.mkdirSync(path.join(dx.sys, 'bus/dax/devices'), {recursive: true})
      fs.symlinkSync(daxDir, path.join(dx.sys, 'bus/dax/devices/dax0.0'))
      fs.writeFileSync(path.join(dx.dev, 'dax0.0'), '')
      const r = cliProcess(['list'], dx, {COLUMNS: '80'})
      expect(r.exit, r.stderr).to.equal(0)
      const section = r.stdout.split('pmem and device-dax (not PCI functions)\n')[1]
      expect(section.split('\n')).to.deep.equal([
        'ON       NAME          MODE    SIZE  DEVICE       START               NODE',
        'region0  namespace0.0  raw     512M  /dev/pmem0   0x0000000060000000  -',
        'region1  namespace1.0  fsdax   1G    /dev/pmem1   0x0000000140000000  -',
        'region0  dax0.0        devdax  256M  /dev/dax0.0  -                   1',
        '',
      ])
      for (const l of r.stdout.split('\n')) expect([...l].length, l).to.be.at.most(80)
      const narrow = cliProcess(['list'], dx, {COLUMNS: '50'})
      expect(narrow.stdout, narrow.stdout).to.match(/^region0 {2}namespace0\.0 {2}raw {5}512M {2}\/dev\/pmem0$/m) // START goes first, then NODE
      expect(cliProcess(['list'], dx, {COLUMNS: '60'}).stdout).to.match(/^region0 {2}dax0\.0 {8}devdax {2}256M {2}\/dev\/dax0\.0 {2}1$/m)
      const j = await cli(['list', '--json'], dx)
      expect(j.json.schemaVersion).to.equal(1)
      expect(j.json.regions.pmem[1]).to.deep.equal({
        name: 'region1',
        size: 1024 * 1024 * 1024,
        start: '0x0000000140000000',
        numaNode: null,
        namespaces: [{name: 'namespace1.0', mode: 'fsdax', size: 1024 * 1024 * 1024, start: '0x0000000140000000', blockDevice: 'pmem1', devNode: '/dev/pmem1'}],
      })
      expect(j.json.regions.dax).to.deep.equal([{name: 'dax0.0', size: 256 * 1024 * 1024, start: null, numaNode: 1, on: 'region0', devNode: '/dev/dax0.0'}])
      // None on the standard machine: no section, empty lists.
      expect(cliProcess(['list'], fx).stdout).not.to.contain('pmem and device-dax')
      expect((await cli(['list', '--json'], fx)).json.regions).to.deep.equal({pmem: [], dax: []})
    } finally {
      dx.cleanup()
    }
  })
})
