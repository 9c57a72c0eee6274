import {expect} from 'chai'

import {cli} from '../helpers/cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('iopmem bind / unbind', () => {
  let fx: SysfsFixture
  let core: FakeDriverCore
  beforeEach(() => {
    fx = standardMachine()
    core = new FakeDriverCore(fx)
  })
  afterEach(() => fx.cleanup())

  it('binds an unbound device without asking (nothing is taken from a driver)', async () => {
    const r = await cli(['bind', '00:04.0', '--driver', 'uio_pci_generic'], fx, {writer: core})
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.contain('✓ 0000:00:04.0 bound to uio_pci_generic (was no driver); driver_override is uio_pci_generic.')
    expect(fx.currentDriver(BDF.ivshmem)).to.equal('uio_pci_generic')
  })

  it('--json returns the result with every sysfs write made', async () => {
    const r = await cli(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], fx, {writer: core})
    expect(r.exit, r.stdout).to.equal(0)
    expect(r.json).to.deep.include({bdf: BDF.nvmeCmb, driver: 'vfio-pci', previousDriver: 'nvme', previousOverride: null, override: 'vfio-pci', changed: true})
    expect(r.json.steps.map((s: any) => [s.file.replace(/^\/sys\/devices\/.*\//, ''), s.value, s.ok])).to.deep.equal([
      ['driver_override', 'vfio-pci', true],
      ['/sys/bus/pci/drivers/nvme/unbind', BDF.nvmeCmb, true],
      ['/sys/bus/pci/drivers/vfio-pci/bind', BDF.nvmeCmb, true],
    ])
    expect(r.json.usage).to.deep.include({inUse: false, reasons: []})
  })

  it('taking a device from its driver needs --yes without a terminal', async () => {
    const r = await cli(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci'], fx, {writer: core})
    expect(r.exit).to.equal(5)
    expect(r.stderr).to.contain('Refusing to take 0000:03:00.0 from nvme without confirmation: not on a terminal.')
    expect(r.stderr).to.contain('Pass --yes to confirm.')
    expect(core.log).to.deep.equal([])
  })

  it('a probe failure rolls back and exits 6 with the state it left', async () => {
    fx.drivers.get('nvme')!.probe = (b) => (b === BDF.ivshmem ? 'ENODEV' : undefined)
    const r = await cli(['bind', BDF.ivshmem, '--driver', 'nvme', '--json'], fx, {writer: core})
    expect(r.exit).to.equal(6)
    expect(r.json.error.code).to.equal('E_BIND_FAILED')
    expect(r.json.error.message).to.match(/Rolled back: the device is unbound, as it was\./)
    expect(r.json.error.details.driver).to.equal(null)
  })

  it('--force takes an in-use device and reports what was in use', async () => {
    fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/data', fstype: 'ext4'})
    const r = await cli(['bind', BDF.nvmePeer, '--driver', 'uio_pci_generic', '--force'], fx, {writer: core})
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.contain('Taken while in use (--force)')
    expect(r.stdout).to.contain('/dev/nvme1n1p1 is mounted on /data (ext4)')
  })

  it('unbind releases and clears driver_override, saying so', async () => {
    await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic'], fx, {writer: core})
    const r = await cli(['unbind', BDF.ivshmem, '--yes'], fx, {writer: core})
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.contain('✓ 0000:00:04.0 unbound from uio_pci_generic; driver_override uio_pci_generic cleared.')
    expect(fx.override(BDF.ivshmem)).to.equal(undefined)
    const again = await cli(['unbind', BDF.ivshmem, '--json'], fx, {writer: core})
    expect(again.exit).to.equal(0)
    expect(again.json.changed).to.equal(false)
  })

  it('help shows examples and the driver_override note', async () => {
    const r = await cli(['unbind', '--help'], fx)
    expect(r.stdout).to.contain('EXAMPLES')
    expect(r.stdout).to.contain('clears driver_override')
    const b = await cli(['bind', '--help'], fx)
    expect(b.stdout).to.contain('--driver=<value>')
    expect(b.stdout).to.contain('EXAMPLES')
  })
})
