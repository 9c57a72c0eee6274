/**
 * A fake of the kernel's nvmet configfs for fixture trees: mkdir of a subsystem, namespace,
 * port or host fills it with its attributes as nvmet does, rmdir refuses items that still
 * hold user-made children, a port takes a subsystem link only once its transport is set,
 * and the writes nvmet checks (p2pmem, enable) fail as the kernel's store methods fail.
 * `failOn` makes one chosen operation fail (EIO), for rollback tests. With
 * IOPMEM_TEST_PAUSE_AT=N and IOPMEM_TEST_PAUSE_FILE=F (a child process, child-cli.ts) the Nth
 * operation writes F and waits for F.go before it is done, so a test can signal it mid-way.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import type {ConfigfsOps, SysfsWriter} from '../../src/lib/sys/host.js'
import {pauseAtWrite} from './fake-driver-core.js'
import type {SysfsFixture} from './sysfs-fixture.js'

function sysErr(code: string, errno: number, syscall: string, p: string): Error {
  return Object.assign(new Error(`${code}: ${syscall} ${p}`), {code, errno, syscall, path: p})
}

export class FakeConfigfs implements SysfsWriter {
  readonly root: string
  /** `op rel-path` strings (e.g. `symlink ports/1/subsystems/nqn…`) matched against this fail with EIO. */
  failOn?: RegExp
  readonly log: string[] = []
  readonly configfs: ConfigfsOps

  constructor(private readonly fx: SysfsFixture) {
    this.root = path.join(fx.sys, 'kernel/config/nvmet')
    for (const d of ['subsystems', 'ports', 'hosts']) fs.mkdirSync(path.join(this.root, d), {recursive: true})
    this.configfs = {
      mkdir: (dir) => this.mkdir(dir),
      rmdir: (dir) => this.rmdir(dir),
      symlink: (target, link) => this.symlink(target, link),
      unlink: (link) => {
        this.check('unlink', link)
        fs.unlinkSync(link)
      },
    }
  }

  private rel(p: string): string {
    return path.relative(this.root, p)
  }

  private check(op: string, p: string): void {
    const line = `${op} ${this.rel(p)}`
    this.log.push(line)
    pauseAtWrite(this.log.length, line)
    if (this.failOn?.test(line)) throw sysErr('EIO', -5, op, p)
  }

  write(file: string, value: string): void {
    this.check('write', file)
    const name = path.basename(file)
    const v = value.replace(/\n$/, '')
    if (!fs.existsSync(file) || !fs.lstatSync(file).isFile()) throw sysErr('ENOENT', -2, 'open', file)
    if (name === 'p2pmem' && !/^[01]$/.test(v)) {
      const pub = path.join(this.fx.sys, 'bus/pci/devices', v, 'p2pmem/published')
      if (!fs.existsSync(pub) || fs.readFileSync(pub, 'utf8').trim() !== '1') throw sysErr('ENODEV', -19, 'write', file)
    }
    if (name === 'enable' && v === '1') {
      const dp = fs.readFileSync(path.join(path.dirname(file), 'device_path'), 'utf8').trim()
      if (!dp.startsWith('/dev/') || !fs.existsSync(path.join(this.fx.dev, dp.slice(5)))) throw sysErr('ENOENT', -2, 'write', file)
    }
    if (name === 'addr_trtype' && !['tcp', 'rdma', 'loop', 'fc'].includes(v)) throw sysErr('EINVAL', -22, 'write', file)
    fs.writeFileSync(file, v + '\n')
  }

  private mkdir(dir: string): void {
    this.check('mkdir', dir)
    const kind = path.basename(path.dirname(dir))
    if (fs.existsSync(dir)) throw sysErr('EEXIST', -17, 'mkdir', dir)
    const files: Record<string, string> = {}
    const dirs: string[] = []
    if (kind === 'subsystems' && path.dirname(path.dirname(dir)) === this.root) {
      Object.assign(files, {attr_allow_any_host: '0', attr_version: '1.3', attr_serial: 'abc'})
      dirs.push('namespaces', 'allowed_hosts', 'passthru')
    } else if (kind === 'namespaces') {
      const n = Number(path.basename(dir))
      if (!Number.isInteger(n) || n < 1 || n > 0xfffffffe) throw sysErr('EINVAL', -22, 'mkdir', dir)
      Object.assign(files, {device_path: '', enable: '0', p2pmem: '0', device_uuid: '00000000-0000-0000-0000-000000000000', device_nguid: '00000000-0000-0000-0000-000000000000', buffered_io: '0'})
    } else if (kind === 'ports' && path.dirname(path.dirname(dir)) === this.root) {
      Object.assign(files, {addr_trtype: '', addr_adrfam: '', addr_traddr: '', addr_trsvcid: '', addr_treq: 'not specified'})
      dirs.push('subsystems', 'referrals', 'ana_groups')
    } else if (kind === 'hosts') {
      Object.assign(files, {dhchap_key: ''})
    } else throw sysErr('EPERM', -1, 'mkdir', dir)
    fs.mkdirSync(dir)
    for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), v + '\n')
    for (const d of dirs) fs.mkdirSync(path.join(dir, d))
  }

  private rmdir(dir: string): void {
    this.check('rmdir', dir)
    if (!fs.existsSync(dir)) throw sysErr('ENOENT', -2, 'rmdir', dir)
    for (const d of ['namespaces', 'allowed_hosts', 'subsystems', 'referrals']) {
      const p = path.join(dir, d)
      if (fs.existsSync(p) && fs.readdirSync(p).length > 0) throw sysErr('ENOTEMPTY', -39, 'rmdir', dir)
    }
    if (path.basename(path.dirname(dir)) === 'namespaces' && fs.readFileSync(path.join(dir, 'enable'), 'utf8').trim() === '1') {
      // The kernel disables a namespace on rmdir; the fake keeps it simple and allows it too.
    }
    fs.rmSync(dir, {recursive: true})
  }

  private symlink(target: string, link: string): void {
    this.check('symlink', link)
    if (!fs.existsSync(target)) throw sysErr('ENOENT', -2, 'symlink', link)
    const parent = path.basename(path.dirname(link))
    if (parent === 'subsystems') {
      const port = path.dirname(path.dirname(link))
      if (fs.readFileSync(path.join(port, 'addr_trtype'), 'utf8').trim() === '') throw sysErr('EINVAL', -22, 'symlink', link)
    } else if (parent !== 'allowed_hosts') throw sysErr('EPERM', -1, 'symlink', link)
    fs.symlinkSync(path.relative(path.dirname(link), target), link)
  }
}
