/**
 * The guest harness without booting: the QEMU command line (IOPMEM's topology, IOMMU, NIC,
 * DMA trace), the DMA trace counter and its checkpoint protocol, and the bundled kernel's
 * SHA-256 check.
 */
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {
  dmaCheckpoint,
  Guest,
  DmaServer,
  DmaTraceCounter,
  KernelNotFoundError,
  NIC_MAC,
  nvmeLayout,
  qemuArgs,
  type QemuPlan,
  resolveKernel,
  subtractTotals,
} from '../../src/lib/vm/index.js'

const GiB = 1n << 30n

function plan(over: Partial<QemuPlan> = {}): QemuPlan {
  const topology = over.topology ?? 'switch'
  return {
    kernel: '/k',
    initrd: '/i',
    append: 'console=ttyS0',
    memoryMiB: 2048,
    smp: 2,
    cpu: 'max',
    ramFile: '/s/ram',
    ivshmemFile: '/s/ivshmem',
    ivshmemMiB: 64,
    xferDir: '/s/xfer',
    serialLog: '/s/serial.log',
    nvme: nvmeLayout(topology, 2).map((n) => ({...n, serial: `iopmem-${n.role}`, image: `/s/nvme-${n.role}.img`, cmbMiB: n.role === 'cmb' ? 64 : undefined})),
    topology,
    ...over,
  }
}
/** The value after each occurrence of `flag`. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []))

describe('guest plan: NVMe layout', () => {
  it('cmb, peer, peer2, … side by side, plus rc on the root complex in "both"', () => {
    expect(nvmeLayout('switch', 4).map((n) => `${n.role}@${n.placement}`)).to.deep.equal(['cmb@switch', 'peer@switch', 'peer2@switch', 'peer3@switch'])
    expect(nvmeLayout('root', 3).map((n) => `${n.role}@${n.placement}`)).to.deep.equal(['cmb@root', 'peer@root', 'peer2@root'])
    expect(nvmeLayout('both').map((n) => `${n.role}@${n.placement}`)).to.deep.equal(['cmb@switch', 'peer@switch', 'rc@root'])
    expect(() => nvmeLayout('switch', 1)).to.throw(RangeError)
    expect(() => nvmeLayout('switch', 7)).to.throw(RangeError)
  })

  it('one downstream port per NVMe behind the switch; extra peers on the root complex get their own slots', () => {
    const sw = qemuArgs(plan({nvme: plan().nvme.concat(nvmeLayout('switch', 3).slice(2).map((n) => ({...n, serial: 'iopmem-peer2', image: '/s/p2.img'})))}))
    expect(values(sw, '-device').filter((d) => d.startsWith('xio3130-downstream'))).to.have.length(3)
    expect(values(sw, '-device').filter((d) => d.startsWith('nvme,')).map((d) => /bus=(\w+)/.exec(d)![1])).to.deep.equal(['dn1', 'dn2', 'dn3'])
    const root = qemuArgs(plan({topology: 'root', nvme: nvmeLayout('root', 3).map((n) => ({...n, serial: `iopmem-${n.role}`, image: `/s/${n.role}`}))}))
    expect(values(root, '-device').filter((d) => d.startsWith('nvme,')).map((d) => /addr=(0x\w+)/.exec(d)![1])).to.deep.equal(['0x3', '0x4', '0xa'])
    expect(values(root, '-device').some((d) => d.startsWith('xio3130'))).to.equal(false)
  })
})

describe('guest plan: IOMMU, NIC and the DMA trace', () => {
  it('--iommu: intel-iommu with interrupt remapping before every PCI device, and a split irqchip', () => {
    const a = qemuArgs(plan({iommu: true}))
    expect(values(a, '-machine')).to.deep.equal(['q35,memory-backend=ram0,kernel-irqchip=split'])
    const devices = values(a, '-device')
    expect(devices[0]).to.equal('intel-iommu,intremap=on')
    expect(values(qemuArgs(plan()), '-device').some((d) => d.includes('intel-iommu'))).to.equal(false)
  })

  it('--nic: behind the switch on its own downstream port, a fixed local MAC, and no host backend at all', () => {
    const a = qemuArgs(plan({nic: 'e1000e'}))
    const nic = values(a, '-device').find((d) => d.startsWith('e1000e'))
    expect(nic).to.equal(`e1000e,id=nic0,mac=${NIC_MAC},bus=dn3`)
    expect(values(a, '-device').filter((d) => d.startsWith('xio3130-downstream'))).to.have.length(3)
    expect(a).to.not.include('-netdev')
    expect(a).to.not.include('-net')
    expect(a.join(' ')).to.not.match(/netdev|hostfwd|user,|tap,|bridge/)
    expect(Number.parseInt(NIC_MAC.slice(0, 2), 16) & 2, 'locally administered MAC').to.equal(2)
    const root = qemuArgs(plan({topology: 'root', nvme: nvmeLayout('root').map((n) => ({...n, serial: n.role, image: n.role})), nic: 'virtio-net-pci'}))
    expect(values(root, '-device').find((d) => d.startsWith('virtio-net-pci'))).to.equal(`virtio-net-pci,id=nic0,mac=${NIC_MAC},bus=pcie.0,addr=0x7`)
  })

  it('the persistent disk: virtio-blk on its own root slot, after every NVMe, and none without one', () => {
    const a = qemuArgs(plan({persistentDisk: '/p/persist,1.img'}))
    expect(values(a, '-drive')).to.include('if=none,id=persist,file=/p/persist,,1.img,format=raw')
    expect(values(a, '-device')).to.include('virtio-blk-pci,drive=persist,serial=iopmem-persist,bus=pcie.0,addr=0x10')
    expect(qemuArgs(plan()).join(' ')).to.not.include('virtio-blk')
  })

  it('the DMA trace: the log file and every NVMe data-pointer event', () => {
    const a = qemuArgs(plan({dmaTraceFile: '/s/dma.trace'}))
    expect(values(a, '-D')).to.deep.equal(['/s/dma.trace'])
    expect(values(a, '-trace')).to.include.members(['enable=pci_nvme_map_addr', 'enable=pci_nvme_map_addr_cmb'])
    expect(qemuArgs(plan())).to.not.include('-trace')
  })
})

describe('DMA trace counter', () => {
  const isRam = (a: bigint) => a < 2n * GiB
  it('splits data pointers into guest RAM, device memory and a controller own CMB', () => {
    const c = new DmaTraceCounter('/nonexistent', isRam)
    c.feed(
      [
        'pci_nvme_map_prp trans_len 8192 len 4096 prp1 0x6fdd000 prp2 0x0 num_prps 3',
        'pci_nvme_map_addr addr 0x6fdd000 len 4096',
        'pci_nvme_map_addr addr 0xf0001000 len 8192',
        // QEMU traces a pointer into the controller's own CMB twice: map_addr, then map_addr_cmb.
        'pci_nvme_map_addr addr 0xf0000000 len 4096',
        'pci_nvme_map_addr_cmb addr 0xf0000000 len 4096',
        'pci_nvme_map_addr addr 0x880000000 len 512',
        'some other qemu log line',
        '',
      ].join('\n'),
    )
    expect(c.totals).to.deep.equal({ramBytes: 4096, deviceBytes: 8192 + 4096 + 512, ownCmbBytes: 4096, events: 4})
  })

  it('a line cut by a read boundary is counted once, when its end arrives', () => {
    const c = new DmaTraceCounter('/nonexistent', isRam)
    c.feed('pci_nvme_map_addr addr 0x1000 le')
    expect(c.totals.events).to.equal(0)
    c.feed('n 4096\npci_nvme_map_addr addr 0x2000 len 4096\n')
    expect(c.totals).to.deep.include({ramBytes: 8192, events: 2})
  })

  it('reads the trace file incrementally, and a checkpoint round trip through the server gives the difference', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-dma-'))
    try {
      const trace = path.join(dir, 'dma.trace')
      fs.writeFileSync(trace, 'pci_nvme_map_addr addr 0x1000 len 4096\n')
      fs.mkdirSync(path.join(dir, 'cp'))
      const server = new DmaServer(path.join(dir, 'cp'), new DmaTraceCounter(trace, isRam))
      const timer = setInterval(() => server.serve(), 5)
      try {
        const env = {IOPMEM_SANDBOX_DMA: path.join(dir, 'cp')}
        const before = await dmaCheckpoint(env, 5000)
        expect(before).to.deep.include({ramBytes: 4096})
        fs.appendFileSync(trace, 'pci_nvme_map_addr addr 0xf0000000 len 131072\npci_nvme_map_addr_cmb addr 0xf0000000 len 131072\npci_nvme_map_addr addr 0xfe000000 len 4096\n')
        const after = await dmaCheckpoint(env, 5000)
        expect(subtractTotals(after!, before!)).to.deep.equal({ramBytes: 0, deviceBytes: 135_168, ownCmbBytes: 131_072, events: 2})
        expect(fs.readdirSync(path.join(dir, 'cp')), 'requests and answers are cleaned up').to.deep.equal([])
      } finally {
        clearInterval(timer)
      }
      expect(await dmaCheckpoint({}, 100), 'outside a sandbox').to.equal(undefined)
      expect(await dmaCheckpoint({IOPMEM_SANDBOX_DMA: path.join(dir, 'cp')}, 100), 'nobody answers').to.equal(undefined)
      expect(fs.readdirSync(path.join(dir, 'cp'))).to.deep.equal([])
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('the bundled kernel: vm/kernel/bzImage, checked against SHA256SUMS', () => {
  let root: string
  const fakeBzImage = (version: string) => {
    const b = Buffer.alloc(0x800)
    b.write('HdrS', 0x202, 'ascii')
    b.writeUInt16LE(0x200, 0x20e)
    b.write(`${version}\0`, 0x400, 'latin1')
    return b
  }
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-kroot-'))
    fs.mkdirSync(path.join(root, 'vm/kernel'), {recursive: true})
  })
  afterEach(() => fs.rmSync(root, {recursive: true, force: true}))

  it('boots the bundled kernel only when its SHA-256 matches', () => {
    const img = fakeBzImage('6.12.117 (iopmem@iopmem) #1 SMP')
    fs.writeFileSync(path.join(root, 'vm/kernel/bzImage'), img)
    fs.writeFileSync(path.join(root, 'vm/kernel/SHA256SUMS'), `${sha(img)}  bzImage\n${'0'.repeat(64)}  config\n`)
    expect(resolveKernel(undefined, {}, root)).to.deep.include({release: '6.12.117', source: 'bundled', sha256: sha(img)})
    fs.appendFileSync(path.join(root, 'vm/kernel/bzImage'), 'tampered')
    expect(() => resolveKernel(undefined, {}, root)).to.throw(KernelNotFoundError, /has SHA-256 [0-9a-f]{64}, but SHA256SUMS says/)
  })

  it('refuses a bundled kernel without sums, without a bzImage line, or that is no bzImage', () => {
    fs.writeFileSync(path.join(root, 'vm/kernel/bzImage'), fakeBzImage('6.12.117'))
    expect(() => resolveKernel(undefined, {}, root)).to.throw(KernelNotFoundError, /SHA256SUMS is missing/)
    fs.writeFileSync(path.join(root, 'vm/kernel/SHA256SUMS'), `${'0'.repeat(64)}  config\n`)
    expect(() => resolveKernel(undefined, {}, root)).to.throw(KernelNotFoundError, /has no line for bzImage/)
    fs.writeFileSync(path.join(root, 'vm/kernel/bzImage'), 'version https://git-lfs.github.com/spec/v1\n')
    expect(() => resolveKernel(undefined, {}, root)).to.throw(KernelNotFoundError, /is not an x86 bzImage/)
    fs.rmSync(path.join(root, 'vm/kernel/bzImage'))
    expect(() => resolveKernel(undefined, {}, root)).to.throw(KernelNotFoundError, /the repository's own kernel names .*vm\/kernel\/bzImage, which does not exist[\s\S]*git checkout -- vm\/kernel/)
  })

  it('an explicit kernel or IOPMEM_VM_KERNEL comes first and is not checked against the sums', () => {
    const img = fakeBzImage('6.1.0-test')
    const p = path.join(root, 'other-bzImage')
    fs.writeFileSync(p, img)
    expect(resolveKernel(p, {IOPMEM_VM_KERNEL: '/nonexistent'}, root)).to.deep.include({source: 'option', release: '6.1.0-test'})
    expect(resolveKernel(undefined, {IOPMEM_VM_KERNEL: p}, root)).to.deep.include({source: 'env', release: '6.1.0-test'})
    expect(() => resolveKernel(undefined, {IOPMEM_VM_KERNEL: '/nonexistent/bz'}, root)).to.throw(KernelNotFoundError, /IOPMEM_VM_KERNEL names \/nonexistent\/bz/)
  })
})

describe('guest RAM layout (q35)', () => {
  const guest = (mib: number) => new Guest('/nonexistent', false, false, {} as never, 'switch', '/', mib, 1000, '')
  it('below 2.75 GiB all RAM sits under 4 GiB', () => {
    const g = guest(1792)
    expect(g.isRam(0)).to.equal(true)
    expect(g.isRam(1792 * 1024 * 1024 - 1)).to.equal(true)
    expect(g.isRam(1792 * 1024 * 1024)).to.equal(false)
    expect(g.isRam(0x1_0000_0000)).to.equal(false)
    expect(g.isRam(-1)).to.equal(false)
    expect(g.physToRamOffset(0x1234)).to.equal(0x1234)
  })
  it('from 2.75 GiB RAM splits at 2 GiB and continues at 4 GiB, one file', () => {
    const g = guest(4096)
    expect(g.isRam(0x7fff_ffff)).to.equal(true)
    expect(g.isRam(0x8000_0000)).to.equal(false) // the PCI hole
    expect(g.isRam(0xfebf_0000n)).to.equal(false)
    expect(g.isRam(0x1_0000_0000n)).to.equal(true)
    expect(g.isRam(0x1_7fff_ffff)).to.equal(true)
    expect(g.isRam(0x1_8000_0000)).to.equal(false)
    expect(g.physToRamOffset(0x1_0000_0000)).to.equal(0x8000_0000)
    expect(() => g.physToRamOffset(0x9000_0000)).to.throw(RangeError, /not guest RAM/)
  })
})
