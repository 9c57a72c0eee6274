/**
 * `iopmem check` against the real kernel: two boots of topology 'both' (a
 * CMB NVMe and a peer behind one PCIe switch, a third NVMe on the root
 * complex), without and with QEMU's intel-iommu. Every item is compared with
 * what the guest itself shows (its config, lockdown, IOMMU groups and their
 * types, ACS control in config space, sysfs p2pmem), the CMB decode with
 * what QEMU's cmb_size_mb sets, and the kernel's verdict on each pair with
 * what the kernel does with an O_DIRECT read into the CMB's p2pmem.
 */
import {readFileSync} from 'node:fs'

import {expect} from 'chai'

import {bootGuest, type Guest, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'
import {expectSchema} from '../helpers/schemas.js'

const MiB = 1024 * 1024

interface Item {
  id: string
  verdict: string
  found: string
  subject?: string
  details?: any
}

async function checkJson(vm: Guest, args: string[] = []): Promise<{code: number; report: any; item: (id: string, subject?: string) => Item}> {
  const r = await vm.run(['node', 'bin/run.js', 'check', ...args, '--json'], {timeoutMs: 180_000})
  const report = guestJson(r)
  const item = (id: string, subject?: string): Item => {
    const it = report.items.find((i: Item) => i.id === id && (subject === undefined || i.subject === subject))
    if (!it) throw new Error(`no item ${id} in ${r.stdout}`)
    return it
  }
  return {code: r.code, report, item}
}

/** What the kernel does with an O_DIRECT read from `dev` into `provider`'s p2pmem: ok, refused (EREMOTEIO) or wrong bytes. */
async function kernelRead(vm: Guest, provider: string, dev: string): Promise<'ok' | 'refused' | 'corrupt' | string> {
  const r = await vm.run([vm.helper('p2p-odirect'), '--verify', provider, dev, String(64 * 1024)])
  const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}')
  if (j.ok && j.match) return 'ok'
  if (j.code === 'EREMOTEIO') return 'refused'
  if (j.code === 'MISMATCH') return 'corrupt'
  return `error ${j.code ?? r.stderr}`
}

/** The kernel config option as the guest's /proc/config.gz says: its value or null. */
async function guestConfig(vm: Guest, name: string): Promise<string | null> {
  const r = await vm.sh(`zcat /proc/config.gz | grep -E '^CONFIG_${name}=' || true`)
  return r.stdout.trim().split('=')[1] ?? null
}

interface ProbeJson {
  code: number
  probe: {bytes: number; pairs: Array<{provider: string; client: string; device: string; kernel: string; read: {result: string; errno?: string}; agrees: boolean | null}>; mismatches: unknown[]}
}

/** `topo --probe --json` over the three NVMe, and what the guest's own helper sees for each pair. */
async function probe(vm: Guest): Promise<ProbeJson> {
  const {cmb, peer, rc} = vm.devices
  const r = await vm.run(['node', 'bin/run.js', 'topo', cmb.bdf, peer.bdf, rc!.bdf, '--probe', '--json'], {timeoutMs: 180_000})
  return {code: r.code, probe: guestJson(r).probe}
}

async function probeMatchesKernel(vm: Guest, p: ProbeJson['probe']): Promise<string[]> {
  const {cmb} = vm.devices
  expect(p.pairs.map((x) => x.provider)).to.deep.equal(vm.devices.nvme.map(() => cmb.bdf))
  const seen: string[] = []
  for (const nv of vm.devices.nvme) {
    const pair = p.pairs.find((x) => x.client === nv.bdf)!
    expect(pair.device).to.equal(nv.namespace)
    const k = await kernelRead(vm, cmb.bdf, nv.namespace)
    expect(pair.read.result, `${nv.bdf}: probe ${pair.read.result}, the helper's read ${k}`).to.equal(k)
    if (k === 'refused') expect(pair.read.errno).to.equal('EREMOTEIO')
    seen.push(`${nv.bdf.slice(5)} kernel ${pair.kernel}, read ${pair.read.result}`)
  }
  return seen
}

async function commonItems(vm: Guest, c: Awaited<ReturnType<typeof checkJson>>): Promise<void> {
  expect(c.report.schemaVersion).to.equal(1)
  expect(c.report.machine).to.deep.equal({kernelRelease: vm.release, root: true, live: true})
  expect(c.item('kernel.release').found).to.equal(vm.release)
  for (const name of ['PCI_P2PDMA', 'ZONE_DEVICE', 'FS_DAX', 'DEV_DAX', 'IO_STRICT_DEVMEM']) {
    const v = await guestConfig(vm, name)
    const it = c.item(`kernel.config.${name}`)
    expect(it.details.value, name).to.equal(v)
    expect(it.details.source).to.equal('/proc/config.gz')
    const on = v !== null
    expect(it.verdict, `${name}=${v}`).to.equal(name === 'IO_STRICT_DEVMEM' ? (on ? 'warn' : 'pass') : on ? 'pass' : name === 'PCI_P2PDMA' || name === 'ZONE_DEVICE' ? 'fail' : 'warn')
  }
  const lock = (await vm.sh('cat /sys/kernel/security/lockdown 2>/dev/null || true')).stdout.trim()
  const mode = /\[(\w+)\]/.exec(lock)?.[1] ?? null
  expect(c.item('kernel.lockdown').details.mode).to.equal(mode)
  // Root reads config space whole: ACS is never unknown here.
  expect(c.item('path.acs').verdict).to.not.equal('unknown')
  for (const b of c.item('path.acs').details.bridges) expect(b.state, b.bdf).to.not.equal('unreadable')
  // uio_pci_generic and vfio-pci are built into the guest kernel, so registered.
  expect(c.item('drivers.uio_pci_generic').verdict).to.equal('pass')
  expect(c.item('drivers.vfio-pci').verdict).to.equal('pass')
}

/** The CMB as QEMU's cmb_size_mb sets it, beside sysfs. */
async function cmbMatches(vm: Guest, c: Awaited<ReturnType<typeof checkJson>>, cmbMiB: number): Promise<void> {
  const {cmb, peer} = vm.devices
  const it = c.item('providers.cmb', cmb.bdf)
  expect(it.verdict, it.found).to.equal('pass')
  expect(it.details.cmb).to.include({size: cmbMiB * MiB, unit: MiB, bar: 2, offset: 0, sqs: true, cqs: false, lists: true, rds: true, wds: true})
  expect(it.details.kernel).to.include({registered: true, published: true, size: cmbMiB * MiB})
  const published = (await vm.sh(`cat /sys/bus/pci/devices/${cmb.bdf}/p2pmem/published`, {check: true})).stdout.trim()
  expect(published).to.equal('1')
  // The peer has no CMB: CMBSZ reads 0.
  const p = c.item('providers.cmb', peer.bdf)
  expect(p.details.cmb).to.equal(null)
  expect(p.details.registers.cmbsz).to.equal(0)
}

/** path.pairs says for each pair what the kernel does with a real read into the CMB. */
async function pairsMatchKernel(vm: Guest, c: Awaited<ReturnType<typeof checkJson>>): Promise<string[]> {
  const {cmb} = vm.devices
  const pairs = c.item('path.pairs').details.pairs as Array<{provider: string; client: string; p2p: string}>
  const seen: string[] = []
  for (const nv of vm.devices.nvme.filter((n) => n.bdf !== cmb.bdf)) {
    const p = pairs.find((x) => x.provider === cmb.bdf && x.client === nv.bdf)
    expect(p, `pair ${cmb.bdf} ${nv.bdf}`).to.not.equal(undefined)
    const k = await kernelRead(vm, cmb.bdf, nv.namespace)
    // The kernel's verdict is about mapping; "corrupt" means it mapped (then the data went wrong).
    expect(k === 'refused' ? 'no' : 'yes', `${nv.bdf}: check says ${p!.p2p}, the kernel's read ${k}`).to.equal(p!.p2p)
    seen.push(`${nv.bdf.slice(5)} ${p!.p2p}/${k}`)
  }
  return seen
}

describe('guest: iopmem check on the real kernel (topology both, no IOMMU)', function () {
  let vm: Guest
  const cmbMiB = 64

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'both', cmbMiB})
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('every item matches the machine; the CMB is what cmb_size_mb set; each pair as the kernel decides', async function () {
    this.timeout(600_000)
    const {cmb, peer, rc} = vm.devices
    const c = await checkJson(vm, [cmb.bdf, peer.bdf, rc!.bdf])
    await commonItems(vm, c)
    expect(c.item('iommu.present').details.present).to.equal(false)
    expect(c.item('iommu.groups').verdict).to.equal('pass')
    expect(c.item('iommu.vfio').verdict).to.equal('warn')
    // QEMU's root port has ACS (control 0 without an IOMMU); the switch ports have none.
    expect(c.item('path.acs').verdict).to.equal('pass')
    expect(c.item('path.acs').details.redirect).to.deep.equal([])
    await cmbMatches(vm, c, cmbMiB)
    const seen = await pairsMatchKernel(vm, c)
    // The switch pair allowed, the root-complex NVMe refused (TCG's CPU is no AMD Zen, q35 not whitelisted).
    expect(c.item('path.pairs').verdict).to.equal('warn')
    expect(c.item('path.host-bridge').verdict).to.equal('warn')
    expect(c.code, 'nothing fails → exit 0').to.equal(0)
    expect(c.report.ok).to.equal(true)
    const human = await vm.run(['node', 'bin/run.js', 'check', cmb.bdf, peer.bdf, rc!.bdf], {timeoutMs: 180_000, env: {COLUMNS: '80'}})
    for (const line of human.stdout.split('\n')) expect([...line].length, line).to.be.at.most(80)
    console.log(`      pairs: ${seen.join(', ')}; summary ${JSON.stringify(c.report.summary)}`)
    console.log(human.stdout.replaceAll(/^/gm, '      | '))
  })

  it('topo --probe: the switch peer and the CMB\'s own namespace land byte-exact, the root-complex NVMe is refused (EREMOTEIO): no mismatch, exit 0', async function () {
    this.timeout(300_000)
    const p = await probe(vm)
    const seen = await probeMatchesKernel(vm, p.probe)
    expect(p.probe.pairs.map((x) => [x.client, x.kernel, x.read.result, x.agrees])).to.deep.equal([
      [vm.devices.cmb.bdf, 'yes', 'ok', true],
      [vm.devices.peer.bdf, 'yes', 'ok', true],
      [vm.devices.rc!.bdf, 'no', 'refused', true],
    ])
    expect(p.probe.mismatches).to.deep.equal([])
    expect(p.code).to.equal(0)
    console.log(`      probe: ${seen.join('; ')}`)
  })

  it('topo --probe --write: p2pmem → disk lands byte-exact for the switch pair and the CMB\'s own namespace, is refused for the root-complex NVMe; the host sees every region restored', async function () {
    this.timeout(400_000)
    const {cmb, peer, rc} = vm.devices
    const region = 128 * 1024
    const hostView = () => vm.devices.nvme.map((nv) => readFileSync(nv.image).subarray(0, region))
    const before = hostView()
    const args = ['node', 'bin/run.js', 'topo', cmb.bdf, peer.bdf, rc!.bdf, '--probe', '--write', '--offset', '0']
    // No terminal and no --yes: refused before anything is written.
    const asked = await vm.run([...args, '--json'], {timeoutMs: 180_000})
    expect(asked.code, asked.stdout + asked.stderr).to.equal(5)
    expect(guestJson(asked).error.code).to.equal('E_CONFIRM')
    // A region off the logical block, and a disk held open by a process: refused, nothing written.
    const odd = await vm.run([...args.slice(0, -1), '512', '--yes', '--json'], {timeoutMs: 180_000})
    expect([odd.code, guestJson(odd).error?.code]).to.deep.equal([2, 'E_ALIGN'])
    const busy = await vm.run(['sh', '-c', `exec 3<${peer.namespace}; node bin/run.js topo ${cmb.bdf} ${peer.bdf} --probe --write --offset 0 --yes --json`], {timeoutMs: 180_000})
    const held = JSON.parse(busy.stdout)
    expectSchema('topo', held) // run through sh, so guestJson cannot tell the command
    expect([busy.code, held.error?.code], busy.stdout).to.deep.equal([5, 'E_IN_USE'])
    const r = await vm.run([...args, '--yes', '--json'], {timeoutMs: 240_000})
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const p = guestJson(r).probe
    expect(p.write.disks.map((d: {offset: number}) => d.offset)).to.deep.equal([0, 0, 0])
    expect(p.pairs.map((x: any) => [x.client, x.kernel, x.read.result, x.write.result, x.write.errno ?? null, x.write.restored, x.agrees])).to.deep.equal([
      [cmb.bdf, 'yes', 'ok', 'ok', null, true, true],
      [peer.bdf, 'yes', 'ok', 'ok', null, true, true],
      [rc!.bdf, 'no', 'refused', 'refused', 'EREMOTEIO', true, true],
    ])
    expect(p.mismatches).to.deep.equal([])
    // From the host: the images hold what they held before (the disk pattern, not the probe's).
    const after = hostView()
    for (const [i, nv] of vm.devices.nvme.entries()) expect(after[i].equals(before[i]), `${nv.image} restored`).to.equal(true)
    expect(before[0].some((b) => b !== 0), 'the region holds the disk pattern, so a restore is tested').to.equal(true)
  })

  it('the root-complex pair alone: every pair refused → exit 9, as the kernel refuses it', async function () {
    this.timeout(300_000)
    const {cmb, rc} = vm.devices
    const c = await checkJson(vm, [cmb.bdf, rc!.bdf])
    expect(c.item('path.pairs').verdict).to.equal('fail')
    expect(await kernelRead(vm, cmb.bdf, rc!.namespace)).to.equal('refused')
    expect(c.code).to.equal(9)
    expect(c.report.ok).to.equal(false)
  })
})

describe('guest: iopmem check with --iommu (intel-iommu, ACS redirect on the root port)', function () {
  let vm: Guest

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'both', iommu: true})
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('IOMMU on with translated groups as sysfs says; root port redirect noted off the switch pair\'s path; pairs as the kernel maps them', async function () {
    this.timeout(600_000)
    const {cmb, peer, rc} = vm.devices
    const c = await checkJson(vm, [cmb.bdf, peer.bdf, rc!.bdf])
    await commonItems(vm, c)
    const groups = Number((await vm.sh('ls /sys/kernel/iommu_groups | wc -l', {check: true})).stdout.trim())
    expect(c.item('iommu.present').details).to.include({present: true, groups})
    expect(c.item('iommu.present').details.params).to.deep.include({intel_iommu: 'on'})
    for (const g of c.item('iommu.groups').details.groups) {
      const type = (await vm.sh(`cat /sys/kernel/iommu_groups/${g.group}/type`, {check: true})).stdout.trim()
      expect(g.type, `group ${g.group}`).to.equal(type)
      expect(type).to.match(/^DMA(-FQ)?$/)
    }
    expect(c.item('iommu.groups').verdict).to.equal('pass')
    // The kernel set RR|CR on the root port above the switch: not on the switch pair's path.
    const acs = c.item('path.acs')
    expect(acs.verdict, acs.found).to.equal('pass')
    expect(acs.details.redirectOffPath.length).to.equal(1)
    const rp = acs.details.bridges.find((b: any) => b.bdf === acs.details.redirectOffPath[0])
    expect(rp.ctrl).to.include.members(['RR', 'CR'])
    await cmbMatches(vm, c, 64)
    const seen = await pairsMatchKernel(vm, c)
    console.log(`      pairs: ${seen.join(', ')}; summary ${JSON.stringify(c.report.summary)}; ${acs.found}`)
  })

  it('topo --probe: the headline is the switch pair: the kernel maps it, the read succeeds, the bytes never land (QEMU\'s IOMMU faults the bus address) → exit 8', async function () {
    this.timeout(300_000)
    const p = await probe(vm)
    const seen = await probeMatchesKernel(vm, p.probe)
    const peer = p.probe.pairs.find((x) => x.client === vm.devices.peer.bdf)!
    expect(peer).to.deep.include({kernel: 'yes', agrees: false})
    expect(peer.read.result).to.equal('corrupt')
    expect(p.probe.mismatches).to.have.length(1)
    expect(p.code).to.equal(8)
    const human = await vm.run(['node', 'bin/run.js', 'topo', vm.devices.cmb.bdf, vm.devices.peer.bdf, vm.devices.rc!.bdf, '--probe'], {timeoutMs: 180_000})
    expect(human.stdout).to.match(/MISMATCH: 1 pair/)
    console.log(`      probe: ${seen.join('; ')}`)
    console.log(human.stdout.split('\n').filter((l) => /probe|MISMATCH|→|p2pmem/.test(l)).join('\n').replaceAll(/^/gm, '      | '))
  })
})
