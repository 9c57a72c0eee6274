/**
 * FIEMAP on a real filesystem (ext4/xfs/btrfs: the temp dir or the checkout's
 * fs; never mounted by the test): empty, one-byte, sparse, fragmented (every
 * other 4 KiB block written), fallocate'd (unwritten) files; batching past
 * 8192 extents; sub-ranges; agreement with `filefrag -v`; errors.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {FIEMAP_EXTENT, fiemapExtents, type FiemapResult} from '../../src/native/index.js'
import {devShm, native, realFsDir, throwsCode} from './helpers.js'

const BLOCK = 4096

function writeEveryOtherBlock(file: string, blocks: number): void {
  const fd = fs.openSync(file, 'w')
  try {
    const buf = Buffer.alloc(BLOCK, 0x42)
    for (let i = 0; i < blocks; i++) fs.writeSync(fd, buf, 0, BLOCK, 2 * i * BLOCK)
  } finally {
    fs.closeSync(fd)
  }
}

function checkInvariants(r: FiemapResult): void {
  expect(r.logical.length).to.equal(r.count)
  expect(r.physical.length).to.equal(r.count)
  expect(r.length.length).to.equal(r.count)
  expect(r.flags.length).to.equal(r.count)
  for (let i = 1; i < r.count; i++) expect(r.logical[i] >= r.logical[i - 1] + r.length[i - 1], `extent ${i} overlaps`).to.equal(true)
  if (r.count) expect(r.flags[r.count - 1] & FIEMAP_EXTENT.LAST).to.equal(FIEMAP_EXTENT.LAST)
}

describe('native: fiemap', function () {
  this.timeout(120000)
  const n = native()
  let scratch: ReturnType<typeof realFsDir>
  const file = (name: string) => path.join(scratch.dir, name)

  before(() => {
    scratch = realFsDir('iopmem-fiemap')
  })
  after(() => scratch.cleanup())

  it('an empty file has no extents', () => {
    fs.writeFileSync(file('empty'), '')
    const r = n.fiemap(file('empty'))
    expect(r.count).to.equal(0)
    expect(r.calls).to.equal(1)
    expect(r.logical).to.be.instanceOf(BigUint64Array)
    expect(r.flags).to.be.instanceOf(Uint32Array)
  })

  it('a one-byte file has one last extent at logical 0', () => {
    fs.writeFileSync(file('one'), 'x')
    const r = n.fiemap(file('one'))
    checkInvariants(r)
    expect(r.count).to.equal(1)
    expect(r.logical[0]).to.equal(0n)
    expect(r.length[0] >= 1n).to.equal(true)
    // Either a real block (address > 0) or data inline in the inode.
    if ((r.flags[0] & FIEMAP_EXTENT.DATA_INLINE) === 0) expect(r.physical[0] > 0n).to.equal(true)
  })

  it('a sparse file has extents only where data was written', () => {
    const fd = fs.openSync(file('sparse'), 'w')
    fs.writeSync(fd, Buffer.alloc(BLOCK, 1), 0, BLOCK, 0)
    fs.writeSync(fd, Buffer.alloc(BLOCK, 2), 0, BLOCK, 1 << 20)
    fs.closeSync(fd)
    const r = n.fiemap(file('sparse'))
    checkInvariants(r)
    expect(r.count).to.equal(2)
    expect(fiemapExtents(r).map((e) => [e.logical, e.length])).to.deep.equal([
      [0n, BigInt(BLOCK)],
      [1n << 20n, BigInt(BLOCK)],
    ])
    expect(r.physical[0] > 0n && r.physical[1] > 0n).to.equal(true)
    expect(r.flags[0] & FIEMAP_EXTENT.LAST).to.equal(0)
  })

  it('asks about a sub-range only, and takes an fd', () => {
    const r = n.fiemap(file('sparse'), {start: 1 << 20, length: BLOCK})
    expect(r.count).to.equal(1)
    expect(r.logical[0]).to.equal(1n << 20n)
    const none = n.fiemap(file('sparse'), {start: 8192, length: 8192})
    expect(none.count).to.equal(0)
    const fd = fs.openSync(file('sparse'), 'r')
    try {
      expect(n.fiemap(fd).count).to.equal(2)
    } finally {
      fs.closeSync(fd)
    }
  })

  it('a fragmented file (every other block) loops over small batches to the same answer', () => {
    writeEveryOtherBlock(file('frag'), 1000)
    const all = n.fiemap(file('frag'))
    checkInvariants(all)
    expect(all.count).to.equal(1000)
    expect(all.calls).to.equal(1)
    for (let i = 0; i < 1000; i++) {
      expect(all.logical[i]).to.equal(BigInt(2 * i * BLOCK))
      expect(all.length[i]).to.equal(BigInt(BLOCK))
    }
    const small = n.fiemap(file('frag'), {batch: 7})
    expect(small.calls).to.be.at.least(Math.ceil(1000 / 7))
    expect(small.count).to.equal(1000)
    expect(Array.from(small.physical)).to.deep.equal(Array.from(all.physical))
    expect(Array.from(small.flags)).to.deep.equal(Array.from(all.flags))
  })

  it('more than 8192 extents take several ioctls with the default batch', () => {
    writeEveryOtherBlock(file('frag-big'), 9000)
    const r = n.fiemap(file('frag-big'))
    checkInvariants(r)
    expect(r.count).to.equal(9000)
    expect(r.calls).to.equal(2)
    expect(r.logical[8999]).to.equal(BigInt(2 * 8999 * BLOCK))
  })

  it('agrees with filefrag -v on the fragmented file', function () {
    const ff = spawnSync('filefrag', ['-v', '-b1', file('frag')], {encoding: 'utf8'})
    if (ff.error || ff.status !== 0) this.skip()
    // " ext:  logical_offset:  physical_offset: length:  expected: flags:" rows, in bytes with -b1
    const rows = ff.stdout
      .split('\n')
      .map((l) => /^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [BigInt(m[1]), BigInt(m[2]), BigInt(m[3])])
    const r = n.fiemap(file('frag'))
    expect(rows.length).to.equal(r.count)
    expect(rows).to.deep.equal(fiemapExtents(r).map((e) => [e.logical, e.physical, e.length]))
  })

  it("fallocate'd space is flagged unwritten", function () {
    const fa = spawnSync('fallocate', ['-l', String(1 << 20), file('falloc')])
    if (fa.error || fa.status !== 0) this.skip()
    const r = n.fiemap(file('falloc'))
    checkInvariants(r)
    expect(r.count).to.be.at.least(1)
    for (const f of r.flags) expect(f & FIEMAP_EXTENT.UNWRITTEN).to.equal(FIEMAP_EXTENT.UNWRITTEN)
    const total = Array.from(r.length).reduce((a, b) => a + b, 0n)
    expect(total).to.equal(1n << 20n)
  })

  it('tmpfs has no FIEMAP: EOPNOTSUPP with syscall and path', function () {
    const shm = devShm()
    if (!shm) this.skip()
    const p = path.join(shm!, `iopmem-fiemap-${process.pid}`)
    fs.writeFileSync(p, 'x')
    try {
      const e = throwsCode(() => n.fiemap(p), 'EOPNOTSUPP')
      expect(e.syscall).to.equal('ioctl(FS_IOC_FIEMAP)')
      expect(e.path).to.equal(p)
    } finally {
      fs.rmSync(p)
    }
  })

  it('a missing file is ENOENT from open; bad options are clean errors', () => {
    const e = throwsCode(() => n.fiemap(file('missing')), 'ENOENT')
    expect(e.syscall).to.equal('open')
    throwsCode(() => n.fiemap(file('one'), {batch: 0}), 'ERANGE')
    throwsCode(() => n.fiemap(file('one'), {start: -1}), 'ERANGE')
  })
})
