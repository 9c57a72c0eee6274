/**
 * locate's chain file → filesystem → partition → disk → memory, on fixture
 * trees (pmem namespace, pfn, partitions, iopmem BARs with and without the
 * driver's attributes and with a host-bridge offset, NVMe, device-mapper),
 * with statx and FIEMAP faked so any extent shape can be asked for.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {EXTENT_FLAGS as X, flagNames, locate, type LocateResult, setFileOps} from '../../src/lib/dax/locate.js'
import {renderLocate} from '../../src/ui/render-locate.js'
import {daxMachine, fakeFiemap, fakeFileOps, PFN_BASE, PFN_DATA, PMEM_BASE} from '../helpers/dax.js'
import {BDF, MiB} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {Chalk} from 'chalk'

const plain = new Chalk({level: 0})

async function rejects(p: Promise<unknown>, code: string): Promise<Error & {code: string; exit: number; details?: any}> {
  try {
    await p
  } catch (error) {
    expect((error as {code?: string}).code, (error as Error).message).to.equal(code)
    return error as Error & {code: string; exit: number}
  }
  expect.fail(`expected ${code}`)
}

function jsonOf(r: LocateResult): any {
  const chunks: Buffer[] = []
  r.writeJson((c) => chunks.push(Buffer.from(c)))
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function textOf(r: LocateResult): string {
  const chunks: Buffer[] = []
  renderLocate(r, plain, (c) => chunks.push(Buffer.from(c)))
  return Buffer.concat(chunks).toString('utf8')
}

describe('locate: the device chain on fixture trees', () => {
  let fx: SysfsFixture
  let tmp: string
  let file: string
  beforeEach(async () => {
    fx = await daxMachine()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-loc-'))
    file = path.join(tmp, 'data.bin')
    fs.writeFileSync(file, 'x')
  })
  afterEach(() => {
    setFileOps(undefined)
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  const on = (maj: number, min: number, extents: Parameters<typeof fakeFiemap>[0], stat: Record<string, unknown> = {}) => {
    const ops = fakeFileOps({devMajor: maj, devMinor: min, ...stat}, fakeFiemap(extents))
    setFileOps(ops)
    return ops
  }

  it('fsdax pmem, whole disk: physical = namespace resource + fe_physical', async () => {
    fx.mount({id: 500, dev: '259:10', source: '/dev/pmem0', target: '/mnt/dax', fstype: 'ext4', options: 'rw,dax=always'})
    on(259, 10, [
      [0, 0x840_0000, 0x1_0000, 0],
      [0x1_0000, 0x805_0000, 0xf_0000, X.LAST],
    ])
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.addressing).to.equal('memory')
    expect(j.device).to.deep.include({node: '/dev/pmem0', disk: '/dev/pmem0', kind: 'pmem', partitionStart: 0, base: '0x0000000060000000', busBase: null, pci: null, nvme: null})
    expect(j.device.source).to.equal('/sys/devices/platform/e820_pmem/ndbus0/region0/namespace0.0/resource')
    expect(j.filesystem).to.deep.equal({type: 'ext4', mountPoint: '/mnt/dax', daxMode: 'always'})
    expect(j.extents).to.deep.equal([
      {fileOffset: 0, length: 0x1_0000, deviceOffset: 0x840_0000, physical: '0x0000000068400000', flags: []},
      {fileOffset: 0x1_0000, length: 0xf_0000, deviceOffset: 0x805_0000, physical: '0x0000000068050000', flags: ['last']},
    ])
    expect(j.totals).to.deep.include({extents: 2, bytes: 0x10_0000, segments: 2})
    expect(j.totals.largestRun).to.deep.equal({fileOffset: 0x1_0000, length: 0xf_0000, deviceOffset: 0x805_0000, physical: '0x0000000068050000'})
  })

  it('a partition of pmem: its start (sectors × 512) is added', async () => {
    on(259, 11, [[0, 0x1000, 0x2000, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device).to.deep.include({node: '/dev/pmem0p1', disk: '/dev/pmem0', partitionStart: 2 * MiB})
    expect(j.extents[0]).to.deep.include({deviceOffset: 2 * MiB + 0x1000, physical: '0x' + (PMEM_BASE + 2 * MiB + 0x1000).toString(16).padStart(16, '0')})
  })

  it('fsdax pmem with a pfn device: the pfn resource (namespace + data offset) is sector 0', async () => {
    on(259, 20, [[0, 0x20_0000, 0x20_0000, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device.base).to.equal('0x' + (PFN_BASE + PFN_DATA).toString(16).padStart(16, '0'))
    expect(j.device.source).to.match(/region1\/pfn1\.1\/resource$/)
    expect(j.extents[0].physical).to.equal('0x' + (PFN_BASE + PFN_DATA + 0x20_0000).toString(16).padStart(16, '0'))
  })

  it('an iopmem disk: the BAR the driver names, physical and bus address', async () => {
    on(252, 0, [[0, 0x30_0000, 0x1000, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device).to.deep.include({kind: 'iopmem', base: '0x0000000800000000', busBase: '0x0000000800000000'})
    expect(j.device.pci).to.deep.equal({bdf: BDF.ivshmem, bar: 2, barOffset: 0, barSource: 'driver'})
    expect(j.extents[0]).to.deep.include({physical: '0x0000000800300000', busAddress: '0x0000000800300000'})
  })

  it('iopmem: an offset within the BAR from the driver, and a host-bridge offset between CPU and bus addresses', async () => {
    const dir = fx.fnDir(BDF.ivshmem)
    fs.writeFileSync(path.join(dir, 'block/iopmem0/iopmem/offset'), '1048576\n')
    // The BAR register (bus address) says 0xc0000000 + the 64-bit upper half 0: as `lspci -b` would.
    const cfg = fs.readFileSync(path.join(dir, 'config'))
    cfg.writeUInt32LE(0xc000_000c, 0x18)
    cfg.writeUInt32LE(0, 0x1c)
    fs.writeFileSync(path.join(dir, 'config'), cfg)
    on(252, 0, [[0, 0x1000, 0x1000, X.LAST]])
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.device).to.deep.include({base: '0x0000000800100000', busBase: '0x00000000c0100000'})
    expect(j.extents[0]).to.deep.include({physical: '0x0000000800101000', busAddress: '0x00000000c0101000'})
    expect(j.notes.join('\n')).to.match(/bus addresses differ from CPU physical ones by [-+]0x[0-9a-f]+ \(host bridge offset\)/i)
    expect(textOf(r)).to.match(/BUS ADDRESS/).and.match(/0x800101000\s+0xc0101000/)
  })

  it('iopmem without the driver attribute: the largest memory BAR, and a note saying it was assumed', async () => {
    fs.rmSync(path.join(fx.fnDir(BDF.ivshmem), 'block/iopmem0/iopmem'), {recursive: true})
    on(252, 0, [[0, 0, 0x1000, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device.pci).to.deep.include({bar: 2, barSource: 'largest-bar'})
    expect(j.notes.join('\n')).to.contain('assumed BAR2, the largest memory BAR of 0000:00:04.0')
  })

  it('iopmem: the attribute may sit on the PCI function instead of the disk', async () => {
    const dir = fx.fnDir(BDF.ivshmem)
    fs.rmSync(path.join(dir, 'block/iopmem0/iopmem'), {recursive: true})
    fx.writeSys(path.relative(fx.sys, path.join(dir, 'iopmem/bar')), '0\n')
    on(252, 0, [[0, 0, 0x100, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device.pci).to.deep.include({bar: 0, barSource: 'driver'})
    expect(j.device.base).to.equal('0x00000000febd5000')
    expect(j.notes.join('\n')).to.contain('larger than BAR0')
  })

  it('an NVMe namespace: LBAs in its logical block size, the controller, nsid and function', async () => {
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmeCmb), 'nvme/nvme0/nvme0n1/queue/logical_block_size'), '4096\n')
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmeCmb), 'nvme/nvme0/nvme0n1/nsid'), '1\n')
    on(259, 0, [[0, 0x10_0000, 0x3000, X.LAST]], {dax: false})
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.addressing).to.equal('lba')
    expect(j.device).to.deep.include({kind: 'nvme', logicalBlockSize: 4096, base: null})
    expect(j.device.nvme).to.deep.equal({controller: 'nvme0', nsid: 1, bdf: BDF.nvmeCmb})
    expect(j.extents[0]).to.deep.equal({fileOffset: 0, length: 0x3000, deviceOffset: 0x10_0000, lba: 256, lbaCount: 3, flags: ['last']})
    expect(j.notes.join('\n')).to.contain('the answer is LBAs (4096-byte blocks)')
    expect(textOf(r)).to.match(/LBA\s+BLOCKS/).and.match(/256\s+3\s+last/)
  })

  it('an NVMe partition: LBAs count from the namespace, not the partition', async () => {
    on(259, 2, [[0, 0x1000, 0x1000, X.LAST]], {dax: false})
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.device).to.deep.include({node: '/dev/nvme1n1p1', disk: '/dev/nvme1n1', partitionStart: 2048 * 512})
    expect(j.extents[0]).to.deep.include({deviceOffset: 2048 * 512 + 0x1000, lba: 2048 + 8, lbaCount: 8})
  })

  it('refuses a non-DAX file on pmem, saying why; --offsets-only gives device offsets without addresses', async () => {
    fx.mount({id: 500, dev: '259:10', source: '/dev/pmem0', target: '/mnt/nodax', fstype: 'ext4'})
    on(259, 10, [[0, 0x1000, 0x1000, X.LAST]], {dax: false})
    const e = await rejects(locate(fx.host(), file), 'E_NOT_DAX')
    expect(e.exit).to.equal(5)
    expect(e.message).to.contain('is not DAX (ext4 on /dev/pmem0, mounted on /mnt/nodax: it is mounted without -o dax)')
    expect(e.message).to.contain('a physical address would be a lie')
    const j = jsonOf(await locate(fx.host(), file, {offsetsOnly: true}))
    expect(j.addressing).to.equal('offsets')
    expect(j.device.base).to.equal(null)
    expect(j.extents[0]).to.deep.equal({fileOffset: 0, length: 0x1000, deviceOffset: 0x1000, flags: ['last']})
  })

  it('dax=inode without the file flag is explained as such', async () => {
    fx.mount({id: 500, dev: '259:10', source: '/dev/pmem0', target: '/mnt/i', fstype: 'xfs', options: 'rw,dax=inode'})
    on(259, 10, [[0, 0, 0x1000, X.LAST]], {dax: false})
    const e = await rejects(locate(fx.host(), file), 'E_NOT_DAX')
    expect(e.message).to.contain('mounted dax=inode and this file is not marked for DAX')
  })

  for (const [flag, name] of [
    [X.UNKNOWN, 'unknown'],
    [X.DELALLOC, 'delalloc'],
    [X.ENCODED, 'encoded'],
    [X.DATA_ENCRYPTED, 'encrypted'],
    [X.NOT_ALIGNED, 'not-aligned'],
    [X.DATA_INLINE, 'inline'],
    [X.DATA_TAIL, 'tail'],
  ] as const) {
    it(`refuses an extent flagged ${name}`, async () => {
      on(259, 10, [
        [0, 0x1000, 0x1000, 0],
        [0x1000, 0x9000, 0x1000, flag | X.LAST],
      ])
      const e = await rejects(locate(fx.host(), file), 'E_UNUSABLE_EXTENT')
      expect(e.exit).to.equal(5)
      expect(e.message).to.contain(`1 extent of ${file} has no usable address`)
      expect(e.message).to.contain(`file offset 4096 (4096 bytes): last, ${name}`)
      expect(e.details.extents[0].flags).to.include(name)
    })
  }

  it('a window that leaves the unusable extent out is fine', async () => {
    on(259, 10, [[0, 0x1000, 0x1000, 0]])
    const r = await locate(fx.host(), file, {offset: 0, length: 100})
    expect(r.count).to.equal(1)
  })

  it('warns on unwritten and shared extents, and reports holes', async () => {
    on(259, 10, [
      [0, 0x1000, 0x1000, X.UNWRITTEN],
      [0x3000, 0x2000, 0x2000, X.SHARED],
      [0x5000, 0x4000, 0x1000, X.SHARED | X.UNWRITTEN | X.LAST],
    ], {size: 0x6000})
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.totals).to.deep.include({unwrittenBytes: 0x2000, sharedBytes: 0x3000, holeBytes: 0x2000, bytes: 0x4000})
    expect(j.warnings[0]).to.match(/^2 unwritten extents \(8 KiB\).*read as zeros/)
    expect(j.warnings[1]).to.match(/^2 shared extents \(12 KiB\).*bypassing copy-on-write/)
    expect(j.notes.join('\n')).to.contain('8 KiB of the file are holes')
    expect(j.extents[2].flags).to.deep.equal(['last', 'unwritten', 'shared'])
  })

  it('segments and the largest run: extents contiguous in file and device merge', async () => {
    on(259, 10, [
      [0, 0x10_0000, 0x1000, 0],
      [0x1000, 0x10_1000, 0x1000, 0], // continues the first
      [0x2000, 0x20_0000, 0x1000, 0], // device jump
      [0x4000, 0x20_2000, 0x1000, 0], // file hole: new segment even though the device is near
      [0x5000, 0x20_3000, 0x3000, X.LAST],
    ], {size: 0x8000})
    const j = jsonOf(await locate(fx.host(), file))
    expect(j.totals.segments).to.equal(3)
    expect(j.totals.largestRun).to.deep.include({fileOffset: 0x4000, length: 0x4000, deviceOffset: 0x20_2000})
  })

  it('a window clips extents to the bytes asked for, and FIEMAP is asked only for it', async () => {
    const ops = on(259, 10, [[0, 0x10_0000, 0x10_0000, X.LAST]], {size: 0x10_0000})
    const j = jsonOf(await locate(fx.host(), file, {offset: 0x1234, length: 0x100}))
    expect(ops.fiemapCalls).to.deep.equal([{start: 0x1234, length: 0x100, sync: true}])
    expect(j.window).to.deep.equal({offset: 0x1234, length: 0x100, clipped: true})
    expect(j.extents).to.deep.equal([{fileOffset: 0x1234, length: 0x100, deviceOffset: 0x10_1234, physical: '0x' + (PMEM_BASE + 0x10_1234).toString(16).padStart(16, '0'), flags: ['last']}])
  })

  it('--length past the end of the file stops at the end', async () => {
    on(259, 10, [[0, 0x10_0000, 0x1000, X.LAST]], {size: 0x1000})
    const j = jsonOf(await locate(fx.host(), file, {offset: 0x800, length: 1 << 30}))
    expect(j.window).to.deep.equal({offset: 0x800, length: 0x800, clipped: true})
    expect(j.extents[0].length).to.equal(0x800)
  })

  it('--no-sync asks FIEMAP without FIEMAP_FLAG_SYNC and says so', async () => {
    const ops = on(259, 10, [[0, 0x1000, 0x1000, X.LAST]])
    const j = jsonOf(await locate(fx.host(), file, {sync: false}))
    expect(ops.fiemapCalls[0].sync).to.equal(false)
    expect(j.synced).to.equal(false)
    expect(j.notes.join('\n')).to.contain('--no-sync')
  })

  it('refuses a file on a stacked (device-mapper) device', async () => {
    on(253, 0, [[0, 0, 0x1000, X.LAST]])
    const e = await rejects(locate(fx.host(), file), 'E_STACKED')
    expect(e.message).to.contain('dm-0, a stacked device (device-mapper or md over nvme2n1)')
  })

  it('refuses a file with no block device (major 0: tmpfs, btrfs, overlayfs)', async () => {
    fx.mount({id: 500, dev: '0:45', source: 'tmpfs', target: '/dev/shm', fstype: 'tmpfs'})
    on(0, 45, [])
    const e = await rejects(locate(fx.host(), file), 'E_NOT_BLOCK_BACKED')
    expect(e.message).to.contain('is on tmpfs (tmpfs on /dev/shm), which has no block device of its own')
    expect(e.exit).to.equal(7)
  })

  it('a device that sysfs does not know is "not found"', async () => {
    on(8, 99, [])
    const e = await rejects(locate(fx.host(), file), 'E_NO_BLOCK_DEVICE')
    expect(e.exit).to.equal(3)
  })

  it('pmem whose resource cannot be read: refuses, and --offsets-only still works', async () => {
    fx.pmem({name: 'pmem5', dev: '259:50', region: 5, start: 0x2_0000_0000, sizeBytes: 64 * MiB, noResource: true})
    on(259, 50, [[0, 0, 0x1000, X.LAST]])
    const e = await rejects(locate(fx.host(), file), 'E_NO_BASE')
    expect(e.message).to.contain('namespace5.0/resource: it does not exist')
    const j = jsonOf(await locate(fx.host(), file, {offsetsOnly: true}))
    expect(j).to.deep.include({addressing: 'offsets', dax: true})
    expect(j.extents[0]).to.deep.equal({fileOffset: 0, length: 0x1000, deviceOffset: 0, flags: ['last']})
  })

  it('an extent past the end of the disk is refused (block numbers that are not device offsets)', async () => {
    on(252, 0, [[0, 64 * MiB - 0x1000, 0x2000, X.LAST]])
    await rejects(locate(fx.host(), file), 'E_EXTENT_OUTSIDE')
  })

  it('an empty file has no extents and says so', async () => {
    on(259, 10, [], {size: 0})
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.extents).to.deep.equal([])
    expect(j.totals).to.deep.equal({extents: 0, bytes: 0, holeBytes: 0, unwrittenBytes: 0, sharedBytes: 0, segments: 0, largestRun: null})
    expect(textOf(r)).to.contain('No extents: the file is empty.')
  })

  it('addresses at or above 2^53 stay exact (BigInt path) and the stream equals toJSON()', async () => {
    const dir = fx.fnDir(BDF.ivshmem)
    const cfg = fs.readFileSync(path.join(dir, 'config'))
    cfg.writeUInt32LE(0x0000_000c, 0x18)
    cfg.writeUInt32LE(0x8000_0000, 0x1c) // bus address 0x8000000000000000
    fs.writeFileSync(path.join(dir, 'config'), cfg)
    on(252, 0, [
      [0, 0x1000, 0x1000, 0],
      [0x1000, 0x3000, 0x1000, X.LAST],
    ])
    const r = await locate(fx.host(), file)
    const j = jsonOf(r)
    expect(j.extents.map((e: any) => e.busAddress)).to.deep.equal(['0x8000000000001000', '0x8000000000003000'])
    expect(j).to.deep.equal(JSON.parse(JSON.stringify(r.toJSON())))
    expect(textOf(r)).to.contain('0x8000000000003000')
  })

  it('the streamed JSON equals toJSON() for many extents and mixed flags', async () => {
    const ext: Array<[number, number, number, number]> = []
    for (let i = 0; i < 5000; i++) ext.push([i * 8192, 123_456_789_000 + i * 4096, 4096, i % 7 === 0 ? X.UNWRITTEN : i % 11 === 0 ? X.MERGED : 0])
    ext[ext.length - 1][3] |= X.LAST
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmePeer), 'nvme/nvme1/nvme1n1/size'), `${1 << 30}\n`)
    on(259, 1, ext, {size: 5000 * 8192, dax: false})
    const r = await locate(fx.host(), file)
    expect(jsonOf(r)).to.deep.equal(JSON.parse(JSON.stringify(r.toJSON())))
    const text = textOf(r)
    expect(text.split('\n').filter((l) => /^\s*\d+\s+0x/.test(l))).to.have.length(5000)
  })

  it('flagNames names every FIEMAP flag and keeps unknown bits', () => {
    expect(flagNames(0x3fff)).to.deep.equal(['last', 'unknown', 'delalloc', 'encoded', 'encrypted', 'not-aligned', 'inline', 'tail', 'unwritten', 'merged', 'shared', '0x70'])
    expect(flagNames(0)).to.deep.equal([])
  })
})
