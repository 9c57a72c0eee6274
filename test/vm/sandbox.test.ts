/**
 * `iopmem sandbox` from the host, as a user runs it: each case boots its own guest
 * through bin/run.js, runs a command inside, and must leave no QEMU and no state
 * directory behind — also when the guest hangs or the user presses Ctrl-C.
 */
import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {resolveKernel} from '../../src/lib/vm/index.js'
import {commandIdOf, expectSchema} from '../helpers/schemas.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

function qemuUsing(dir: string): string[] {
  const ps = execFileSync('ps', ['-eo', 'pid=,args='], {encoding: 'utf8'})
  return ps.split('\n').filter((l) => l.includes('qemu-system') && l.includes(dir))
}

describe('guest: iopmem sandbox', function () {
  let tmp: string
  const sandbox = (args: string[], timeoutMs = 240_000) => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/run.js'), 'sandbox', ...args], {
      encoding: 'utf8',
      env: {...process.env, TMPDIR: tmp, NO_COLOR: '1'},
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    })
    // --json: sandbox's own document, or (after --) the guest command's; either is checked against its schema.
    if (r.status === 0 && args.includes('--json')) {
      const inner = args.indexOf('--')
      expectSchema(inner >= 0 ? commandIdOf(args.slice(inner + 1)) : 'sandbox', JSON.parse(r.stdout))
    }
    return {code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr}
  }

  before(() => {
    resolveKernel() // no kernel: fail with instructions, never skip
  })

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-sandbox-test-'))
  })

  afterEach(() => {
    const left = fs.readdirSync(tmp)
    const qemu = qemuUsing(tmp)
    fs.rmSync(tmp, {recursive: true, force: true})
    expect(qemu, 'a QEMU was left running').to.deep.equal([])
    expect(left, 'state left in TMPDIR').to.deep.equal([])
  })

  it('runs `list --json` in the guest and streams its output back', () => {
    const r = sandbox(['--', 'list', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const fns = JSON.parse(r.stdout).functions as Array<{p2pmem: unknown; blockDevices: unknown[]}>
    expect(fns.filter((f) => f.p2pmem !== null)).to.have.length(1)
    expect(fns.filter((f) => f.blockDevices.length > 0)).to.have.length(3)
    console.log(`      ${fns.length} functions with device memory in the guest`)
  })

  it('--json describes the machine: the switch pair can do P2P, the root-complex NVMe cannot', () => {
    const r = sandbox(['--json'])
    expect(r.code, r.stderr).to.equal(0)
    const d = JSON.parse(r.stdout)
    expect(d.release).to.match(/^6\.12\./)
    const role = (x: string) => d.devices.nvme.find((n: any) => n.role === x).bdf
    const pair = (a: string, b: string) => d.topo.pairs.find((p: any) => [p.provider, p.client].sort().join() === [a, b].sort().join())
    expect(pair(role('cmb'), role('peer')).p2p).to.equal('yes')
    expect(pair(role('cmb'), role('rc')).p2p).to.equal('no')
    expect(d.devices.nvme.find((n: any) => n.role === 'cmb').cmbMiB).to.equal(64)
    console.log(`      cmb ${role('cmb')}, peer ${role('peer')}, rc ${role('rc')}, ivshmem ${d.devices.ivshmem.bdf}`)
  })

  it('runs topo and a verified bench p2p (bounce and p2p) through the sandbox', () => {
    const t = sandbox(['--topology', 'switch', '--', 'topo'])
    expect(t.code, t.stderr).to.equal(0)
    expect(t.stdout).to.match(/PIX 4 ✓/)
    const r = sandbox(['--topology', 'switch', '--', 'bench', 'p2p', '--buffer', 'both', '--verify', '--size', '1M', '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const b = JSON.parse(r.stdout)
    expect(b.results.map((x: any) => [x.mode, x.verify?.ok])).to.deep.equal([
      ['bounce', true],
      ['p2p', true],
    ])
    // The demo's headline: the sandbox counted where the copies went from QEMU's NVMe trace.
    expect(b.results.map((x: any) => [x.mode, x.dma?.ramBytes, x.dma?.deviceBytes])).to.deep.equal([
      ['bounce', 2 * 1024 * 1024, 0],
      ['p2p', 0, 2 * 1024 * 1024],
    ])
    expect(b.p2pmem.availableDuring).to.be.lessThan(b.p2pmem.availableBefore)
    expect(b.p2pmem.availableAfter).to.equal(b.p2pmem.availableBefore)
    console.log(`      bench p2p via ${b.p2pmem.bdf}: both modes verified; p2pmem ${b.p2pmem.availableBefore} → ${b.p2pmem.availableDuring} → ${b.p2pmem.availableAfter}`)
  })

  it('--iommu --nic --nvme 3 --pmem 0 --json: the grown machine described, IOMMU groups, the NIC link-local only', () => {
    const r = sandbox(['--iommu', '--nic', '--nvme', '3', '--pmem', '0', '--topology', 'switch', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const d = JSON.parse(r.stdout)
    expect(d.kernelSource).to.equal(process.env.IOPMEM_VM_KERNEL ? 'env' : 'bundled')
    if (d.kernelSource === 'bundled') expect(d.kernelSha256).to.match(/^[0-9a-f]{64}$/)
    expect(d.commandLine).to.contain('intel_iommu=on').and.not.contain('memmap=')
    expect(d.iommu.enabled).to.equal(true)
    expect(d.dmaTrace, 'no DMA accounting over IO virtual addresses').to.equal(false)
    expect(d.devices.pmem).to.equal(undefined)
    expect(d.devices.nvme.map((n: any) => `${n.role}@${n.placement}`)).to.deep.equal(['cmb@switch', 'peer@switch', 'peer2@switch'])
    const inGroup = (bdf: string) => d.iommu.groups.find((g: any) => g.devices.includes(bdf))
    for (const n of d.devices.nvme) expect(inGroup(n.bdf)?.type, n.bdf).to.match(/^DMA(-FQ)?$/)
    expect(d.devices.nic).to.deep.include({model: 'e1000e', mac: '02:69:6f:70:6d:01'})
    expect(d.devices.nic.addresses.length).to.be.greaterThan(0)
    for (const a of d.devices.nic.addresses) expect(a).to.match(/^fe80:/)
    const nicPair = d.topo.pairs.find((p: any) => [p.provider, p.client].includes(d.devices.nic.bdf) && [p.provider, p.client].includes(d.devices.nvme[0].bdf))
    expect(nicPair.p2p).to.equal('yes')
    console.log(`      ${d.iommu.groups.length} IOMMU groups; nic ${d.devices.nic.bdf} ${d.devices.nic.addresses.join(' ')}; NIC↔CMB ${nicPair.pathClass} ${nicPair.distance}`)
  })

  it("returns the inner command's exit code", () => {
    const r = sandbox(['--topology', 'switch', '--', 'list', '0000:42:00.0'])
    expect(r.code).to.equal(3)
    expect(r.stderr).to.contain('No PCI function 0000:42:00.0')
  })

  it('a guest that does not come up in --boot-timeout is killed, with the serial log, exit 6', () => {
    const r = sandbox(['--boot-timeout', '2', '--', 'list'])
    expect(r.code, r.stderr).to.equal(6)
    expect(r.stderr).to.contain('The sandbox guest failed')
    expect(r.stderr).to.match(/serial console/)
  })

  it('Ctrl-C while the guest runs: QEMU gone, state removed', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/run.js'), 'sandbox', '--', 'list'], {
      env: {...process.env, TMPDIR: tmp},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // Wait until QEMU is up, then interrupt.
    const t0 = Date.now()
    while (qemuUsing(tmp).length === 0) {
      if (Date.now() - t0 > 60_000) throw new Error('QEMU never started')
      await new Promise((r) => setTimeout(r, 200))
    }
    await new Promise((r) => setTimeout(r, 1500))
    child.kill('SIGINT')
    const how = await new Promise<{code: number | null; signal: string | null}>((resolve) => child.on('exit', (code, signal) => resolve({code, signal})))
    expect(how.signal === 'SIGINT' || how.code === 130, JSON.stringify(how)).to.equal(true)
    console.log(`      exited by ${how.signal ?? how.code} ${((Date.now() - t0) / 1000).toFixed(1)} s after start`)
  })
})
