/**
 * `iopmem mkfs-dax` and `iopmem locate` against a real kernel, with the proof on the host:
 * the guest's RAM is a shared host file, and its legacy pmem (memmap=512M!1536M, so that
 * xfs fits) lies at physical 0x60000000, i.e. at that offset of the file. Every extent
 * locate reports is read back there and must hold exactly the file's bytes.
 *
 *  - mkfs-dax ext4 and xfs on /dev/pmem0, mounted with -o dax; DAX confirmed by the tool
 *    (statx on a probe file) and independently by xfs_io's statx on real files;
 *  - a file with a known pattern: every extent checked in the host RAM file;
 *  - a fragmented (sparse, every other block) file: every one of its extents checked;
 *  - a partition of pmem starting at 2 MiB: the partition start is in the addresses;
 *  - refusals: a mounted device (frozen, so nothing moves) and one with a filesystem,
 *    both left byte-identical (hash of the whole device region on the host);
 *  - locate on a non-DAX mount of the same device is refused, saying it is not DAX;
 *    on an NVMe namespace the answer is LBAs, checked in the host's disk image.
 */
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {open} from 'node:fs/promises'

import {bootGuest, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const MiB = 1024 * 1024
const PMEM_MIB = 512

/** Deterministic bytes that differ everywhere (SHA-256 in counter mode). */
function pattern(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n)
  for (let off = 0, i = 0; off < n; off += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off)
  return out
}

/** An MBR with one Linux partition from `startSector` for `sectors`. */
function mbr(startSector: number, sectors: number): Buffer {
  const b = Buffer.alloc(512)
  const e = 0x1be
  b[e] = 0x00
  b.writeUIntLE(0xfffffe, e + 1, 3)
  b[e + 4] = 0x83
  b.writeUIntLE(0xfffffe, e + 5, 3)
  b.writeUInt32LE(startSector, e + 8)
  b.writeUInt32LE(sectors, e + 12)
  b.writeUInt32LE(0x1234_5678, 0x1b8)
  b[510] = 0x55
  b[511] = 0xaa
  return b
}

describe('guest: mkfs-dax and locate on fsdax pmem, checked in host memory', function () {
  // Each step runs node in the guest two or three times under TCG: give a loaded host room.
  this.timeout(400_000)
  let vm: Guest
  let checkedExtents = 0
  let checkedBytes = 0
  let xfsSrc = ''
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 240_000})
  const sh = async (script: string): Promise<string> => (await vm.sh(script, {check: true, timeoutMs: 240_000})).stdout
  const json = guestJson
  /** sha256 of the whole pmem region as the host sees it. */
  const pmemHash = async (): Promise<string> => {
    const h = createHash('sha256')
    for (let off = 0; off < PMEM_MIB * MiB; off += 64 * MiB) h.update(await vm.readGuestPhys(vm.devices.pmem!.physAddr + off, 64 * MiB))
    return h.digest('hex')
  }
  /** Locate `file` in the guest and check every extent's bytes in host RAM against `data`. */
  const checkInRam = async (file: string, data: Buffer, dataOffset = 0): Promise<any> => {
    const r = await iopmem(['locate', file, '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const j = json(r)
    expect(j.addressing).to.equal('memory')
    expect(j.dax).to.equal(true)
    for (const e of j.extents) {
      const n = Math.min(e.length, j.size - e.fileOffset)
      const phys = Number(BigInt(e.physical))
      expect(phys).to.be.at.least(vm.devices.pmem!.physAddr).and.below(vm.devices.pmem!.physAddr + PMEM_MIB * MiB)
      const got = await vm.readGuestPhys(phys, n)
      const want = data.subarray(e.fileOffset - dataOffset, e.fileOffset - dataOffset + n)
      expect(got.equals(want), `extent at file offset ${e.fileOffset} (physical ${e.physical}, ${n} bytes) does not hold the file's bytes`).to.equal(true)
      checkedExtents++
      checkedBytes += n
    }
    return j
  }
  const daxAttr = async (file: string): Promise<boolean> => {
    const out = await sh(`xfs_io -r -c 'statx -r' ${file}`)
    const m = /stat\.attributes = (0x[0-9a-f]+)/.exec(out)
    return (Number(m![1]) & 0x20_0000) !== 0
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'switch', pmemMiB: PMEM_MIB})
    expect(vm.devices.pmem).to.deep.equal({device: '/dev/pmem0', physAddr: 0x6000_0000, size: PMEM_MIB * MiB})
    await sh('mkdir -p /tmp/dax /tmp/daxx /tmp/nodax /tmp/nvme /tmp/part')
    console.log(`      guest ${vm.release}: /dev/pmem0 ${PMEM_MIB} MiB at 0x60000000`)
  })

  after(async () => {
    if (checkedExtents) console.log(`      checked on the host: ${checkedExtents} extents, ${checkedBytes} bytes`)
    await vm?.shutdown()
  })

  it('mkfs-dax ext4 on /dev/pmem0 --mount: mounted with DAX, confirmed by statx', async () => {
    const r = await iopmem(['mkfs-dax', '/dev/pmem0', '--mount', '/tmp/dax', '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const j = json(r)
    expect(j).to.deep.include({device: '/dev/pmem0', kind: 'pmem', filesystem: 'ext4', blockSize: 4096, size: PMEM_MIB * MiB})
    expect(j.alignment).to.deep.include({physicalStart: '0x0000000060000000', aligned: true})
    expect(j.mount).to.deep.equal({target: '/tmp/dax', options: 'dax', daxConfirmed: true})
    expect(await sh('grep "^/dev/pmem0 /tmp/dax " /proc/mounts')).to.match(/ext4 .*dax/)
    expect(await sh('dumpe2fs -h /dev/pmem0 2>/dev/null | grep -E "RAID stride|Block size"')).to.match(/Block size:\s+4096/).and.match(/RAID stride:\s+512/)
    await sh('echo probe > /tmp/dax/probe && sync')
    expect(await daxAttr('/tmp/dax/probe'), 'xfs_io statx sees STATX_ATTR_DAX').to.equal(true)
  })

  it('ext4: a file with a known pattern sits at exactly the physical addresses locate reports', async () => {
    const data = pattern('ext4', 5 * MiB + 12345)
    const src = await vm.putFile('pattern-ext4.bin', data)
    await sh(`cp ${src} /tmp/dax/pattern.bin && sync`)
    const j = await checkInRam('/tmp/dax/pattern.bin', data)
    expect(j.totals.bytes).to.be.at.least(data.length)
    expect(j.device).to.deep.include({node: '/dev/pmem0', kind: 'pmem', base: '0x0000000060000000'})
    const human = await iopmem(['locate', '/tmp/dax/pattern.bin'])
    expect(human.stdout).to.contain('DAX').and.contain('fsdax pmem').and.match(/PHYSICAL/)
  })

  it('ext4: a fragmented file (every other 4 KiB block) gives many extents, each checked', async () => {
    const data = pattern('frag', 64 * 4096)
    const src = await vm.putFile('frag-src.bin', data)
    await sh(`for i in $(seq 0 63); do dd if=${src} of=/tmp/dax/frag.bin bs=4096 skip=$i seek=$((2*i)) count=1 conv=notrunc status=none; done; sync`)
    const r = await iopmem(['locate', '/tmp/dax/frag.bin', '--json'])
    const j = json(r)
    expect(j.totals.extents).to.equal(64)
    expect(j.totals.holeBytes).to.equal(63 * 4096)
    let n = 0
    for (const e of j.extents) {
      const block = e.fileOffset / 8192
      const got = await vm.readGuestPhys(Number(BigInt(e.physical)), 4096)
      expect(got.equals(data.subarray(block * 4096, block * 4096 + 4096)), `block at file offset ${e.fileOffset}`).to.equal(true)
      n++
    }
    checkedExtents += n
    checkedBytes += n * 4096
    console.log(`      fragmented file: ${n} extents, ${j.totals.segments} segments`)
  })

  it('a window (--offset/--size) gives the addresses of exactly those bytes', async () => {
    const data = pattern('ext4', 5 * MiB + 12345)
    const r = await iopmem(['locate', '/tmp/dax/pattern.bin', '--offset', '1234567', '--size', '300000', '--json'])
    const j = json(r)
    expect(j.window).to.deep.equal({offset: 1234567, length: 300000, clipped: true})
    expect(j.extents.reduce((s: number, e: any) => s + e.length, 0)).to.equal(300000)
    for (const e of j.extents) {
      const got = await vm.readGuestPhys(Number(BigInt(e.physical)), e.length)
      expect(got.equals(data.subarray(e.fileOffset, e.fileOffset + e.length))).to.equal(true)
    }
  })

  it('mkfs-dax xfs --force over the (unmounted) ext4: erased, made, mounted with DAX; a pattern file checked', async () => {
    await sh('umount /tmp/dax')
    const r = await iopmem(['mkfs-dax', '/dev/pmem0', '--fs', 'xfs', '--force', '--mount', '/tmp/daxx', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const j = json(r)
    expect(j.filesystem).to.equal('xfs')
    expect(j.erased.map((s: any) => s.type)).to.include('ext4')
    expect(j.mount.daxConfirmed).to.equal(true)
    expect(await sh('xfs_info /tmp/daxx')).to.match(/bsize=4096/).and.match(/sunit=512\s/).and.match(/reflink=0/)
    const data = pattern('xfs', 3 * MiB + 777)
    const src = await vm.putFile('pattern-xfs.bin', data)
    xfsSrc = src
    await sh(`cp ${src} /tmp/daxx/pattern.bin && sync`)
    expect(await daxAttr('/tmp/daxx/pattern.bin')).to.equal(true)
    await checkInRam('/tmp/daxx/pattern.bin', data)
  })

  it('mkfs-dax refuses the mounted device, even with --force, and leaves it byte-identical', async () => {
    await sh('sync; fsfreeze --freeze /tmp/daxx')
    try {
      const before = await pmemHash()
      const r = await iopmem(['mkfs-dax', '/dev/pmem0', '--force', '--json'])
      expect(r.code, r.stdout + r.stderr).to.equal(5)
      expect(json(r).error.code).to.equal('E_IN_USE')
      expect(json(r).error.message).to.contain('/dev/pmem0 is mounted on /tmp/daxx (xfs, dax=always)')
      expect(await pmemHash(), 'the device changed').to.equal(before)
    } finally {
      await sh('fsfreeze --unfreeze /tmp/daxx')
    }
    expect(await sh(`cmp ${xfsSrc} /tmp/daxx/pattern.bin && echo same`)).to.contain('same')
  })

  it('mkfs-dax refuses a device holding a filesystem (without --force) and leaves it byte-identical', async () => {
    await sh('umount /tmp/daxx')
    const before = await pmemHash()
    const r = await iopmem(['mkfs-dax', '/dev/pmem0', '--yes'])
    expect(r.code, r.stdout + r.stderr).to.equal(5)
    expect(r.stderr).to.contain('/dev/pmem0 is not empty; refusing to overwrite what it holds').and.match(/xfs at offset 0x0 of \/dev\/pmem0/)
    expect(await pmemHash(), 'the device changed').to.equal(before)
    expect(await sh('blkid -p -o value -s TYPE /dev/pmem0')).to.contain('xfs')
  })

  it('locate on the same filesystem mounted without DAX says it is not DAX; --offsets-only gives offsets', async () => {
    await sh('mount -t xfs -o dax=never /dev/pmem0 /tmp/nodax')
    try {
      const r = await iopmem(['locate', '/tmp/nodax/pattern.bin'])
      expect(r.code).to.equal(5)
      expect(r.stderr).to.contain('/tmp/nodax/pattern.bin is not DAX (xfs on /dev/pmem0, mounted on /tmp/nodax: it is mounted dax=never)')
      expect(r.stderr).to.contain('a physical address would be a lie')
      const o = await iopmem(['locate', '/tmp/nodax/pattern.bin', '--offsets-only', '--json'])
      expect(o.code, o.stderr).to.equal(0)
      const j = json(o)
      expect(j).to.deep.include({addressing: 'offsets', dax: false})
      expect(j.extents.every((e: any) => e.physical === undefined)).to.equal(true)
    } finally {
      await sh('umount /tmp/nodax')
    }
  })

  it('locate on an NVMe namespace gives LBAs: the file is at those LBAs of the disk image on the host', async () => {
    const ns = vm.devices.peer.namespace
    await sh(`mkfs.ext4 -q -F ${ns} && mount ${ns} /tmp/nvme`)
    try {
      const data = pattern('nvme', 2 * MiB + 99)
      const src = await vm.putFile('pattern-nvme.bin', data)
      await sh(`cp ${src} /tmp/nvme/pattern.bin`)
      const r = await iopmem(['locate', '/tmp/nvme/pattern.bin', '--json'])
      expect(r.code, r.stdout + r.stderr).to.equal(0)
      const j = json(r)
      expect(j).to.deep.include({addressing: 'lba', dax: false})
      expect(j.device.kind).to.equal('nvme')
      expect(j.device.nvme).to.deep.include({controller: vm.devices.peer.controller, nsid: 1, bdf: vm.devices.peer.bdf})
      const lbs = j.device.logicalBlockSize
      const fh = await open(vm.devices.peer.image, 'r')
      try {
        for (const e of j.extents) {
          const n = Math.min(e.length, j.size - e.fileOffset)
          const buf = Buffer.alloc(n)
          await fh.read(buf, 0, n, e.lba * lbs)
          expect(buf.equals(data.subarray(e.fileOffset, e.fileOffset + n)), `LBA ${e.lba}`).to.equal(true)
        }
      } finally {
        await fh.close()
      }
      console.log(`      NVMe: ${j.extents.length} extents checked at their LBAs in the host disk image`)
    } finally {
      await sh('umount /tmp/nvme')
    }
  })

  it('a partition of pmem from 2 MiB: mkfs-dax on it, and the addresses include the partition start', async () => {
    const table = await vm.putFile('mbr.bin', mbr(4096, (PMEM_MIB - 4) * 2048))
    await sh(`wipefs -q -a /dev/pmem0 && dd if=${table} of=/dev/pmem0 bs=512 count=1 conv=notrunc,fsync status=none && blockdev --rereadpt /dev/pmem0 && sleep 1 && ls /dev/pmem0p1`)
    expect(await sh('cat /sys/class/block/pmem0p1/start')).to.equal('4096\n')
    const r = await iopmem(['mkfs-dax', '/dev/pmem0p1', '--mount', '/tmp/part', '--force', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(json(r).alignment).to.deep.include({deviceStart: 2 * MiB, physicalStart: '0x0000000060200000', aligned: true})
    const data = pattern('part', MiB + 5)
    const src = await vm.putFile('pattern-part.bin', data)
    await sh(`cp ${src} /tmp/part/pattern.bin && sync`)
    const j = await checkInRam('/tmp/part/pattern.bin', data)
    expect(j.device).to.deep.include({node: '/dev/pmem0p1', disk: '/dev/pmem0', partitionStart: 2 * MiB})
    await sh('umount /tmp/part')
  })
})
