/**
 * statx: fields of a regular file against fs.statSync, DIOALIGN, a device
 * node's rdev, fd and symlink forms, errors.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {STATX_ATTR_DAX, STATX_DIOALIGN} from '../../src/native/index.js'
import {native, realFsDir, throwsCode} from './helpers.js'

// glibc's gnu_dev_major/minor of a dev_t.
const major = (dev: bigint) => Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn))
const minor = (dev: bigint) => Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))

describe('native: statx', () => {
  const n = native()
  let scratch: ReturnType<typeof realFsDir>
  let file: string

  before(() => {
    scratch = realFsDir('iopmem-statx')
    file = path.join(scratch.dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(12345, 1))
  })
  after(() => scratch.cleanup())

  it('reports a regular file as fs.statSync does', () => {
    const st = n.statx(file)
    const ref = fs.statSync(file, {bigint: true})
    expect(st.size).to.equal(12345)
    expect(st.ino).to.equal(ref.ino)
    expect(st.mode).to.equal(Number(ref.mode))
    expect(st.nlink).to.equal(Number(ref.nlink))
    expect(st.uid).to.equal(Number(ref.uid))
    expect(st.gid).to.equal(Number(ref.gid))
    expect(st.blksize).to.equal(Number(ref.blksize))
    expect(st.blocks).to.equal(Number(ref.blocks))
    expect(st.devMajor).to.equal(major(ref.dev))
    expect(st.devMinor).to.equal(minor(ref.dev))
    expect(st.rdevMajor).to.equal(0)
    expect(st.rdevMinor).to.equal(0)
    expect(Math.abs(st.mtimeMs - Number(ref.mtimeMs))).to.be.below(2)
    expect(st.mask & 0x7ff).to.equal(0x7ff) // STATX_BASIC_STATS
    expect(typeof st.mntId).to.equal('bigint')
  })

  it('says whether the file is DAX (it is not, here)', () => {
    const st = n.statx(file)
    expect(st.dax).to.equal(false)
    expect(st.attributes & STATX_ATTR_DAX).to.equal(0)
  })

  it('gives the O_DIRECT alignments where the kernel reports them, else 0', () => {
    const st = n.statx(file)
    if (st.mask & STATX_DIOALIGN) {
      // 0 means "no O_DIRECT here"; otherwise powers of two.
      for (const a of [st.dioMemAlign, st.dioOffsetAlign]) if (a) expect(a & (a - 1)).to.equal(0)
    } else {
      expect(st.dioMemAlign).to.equal(0)
      expect(st.dioOffsetAlign).to.equal(0)
    }
    const noDio = n.statx(file, {mask: 0x7ff})
    expect(noDio.dioMemAlign).to.equal(0)
  })

  it("gives a device node's rdev (/dev/null is 1:3)", () => {
    const st = n.statx('/dev/null')
    expect([st.rdevMajor, st.rdevMinor]).to.deep.equal([1, 3])
    expect(st.mode & 0o170000).to.equal(0o020000)
  })

  it('stats an fd (AT_EMPTY_PATH) and a symlink itself on request', () => {
    const fd = fs.openSync(file, 'r')
    try {
      expect(n.statx(fd).ino).to.equal(n.statx(file).ino)
    } finally {
      fs.closeSync(fd)
    }
    const link = path.join(scratch.dir, 'link')
    fs.symlinkSync(file, link)
    expect(n.statx(link).size).to.equal(12345)
    expect(n.statx(link, {followSymlinks: false}).mode & 0o170000).to.equal(0o120000)
  })

  it('a missing path is ENOENT (syscall statx)', () => {
    const e = throwsCode(() => n.statx(path.join(scratch.dir, 'nope')), 'ENOENT')
    expect(e.syscall).to.equal('statx')
    expect(e.errno).to.equal(2)
    throwsCode(() => n.statx(987654), 'EBADF')
  })
})
