import {expect} from 'chai'
import * as fs from 'node:fs'

import {executeBind, executeUnbind, planBind, planUnbind, recheckBind, recheckUnbind} from '../../src/lib/bind/bind.js'
import {IopmemError} from '../../src/lib/sys/errors.js'
import {checkInUse} from '../../src/lib/bind/inuse.js'
import {PciScanner} from '../../src/lib/pci/sysfs.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

async function expectError(f: () => unknown, code: string, exit: number, message?: RegExp): Promise<IopmemError> {
  try {
    await f()
  } catch (error) {
    expect(error).to.be.instanceOf(IopmemError)
    const e = error as IopmemError
    expect(e.code, e.message).to.equal(code)
    expect(e.exit).to.equal(exit)
    if (message) expect(e.message).to.match(message)
    return e
  }
  expect.fail(`expected ${code}`)
}

describe('bind and unbind on a fake driver core', () => {
  let fx: SysfsFixture
  let core: FakeDriverCore
  const host = (uid = 0) => fx.host({writer: core, uid})
  const bind = (bdf: string, driver?: string, force = false) => executeBind(host(), planBind(host(), bdf, driver, {force}))

  beforeEach(() => {
    fx = standardMachine()
    core = new FakeDriverCore(fx)
  })
  afterEach(() => fx.cleanup())

  it('binds an unbound device: override, bind, verified link', async () => {
    const r = await bind(BDF.ivshmem, 'uio_pci_generic')
    expect(r).to.include({driver: 'uio_pci_generic', previousDriver: null, override: 'uio_pci_generic', changed: true})
    expect(fx.currentDriver(BDF.ivshmem)).to.equal('uio_pci_generic')
    expect(core.log.map((w) => [w.file.replace(/^devices\/.*\//, ''), w.value])).to.deep.equal([
      ['driver_override', 'uio_pci_generic\n'],
      ['bus/pci/drivers/uio_pci_generic/bind', BDF.ivshmem],
    ])
  })

  it('takes a device from its driver: unbind first, then bind', async () => {
    const r = await bind(BDF.nvmeCmb, 'vfio-pci')
    expect(r).to.include({driver: 'vfio-pci', previousDriver: 'nvme'})
    expect(core.log.map((w) => w.file.split('/').slice(-2).join('/'))).to.deep.equal(['0000:03:00.0/driver_override', 'nvme/unbind', 'vfio-pci/bind'])
    expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('vfio-pci')
  })

  it('a device already on the driver is left alone', async () => {
    const r = await bind(BDF.nvmeCmb, 'nvme')
    expect(r.changed).to.equal(false)
    expect(core.log).to.deep.equal([])
  })

  it('a failing probe rolls back to no driver and no override', async () => {
    fx.drivers.get('nvme')!.probe = (b) => (b === BDF.ivshmem ? 'ENODEV' : undefined)
    const before = fx.hash()
    const e = await expectError(() => bind(BDF.ivshmem, 'nvme'), 'E_BIND_FAILED', 6, /Rolled back: the device is unbound, as it was/)
    expect(e.message).to.contain('nvme did not accept the device')
    expect(fx.currentDriver(BDF.ivshmem)).to.equal(undefined)
    expect(fx.override(BDF.ivshmem)).to.equal(undefined)
    expect(fx.hash()).to.equal(before)
  })

  it('a failing probe rolls back to the original driver', async () => {
    fx.drivers.get('uio_pci_generic')!.probe = () => 'EBUSY'
    const before = fx.hash()
    const e = await expectError(() => bind(BDF.nvmePeer, 'uio_pci_generic'), 'E_BIND_FAILED', 6, /bound to nvme again/)
    expect(e.message).to.contain("uio_pci_generic's probe failed with EBUSY")
    expect(fx.currentDriver(BDF.nvmePeer)).to.equal('nvme')
    expect(fx.hash()).to.equal(before)
  })

  it('keeps a pre-existing driver_override through a rollback', async () => {
    fx.drivers.get('nvme')!.probe = (b) => (b === BDF.ivshmem ? 'EINVAL' : undefined)
    core.write(fx.fnDir(BDF.ivshmem) + '/driver_override', 'uio_pci_generic\n')
    core.log.length = 0
    const before = fx.hash()
    await expectError(() => bind(BDF.ivshmem, 'nvme'), 'E_BIND_FAILED', 6, /with driver_override uio_pci_generic/)
    expect(fx.hash()).to.equal(before)
  })

  it('reports an incomplete rollback honestly', async () => {
    fx.drivers.get('uio_pci_generic')!.probe = () => 'EIO'
    core.failWrite(/drivers\/nvme\/bind$/, 'EIO')
    fx.drivers.get('nvme')!.probe = (b) => (b === BDF.nvmePeer ? 'EIO' : undefined)
    const e = await expectError(() => bind(BDF.nvmePeer, 'uio_pci_generic'), 'E_ROLLBACK_FAILED', 6, /Rollback incomplete: the device is now unbound \(it was nvme\)/)
    expect((e.details as {steps: unknown[]}).steps.length).to.be.greaterThan(3)
  })

  it('a kernel that refuses writes (EACCES) leaves everything as it was, exit 4', async () => {
    core.failWrite(/driver_override$/, 'EACCES', 1)
    const before = fx.hash()
    await expectError(() => bind(BDF.nvmeCmb, 'vfio-pci'), 'E_BIND_FAILED', 4)
    expect(fx.hash()).to.equal(before)
  })

  it('an unregistered driver names modprobe and the candidates, writing nothing', async () => {
    const e = await expectError(() => planBind(host(), BDF.nvmeCmb, undefined), 'E_NO_DRIVER', 3, /iopmem driver load.*modprobe iopmem/)
    expect(e.suggestions.join('\n')).to.match(/iopmem: not registered/).and.match(/uio_pci_generic: registered/).and.match(/vfio-pci: registered \(IOMMU group 5\)/).and.match(/nvme: registered \(the device's driver before/)
    await expectError(() => planBind(host(), BDF.nvmeCmb, 'mlx5_core'), 'E_NO_DRIVER', 3, /modprobe mlx5_core/)
    expect(core.log).to.deep.equal([])
  })

  it('refuses a device with a mounted partition, unless --force', async () => {
    fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/mnt/data', fstype: 'xfs'})
    await expectError(() => planBind(host(), BDF.nvmePeer, 'vfio-pci'), 'E_IN_USE', 5, /nvme1n1p1 is mounted on \/mnt\/data \(xfs\)/)
    expect((await bind(BDF.nvmePeer, 'vfio-pci', true)).usage?.inUse).to.equal(true)
  })

  it('sees DAX mounts, holders, allocated p2pmem and processes', async () => {
    fx.mount({dev: '259:0', source: '/dev/nvme0n1', target: '/mnt/dax', fstype: 'ext4', options: 'rw,dax=always'})
    fx.process({pid: 4242, comm: 'fio', fds: ['/dev/nvme0n1']})
    fx.process({pid: 4343, comm: 'p2ptest', maps: [fx.kernelPath(BDF.nvmeCmb, 'p2pmem/allocate')]})
    fx.process({pid: 4444, comm: 'pcimem', fds: [fx.kernelPath(BDF.nvmeCmb, 'resource2')]})
    fx.process({pid: 4545, comm: 'bash', fds: ['/dev/null', '/dev/nvme1n1']})
    const f = new PciScanner(fx.host()).get(BDF.nvmeCmb)
    const r = checkInUse(fx.host(), f)
    const details = r.reasons.map((x) => x.detail)
    expect(details).to.include('/dev/nvme0n1 is mounted on /mnt/dax (ext4, dax=always)')
    expect(details).to.include('process fio (pid 4242) has /dev/nvme0n1 open')
    expect(details.some((d) => /p2ptest \(pid 4343\) maps \/sys\/devices\/.*0000:03:00.0\/p2pmem\/allocate/.test(d))).to.equal(true)
    expect(details.some((d) => /pcimem \(pid 4444\) has .*resource2 open/.test(d))).to.equal(true)
    expect(details.join()).not.to.contain('bash')
  })

  it('a process holding the NVMe generic character device (/dev/ngXnY) open blocks the unbind', async () => {
    fs.mkdirSync(`${fx.fnDir(BDF.nvmeCmb)}/nvme/nvme0/ng0n1`, {recursive: true})
    fx.process({pid: 4646, comm: 'nvme', fds: ['/dev/ng0n1']})
    await expectError(() => planUnbind(host(), BDF.nvmeCmb), 'E_IN_USE', 5, /process nvme \(pid 4646\) has \/dev\/ng0n1 open/)
    await expectError(() => planBind(host(), BDF.nvmeCmb, 'vfio-pci'), 'E_IN_USE', 5, /ng0n1/)
  })

  it('after the prompt the plan is made again: a device that changed hands or is now in use is refused', async () => {
    const asked = planBind(host(), BDF.nvmeCmb, 'vfio-pci')
    fx.process({pid: 4747, comm: 'fio', fds: ['/dev/nvme0n1']})
    await expectError(() => recheckBind(asked, planBind(host(), BDF.nvmeCmb, 'vfio-pci')), 'E_IN_USE', 5, /fio \(pid 4747\)/)
    const asked2 = planUnbind(host(), BDF.ivshmem)
    await bind(BDF.ivshmem, 'uio_pci_generic')
    await expectError(() => recheckUnbind(asked2, planUnbind(host(), BDF.ivshmem)), 'E_CHANGED', 5, /changed while you were asked: it was bound to no driver, now to uio_pci_generic/)
  })

  it('p2pmem allocated in the kernel is a note, not a refusal', async () => {
    const f2 = standardMachine()
    try {
      f2.add({...f2.fns.get(BDF.nvmeCmb)!, p2pmem: {size: 1 << 20, available: 1 << 19}})
      const fn = new PciScanner(f2.host()).get(BDF.nvmeCmb)
      const r = checkInUse(f2.host(), fn)
      expect(r.inUse).to.equal(false)
      expect(r.notes[0]).to.match(/^512 KiB of its p2pmem \(1 MiB\) is allocated in the kernel: the nvme driver keeps its submission queues in the CMB/)
    } finally {
      f2.cleanup()
    }
  })

  it('needs root, and says so before touching anything', async () => {
    await expectError(() => planBind(host(1000), BDF.nvmeCmb, 'vfio-pci'), 'E_NOT_ROOT', 4, /needs root/)
    await expectError(() => planUnbind(host(1000), BDF.nvmeCmb), 'E_NOT_ROOT', 4)
    expect(core.log).to.deep.equal([])
  })

  it('vfio-pci without an IOMMU group needs no-IOMMU mode', async () => {
    await expectError(() => planBind(host(), BDF.ivshmem, 'vfio-pci'), 'E_VFIO_NO_IOMMU', 7, /no IOMMU group/)
    const p = fx.sys + '/module/vfio/parameters'
    fs.mkdirSync(p, {recursive: true})
    fs.writeFileSync(p + '/enable_unsafe_noiommu_mode', 'Y\n')
    expect((await bind(BDF.ivshmem, 'vfio-pci')).driver).to.equal('vfio-pci')
  })

  it('refuses bridges (unless --force) and host bridges (always)', async () => {
    await expectError(() => planBind(host(), BDF.switchDown0, 'vfio-pci'), 'E_BRIDGE', 5, /PCI bridge/)
    await expectError(() => planBind(host(), BDF.hostBridge, 'vfio-pci', {force: true}), 'E_BRIDGE', 5, /host bridge/)
    await expectError(() => planUnbind(host(), BDF.rootPort), 'E_BRIDGE', 5)
  })

  it('unbind releases the driver and clears driver_override', async () => {
    await bind(BDF.ivshmem, 'uio_pci_generic')
    const r = await executeUnbind(host(), planUnbind(host(), BDF.ivshmem))
    expect(r).to.include({driver: null, previousDriver: 'uio_pci_generic', previousOverride: 'uio_pci_generic', override: null, changed: true})
    expect(fx.override(BDF.ivshmem)).to.equal(undefined)
    expect(fx.currentDriver(BDF.ivshmem)).to.equal(undefined)
  })

  it('unbind of a free device is a no-op; a failed unbind changes nothing', async () => {
    expect((await executeUnbind(host(), planUnbind(host(), BDF.ivshmem))).changed).to.equal(false)
    core.failWrite(/nvme\/unbind$/, 'EBUSY')
    const before = fx.hash()
    await expectError(() => executeUnbind(host(), planUnbind(host(), BDF.nvmeRoot)), 'E_UNBIND_FAILED', 6, /Nothing was changed/)
    expect(fx.hash()).to.equal(before)
  })

  it('unbind refuses while mounted', async () => {
    fx.mount({dev: '259:4', source: '/dev/nvme2n1', target: '/srv', fstype: 'ext4'})
    await expectError(() => planUnbind(host(), BDF.nvmeRoot), 'E_IN_USE', 5, /mounted on \/srv/)
  })
})
