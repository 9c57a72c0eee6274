/**
 * The sandbox's --iommu and --nic against the real kernel: QEMU's intel-iommu with interrupt
 * remapping (`intel_iommu=on`), the IOMMU groups and ACS the kernel then sets up, topo's verdicts
 * beside what the kernel does with an O_DIRECT read into the CMB's p2pmem, and what actually
 * reaches the CMB; then a second boot with the parameters that change it.
 *
 * What QEMU 7.2 models (read in its source, seen here in config space): only pcie-root-port has
 * an ACS capability (SV TB RR CR UF DT advertised, control 0 at reset); the x3130 switch's
 * upstream and downstream ports have none. Linux sets SV|RR|CR|UF on the root port when an IOMMU
 * asks for ACS. P2PDMA looks for redirect (RR|CR|EC) only below the pair's common upstream
 * bridge, so the switch pair is not affected.
 *
 * What this suite proves about QEMU's IOMMU: the kernel maps the switch pair by bus address
 * (PCI_P2PDMA_MAP_BUS_ADDR), which bypasses the IOMMU's page tables, because on real hardware the
 * switch routes such a transfer without the root complex. QEMU models no routing inside a switch:
 * every device DMA goes through its vIOMMU, which faults the untranslated bus address, and QEMU's
 * NVMe still completes the command with success. The read "succeeds" and the CMB holds zeros, the
 * silent failure users report on real platforms whose ACS sends P2P up to a translating IOMMU.
 * With an identity domain (iommu.passthrough=1) the same read lands.
 */
import {expect} from 'chai'

import {bootGuest, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const PCI_ACS_RR = 0x04
const PCI_ACS_CR = 0x08
const KiB = 1024

/** Walks the PCIe extended capabilities of each BDF in the guest: {bdf: {extCaps, acs?: {offset, cap, ctrl}}}. */
const EXT_CAPS_PY = `
import json, struct, sys
out = {}
for bdf in sys.argv[1:]:
    c = open("/sys/bus/pci/devices/%s/config" % bdf, "rb").read()
    off, caps, acs = 0x100, [], None
    while off and off + 8 <= len(c):
        h = struct.unpack_from("<I", c, off)[0]
        if h in (0, 0xFFFFFFFF):
            break
        caps.append(h & 0xFFFF)
        if h & 0xFFFF == 0x0D:
            acs = {"offset": off, "cap": struct.unpack_from("<H", c, off + 4)[0], "ctrl": struct.unpack_from("<H", c, off + 6)[0]}
        off = (h >> 20) & 0xFFC
    out[bdf] = {"extCaps": caps, "acs": acs}
print(json.dumps(out))
`

interface Helper {
  ok: boolean
  bytes?: number
  code?: string
  step?: string
  match?: boolean
}

async function extCaps(vm: Guest, bdfs: string[]): Promise<Record<string, {extCaps: number[]; acs: {offset: number; cap: number; ctrl: number} | null}>> {
  const script = await vm.putFile('extcaps.py', EXT_CAPS_PY)
  const r = await vm.run(['/usr/bin/python3', script, ...bdfs], {check: true})
  return JSON.parse(r.stdout)
}

/** The bridges above a function, nearest last: [root port, switch upstream, switch downstream]. */
async function bridgesAbove(vm: Guest, bdf: string): Promise<string[]> {
  const r = await vm.sh(`readlink -f /sys/bus/pci/devices/${bdf}`, {check: true})
  const parts = r.stdout.trim().split('/').filter((p) => /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(p))
  return parts.slice(0, -1)
}

async function groups(vm: Guest): Promise<Map<string, {group: number; type: string}>> {
  const r = await vm.sh('for g in /sys/kernel/iommu_groups/*; do for d in $g/devices/*; do echo "${g##*/} $(cat $g/type) ${d##*/}"; done; done', {check: true})
  const m = new Map<string, {group: number; type: string}>()
  for (const line of r.stdout.trim().split('\n')) {
    const [g, type, bdf] = line.split(' ')
    if (bdf) m.set(bdf, {group: Number(g), type})
  }
  return m
}

async function p2pRead(vm: Guest, provider: string, dev: string): Promise<Helper & {raw: string}> {
  const r = await vm.run([vm.helper('p2p-odirect'), '--verify', provider, dev, String(64 * KiB)])
  const raw = r.stdout + r.stderr
  return {...(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Helper), raw}
}

describe('guest: --iommu and --nic (intel-iommu, ACS, IOMMU groups, the NIC)', function () {
  let vm: Guest
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 120_000})

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'both', iommu: true, nic: true})
    const d = vm.devices
    console.log(`      guest ${vm.release} (${vm.append}): cmb ${d.cmb.bdf}, peer ${d.peer.bdf}, rc ${d.rc!.bdf}, nic ${d.nic!.bdf} ${d.nic!.interface}`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('the kernel runs the IOMMU: translated DMA domains, and ACS set where QEMU offers it (the root port, not the switch)', async () => {
    const {cmb, peer, nic} = vm.devices
    const dmesg = (await vm.sh('dmesg | grep -iE "DMAR|IOMMU|remapping" | head -20')).stdout
    expect(dmesg).to.match(/DMAR: IOMMU enabled|DMAR-IR: Enabled IRQ remapping/)
    const g = await groups(vm)
    for (const f of [cmb.bdf, peer.bdf, nic!.bdf]) expect(g.get(f)?.type, `${f}'s IOMMU group`).to.match(/^DMA(-FQ)?$/)
    const [rp, up, dn] = await bridgesAbove(vm, cmb.bdf)
    const caps = await extCaps(vm, [rp, up, dn])
    expect(caps[rp].acs, `root port ${rp} has ACS`).to.not.equal(null)
    expect(caps[rp].acs!.ctrl & (PCI_ACS_RR | PCI_ACS_CR), 'the kernel set request and completion redirect on the root port').to.equal(PCI_ACS_RR | PCI_ACS_CR)
    expect(caps[up].acs, `switch upstream ${up}: no ACS in QEMU 7.2`).to.equal(null)
    expect(caps[dn].acs, `switch downstream ${dn}: no ACS in QEMU 7.2`).to.equal(null)
    // With no ACS on the switch ports, each NVMe still gets a group of its own (only the root port's ACS is consulted above them).
    expect(g.get(cmb.bdf)!.group).to.not.equal(g.get(peer.bdf)!.group)
    console.log(`      root port ${rp} ACS cap 0x${caps[rp].acs!.cap.toString(16)} ctrl 0x${caps[rp].acs!.ctrl.toString(16)}; groups cmb ${g.get(cmb.bdf)!.group} peer ${g.get(peer.bdf)!.group} nic ${g.get(nic!.bdf)!.group} (${g.get(cmb.bdf)!.type})`)
  })

  it("topo's verdicts under the IOMMU match the kernel's: the switch pair and NIC↔CMB yes, the root-complex NVMe no", async () => {
    const {cmb, peer, rc, nic} = vm.devices
    const r = await iopmem(['topo', cmb.bdf, peer.bdf, rc!.bdf, nic!.bdf, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const t = guestJson(r)
    const pair = (a: string, b: string) => t.pairs.find((p: any) => [p.provider, p.client].sort().join() === [a, b].sort().join())
    expect(pair(cmb.bdf, peer.bdf)).to.deep.include({p2p: 'yes', mapType: 'bus-addr', distance: 4})
    expect(pair(cmb.bdf, peer.bdf).acsRedirect).to.deep.equal([])
    expect(pair(cmb.bdf, nic!.bdf)).to.deep.include({p2p: 'yes', mapType: 'bus-addr', distance: 4})
    expect(pair(cmb.bdf, rc!.bdf)).to.deep.include({p2p: 'no', mapType: 'not-supported'})
    // The kernel: it maps the switch pair (the read returns all its bytes, no EREMOTEIO) and
    // refuses the root-complex NVMe.
    const sw = await p2pRead(vm, cmb.bdf, peer.namespace)
    expect(sw.bytes, sw.raw).to.equal(64 * KiB)
    expect(sw.code, sw.raw).to.not.equal('EREMOTEIO')
    const refused = await p2pRead(vm, cmb.bdf, rc!.namespace)
    expect(refused, refused.raw).to.deep.include({ok: false, code: 'EREMOTEIO'})
    console.log(`      kernel: peer → CMB mapped by bus address (read returned ${sw.bytes} B); rc → CMB EREMOTEIO, as topo said`)
  })

  it("…but QEMU's IOMMU faults the bus address the kernel handed the peer: the read succeeds and the CMB holds zeros", async () => {
    const {cmb, peer} = vm.devices
    // intel-iommu prints faults under one ratelimit (5 s, burst 10, drivers/iommu/intel/dmar.c
    // dmar_fault): the previous check's faults can silence this one's unless a window passes.
    await vm.sh('sleep 6; dmesg -c > /dev/null')
    const sw = await p2pRead(vm, cmb.bdf, peer.namespace)
    expect(sw, sw.raw).to.deep.include({ok: false, bytes: 64 * KiB, step: 'verify', code: 'MISMATCH', match: false})
    const bar = BigInt((await vm.sh(`sed -n 3p /sys/bus/pci/devices/${cmb.bdf}/resource`, {check: true})).stdout.split(' ')[0])
    const dmesg = (await vm.sh('dmesg')).stdout
    const fault = /DMAR: \[DMA Write[^\]]*\] Request device \[([0-9a-f:.]+)\] fault addr (0x[0-9a-f]+)/.exec(dmesg)
    expect(fault, dmesg).to.not.equal(null)
    expect(`0000:${fault![1]}`).to.equal(peer.bdf)
    const addr = BigInt(fault![2])
    expect(addr >= bar && addr < bar + 64n * 1024n * 1024n, `fault address ${fault![2]} lies in the CMB BAR (0x${bar.toString(16)})`).to.equal(true)
    // The controller's own CMB needs no translation: QEMU serves it inside the device.
    const own = await p2pRead(vm, cmb.bdf, cmb.namespace)
    expect(own, own.raw).to.deep.include({ok: true, match: true})
    console.log(`      DMAR fault: peer ${peer.bdf} writing ${fault![2]} (CMB BAR 0x${bar.toString(16)}); the CMB's own namespace → CMB lands`)
  })

  it('the NIC: e1000e behind the switch beside the CMB, up, with only its IPv6 link-local address', async () => {
    const {cmb, nic} = vm.devices
    expect(nic!.model).to.equal('e1000e')
    const [, cmbUp] = await bridgesAbove(vm, cmb.bdf)
    const [, nicUp] = await bridgesAbove(vm, nic!.bdf)
    expect(nicUp, 'same switch').to.equal(cmbUp)
    const a = await vm.run(['ip', '-o', 'addr', 'show', 'dev', nic!.interface], {check: true})
    const addrs = [...a.stdout.matchAll(/\binet6? (\S+)/g)].map((m) => m[1])
    expect(addrs.length).to.be.greaterThan(0)
    for (const x of addrs) expect(x, 'link-local only').to.match(/^fe80:/)
    const lo = await vm.run(['ip', '-o', 'addr', 'show', 'dev', 'lo'], {check: true})
    expect(lo.stdout).to.contain('127.0.0.1/8')
    console.log(`      ${nic!.interface} (${nic!.bdf}, ${nic!.mac}): ${addrs.join(' ')}`)
  })
})

describe('guest: --iommu --append "iommu.passthrough=1 pci=disable_acs_redir=pci:1b36:000c" (the next boot)', function () {
  let vm: Guest

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'switch', iommu: true, extraAppend: 'iommu.passthrough=1 pci=disable_acs_redir=pci:1b36:000c'})
    console.log(`      guest ${vm.release} (${vm.append})`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('the parameters take effect at boot: identity domains; no redirect on the root port, whose functions now share one group', async () => {
    const {cmb, peer} = vm.devices
    const g = await groups(vm)
    for (const f of [cmb.bdf, peer.bdf]) expect(g.get(f)?.type).to.equal('identity')
    const [rp] = await bridgesAbove(vm, cmb.bdf)
    const caps = await extCaps(vm, [rp])
    expect(caps[rp].acs!.ctrl & (PCI_ACS_RR | PCI_ACS_CR), 'RR and CR cleared by disable_acs_redir').to.equal(0)
    // disable_acs_redir writes (power-on value & ~(RR|CR|EC)); QEMU's power-on value is 0, so SV and UF go too,
    // and without them the root port no longer isolates what is below it.
    expect(g.get(cmb.bdf)!.group).to.equal(g.get(peer.bdf)!.group)
    console.log(`      root port ${rp} ACS ctrl 0x${caps[rp].acs!.ctrl.toString(16)}; cmb and peer in group ${g.get(cmb.bdf)!.group} (identity)`)
  })

  it('P2P through the switch lands: peer → CMB p2pmem, O_DIRECT, the bytes verified', async () => {
    const {cmb, peer} = vm.devices
    const sw = await p2pRead(vm, cmb.bdf, peer.namespace)
    expect(sw, sw.raw).to.deep.include({ok: true, bytes: 64 * KiB, match: true})
  })
})
