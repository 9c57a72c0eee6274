/**
 * Mappings: map by path and by fd, options, errno errors, unmap / unmapAll /
 * finalizer, use after unmap, stale and forged handles, many live mappings,
 * MAP_PRIVATE refused, SIGBUS caught inside the guard and passed on (POSIX
 * chaining) outside it.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {IopmemError} from '../../src/lib/sys/errors.js'
import {NativeErrnoError, type Mapping} from '../../src/native/index.js'
import {ROOT, devShm, native, throwsCode, tmpDir, tsxChild} from './helpers.js'

describe('native: mappings', function () {
  const n = native()
  let scratch: ReturnType<typeof tmpDir>
  const fds: number[] = []
  const memfd = (size: number) => {
    const fd = n.memfd('iopmem-test', size)
    fds.push(fd)
    return fd
  }

  before(() => {
    scratch = tmpDir('iopmem-map')
  })
  after(() => {
    n.unmapAll()
    for (const fd of fds) n.closeFd(fd)
    scratch.cleanup()
  })

  it('maps a memfd by fd with the declared mode and reports its shape', () => {
    const fd = memfd(1 << 16)
    const m = n.map(fd, {mode: 'wc'})
    expect(m.length).to.equal(1 << 16)
    expect(m.mode).to.equal('wc')
    expect(m.offset).to.equal(0)
    expect(m.path).to.equal(`fd:${fd}`)
    expect(m.writable).to.equal(true)
    expect(m.mapped).to.equal(true)
    expect(m.sync).to.equal(false)
    expect(m.base > 0n).to.equal(true)
    expect(m.base % BigInt(n.constants.pageSize)).to.equal(0n)
    expect(m).to.be.instanceOf(n.raw.Mapping)
    expect(Object.keys(m)).to.deep.equal([]) // slot is non-enumerable
    expect(m.unmap()).to.equal(true)
  })

  it('defaults the mode to uc and the length to the file size less the offset', () => {
    const fd = memfd(3 * 4096)
    const m = n.map(fd, {offset: 4096})
    expect(m.mode).to.equal('uc')
    expect(m.length).to.equal(2 * 4096)
    m.unmap()
  })

  it('maps a file by path at an offset that is not page aligned', () => {
    const file = path.join(scratch.dir, 'offset.bin')
    const data = Buffer.alloc(3 * 4096)
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff
    fs.writeFileSync(file, data)
    const m = n.map(file, {offset: 4096 + 100, length: 300, mode: 'wb'})
    expect(m.path).to.equal(file)
    expect(m.offset).to.equal(4196)
    expect(m.base % 4096n).to.equal(100n)
    for (const off of [0, 1, 150, 299]) expect(n.read8(m, off)).to.equal(data[4196 + off])
    n.write8(m, 0, 0xab)
    m.unmap()
    expect(fs.readFileSync(file)[4196]).to.equal(0xab)
  })

  it('maps /dev/shm files (tmpfs) too', function () {
    const shm = devShm()
    if (!shm) this.skip()
    const file = path.join(shm!, `iopmem-test-${process.pid}`)
    fs.writeFileSync(file, Buffer.alloc(8192, 7))
    try {
      const m = n.map(file, {mode: 'wb'})
      expect(n.read32(m, 4096)).to.equal(0x07070707)
      m.unmap()
    } finally {
      fs.rmSync(file, {force: true})
    }
  })

  it('read-only mappings read and refuse every kind of write', () => {
    const file = path.join(scratch.dir, 'ro.bin')
    fs.writeFileSync(file, Buffer.alloc(4096, 0x5a))
    const m = n.map(file, {readOnly: true, mode: 'wb'})
    expect(m.writable).to.equal(false)
    expect(n.read16(m, 2)).to.equal(0x5a5a)
    throwsCode(() => n.write8(m, 0, 1), 'E_READONLY')
    throwsCode(() => n.write64(m, 0, 1n), 'E_READONLY')
    throwsCode(() => n.writeValues(m, 0, 4, [1, 2]), 'E_READONLY')
    throwsCode(() => n.copyTo(m, 0, Buffer.alloc(16)), 'E_READONLY')
    const out = Buffer.alloc(16)
    n.copyFrom(m, 0, out)
    expect(out.every((b) => b === 0x5a)).to.equal(true)
    m.unmap()
  })

  it('turns a failed open into an errno error with code, errno, syscall, path and strerror text', () => {
    const missing = path.join(scratch.dir, 'nope')
    const e = throwsCode(() => n.map(missing), 'ENOENT')
    expect(e).to.be.instanceOf(NativeErrnoError)
    expect(e).to.be.instanceOf(IopmemError)
    expect(e.errno).to.equal(2)
    expect(e.syscall).to.equal('open')
    expect(e.path).to.equal(missing)
    expect(e.message).to.contain(n.strerror(2))
    const dir = throwsCode(() => n.map(scratch.dir), 'EISDIR')
    expect(dir.syscall).to.equal('open')
  })

  it('turns a failed mmap into an errno error (syscall mmap)', () => {
    // /dev/null cannot be mapped: ENODEV from mmap itself.
    const e = throwsCode(() => n.map('/dev/null', {length: 4096, readOnly: true}), 'ENODEV')
    expect(e.syscall).to.equal('mmap')
    expect(e.path).to.equal('/dev/null')
    expect((e as IopmemError).exit).to.equal(3)
  })

  it('refuses MAP_SYNC on a file that is not on a DAX filesystem (EOPNOTSUPP)', () => {
    const fd = memfd(4096)
    const e = throwsCode(() => n.map(fd, {sync: true, mode: 'wb'}), 'EOPNOTSUPP')
    expect(e.syscall).to.equal('mmap')
  })

  it('needs a length where the size reads 0, and refuses ranges past the end of a regular file', () => {
    throwsCode(() => n.map('/dev/null', {readOnly: true}), 'E_LENGTH')
    const fd = memfd(8192)
    throwsCode(() => n.map(fd, {offset: 4096, length: 8192}), 'ERANGE')
    throwsCode(() => n.map(fd, {offset: 8192}), 'E_LENGTH')
    throwsCode(() => n.map(fd, {length: 0}), 'ERANGE')
    throwsCode(() => n.map(fd, {mode: 'xx' as never}), 'E_MODE')
  })

  it('maps with MAP_POPULATE', () => {
    const m = n.map(memfd(1 << 20), {populate: true, mode: 'wb'})
    expect(n.read64(m, 8)).to.equal(0n)
    m.unmap()
  })

  it('maps anonymous memory', () => {
    const m = n.mapAnonymous(1 << 20, {thp: true})
    expect(m.mode).to.equal('wb')
    expect(m.path).to.equal('[anon]')
    n.write32(m, 1 << 19, 0x12345678)
    expect(n.read32(m, 1 << 19)).to.equal(0x12345678)
    m.unmap()
  })

  it('unmaps once: a second unmap (method or function) is a no-op that says false', () => {
    const m = n.map(memfd(4096))
    expect(m.unmap()).to.equal(true)
    expect(m.unmap()).to.equal(false)
    expect(n.unmap(m)).to.equal(false)
    expect(m.mapped).to.equal(false)
    expect(m.base).to.equal(0n)
    const m2 = n.map(memfd(4096))
    expect(n.unmap(m2)).to.equal(true)
    expect(m2.unmap()).to.equal(false)
  })

  it('every accessor refuses a mapping after unmap with E_UNMAPPED', () => {
    const m = n.map(memfd(4096), {mode: 'wb'})
    m.unmap()
    const calls: Array<() => unknown> = [
      () => n.read8(m, 0),
      () => n.read16(m, 0),
      () => n.read32(m, 0),
      () => n.read64(m, 0),
      () => n.write8(m, 0, 0),
      () => n.write16(m, 0, 0),
      () => n.write32(m, 0, 0),
      () => n.write64(m, 0, 0n),
      () => n.readValues(m, 0, 4, 1),
      () => n.writeValues(m, 0, 4, [1]),
      () => n.copyTo(m, 0, Buffer.alloc(8)),
      () => n.copyFrom(m, 0, Buffer.alloc(8)),
      () => n.flush(m, 0, 64),
    ]
    for (const c of calls) throwsCode(c, 'E_UNMAPPED')
  })

  it('a stale slot stays refused after its table entry is reused', () => {
    const fd = memfd(4096)
    const a = n.map(fd, {mode: 'wb'})
    const stale = a.slot
    a.unmap()
    const b = n.map(fd, {mode: 'wb'})
    expect(b.slot).to.not.equal(stale)
    expect(b.slot % 2 ** 22).to.equal(stale % 2 ** 22) // same entry, new generation
    throwsCode(() => n.raw.read32(stale, 0), 'E_UNMAPPED')
    n.write32(b, 0, 42)
    expect(n.raw.read32(b.slot, 0)).to.equal(42)
    b.unmap()
  })

  it('refuses values that are not mapping handles with E_HANDLE', () => {
    for (const bad of [undefined, null, {}, {slot: 'x'}, {slot: -1}, {slot: 1.5}, {slot: 2 ** 60}, 42, 'm'])
      throwsCode(() => n.read32(bad as unknown as Mapping, 0), 'E_HANDLE')
    throwsCode(() => n.raw.read32('nope' as unknown as number, 0), 'E_HANDLE')
    throwsCode(() => n.raw.unmap({} as unknown as number), 'E_HANDLE')
    throwsCode(() => new (n.raw.Mapping as unknown as new () => unknown)(), 'E_ARG')
  })

  it('tracks live mappings and unmaps them all', () => {
    n.unmapAll()
    const fd = memfd(4096)
    const a = n.map(fd, {mode: 'wc'})
    const b = n.map(fd, {mode: 'uc', readOnly: false})
    const live = n.liveMappings()
    expect(live.map((x) => x.id)).to.deep.equal([a.id, b.id])
    expect(live[0]).to.deep.include({path: `fd:${fd}`, length: 4096, offset: 0, mode: 'wc', writable: true})
    expect(live[0].base).to.equal(a.base)
    expect(n.unmapAll()).to.equal(2)
    expect(a.mapped || b.mapped).to.equal(false)
    expect(n.liveMappings()).to.deep.equal([])
    expect(n.unmapAll()).to.equal(0)
  })

  it('holds 1000 live mappings at once, each its own', () => {
    const fd = memfd(1000 * 4096)
    const ms: Mapping[] = []
    for (let i = 0; i < 1000; i++) ms.push(n.map(fd, {offset: i * 4096, length: 4096, mode: 'wb'}))
    for (let i = 0; i < 1000; i++) n.write32(ms[i], 0, i * 7)
    const all = n.map(fd, {mode: 'wb'})
    for (let i = 0; i < 1000; i++) expect(n.read32(all, i * 4096)).to.equal(i * 7)
    expect(n.liveMappings().length).to.equal(1001)
    expect(new Set(ms.map((m) => m.slot)).size).to.equal(1000)
    for (let i = 0; i < 1000; i += 2) ms[i].unmap()
    expect(n.unmapAll()).to.equal(501)
  })

  it('refuses MAP_PRIVATE: writes to it would never reach the file', () => {
    const f = path.join(scratch.dir, 'private')
    fs.writeFileSync(f, Buffer.alloc(4096))
    const fd = fs.openSync(f, 'r+')
    try {
      const {MAP_SHARED_VALIDATE, MAP_SYNC} = n.constants
      for (const flags of [0x02, 0x02 | n.constants.MAP_POPULATE, 0x02 | MAP_SYNC])
        throwsCode(() => n.raw.mmap(fd, 0, 4096, true, flags, 'wb', f), 'E_ARG')
      // Shared mappings still work, and their writes reach the file.
      for (const flags of [0, 0x01, MAP_SHARED_VALIDATE]) {
        const m = n.raw.mmap(fd, 0, 4096, true, flags, 'wb', f) as Mapping
        n.write8(m, flags, 0x5a)
        m.unmap()
        expect(fs.readFileSync(f)[flags], `flags ${flags}`).to.equal(0x5a)
      }
    } finally {
      fs.closeSync(fd)
    }
  })

  describe('SIGBUS outside a guarded access goes on as POSIX says', function () {
    this.timeout(30000)
    // A child that first takes a guarded fault (E_SIGBUS), then runs `body`.
    const child = (body: string, before = '') =>
      tsxChild(
        `${before}
         const {loadNative} = await import(${JSON.stringify(path.join(ROOT, 'src/native/index.ts'))})
         const n = loadNative()
         const fd = n.memfd('bus', 2 * 4096)
         const m = n.map(fd, {mode: 'wb'})
         n.truncate(fd, 4096)
         const guarded = () => { try { n.read32(m, 4096); return 'no fault' } catch (e) { return e.code } }
         console.log('guarded:' + guarded())
         ${body}`,
        {timeout: 20000},
      )

    it('kill -BUS with the default disposition kills the process with SIGBUS', () => {
      const r = child(`process.kill(process.pid, 'SIGBUS'); setTimeout(() => console.log('survived'), 1000)`)
      expect(r.stdout).to.contain('guarded:E_SIGBUS')
      expect(r.stdout, 'an asynchronous SIGBUS is not swallowed').to.not.contain('survived')
      expect(r.signal).to.equal('SIGBUS')
    })

    it('a previous handler is called once per signal, and the guard stays in force after it', () => {
      const r = child(
        `process.kill(process.pid, 'SIGBUS')
         setTimeout(() => { console.log('calls:' + calls); console.log('again:' + guarded()); process.exit(0) }, 500)`,
        `let calls = 0; process.on('SIGBUS', () => calls++)`,
      )
      expect(r.error, 'the child hung').to.equal(undefined)
      expect(r.status, r.stderr).to.equal(0)
      expect(r.stdout).to.contain('guarded:E_SIGBUS')
      expect(r.stdout).to.contain('calls:1')
      expect(r.stdout, 'a later guarded fault is still an error').to.contain('again:E_SIGBUS')
    })
  })

  it('catches SIGBUS (file truncated under the mapping) as E_SIGBUS and carries on', () => {
    const fd = memfd(4 * 4096)
    const m = n.map(fd, {mode: 'wb'})
    n.write32(m, 3 * 4096, 1)
    n.truncate(fd, 4096)
    throwsCode(() => n.read32(m, 3 * 4096), 'E_SIGBUS')
    throwsCode(() => n.write64(m, 2 * 4096, 1n), 'E_SIGBUS')
    throwsCode(() => n.copyFrom(m, 0, Buffer.alloc(4 * 4096)), 'E_SIGBUS')
    throwsCode(() => n.copyTo(m, 4000, Buffer.alloc(200), 'stream-store'), 'E_SIGBUS')
    expect(n.read32(m, 0)).to.equal(0) // the first page is still there
    n.truncate(fd, 4 * 4096)
    expect(n.read32(m, 3 * 4096)).to.equal(0) // the page came back empty
    m.unmap()
  })

  it('releaseOnExit unmaps on exit, and on SIGTERM before dying of it', function () {
    this.timeout(30000)
    const run = (body: string) =>
      tsxChild(`import {loadNative, releaseOnExit} from ${JSON.stringify(path.join(ROOT, 'src/native/index.ts'))}
           const n = loadNative()
           const fd = n.memfd('exit', 4096)
           for (let i = 0; i < 3; i++) n.map(fd, {mode: 'wb'})
           ${body}`)
    // Our 'exit' listener runs after releaseOnExit's, so it sees the result.
    const exit = run(`releaseOnExit(); process.on('exit', () => console.log('live=' + n.liveMappings().length))`)
    expect(exit.status, exit.stderr).to.equal(0)
    expect(exit.stdout.trim()).to.equal('live=0')
    const term = run(`releaseOnExit({signals: true}); process.kill(process.pid, 'SIGTERM'); setTimeout(() => console.log('survived'), 2000)`)
    expect(term.signal).to.equal('SIGTERM')
    expect(term.stdout).to.not.contain('survived')
  })

  it('the finalizer unmaps mappings JS dropped', function () {
    this.timeout(30000)
    const script = `
      const {loadNative} = await import(${JSON.stringify(path.join(ROOT, 'src/native/index.ts'))})
      const n = loadNative()
      const fd = n.memfd('gc', 4096)
      const count = () => require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('memfd:gc')).length
      ;(() => { for (let i = 0; i < 200; i++) n.map(fd, {mode: 'wb'}) })()
      const before = count()
      for (let i = 0; i < 20 && n.liveMappings().length > 0; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)) }
      console.log(JSON.stringify({before, after: count(), live: n.liveMappings().length}))
    `
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', `import {createRequire} from 'node:module'; const require = createRequire(${JSON.stringify(ROOT + '/')}); ${script}`], {
      cwd: ROOT,
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
    expect(out.before).to.equal(200)
    expect(out.live).to.equal(0)
    expect(out.after).to.equal(0)
  })
})
