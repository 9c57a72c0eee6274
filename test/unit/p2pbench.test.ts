import {expect} from 'chai'
import {Chalk} from 'chalk'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {daxViaNotes, type ViaInfo} from '../../src/lib/bench/p2p.js'
import type {PairAnalysis} from '../../src/lib/pci/topo.js'
import type {BenchP2pResult} from '../../src/lib/bench/index.js'
import {bufferName, renderP2pBench} from '../../src/ui/render-p2pbench.js'

const pair = (p2p: PairAnalysis['p2p'], reason: string): PairAnalysis =>
  ({provider: '0000:00:06.0', client: '0000:02:00.0', p2p, distance: 3, reasons: [reason]}) as unknown as PairAnalysis

describe('bench p2p: a DAX file as --via', () => {
  const base: ViaInfo = {kind: 'dax-file', target: '/mnt/dax/buf', path: '/mnt/dax/buf', device: '/dev/iopmem0', provider: '0000:00:06.0', pairs: []}

  it('names the device and function behind the file and says the kernel runs no P2PDMA check', () => {
    const n = daxViaNotes(base)
    expect(n).to.have.length(1)
    expect(n[0]).to.equal('--via /mnt/dax/buf: on /dev/iopmem0, memory of 0000:00:06.0; FS-DAX pages get no P2PDMA distance check, so the kernel will not refuse a peer.')
  })

  it('turns a pair topo refuses into a note that asks for --verify, not a refusal', () => {
    const n = daxViaNotes({...base, pairs: [pair('no', 'the host bridge is not whitelisted.'), pair('yes', 'same switch')]})
    expect(n).to.have.length(2)
    expect(n[1]).to.equal('topo: P2PDMA would refuse 0000:00:06.0 ↔ 0000:02:00.0 (the host bridge is not whitelisted); the host bridge must route this traffic — use --verify.')
  })

  it('says so when the file is not on a PCI device at all', () => {
    expect(daxViaNotes({...base, device: '/dev/pmem0', provider: undefined})[0]).to.match(/^--via \/mnt\/dax\/buf is on \/dev\/pmem0 with no PCI function behind it/)
  })
})

describe('bench p2p plan: notes about --via', () => {
  it('--buffer both uses the --via provider and does not call it unused; --buffer bounce says it is unused', async () => {
    const {planP2p} = await import('../../src/lib/bench/p2p.js')
    const {loadNative} = await import('../../src/native/index.js')
    const {standardMachine} = await import('../helpers/machines.js')
    const fx = standardMachine()
    try {
      const host = fx.host()
      for (const n of ['nvme0n1', 'nvme1n1']) fs.writeFileSync(path.join(fx.dev, n), Buffer.alloc(64 * 1024))
      const input = {src: path.join(fx.dev, 'nvme0n1'), dst: path.join(fx.dev, 'nvme1n1'), via: '0000:03:00.0', verify: false, force: true, engine: 'auto' as const, size: '4K', bs: '4K', qd: '1'}
      const both = planP2p(host, loadNative, {...input, mode: 'both'})
      expect(both.modes).to.deep.equal(['bounce', 'p2p'])
      expect(both.via).to.include({kind: 'p2pmem', target: '0000:03:00.0'})
      expect(both.notes.join('\n')).not.to.contain('not used')
      const bounce = planP2p(host, loadNative, {...input, mode: 'bounce'})
      expect(bounce.via).to.equal(undefined)
      expect(bounce.notes).to.include('--via is not used by --buffer bounce.')
    } finally {
      fx.cleanup()
    }
  })
})

describe('bench p2p: an I/O that fails mid-copy', () => {
  it('says which copy, where and how far it got, keeps code and exit, and points at the kernel log', async () => {
    const {copyError} = await import('../../src/lib/bench/p2p.js')
    const {NativeErrnoError} = await import('../../src/native/index.js')
    const raw = Object.assign(new NativeErrnoError(5, 'io_uring read', '/dev/nvme0n1', 'Input/output error'), {offset: 12 * 1024 * 1024, partial: {bytes: 8 * 1024 * 1024}})
    const e = copyError(raw, 'p2p', {path: '/sys/bus/pci/devices/0000:03:00.0/p2pmem/allocate'} as never) as InstanceType<typeof NativeErrnoError>
    expect(e.message).to.equal("The p2p copy failed: Input/output error (io_uring read '/dev/nvme0n1') at byte 12582912, after 8 MiB had been copied.")
    expect(e).to.include({code: 'EIO', exit: raw.exit, syscall: 'io_uring read', path: '/dev/nvme0n1'})
    expect(e.suggestions.join(' ')).to.contain('dmesg').and.contain('p2pmem/allocate')
    expect(e.suggestions.join(' '), 'an EIO of a p2p copy: the CMB/SGL hint').to.contain('sc 0x12').and.contain('nvme.sgl_threshold=0')
    const bounce = copyError(raw, 'bounce', undefined) as InstanceType<typeof NativeErrnoError>
    expect(bounce.suggestions.join(' '), 'not for bounce').to.not.contain('sc 0x12')
    const plain = new Error('not an errno error')
    expect(copyError(plain, 'bounce', undefined)).to.equal(plain)
  })
})

describe('bench p2p on screen: the p2pmem buffer', () => {
  const alloc = '/sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:00.0/0000:03:00.0/p2pmem/allocate'
  const mode = {
    mode: 'p2p', buffer: alloc, dstOffset: 67108864, bytes: 1 << 20, seconds: 1, gbps: 0.0225, iops: 172,
    latency: {p50Us: 33000, p99Us: 105000, p999Us: 117000}, cpu: {percentOfOneCore: 117},
    engine: 'io_uring', registeredBuffers: false, registerError: 'io_uring_register_buffers: Bad address', stopped: false,
  }
  const result = {
    src: {path: '/dev/nvme0n1'}, dst: {path: '/dev/nvme1n1'}, size: 1 << 26, bs: 1 << 17, qd: 8, jobs: 1,
    choices: [], notes: [], results: [mode], interrupted: false,
  } as unknown as BenchP2pResult

  it('a fitted screen names the chunk by its function and keeps within 80 columns; --wide gives the path', () => {
    const c = new Chalk({level: 0})
    const fitted = renderP2pBench(result, c, 80).split('\n')
    for (const l of fitted) expect([...l].length, l).to.be.at.most(80)
    expect(fitted.join('\n')).to.contain('buffer p2pmem of 0000:03:00.0 (its p2pmem/allocate; --wide for the path)')
    expect(fitted.join('\n')).to.not.contain(alloc)
    expect(renderP2pBench(result, c, Infinity)).to.contain(`buffer ${alloc}; dst offset 67108864`)
  })

  it('any other buffer is shown as it is', () => {
    expect(bufferName('system RAM (anonymous, page-aligned)', 80)).to.equal('system RAM (anonymous, page-aligned)')
    expect(bufferName('/mnt/dax/buf', 80)).to.equal('/mnt/dax/buf')
  })
})
