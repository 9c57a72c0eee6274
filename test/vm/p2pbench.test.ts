/**
 * `iopmem bench p2p` against a real kernel: two NVMe behind one PCIe switch
 * (the CMB one lends its p2pmem as --via) and one NVMe on the root complex.
 * The same bytes go through system RAM and through the CMB; the host checks
 * the destination's disk image; the p2pmem pool shrinks while the chunk is
 * mapped and comes back after; the root-complex NVMe is refused as topo says,
 * and the kernel's EREMOTEIO is shown. Timings under TCG are not asserted.
 */
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'

import {bootGuest, diskPattern, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const MiB = 1024 * 1024

describe('guest: bench p2p (bounce vs CMB p2pmem)', function () {
  let vm: Guest
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 240_000})
  const json = guestJson
  const available = async (bdf: string): Promise<number> =>
    Number((await vm.run(['cat', `/sys/bus/pci/devices/${bdf}/p2pmem/available`], {check: true})).stdout.trim())
  const readImage = (file: string, off: number, len: number): Buffer => {
    const fd = fs.openSync(file, 'r')
    try {
      const b = Buffer.alloc(len)
      fs.readSync(fd, b, 0, len, off)
      return b
    } finally {
      fs.closeSync(fd)
    }
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'both'})
    const d = vm.devices
    console.log(`      guest ${vm.release}: cmb ${d.cmb.bdf} ${d.cmb.namespace}, peer ${d.peer.bdf} ${d.peer.namespace}, rc ${d.rc!.bdf} ${d.rc!.namespace}`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('why the guest boots with nvme.sgl_threshold=0: QEMU refuses an SGL in RAM describing the controller\'s own CMB (status 0x12)', async function () {
    this.timeout(120_000)
    const {cmb} = vm.devices
    const T = '/sys/module/nvme/parameters/sgl_threshold'
    expect((await vm.sh(`cat ${T}`, {check: true})).stdout).to.equal('0\n')
    // One O_DIRECT read of the CMB's own namespace into two separate 128 KiB pieces of its
    // p2pmem: a request of two large segments, which Linux describes with an SGL (list in RAM)
    // once the average segment reaches sgl_threshold, and with PRPs below it.
    const script = [
      'import hashlib, mmap, os, sys',
      'bdf, dev = sys.argv[1:]',
      'K = 128 * 1024',
      'fd = os.open("/sys/bus/pci/devices/" + bdf + "/p2pmem/allocate", os.O_RDWR)',
      'm = mmap.mmap(fd, 4 * K, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)',
      'v = memoryview(m)',
      'd = os.open(dev, os.O_RDONLY | os.O_DIRECT)',
      'try:',
      '    n = os.preadv(d, [v[2 * K:3 * K], v[0:K]], 0)',
      '    print("ok", n, hashlib.sha256(bytes(v[2 * K:3 * K]) + bytes(v[0:K])).hexdigest())',
      'except OSError as e:',
      '    print("err", e.errno)',
      'v.release(); m.close()',
    ].join('\n')
    const py = await vm.putFile('cmb-sgl.py', script)
    const read = async (): Promise<string> => (await vm.run(['/usr/bin/python3', py, cmb.bdf, cmb.namespace], {check: true})).stdout.trim()
    const mark = Number((await vm.sh('dmesg | wc -l', {check: true})).stdout)
    try {
      await vm.sh(`echo 32768 > ${T}`, {check: true})
      expect(await read(), 'with SGLs the controller refuses the read').to.equal('err 5')
      const log = (await vm.sh(`dmesg | tail -n +${mark + 1}`)).stdout
      expect(log).to.match(/I\/O Error \(sct 0x0 \/ sc 0x12\)/)
      await vm.sh(`echo 0 > ${T}`, {check: true})
      const want = createHash('sha256').update(diskPattern('cmb', 0, 256 * 1024)).digest('hex')
      expect(await read(), 'with PRPs the same read lands in the CMB').to.equal(`ok ${256 * 1024} ${want}`)
    } finally {
      await vm.sh(`echo 0 > ${T}`)
    }
    console.log('      sgl_threshold 32768: EIO, sc 0x12 (Invalid Use of CMB); 0: the read lands, bytes checked against the image pattern')
  })

  it('--buffer both --verify moves the same bytes through RAM and through the CMB; the host sees them in the image', async function () {
    this.timeout(300_000)
    const {cmb, peer} = vm.devices
    const before = await available(cmb.bdf)
    const hostBefore = vm.dmaTotals()!
    const r = await iopmem(['bench', 'p2p', '--src', cmb.namespace, '--dst', peer.namespace, '--via', cmb.bdf, '--buffer', 'both', '--verify',
      '--size', '1M', '--bs', '128K', '--qd', '4', '--yes', '--json'])
    const hostAfter = vm.dmaTotals()!
    expect(r.code, r.stderr + r.stdout).to.equal(0)
    const j = json(r)

    // Where the data went, from QEMU's trace of every NVMe data pointer: the seeds' claim, counted.
    // bounce: the source NVMe writes 1 MiB into RAM, the destination reads it back out of RAM;
    // p2p: the CMB controller writes into its own CMB, the peer reads from that BAR; none in RAM.
    expect(j.results[0].dma, 'bounce').to.deep.equal({ramBytes: 2 * MiB, deviceBytes: 0, ownCmbBytes: 0, events: j.results[0].dma.events})
    expect(j.results[1].dma, 'p2p').to.deep.equal({ramBytes: 0, deviceBytes: 2 * MiB, ownCmbBytes: MiB, events: j.results[1].dma.events})
    // From the host: over the whole command device memory saw exactly the p2p copy, and RAM at
    // least the bounce copy plus the --verify read-backs (source and destination, per mode).
    expect(hostAfter.deviceBytes - hostBefore.deviceBytes).to.equal(2 * MiB)
    expect(hostAfter.ramBytes - hostBefore.ramBytes).to.be.at.least(2 * MiB + 4 * MiB)
    console.log(`      DMA trace: bounce ${j.results[0].dma.ramBytes} B through RAM; p2p ${j.results[1].dma.deviceBytes} B through device memory, 0 through RAM`)
    expect(j.results.map((m: any) => m.mode)).to.deep.equal(['bounce', 'p2p'])
    for (const m of j.results) {
      expect(m.bytes).to.equal(MiB)
      expect(m.verify.ok, `${m.mode} verified`).to.equal(true)
      expect(m.verify.srcHash).to.equal(m.verify.dstHash)
      expect(m.latency.count).to.equal(8)
    }
    expect(j.results[1].buffer).to.match(/p2pmem\/allocate$/)
    expect(j.results[0].dstOffset).to.equal(0)
    expect(j.results[1].dstOffset).to.equal(MiB)
    console.log(`      engines: ${j.results.map((m: any) => `${m.mode} ${m.engine}${m.registeredBuffers ? ' (registered)' : ` (unregistered: ${m.registerError ?? m.fallbackReason})`}`).join(', ')}`)

    // The p2p path used the CMB: the pool lost the chunk while it was mapped and got it back.
    expect(j.p2pmem.bdf).to.equal(cmb.bdf)
    expect(j.p2pmem.availableBefore).to.equal(before)
    expect(j.p2pmem.availableDuring).to.equal(before - j.p2pmem.chunk)
    expect(j.p2pmem.chunk).to.be.at.least(512 * 1024)
    expect(j.p2pmem.availableAfter).to.equal(before)
    expect(await available(cmb.bdf)).to.equal(before)

    // Host side: both copies of the source pattern are in the peer's disk image.
    const want = diskPattern('cmb', 0, MiB)
    expect(readImage(peer.image, 0, MiB).equals(want), 'bounce copy in the image').to.equal(true)
    expect(readImage(peer.image, MiB, MiB).equals(want), 'p2p copy in the image').to.equal(true)

    // The layout of the lines is checked here, not fitting to the width (width.test.ts does that): a wide COLUMNS.
    const human = await vm.run(['node', 'bin/run.js', 'bench', 'p2p', '--src', cmb.namespace, '--dst', peer.namespace, '--via', cmb.bdf, '--buffer', 'both', '--verify',
      '--size', '1M', '--bs', '128K', '--qd', '4', '--yes'], {timeoutMs: 240_000, env: {COLUMNS: '200'}})
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.contain('verified')
    // The headline comes first: the bytes through RAM and device memory, then the timings as a footnote.
    const lines = human.stdout.split('\n')
    const head = lines.findIndex((l) => l.includes('where the data went'))
    expect(head, human.stdout).to.equal(1)
    expect(lines[head + 1]).to.match(/^\s+bounce\s+2 MiB through guest RAM\s+0 B through device memory$/)
    expect(lines[head + 2]).to.match(/^\s+p2p\s+0 B through guest RAM\s+2 MiB through device memory \(1 MiB of it a controller's own CMB\)$/)
    expect(lines.findIndex((l) => l.includes('timings (QEMU TCG emulation'))).to.be.greaterThan(head + 2)
    console.log(human.stdout.split('\n').map((l) => '      | ' + l).join('\n'))
  })

  it('Ctrl-C mid-copy: exit 130, partial results, the chunk unmapped and p2pmem back in the pool', async function () {
    this.timeout(300_000)
    const {cmb, peer} = vm.devices
    const before = await available(cmb.bdf)
    // A background job of a non-interactive shell starts with SIGINT ignored; python resets it to the
    // default before exec, as a terminal would have it.
    await vm.sh(
      `rm -f /tmp/sigint.rc; ( /usr/bin/python3 -c 'import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); open("/tmp/sigint.pid","w").write(str(os.getpid())); os.execvp(sys.argv[1], sys.argv[1:])' ` +
        `node bin/run.js bench p2p --src ${cmb.namespace} --dst ${peer.namespace} --via ${cmb.bdf} --buffer p2p --size 96M --bs 4K --qd 1 --engine psync --dst-offset 16M ` +
        `--no-probe --yes --json > /tmp/sigint.out 2>/tmp/sigint.err; echo $? > /tmp/sigint.rc ) >/dev/null 2>&1 &`,
      {check: true},
    )
    const end = Date.now() + 120_000
    while ((await available(cmb.bdf)) === before) {
      if (Date.now() > end) throw new Error('bench p2p never took its p2pmem chunk')
      await new Promise((r) => setTimeout(r, 500))
    }
    await new Promise((r) => setTimeout(r, 2000)) // let it copy a little
    const r = await vm.sh('kill -INT $(cat /tmp/sigint.pid); while [ ! -s /tmp/sigint.rc ]; do sleep 0.2; done; cat /tmp/sigint.rc /tmp/sigint.out', {check: true, timeoutMs: 60_000})
    const [rc, ...out] = r.stdout.split('\n')
    expect(rc, 'exit code').to.equal('130')
    const j = JSON.parse(out.join('\n'))
    expect(j.interrupted).to.equal(true)
    expect(j.results).to.have.length(1)
    const m = j.results[0]
    expect(m.stopped).to.equal(true)
    expect(m.bytes).to.be.above(0).and.below(96 * MiB)
    expect(m.latency.count).to.equal(m.bytes / 4096)
    expect(j.p2pmem.availableDuring).to.equal(before - j.p2pmem.chunk)
    expect(j.p2pmem.availableAfter, 'the chunk went back before exit').to.equal(before)
    expect(await available(cmb.bdf)).to.equal(before)
    // What was copied before the signal is in the destination image (the source's pattern fills its first 4 MiB).
    const n = Math.min(m.bytes, 4 * MiB)
    expect(readImage(peer.image, 16 * MiB, n).equals(diskPattern('cmb', 0, n)), 'the partial copy reached the peer').to.equal(true)
    console.log(`      SIGINT after ${m.bytes} bytes: exit 130, p2pmem ${j.p2pmem.availableDuring} → ${j.p2pmem.availableAfter}`)
  })

  it('the root-complex NVMe as a peer is refused as topo predicts, with the kernel\'s EREMOTEIO', async function () {
    this.timeout(240_000)
    const {cmb, peer, rc} = vm.devices
    const topo = json(await iopmem(['topo', cmb.bdf, rc!.bdf, '--json']))
    const pair = topo.pairs.find((p: any) => [p.provider, p.client].includes(rc!.bdf))
    expect(pair.p2p).to.equal('no')
    const before = await available(cmb.bdf)
    const r = await iopmem(['bench', 'p2p', '--src', rc!.namespace, '--dst', peer.namespace, '--via', cmb.bdf, '--buffer', 'p2p', '--size', '1M', '--yes', '--json'])
    expect(r.code).to.equal(7)
    const e = json(r).error
    expect(e.code).to.equal('E_P2P_REFUSED')
    expect(e.details.kernel.errno, 'the kernel refuses too').to.equal('EREMOTEIO')
    expect(e.message).to.contain('EREMOTEIO')
    expect(e.details.pair.client).to.equal(rc!.bdf)
    expect(await available(cmb.bdf), 'p2pmem returned after the refusal').to.equal(before)
    console.log(`      ${e.message}`)
    // Nothing reached the destination: the peer image still holds the earlier copy.
    expect(readImage(peer.image, 0, MiB).equals(diskPattern('cmb', 0, MiB))).to.equal(true)
  })

  it('the root-complex NVMe as --via is refused: it has no p2pmem', async () => {
    const {cmb, peer, rc} = vm.devices
    const r = await iopmem(['bench', 'p2p', '--src', cmb.namespace, '--dst', peer.namespace, '--via', rc!.bdf, '--buffer', 'p2p', '--size', '1M', '--yes', '--json'])
    expect(r.code).to.equal(7)
    expect(json(r).error.code).to.equal('E_NO_P2PMEM')
  })

  it('a destination another process holds open is refused, naming the process (the checks mkfs-dax makes)', async () => {
    const {cmb, rc} = vm.devices
    await vm.sh(`sh -c 'exec 3<>${rc!.namespace}; exec sleep 120' >/dev/null 2>&1 & echo $! > /tmp/dst-holder.pid`, {check: true})
    try {
      await vm.sh(`for i in $(seq 50); do ls -l /proc/$(cat /tmp/dst-holder.pid)/fd 2>/dev/null | grep -q ${rc!.namespace} && exit 0; sleep 0.2; done; exit 1`, {check: true})
      const pid = (await vm.sh('cat /tmp/dst-holder.pid', {check: true})).stdout.trim()
      const r = await iopmem(['bench', 'p2p', '--src', cmb.namespace, '--dst', rc!.namespace, '--buffer', 'bounce', '--size', '1M', '--yes', '--json'])
      expect(r.code, r.stdout + r.stderr).to.equal(5)
      const e = json(r).error
      expect(e.code).to.equal('E_IN_USE')
      expect(e.message).to.contain(`process sleep (pid ${pid}) has ${rc!.namespace} open`)
      expect(e.details.processes).to.deep.equal([{pid: Number(pid), comm: 'sleep', what: `has ${rc!.namespace} open`}])
    } finally {
      await vm.sh('kill $(cat /tmp/dst-holder.pid)')
    }
  })

  it('a destination holding a filesystem is refused unless --force', async () => {
    const {cmb, rc} = vm.devices
    // A real filesystem: the one signature detector is libblkid (wipefs), which checks a whole
    // superblock, not a bare magic (a lone "XFSB" in sector 0 is no XFS to it).
    await vm.sh(`mkfs.ext4 -q -F ${rc!.namespace} && sync`, {check: true, timeoutMs: 120_000})
    const r = await iopmem(['bench', 'p2p', '--src', cmb.namespace, '--dst', rc!.namespace, '--buffer', 'bounce', '--size', '1M', '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(5)
    expect(json(r).error.code).to.equal('E_IN_USE')
    expect(json(r).error.message).to.contain('ext4')
    const f = await iopmem(['bench', 'p2p', '--src', cmb.namespace, '--dst', rc!.namespace, '--buffer', 'bounce', '--size', '1M', '--yes', '--force', '--json', '--verify'])
    expect(f.code, f.stderr).to.equal(0)
    expect(json(f).results[0].verify.ok).to.equal(true)
  })

  it('with no arguments it picks the switch pair and the CMB, one line per choice', async function () {
    this.timeout(240_000)
    const {cmb, peer} = vm.devices
    const r = await iopmem(['bench', 'p2p', '--size', '1M', '--yes', '--json', '--verify'])
    expect(r.code, r.stderr + r.stdout).to.equal(0)
    const j = json(r)
    expect(j.via.target).to.equal(cmb.bdf)
    expect([j.src.path, j.dst.path].sort()).to.deep.equal([cmb.namespace, peer.namespace].sort())
    expect(j.choices.join('\n')).to.match(/source .*\n.*destination .*\n.*--via/)
    for (const m of j.results) expect(m.verify.ok).to.equal(true)
  })
})
