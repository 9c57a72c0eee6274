/**
 * locate with the real FIEMAP and statx on real ext4 files (this machine's
 * own filesystem, never mounted by the test): sparse, fragmented,
 * fallocate'd (unwritten), empty, one byte, a window, delayed allocation
 * with and without FIEMAP_FLAG_SYNC. The file's real st_dev is placed in a
 * fixture sysfs (as an NVMe namespace, or as fsdax pmem with the file
 * pretending to be DAX), so the live /sys is never read; device offsets are
 * checked against `filefrag -v`.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {locate, type LocateResult, setFileOps} from '../../src/lib/dax/locate.js'
import {loadNative} from '../../src/native/index.js'
import {PMEM_BASE} from '../helpers/dax.js'
import {MiB} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {realFsDir} from '../native/helpers.js'

const BLOCK = 4096

function jsonOf(r: LocateResult): any {
  const chunks: Buffer[] = []
  r.writeJson((c) => chunks.push(Buffer.from(c)))
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** [logical, physical, length] in bytes from `filefrag -v` (4 KiB blocks). */
function filefrag(file: string): Array<[number, number, number]> {
  const out = execFileSync('filefrag', ['-v', '-b4096', file], {encoding: 'utf8'})
  const rows: Array<[number, number, number]> = []
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+(\d+):/.exec(line)
    if (m) rows.push([Number(m[1]) * BLOCK, Number(m[3]) * BLOCK, Number(m[5]) * BLOCK])
  }
  return rows
}

describe('locate: real FIEMAP on ext4 files', function () {
  this.timeout(60_000)
  let scratch: ReturnType<typeof realFsDir>
  let fx: SysfsFixture
  let dev: {major: number; minor: number; mnt: bigint}
  const f = (name: string) => path.join(scratch.dir, name)

  before(() => {
    scratch = realFsDir('iopmem-locate')
    const st = loadNative().statx(scratch.dir)
    dev = {major: st.devMajor, minor: st.devMinor, mnt: st.mntId}
  })
  after(() => scratch.cleanup())
  beforeEach(() => {
    fx = new SysfsFixture()
    fx.mount({id: Number(dev.mnt), dev: `${dev.major}:${dev.minor}`, source: '/dev/nvme0n1', target: '/', fstype: 'ext4'})
  })
  afterEach(() => {
    setFileOps(undefined)
    fx.cleanup()
  })

  /** The file's device as an NVMe namespace of 1 TiB. */
  const asNvme = () => fx.addDisk('pci0000:00/0000:00:03.0/nvme/nvme0', {name: 'nvme0n1', dev: `${dev.major}:${dev.minor}`, sizeBytes: 2 ** 40, nsid: 1})

  it('a sparse file: an extent per written block, holes counted, offsets as filefrag gives them', async () => {
    asNvme()
    const fd = fs.openSync(f('sparse'), 'w')
    fs.writeSync(fd, Buffer.alloc(BLOCK, 1), 0, BLOCK, 0)
    fs.writeSync(fd, Buffer.alloc(BLOCK, 2), 0, BLOCK, 1 * MiB)
    fs.closeSync(fd)
    const j = jsonOf(await locate(fx.host(), f('sparse')))
    expect(j.addressing).to.equal('lba')
    expect(j.device).to.deep.include({kind: 'nvme', node: '/dev/nvme0n1'})
    expect(j.extents.map((e: any) => [e.fileOffset, e.deviceOffset, e.length])).to.deep.equal(filefrag(f('sparse')))
    expect(j.totals).to.deep.include({extents: 2, bytes: 2 * BLOCK, holeBytes: MiB + BLOCK - 2 * BLOCK})
    expect(j.extents[1].flags).to.include('last')
    expect(j.extents.every((e: any) => e.lba === e.deviceOffset / 512 && e.lbaCount === 8)).to.equal(true)
  })

  it('a fragmented file (every other block written): 64 extents, 64 segments, each where filefrag says', async () => {
    asNvme()
    const fd = fs.openSync(f('frag'), 'w')
    for (let i = 0; i < 64; i++) fs.writeSync(fd, Buffer.alloc(BLOCK, i), 0, BLOCK, 2 * i * BLOCK)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const r = await locate(fx.host(), f('frag'))
    const j = jsonOf(r)
    expect(r.count).to.equal(64)
    expect(j.totals).to.deep.include({extents: 64, segments: 64, bytes: 64 * BLOCK})
    expect(j.totals.largestRun.length).to.equal(BLOCK)
    expect(j.extents.map((e: any) => [e.fileOffset, e.deviceOffset, e.length])).to.deep.equal(filefrag(f('frag')))
  })

  it("fallocate'd space: unwritten extents, warned about", async () => {
    asNvme()
    execFileSync('fallocate', ['-l', String(MiB), f('falloc')])
    const j = jsonOf(await locate(fx.host(), f('falloc')))
    expect(j.extents.length).to.be.at.least(1)
    expect(j.extents.every((e: any) => e.flags.includes('unwritten'))).to.equal(true)
    expect(j.totals.unwrittenBytes).to.equal(MiB)
    expect(j.warnings.join('\n')).to.match(/unwritten extents? \(1 MiB\).*read as zeros/)
  })

  it('an empty file: no extents', async () => {
    asNvme()
    fs.writeFileSync(f('empty'), '')
    const j = jsonOf(await locate(fx.host(), f('empty')))
    expect(j).to.deep.include({size: 0, extents: []})
    expect(j.totals.extents).to.equal(0)
  })

  it('a one-byte file: one block-sized extent, no hole', async () => {
    asNvme()
    fs.writeFileSync(f('one'), 'x')
    const j = jsonOf(await locate(fx.host(), f('one')))
    expect(j.size).to.equal(1)
    expect(j.extents).to.have.length(1)
    expect(j.extents[0]).to.deep.include({fileOffset: 0, length: BLOCK})
    expect(j.extents[0].flags).to.include('last')
    expect(j.totals.holeBytes).to.equal(0)
  })

  it('a window: only the asked bytes, at the right device offset', async () => {
    asNvme()
    fs.writeFileSync(f('contig'), Buffer.alloc(MiB, 7))
    const all = jsonOf(await locate(fx.host(), f('contig')))
    const j = jsonOf(await locate(fx.host(), f('contig'), {offset: 0x1_2345, length: 1000}))
    const e0 = all.extents.find((e: any) => e.fileOffset <= 0x1_2345 && 0x1_2345 < e.fileOffset + e.length)
    expect(j.extents[0]).to.deep.include({fileOffset: 0x1_2345, length: 1000, deviceOffset: e0.deviceOffset + 0x1_2345 - e0.fileOffset})
  })

  it('delayed allocation: refused with --no-sync (no address yet), located after FIEMAP_FLAG_SYNC', async () => {
    asNvme()
    fs.writeFileSync(f('delalloc'), Buffer.alloc(64 * 1024, 3))
    let refused = false
    try {
      await locate(fx.host(), f('delalloc'), {sync: false})
    } catch (error) {
      expect((error as {code: string}).code).to.equal('E_UNUSABLE_EXTENT')
      expect((error as Error).message).to.contain('delalloc')
      expect((error as {suggestions: string[]}).suggestions.join(' ')).to.contain('Drop --no-sync')
      refused = true
    }
    expect(refused, 'ext4 should still hold the data as delayed allocation').to.equal(true)
    const j = jsonOf(await locate(fx.host(), f('delalloc')))
    expect(j.extents.every((e: any) => !e.flags.includes('delalloc'))).to.equal(true)
    expect(j.extents.map((e: any) => [e.fileOffset, e.deviceOffset, e.length])).to.deep.equal(filefrag(f('delalloc')))
  })

  it('as fsdax pmem with a partition (the file pretending to be DAX): physical = base + partition start + fe_physical', async () => {
    // pmem0 as a whole disk at 0x60000000, the file's device as its partition from 1 GiB.
    fx.pmem({name: 'pmem0', dev: '259:200', start: PMEM_BASE, sizeBytes: 2 ** 41, partitions: [{name: 'pmem0p1', dev: `${dev.major}:${dev.minor}`, start: 2 * 1024 * 1024, sizeBytes: 2 ** 40}]})
    const n = loadNative()
    setFileOps({statx: (p) => ({...n.statx(p), dax: true}), fiemap: (p, o) => n.fiemap(p, o)})
    const fd = fs.openSync(f('pm'), 'w')
    for (let i = 0; i < 8; i++) fs.writeSync(fd, Buffer.alloc(BLOCK, i), 0, BLOCK, 2 * i * BLOCK)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const j = jsonOf(await locate(fx.host(), f('pm')))
    expect(j.addressing).to.equal('memory')
    expect(j.device).to.deep.include({node: '/dev/pmem0p1', disk: '/dev/pmem0', partitionStart: 1 << 30, base: '0x0000000060000000'})
    const ff = filefrag(f('pm'))
    expect(j.extents.map((e: any) => [e.fileOffset, e.physical])).to.deep.equal(ff.map(([l, p]) => [l, '0x' + (PMEM_BASE + (1 << 30) + p).toString(16).padStart(16, '0')]))
  })
})
