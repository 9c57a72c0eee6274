/**
 * `sandbox --state-dir` and the sandbox's cache against hostile directories:
 * a symlink (to a file, to a directory), a non-empty or foreign directory, a
 * symlinked component it would create in. QEMU is a stand-in that fails
 * (/bin/false), so no guest boots whatever happens.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cliProcess} from '../helpers/cli.js'

describe('iopmem sandbox --state-dir: hostile directories', function () {
  this.timeout(120_000)
  let tmp: string
  let env: Record<string, string>
  beforeEach(() => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-state-')))
    env = {IOPMEM_VM_QEMU: '/bin/false', XDG_CACHE_HOME: path.join(tmp, 'cache')}
  })
  afterEach(() => fs.rmSync(tmp, {recursive: true, force: true}))

  const sandbox = (dir: string) => cliProcess(['sandbox', '--state-dir', dir, '--json', '--', 'list'], undefined, env)
  const refused = (r: ReturnType<typeof sandbox>, why: RegExp) => {
    expect(r.exit, r.stdout + r.stderr).to.equal(5)
    expect(r.json.error.code).to.equal('E_STATE_DIR')
    expect(r.json.error.message).to.match(why)
  }

  it('a symlink to a file: refused, the file neither truncated nor removed', () => {
    const victim = path.join(tmp, 'victim')
    fs.writeFileSync(victim, 'precious\n')
    fs.symlinkSync(victim, path.join(tmp, 'state'))
    refused(sandbox(path.join(tmp, 'state')), /symbolic link/)
    expect(fs.readFileSync(victim, 'utf8')).to.equal('precious\n')
  })

  it('a symlink to a directory: refused, nothing created or removed in it', () => {
    const victim = path.join(tmp, 'victimdir')
    fs.mkdirSync(victim)
    fs.writeFileSync(path.join(victim, 'serial.log'), 'mine\n')
    fs.symlinkSync(victim, path.join(tmp, 'state'))
    refused(sandbox(path.join(tmp, 'state')), /symbolic link/)
    expect(fs.readdirSync(victim)).to.deep.equal(['serial.log'])
    expect(fs.readFileSync(path.join(victim, 'serial.log'), 'utf8')).to.equal('mine\n')
  })

  it('a non-empty directory it did not create: refused, its files untouched', () => {
    const dir = path.join(tmp, 'full')
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, 'ram'), 'data\n')
    refused(sandbox(dir), /not empty \(1 entry\)/)
    expect(fs.readFileSync(path.join(dir, 'ram'), 'utf8')).to.equal('data\n')
  })

  it('an empty directory others can write: refused', () => {
    const dir = path.join(tmp, 'open')
    fs.mkdirSync(dir)
    fs.chmodSync(dir, 0o777)
    refused(sandbox(dir), /others can write it/)
  })

  it('an empty directory owned by someone else: refused', function () {
    if (process.geteuid?.() !== 0) this.skip()
    const dir = path.join(tmp, 'theirs')
    fs.mkdirSync(dir, {mode: 0o755})
    fs.chownSync(dir, 65534, 65534)
    refused(sandbox(dir), /owned by uid 65534/)
  })

  it('a path to create under a symlinked directory: refused, nothing created through the link', () => {
    const real = path.join(tmp, 'real')
    fs.mkdirSync(real)
    fs.symlinkSync(real, path.join(tmp, 'link'))
    refused(sandbox(path.join(tmp, 'link', 'state')), /where it would be created, is a symbolic link/)
    expect(fs.readdirSync(real)).to.deep.equal([])
  })

  it('a new path is created 0700 (and its missing parents); the cache goes under $XDG_CACHE_HOME/iopmem/vm, 0700', () => {
    const dir = path.join(tmp, 'new', 'state')
    const r = sandbox(dir)
    expect(r.exit, 'QEMU is /bin/false: the boot fails').to.not.equal(0)
    expect(fs.statSync(path.join(tmp, 'new')).mode & 0o777).to.equal(0o700)
    expect(fs.statSync(dir).mode & 0o777).to.equal(0o700)
    const cache = path.join(tmp, 'cache/iopmem/vm')
    expect(fs.statSync(cache).mode & 0o777).to.equal(0o700)
    expect(fs.readdirSync(cache).length, 'the initramfs is cached there').to.be.greaterThan(0)
  })

  it('a cache directory that is a symlink is not followed: the run caches in its own state directory instead', () => {
    const victim = path.join(tmp, 'victimcache')
    fs.mkdirSync(victim)
    fs.mkdirSync(path.join(tmp, 'cache/iopmem'), {recursive: true})
    fs.symlinkSync(victim, path.join(tmp, 'cache/iopmem/vm'))
    const dir = path.join(tmp, 'state')
    sandbox(dir)
    expect(fs.readdirSync(victim), 'nothing written through the link').to.deep.equal([])
    expect(fs.readdirSync(path.join(dir, 'cache')).length).to.be.greaterThan(0)
  })
})
