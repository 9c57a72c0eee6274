/**
 * `iopmem nvmet` on a fixture machine with a fake nvmet configfs: create over loop and tcp,
 * --p2pmem auto/BDF/off decided by topology, list, save/restore (nvmetcli's format plus the
 * iopmem key), remove, and rollback of everything made when a later step fails.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {interruptAtPause, startCli} from '../helpers/child-cli.js'
import {cli} from '../helpers/cli.js'
import {FakeConfigfs} from '../helpers/fake-configfs.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import {addRdma, nvmetMachine} from '../helpers/nvmet.js'
import {type SysfsFixture, trackFixtures} from '../helpers/sysfs-fixture.js'

const NQN = 'nqn.2026-11.io.iopmem:t1'

describe('nvmet', () => {
  const track = trackFixtures()
  const nv = (fx: SysfsFixture, ...p: string[]) => path.join(fx.sys, 'kernel/config/nvmet', ...p)
  const read = (fx: SysfsFixture, ...p: string[]) => fs.readFileSync(nv(fx, ...p), 'utf8').trim()

  it('creates a target over loop: subsystem, namespace enabled on the device, port linked', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const r = await cli(['nvmet', 'create', NQN, '--device', '/dev/nvme1n1', '--transport', 'loop', '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    expect(read(fx, 'subsystems', NQN, 'namespaces/1/device_path')).to.equal('/dev/nvme1n1')
    expect(read(fx, 'subsystems', NQN, 'namespaces/1/enable')).to.equal('1')
    expect(read(fx, 'subsystems', NQN, 'attr_allow_any_host')).to.equal('1')
    expect(read(fx, 'ports/1/addr_trtype')).to.equal('loop')
    expect(fs.readlinkSync(nv(fx, 'ports/1/subsystems', NQN))).to.equal(`../../../subsystems/${NQN}`)
    expect(r.json.ports).to.deep.equal([1])
    expect(r.json.namespaces[0]).to.include({nsid: 1, device: '/dev/nvme1n1', p2pmem: null})
  })

  it('tcp on 127.0.0.1 with allowed hosts and --p2pmem auto: the CMB behind the same switch, and the honest note that tcp uses none', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const host = 'nqn.2014-08.org.nvmexpress:uuid:0c2b6a52-6b1c-4a8f-9d7e-3b1f0e6b8a11'
    const r = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.1', '--host', host, '--p2pmem', 'auto', '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    expect(read(fx, 'ports/1/addr_traddr')).to.equal('127.0.0.1')
    expect(read(fx, 'ports/1/addr_trsvcid')).to.equal('4420')
    expect(read(fx, 'ports/1/addr_adrfam')).to.equal('ipv4')
    expect(read(fx, 'subsystems', NQN, 'attr_allow_any_host')).to.equal('0')
    expect(fs.existsSync(nv(fx, 'hosts', host))).to.equal(true)
    expect(fs.lstatSync(nv(fx, 'subsystems', NQN, 'allowed_hosts', host)).isSymbolicLink()).to.equal(true)
    expect(read(fx, 'subsystems', NQN, 'namespaces/1/p2pmem')).to.equal(BDF.nvmeCmb)
    const d = r.json.namespaces[0].p2pmem
    expect(d.provider).to.equal(BDF.nvmeCmb)
    expect(d.why).to.match(/nearest of 1 usable provider/)
    expect(r.json.warnings.join('\n')).to.match(/tcp port has no P2PDMA client/)
  })

  it('an explicit provider the kernel would refuse for the namespace (through the host bridge) is refused with topo\'s reason, nothing made', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const before = fx.hash()
    const r = await cli(['nvmet', 'create', NQN, '--device', 'nvme2n1', '--transport', 'loop', '--p2pmem', BDF.nvmeCmb, '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit).to.equal(5)
    expect(r.json.error.code).to.equal('E_P2P_REFUSED')
    expect(r.json.error.message).to.match(/host bridge/i)
    expect(fx.hash()).to.equal(before)
    expect(cfs.log).to.deep.equal([])
  })

  it('rdma: a provider behind the switch with the PCI NIC on the root complex is refused for the NIC; soft-RoCE is named as not a PCI device', async () => {
    const {fx, cfs} = nvmetMachine(track)
    addRdma(fx, 'pci')
    const before = fx.hash()
    const r = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'rdma', '--address', 'fe80::1%eth0', '--p2pmem', BDF.nvmeCmb, '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit).to.equal(5)
    expect(r.json.error.message, r.json.error.message).to.match(/NIC 0000:00:02.0/)
    expect(fx.hash()).to.equal(before)
    const auto = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'rdma', '--address', 'fe80::1%eth0', '--p2pmem', 'auto', '--yes', '--json'], fx, {writer: cfs})
    expect(auto.exit).to.equal(5)
    expect(auto.json.error.code).to.equal('E_NO_P2PMEM')

    const {fx: fx2, cfs: cfs2} = nvmetMachine(track)
    addRdma(fx2, 'rxe')
    const rxe = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'rdma', '--address', 'fe80::1%eth0', '--p2pmem', 'auto', '--yes', '--json'], fx2, {writer: cfs2})
    expect(rxe.exit, rxe.stdout).to.equal(0)
    expect(rxe.json.warnings.join('\n')).to.match(/rxe0 is not a PCI device/)
  })

  it('a failing later step (the port link) removes everything made before it', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const before = fx.hash()
    cfs.failOn = /^symlink ports\/1\/subsystems\//
    const r = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--device', 'nvme0n1', '--transport', 'tcp', '--address', '127.0.0.1', '--host', 'nqn.2026-11.io.iopmem:h1', '--p2pmem', 'auto', '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit).to.equal(6)
    expect(r.json.error.message).to.match(/Everything this run made was removed again/)
    expect(cfs.log.some((l) => l.startsWith('write subsystems/') && l.endsWith('/enable'))).to.equal(true)
    expect(fx.hash()).to.equal(before)
  })

  it('a second target on the same tcp address reuses the port only when asked for it by id; remove leaves the shared port', async () => {
    const {fx, cfs} = nvmetMachine(track)
    expect((await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.1', '--yes'], fx, {writer: cfs})).exit).to.equal(0)
    const clash = await cli(['nvmet', 'create', NQN + 'b', '--device', 'nvme0n1', '--transport', 'tcp', '--address', '127.0.0.1', '--yes', '--json'], fx, {writer: cfs})
    expect(clash.json.error.code).to.equal('E_ADDRESS_IN_USE')
    const two = await cli(['nvmet', 'create', NQN + 'b', '--device', 'nvme0n1', '--transport', 'tcp', '--address', '127.0.0.1', '--port-id', '1', '--yes', '--json'], fx, {writer: cfs})
    expect(two.exit, two.stdout).to.equal(0)
    expect(fs.readdirSync(nv(fx, 'ports/1/subsystems')).sort()).to.deep.equal([NQN, NQN + 'b'])
    const rm = await cli(['nvmet', 'remove', NQN, '--yes', '--json'], fx, {writer: cfs})
    expect(rm.exit, rm.stdout).to.equal(0)
    expect(fs.existsSync(nv(fx, 'subsystems', NQN))).to.equal(false)
    expect(fs.readdirSync(nv(fx, 'ports/1/subsystems'))).to.deep.equal([NQN + 'b'])
    const rm2 = await cli(['nvmet', 'remove', NQN + 'b', '--yes'], fx, {writer: cfs})
    expect(rm2.exit).to.equal(0)
    expect(fs.readdirSync(nv(fx, 'ports'))).to.deep.equal([])
  })

  it('list shows subsystems, namespaces with p2pmem and ports; says when nvmet is not loaded', async () => {
    const {fx, cfs} = nvmetMachine(track)
    await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--p2pmem', BDF.nvmeCmb, '--yes'], fx, {writer: cfs})
    const r = await cli(['nvmet', 'list'], fx, {writer: cfs})
    expect(r.stdout).to.match(new RegExp(`ns 1: /dev/nvme1n1 enabled  p2pmem ${BDF.nvmeCmb}`))
    expect(r.stdout).to.match(/port 1: loop ← nqn\.2026-11\.io\.iopmem:t1/)
    const bare = track(standardMachine())
    const j = await cli(['nvmet', 'list', '--json'], bare)
    expect(j.exit).to.equal(0)
    expect(j.json.loaded).to.equal(false)
  })

  it('save writes nvmetcli\'s format plus the p2pmem it drops; restore on a clean machine recreates the same tree', async () => {
    const {fx, cfs} = nvmetMachine(track)
    await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.2', '--service', '4421', '--p2pmem', 'auto', '--yes'], fx, {writer: cfs})
    const file = path.join(fx.root, 'nvmet.json')
    const s = await cli(['nvmet', 'save', file, '--json'], fx, {writer: cfs})
    expect(s.exit, s.stdout).to.equal(0)
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'))
    expect(saved.ports[0]).to.deep.include({portid: 1, subsystems: [NQN]})
    expect(saved.ports[0].addr).to.deep.equal({adrfam: 'ipv4', traddr: '127.0.0.2', trsvcid: '4421', trtype: 'tcp'})
    expect(saved.subsystems[0].namespaces[0]).to.deep.include({enable: 1, nsid: 1})
    expect(saved.subsystems[0].namespaces[0].device.path).to.equal('/dev/nvme1n1')
    expect(saved.iopmem.p2pmem).to.deep.equal([{subsystem: NQN, nsid: 1, p2pmem: BDF.nvmeCmb}])
    const tree = (f: SysfsFixture) => {
      const out: string[] = []
      const walk = (d: string) => {
        for (const n of fs.readdirSync(d).sort()) {
          const p = path.join(d, n)
          const st = fs.lstatSync(p)
          out.push(`${path.relative(nv(f), p)} ${st.isSymbolicLink() ? fs.readlinkSync(p) : st.isFile() ? fs.readFileSync(p, 'utf8') : ''}`)
          if (st.isDirectory()) walk(p)
        }
      }
      walk(nv(f))
      return out
    }
    const {fx: fx2, cfs: cfs2} = nvmetMachine(track)
    const r = await cli(['nvmet', 'restore', file, '--yes', '--json'], fx2, {writer: cfs2})
    expect(r.exit, r.stdout).to.equal(0)
    expect(tree(fx2)).to.deep.equal(tree(fx))
    const again = await cli(['nvmet', 'restore', file, '--yes', '--json'], fx2, {writer: cfs2})
    expect(again.json.error.code).to.equal('E_EXISTS')
  })

  it('restore rolls back everything when a namespace cannot be enabled', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const file = path.join(fx.root, 'two.json')
    fs.writeFileSync(
      file,
      JSON.stringify({
        hosts: [],
        ports: [{addr: {trtype: 'loop'}, portid: 3, referrals: [], subsystems: [NQN]}],
        subsystems: [{nqn: NQN, allowed_hosts: [], attr: {allow_any_host: '1'}, namespaces: [{nsid: 1, enable: 1, device: {path: '/dev/nvme1n1'}}, {nsid: 2, enable: 1, device: {path: '/dev/nvme0n1'}}]}],
      }),
    )
    const before = fx.hash()
    cfs.failOn = /^write subsystems\/.*\/namespaces\/2\/enable$/
    const r = await cli(['nvmet', 'restore', file, '--yes', '--json'], fx, {writer: cfs})
    expect(r.exit).to.equal(6)
    expect(fx.hash()).to.equal(before)
  })

  it('without a terminal and without --yes, create refuses and makes nothing', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const before = fx.hash()
    const r = await cli(['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--json'], fx, {writer: cfs})
    expect(r.json.error.code).to.equal('E_CONFIRM')
    expect(fx.hash()).to.equal(before)
  })

  // create over loop: 1 mkdir subsystem, 2 allow_any_host, 3 mkdir namespace, 4 device_path, 5 enable, 6 mkdir port, 7 addr_trtype, 8 the port's link
  for (const c of [
    {at: 3, signal: 'SIGINT' as const},
    {at: 5, signal: 'SIGHUP' as const},
    {at: 8, signal: 'SIGTERM' as const},
  ]) {
    it(`create: ${c.signal} during configfs step ${c.at} (a child process) → everything made removed again, the result printed, exit 130`, async function () {
      this.timeout(60_000)
      const fx = track(standardMachine())
      new FakeConfigfs(fx) // the nvmet tree the child's fake configfs works on
      const sysTree = () => execFileSync('sh', ['-c', 'cd "$1" && find . -print0 | sort -z | xargs -0 ls -ld --time-style=+ | sha256sum', 'sh', fx.sys], {encoding: 'utf8'})
      const before = sysTree()
      const child = startCli(fx, 'nvmet', ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--yes', '--json'], {pauseAt: c.at})
      const r = await interruptAtPause(child, c.signal)
      expect(r.exit, r.stderr).to.equal(130)
      expect(r.json, r.stdout).to.include({interrupted: true, signal: c.signal, rolledBack: true, changed: false})
      expect(r.json.steps.filter((x: any) => x.op !== 'write' || !x.path.endsWith('/enable')).length).to.be.at.least(c.at)
      expect(sysTree()).to.equal(before)
      expect(fs.readdirSync(path.join(fx.sys, 'kernel/config/nvmet/subsystems'))).to.deep.equal([])
    })
  }
})
