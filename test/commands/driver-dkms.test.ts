/**
 * `driver build --sign`, `driver install` and `driver remove` for real: the
 * module built against Debian 12's stock header trees (installed by
 * scripts/install-deps.sh) and signed with a key openssl made here, DKMS
 * (Debian's dkms) adding, building and installing it into a fixture's own
 * trees. Nothing is loaded, and the machine's /usr/src, /var/lib/dkms and
 * /lib/modules are checked unchanged afterwards.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {Host} from '../../src/lib/sys/host.js'
import {dkmsInstall, dkmsVersion, driverEnv} from '../../src/lib/bind/index.js'
import {cliProcess, ROOT} from '../helpers/cli.js'
import {standardMachine} from '../helpers/machines.js'
import {DEBIAN_61, DEBIAN_612, debianTree, makeKey, type TestKey} from '../helpers/signing.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

/** What of the machine DKMS could touch: listed before and after each test. */
function machineState(release: string): string {
  const ls = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).sort().join(',') : '-')
  return [ls('/var/lib/dkms'), ls('/usr/src'), ls(`/lib/modules/${release}`), ls(`/lib/modules/${release}/updates`)].join(' | ')
}

describe('driver build --sign, driver install/remove through DKMS (real dkms, Debian header trees, fixture trees)', function () {
  this.timeout(300_000)
  let tmp: string
  let key: TestKey
  let fx: SysfsFixture
  let deb: {dir: string; release: string}
  let machineBefore: string

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-dkms-'))
    key = makeKey(tmp, 'iopmem dkms test key')
    deb = debianTree(DEBIAN_612)
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))
  beforeEach(() => {
    fx = standardMachine()
    // The fixture's /lib/modules/RELEASE/build: Debian's header tree, as the linux-headers package links it.
    fs.mkdirSync(path.join(fx.root, 'lib/modules', deb.release), {recursive: true})
    fs.symlinkSync(deb.dir, path.join(fx.root, 'lib/modules', deb.release, 'build'))
    machineBefore = machineState(deb.release)
  })
  afterEach(() => {
    expect(machineState(deb.release), 'the machine\'s dkms, source and module trees are untouched').to.equal(machineBefore)
    fx.cleanup()
  })

  it('dkms.conf\'s PACKAGE_VERSION is the module\'s MODULE_VERSION', () => {
    const c = fs.readFileSync(path.join(ROOT, 'native/kmod/iopmem.c'), 'utf8')
    expect(/MODULE_VERSION\("([^"]+)"\)/.exec(c)?.[1]).to.equal(dkmsVersion())
  })

  it('driver build --sign against Debian\'s 6.1 headers: -Werror, signed by the given key, as modinfo shows', () => {
    const d61 = debianTree(DEBIAN_61)
    const out = path.join(tmp, 'build61')
    const r = cliProcess(['driver', 'build', '--kdir', d61.dir, '--out', out, '--werror', '--sign', key.key, '--cert', key.der, '--json'])
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    expect(r.json.vermagic).to.match(new RegExp(`^${d61.release.replaceAll('.', '\\.')} SMP`))
    expect(r.json.signature).to.deep.equal({signed: true, signer: key.cn, serial: key.serial})
    const ko = path.join(out, 'iopmem.ko')
    expect(execFileSync('modinfo', ['-F', 'signer', ko], {encoding: 'utf8'}).trim()).to.equal(key.cn)
    expect(execFileSync('modinfo', ['-F', 'sig_key', ko], {encoding: 'utf8'}).trim().replaceAll(':', '')).to.equal(key.serial)
    // Without --sign: not signed, and said so.
    const plain = cliProcess(['driver', 'build', '--kdir', d61.dir, '--out', path.join(tmp, 'plain61'), '--json'])
    expect(plain.json.signature).to.deep.equal({signed: false, signer: null, serial: null})
  })

  it('driver install: dkms add, build and install into the fixture\'s trees, signed through DKMS\'s hook; status shows it; driver remove undoes all', () => {
    const r = cliProcess(['driver', 'install', '--kernel', deb.release, '--sign', key.key, '--cert', key.der, '--json'], fx)
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    const v = dkmsVersion()
    const ko = path.join(fx.root, 'lib/modules', deb.release, 'updates/dkms/iopmem.ko.xz')
    expect(r.json).to.deep.include({module: 'iopmem', version: v, kernel: deb.release, installed: ko, changed: true})
    expect(r.json.steps.map((s: {step: string}) => s.step)).to.deep.equal(['source', 'add', 'build', 'install'])
    expect(r.json.signature).to.deep.equal({signed: true, signer: key.cn, serial: key.serial})
    expect(execFileSync('modinfo', ['-F', 'signer', ko], {encoding: 'utf8'}).trim()).to.equal(key.cn)
    expect(execFileSync('modinfo', ['-F', 'vermagic', ko], {encoding: 'utf8'})).to.match(new RegExp(`^${deb.release.replaceAll('.', '\\.').replaceAll('+', '\\+')} `))
    expect(fs.readdirSync(path.join(fx.root, 'usr/src'))).to.deep.equal([`iopmem-${v}`])
    expect(fs.existsSync(path.join(fx.root, 'var/lib/dkms/iopmem', v, deb.release))).to.equal(true)

    const s = cliProcess(['driver', 'status', '--json'], fx, {IOPMEM_KERNEL_RELEASE: deb.release})
    expect(s.json.installed).to.deep.equal({ko, signature: {signed: true, signer: key.cn, serial: key.serial}})

    // Again: the same sources are reused, DKMS rebuilds and reinstalls.
    const again = cliProcess(['driver', 'install', '--kernel', deb.release, '--sign', key.key, '--cert', key.der, '--json'], fx)
    expect(again.exit, again.stdout + again.stderr).to.equal(0)
    expect(again.json.steps.map((x: {step: string}) => x.step)).to.deep.equal(['source', 'build', 'install'])

    const rm = cliProcess(['driver', 'remove', '--json'], fx)
    expect(rm.exit, rm.stdout + rm.stderr).to.equal(0)
    expect(rm.json).to.include({changed: true, stillLoaded: false})
    expect(fs.existsSync(ko)).to.equal(false)
    expect(fs.readdirSync(path.join(fx.root, 'usr/src'))).to.deep.equal([])
    expect(fs.existsSync(path.join(fx.root, 'var/lib/dkms/iopmem'))).to.equal(false)
    expect(cliProcess(['driver', 'remove', '--json'], fx).json).to.include({changed: false})
  })

  it('a failing dkms build rolls back what the install did: no source copy, nothing added', () => {
    // A kernel "tree" whose make fails.
    const broken = path.join(tmp, 'broken')
    fs.mkdirSync(path.join(broken, 'include'), {recursive: true})
    fs.writeFileSync(path.join(broken, 'Makefile'), 'modules:\n\t@echo broken tree; exit 2\n')
    fs.mkdirSync(path.join(fx.root, 'lib/modules/6.99.0-broken'), {recursive: true})
    fs.symlinkSync(broken, path.join(fx.root, 'lib/modules/6.99.0-broken/build'))
    const r = cliProcess(['driver', 'install', '--kernel', '6.99.0-broken', '--json'], fx)
    expect(r.exit, r.stdout + r.stderr).to.equal(1)
    expect(r.json.error.code).to.equal('E_DKMS_FAILED')
    expect(r.json.error.message).to.match(/dkms build failed[\s\S]*Rolled back: dkms remove iopmem\/[0-9.]+ undid the add; .*usr\/src\/iopmem-[0-9.]+ was removed/)
    expect(fs.readdirSync(path.join(fx.root, 'usr/src'))).to.deep.equal([])
    expect(fs.existsSync(path.join(fx.root, 'var/lib/dkms/iopmem'))).to.equal(false)
  })

  it('refuses bad input before anything runs: --sign without --cert, a bad --kernel, missing headers, a non-root user', async () => {
    const bad = [
      {args: ['--sign', key.key], code: 'E_BAD_SIGNING', exit: 2},
      {args: ['--sign', key.key, '--cert', key.key], code: 'E_BAD_SIGNING', exit: 2},
      {args: ['--sign', path.join(tmp, 'none.key'), '--cert', key.der], code: 'E_BAD_SIGNING', exit: 3},
      {args: ['--kernel', '../../etc'], code: 'E_BAD_KERNEL', exit: 2},
      {args: ['--kernel', '6.1.0-1-amd64'], code: 'E_NO_HEADERS', exit: 3},
    ]
    for (const b of bad) {
      const kernel = b.args.includes('--kernel') ? [] : ['--kernel', deb.release]
      const r = cliProcess(['driver', 'install', ...kernel, ...b.args, '--json'], fx)
      expect(r.json?.error?.code, `${b.args.join(' ')}: ${r.stdout}${r.stderr}`).to.equal(b.code)
      expect(r.exit, b.args.join(' ')).to.equal(b.exit)
      expect(fs.existsSync(path.join(fx.root, 'usr/src')), 'nothing was copied').to.equal(false)
    }
    const user = new Host({roots: {sysfs: fx.sys, dev: fx.dev, proc: fx.proc}, uid: 1000})
    try {
      await dkmsInstall(driverEnv(user, {}), {kernel: deb.release})
      expect.fail('a normal user installed')
    } catch (error) {
      expect((error as {code: string}).code).to.equal('E_NOT_ROOT')
    }
  })
})
