/**
 * `iopmem list`, `topo`, `bind` and `unbind` against a real kernel: the guest has two
 * NVMe behind one PCIe switch (one with a 64 MiB CMB published as p2pmem), an NVMe on
 * the root complex and an ivshmem device. Every verdict of the tool is checked against
 * what the kernel itself does.
 */
import {expect} from 'chai'

import {bootGuest, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const MiB = 1024 * 1024

describe('guest: list, topo, bind, unbind on Linux with P2PDMA', function () {
  let vm: Guest
  const iopmem = (args: string[], env?: Record<string, string>): Promise<RunResult> =>
    vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 120_000, env})
  const json = guestJson
  const sysfs = async (bdf: string, file: string): Promise<string> =>
    (await vm.run(['cat', `/sys/bus/pci/devices/${bdf}/${file}`], {check: true})).stdout.trim()
  const driverOf = async (bdf: string): Promise<string | null> => {
    const r = await vm.sh(`readlink /sys/bus/pci/devices/${bdf}/driver || true`)
    const t = r.stdout.trim()
    return t === '' ? null : t.split('/').pop()!
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel() // no kernel: the suite fails with instructions, it never skips
    vm = await bootGuest({topology: 'both'})
    const d = vm.devices
    console.log(`      guest ${vm.release}: cmb ${d.cmb.bdf}, peer ${d.peer.bdf}, rc ${d.rc!.bdf}, ivshmem ${d.ivshmem.bdf}`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('list shows the CMB BAR and its p2pmem, the NVMe namespaces and the ivshmem BAR2', async () => {
    const r = await iopmem(['list', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const fns = json(r).functions as any[]
    const cmb = fns.find((f) => f.bdf === vm.devices.cmb.bdf)
    expect(cmb, 'CMB NVMe listed').to.exist
    expect(cmb.driver).to.equal('nvme')
    expect(cmb.p2pmem.published).to.equal(true)
    expect(cmb.p2pmem.size).to.be.greaterThan(60 * MiB).and.at.most(64 * MiB)
    // nvme keeps its submission queues in the CMB: some p2pmem is already taken.
    expect(cmb.p2pmem.available).to.be.greaterThan(0).and.at.most(cmb.p2pmem.size)
    const cmbBar = cmb.bars.find((b: any) => b.size === 64 * MiB)
    expect(cmbBar, 'a 64 MiB BAR holds the CMB').to.exist
    expect(cmbBar).to.include({type: 'mem', mappable: true})
    expect(cmb.blockDevices.map((b: any) => '/dev/' + b.name)).to.include(vm.devices.cmb.namespace)
    const ivs = fns.find((f) => f.bdf === vm.devices.ivshmem.bdf)
    const bar2 = ivs.bars.find((b: any) => b.index === 2)
    expect(bar2).to.include({size: vm.devices.ivshmem.size, prefetchable: true, is64: true, wc: true})
    expect(ivs.upstream).to.equal(null)
    expect(cmb.upstream).to.be.a('string')
    console.log(`      CMB ${cmbBar.name} ${cmbBar.size / MiB} MiB at ${cmbBar.start}, p2pmem ${cmb.p2pmem.size} bytes`)

    const human = await iopmem(['list', '--wide'])
    expect(human.code).to.equal(0)
    expect(human.stdout).to.contain(vm.devices.cmb.bdf).and.contain('free')
  })

  it('topo: the switch pair can do P2P, the root-complex NVMe cannot use the CMB, rc↔peer has no provider — and the kernel agrees', async () => {
    const {cmb, peer, rc} = vm.devices
    const r = await iopmem(['topo', cmb.bdf, peer.bdf, rc!.bdf, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const t = json(r)
    const pair = (a: string, b: string) => t.pairs.find((p: any) => (p.provider === a && p.client === b) || (p.provider === b && p.client === a))
    const sw = pair(cmb.bdf, peer.bdf)
    expect(sw).to.deep.include({p2p: 'yes', mapType: 'bus-addr', pathClass: 'PIX', distance: 4})
    expect(sw.acsUnknown, 'root in the guest reads ACS').to.deep.equal([])
    const p = pair(rc!.bdf, cmb.bdf)
    expect(p).to.deep.include({provider: cmb.bdf, client: rc!.bdf, p2p: 'no', mapType: 'not-supported', pathClass: 'PHB'})
    expect(p.reasons.join('\n')).to.contain('do not share an upstream bridge or whitelisted host bridge')
    // Neither the root-complex NVMe nor the peer has a CMB: no provider, no verdict.
    expect(pair(rc!.bdf, peer.bdf)).to.deep.include({p2p: 'n/a', mapType: 'n/a', pathClass: 'PHB'})
    console.log(`      cpu ${t.cpu.vendor} family ${t.cpu.family}; host bridge ${t.hostBridges[0].vendorId}:${t.hostBridges[0].deviceId} whitelisted=${t.hostBridges[0].whitelisted}`)

    // The kernel: an O_DIRECT read from each NVMe into the CMB's p2pmem.
    const ok = await vm.run([vm.helper('p2p-odirect'), '--verify', cmb.bdf, peer.namespace, String(64 * 1024)])
    expect(JSON.parse(ok.stdout.trim().split('\n').pop()!), ok.stdout + ok.stderr).to.include({ok: true})
    const refused = await vm.run([vm.helper('p2p-odirect'), cmb.bdf, rc!.namespace, String(64 * 1024)])
    expect(JSON.parse(refused.stdout.trim().split('\n').pop()!), refused.stdout + refused.stderr).to.include({ok: false, code: 'EREMOTEIO'})
    console.log('      kernel: peer → CMB p2pmem O_DIRECT ok; rc → CMB p2pmem EREMOTEIO, as topo said')
  })

  it('bind moves ivshmem to uio_pci_generic, unbind releases it and clears driver_override', async () => {
    const b = vm.devices.ivshmem.bdf
    expect(await driverOf(b)).to.equal(null)
    const r = await iopmem(['bind', b, '--driver', 'uio_pci_generic', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(json(r)).to.include({driver: 'uio_pci_generic', previousDriver: null, override: 'uio_pci_generic'})
    expect(await driverOf(b)).to.equal('uio_pci_generic')
    expect(await sysfs(b, 'driver_override')).to.equal('uio_pci_generic')
    const uio = await vm.sh(`ls /sys/bus/pci/devices/${b}/uio/ && ls /dev/uio*`)
    expect(uio.stdout).to.match(/uio\d/)

    const u = await iopmem(['unbind', b, '--yes', '--json'])
    expect(u.code, u.stdout + u.stderr).to.equal(0)
    expect(json(u)).to.include({driver: null, previousDriver: 'uio_pci_generic', override: null})
    expect(await driverOf(b)).to.equal(null)
    expect(await sysfs(b, 'driver_override')).to.equal('(null)')
  })

  it('vfio-pci: refused without an IOMMU until no-IOMMU mode is on, then binds and unbinds', async () => {
    const b = vm.devices.ivshmem.bdf
    const refused = await iopmem(['bind', b, '--driver', 'vfio-pci', '--json'])
    expect(refused.code).to.equal(7)
    expect(json(refused).error.code).to.equal('E_VFIO_NO_IOMMU')
    expect(await driverOf(b)).to.equal(null)

    await vm.sh('echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode', {check: true})
    const r = await iopmem(['bind', b, '--driver', 'vfio-pci', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(await driverOf(b)).to.equal('vfio-pci')
    const dev = await vm.sh('ls /dev/vfio/')
    expect(dev.stdout).to.match(/noiommu-\d+/)
    const u = await iopmem(['unbind', b, '--yes'])
    expect(u.code, u.stderr).to.equal(0)
    expect(await driverOf(b)).to.equal(null)
  })

  it('a bind whose probe fails rolls back: unbound stays unbound, a driver is restored', async () => {
    const b = vm.devices.ivshmem.bdf
    const r = await iopmem(['bind', b, '--driver', 'nvme', '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(6)
    const e = json(r).error
    expect(e.code).to.equal('E_BIND_FAILED')
    expect(e.message).to.contain('Rolled back: the device is unbound, as it was')
    expect(await driverOf(b)).to.equal(null)
    expect(await sysfs(b, 'driver_override')).to.equal('(null)')
    console.log(`      kernel said: ${e.message.split('failed: ')[1]?.split('. Rolled')[0]}`)

    expect((await iopmem(['bind', b, '--driver', 'uio_pci_generic'])).code).to.equal(0)
    const again = await iopmem(['bind', b, '--driver', 'nvme', '--yes', '--json'])
    expect(again.code).to.equal(6)
    expect(json(again).error.message).to.contain('bound to uio_pci_generic again')
    expect(await driverOf(b)).to.equal('uio_pci_generic')
    expect(await sysfs(b, 'driver_override')).to.equal('uio_pci_generic')
    expect((await iopmem(['unbind', b, '--yes'])).code).to.equal(0)
  })

  it('refuses to take an NVMe whose namespace is mounted, or open in a process; nothing changes', async () => {
    const rc = vm.devices.rc!
    await vm.sh(`mkfs.ext4 -q -F ${rc.namespace} && mkdir -p /tmp/mnt && mount ${rc.namespace} /tmp/mnt`, {check: true, timeoutMs: 120_000})
    try {
      const r = await iopmem(['unbind', rc.bdf, '--yes', '--json'])
      expect(r.code, r.stdout + r.stderr).to.equal(5)
      const e = json(r).error
      expect(e.code).to.equal('E_IN_USE')
      expect(e.message).to.contain(`${rc.namespace} is mounted on /tmp/mnt (ext4)`)
      expect(await driverOf(rc.bdf)).to.equal('nvme')
    } finally {
      await vm.sh('umount /tmp/mnt', {check: true})
    }

    // A process holding the namespace open.
    await vm.sh(`setsid sh -c 'exec 3<${rc.namespace}; exec sleep 300' </dev/null >/dev/null 2>&1 &`, {check: true})
    try {
      const r = await iopmem(['bind', rc.bdf, '--driver', 'uio_pci_generic', '--yes', '--json'])
      expect(r.code, r.stdout + r.stderr).to.equal(5)
      expect(json(r).error.message).to.match(new RegExp(`process sleep \\(pid \\d+\\) has ${rc.namespace} open`))
      expect(await driverOf(rc.bdf)).to.equal('nvme')
    } finally {
      await vm.sh('pkill -x sleep || true')
    }
  })

  it('a normal user is told bind needs root, and nothing changes', async () => {
    const b = vm.devices.ivshmem.bdf
    const r = await vm.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', 'bin/run.js', 'bind', b, '--driver', 'uio_pci_generic', '--json'], {
      timeoutMs: 120_000,
    })
    expect(r.code, r.stdout + r.stderr).to.equal(4)
    expect(json(r).error.code).to.equal('E_NOT_ROOT')
    expect(await driverOf(b)).to.equal(null)
  })
})
