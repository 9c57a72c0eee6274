/**
 * The real-kernel guest harness, checked against a booted guest (topology 'both':
 * cmb + peer NVMe behind one PCIe switch, an rc NVMe on the root complex, ivshmem).
 * The guest kernel is the repository's own (vm/kernel/bzImage, SHA-256 checked) unless
 * IOPMEM_VM_KERNEL names another. Without one the suite FAILS with instructions (it never skips).
 */
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'

import {bootGuest, diskPattern, type Guest, KernelNotFoundError, resolveKernel} from '../../src/lib/vm/index.js'

const MiB = 1024 * 1024

interface HelperResult {
  ok: boolean
  bytes?: number
  errno?: number
  code?: string
  step?: string
  head?: string
  match?: boolean
  hex?: string
  readback?: boolean
}

function parseHelper(stdout: string): HelperResult {
  const line = stdout.trim().split('\n').pop() ?? ''
  return JSON.parse(line) as HelperResult
}

describe('VM harness: kernel lookup', () => {
  it('a missing kernel is an error that says how to get one', () => {
    expect(() => resolveKernel('/nonexistent/bzImage'))
      .to.throw(KernelNotFoundError)
      .with.property('message')
      .that.matches(/IOPMEM_VM_KERNEL/)
      .and.matches(/vm\/kernel/)
      .and.matches(/scripts\/build-kernel\.sh/)
  })
})

describe('VM harness: real guest (QEMU/TCG, topology "both")', function () {
  let vm: Guest

  before(async function () {
    this.timeout(300_000)
    const kernel = resolveKernel() // throws with instructions: the suite fails, never skips
    vm = await bootGuest({topology: 'both'})
    const d = vm.devices
    console.log(`      kernel ${kernel.path} (${vm.release}), state ${vm.stateDir}`)
    console.log(
      `      cmb ${d.cmb.bdf} ${d.cmb.namespace} | peer ${d.peer.bdf} ${d.peer.namespace} | ` +
        `rc ${d.rc?.bdf} ${d.rc?.namespace} | ivshmem ${d.ivshmem.bdf}`,
    )
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('boots Linux 6.12 and finds every device role (cmb, peer, rc NVMe; ivshmem)', async () => {
    expect(vm.release).to.match(/^6\.12\./)
    const d = vm.devices
    for (const n of [d.cmb, d.peer, d.rc!]) {
      expect(n.bdf).to.match(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/)
      expect(n.namespace).to.match(/^\/dev\/nvme\d+n1$/)
    }
    expect(d.rc!.bdf.startsWith('0000:00:')).to.equal(true, 'rc NVMe on the root bus')
    expect(d.cmb.bdf.startsWith('0000:00:')).to.equal(false, 'cmb NVMe behind the switch')
    expect(d.peer.bdf.startsWith('0000:00:')).to.equal(false, 'peer NVMe behind the switch')
    expect(new Set(d.nvme.map((n) => n.bdf)).size).to.equal(3)
    expect(d.pci.find((p) => p.bdf === d.ivshmem.bdf)).to.include({vendor: 0x1af4, device: 0x1110})
  })

  it('the CMB NVMe publishes its 64 MiB CMB as p2pmem (size in (60, 64] MiB, published = 1)', async () => {
    const dir = `/sys/bus/pci/devices/${vm.devices.cmb.bdf}/p2pmem`
    const r = await vm.run(['cat', `${dir}/size`, `${dir}/published`, `${dir}/available`], {check: true})
    const [size, published, available] = r.stdout.trim().split('\n').map(Number)
    expect(size).to.be.greaterThan(60 * MiB).and.at.most(64 * MiB)
    expect(published).to.equal(1)
    expect(available).to.be.greaterThan(0).and.at.most(size)
  })

  it('p2p-odirect: O_DIRECT read from the peer NVMe (same switch) into the CMB p2pmem succeeds and the bytes match', async () => {
    const bytes = MiB
    const offset = 64 * 1024
    const r = await vm.run([
      vm.helper('p2p-odirect'),
      '--verify',
      '--offset',
      String(offset),
      vm.devices.cmb.bdf,
      vm.devices.peer.namespace,
      String(bytes),
    ])
    const out = parseHelper(r.stdout)
    expect(out, r.stdout + r.stderr).to.include({ok: true, bytes, match: true})
    expect(r.code).to.equal(0)
    // The bytes that arrived in the BAR are the ones in the host's disk image.
    expect(out.head).to.equal(diskPattern('peer', offset, 32).toString('hex'))
  })

  it('p2p-odirect: the same read from the root-complex NVMe fails with EREMOTEIO (errno 121)', async () => {
    const r = await vm.run([vm.helper('p2p-odirect'), vm.devices.cmb.bdf, vm.devices.rc!.namespace, String(64 * 1024)])
    expect(parseHelper(r.stdout), r.stdout + r.stderr).to.include({ok: false, errno: 121, code: 'EREMOTEIO', step: 'pread'})
    expect(r.code).to.equal(1)
  })

  it('guest dmesg shows the refusal: "do not share an upstream bridge or whitelisted host bridge"', async () => {
    const r = await vm.run(['dmesg'], {check: true})
    const lines = r.stdout.split('\n').filter((l) => l.includes('do not share an upstream bridge or whitelisted host bridge'))
    expect(lines, 'dmesg lines about the refused P2P path').to.not.be.empty
    expect(lines.join('\n')).to.include(vm.devices.cmb.bdf)
  })

  it('ivshmem BAR2: bytes poked through resource2 in the guest appear in the host backing file', async () => {
    const offset = 0x1000 + 0x123
    const data = randomBytes(16)
    const r = await vm.run([
      vm.helper('p2p-odirect'),
      '--poke',
      `/sys/bus/pci/devices/${vm.devices.ivshmem.bdf}/resource2`,
      String(offset),
      data.toString('hex'),
    ])
    expect(parseHelper(r.stdout), r.stdout + r.stderr).to.include({ok: true, bytes: 16, readback: true})
    expect((await vm.readIvshmem(offset, 16)).toString('hex')).to.equal(data.toString('hex'))
  })

  it('ivshmem BAR2: bytes the host writes into the backing file are read through resource2_wc in the guest', async () => {
    const offset = 0x20_0000 + 0x40
    const data = randomBytes(32)
    await vm.writeIvshmem(offset, data)
    const r = await vm.run([
      vm.helper('p2p-odirect'),
      '--peek',
      `/sys/bus/pci/devices/${vm.devices.ivshmem.bdf}/resource2_wc`,
      String(offset),
      '32',
    ])
    expect(parseHelper(r.stdout), r.stdout + r.stderr).to.include({ok: true, hex: data.toString('hex')})
  })

  it('pmem: a write to /dev/pmem0 lands at guest physical 0x60000000 in the host RAM file', async () => {
    const data = randomBytes(4096)
    const r = await vm.run(['dd', 'of=/dev/pmem0', 'bs=4096', 'count=1', 'oflag=direct', 'status=none'], {input: data})
    expect(r.code, r.stderr).to.equal(0)
    expect((await vm.readGuestPhys(vm.devices.pmem!.physAddr, 4096)).equals(data)).to.equal(true)
  })

  it('node bin/run.js --version works in the guest (host node + checkout through the chroot)', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}
    const r = await vm.run(['node', 'bin/run.js', '--version'], {timeoutMs: 90_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.include(`iopmem/${pkg.version}`)
    const env = await vm.run(['node', '-p', 'process.cwd() + " " + process.env.IOPMEM_IN_GUEST'], {check: true})
    expect(env.stdout.trim()).to.equal(`${vm.repoRoot} 1`)
  })

  it('run() keeps stdout, stderr and exit code apart, runs commands concurrently, passes stdin and putFile() files', async () => {
    const shared = await vm.putFile('hello.txt', 'through the xfer share\n')
    const [a, b, c, d] = await Promise.all([
      vm.sh('echo out; echo err >&2; exit 3'),
      vm.run(['sh', '-c', 'printf "%s|" "$@"', 'sh', "it's", 'two words', '$HOME']),
      vm.run(['cat'], {input: 'from stdin\n'}),
      vm.run(['cat', shared]),
    ])
    expect(a).to.include({code: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false})
    expect(b.stdout).to.equal("it's|two words|$HOME|")
    expect(c.stdout).to.equal('from stdin\n')
    expect(d.stdout).to.equal('through the xfer share\n')
  })

  it('run() kills a command at its timeout (exit 137, timedOut) and the guest keeps serving', async () => {
    const r = await vm.run(['sleep', '60'], {timeoutMs: 2000})
    expect(r).to.include({code: 137, timedOut: true})
    expect((await vm.run(['true'])).code).to.equal(0)
  })
})
