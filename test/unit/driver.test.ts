/**
 * The toolkit's side of the iopmem driver on fixtures: settings and their
 * checks against a function's BARs, the build tree, build/load/unload with a
 * recording runner (nothing is ever run for real here), status from sysfs,
 * and `bind --driver iopmem` on the fake driver core.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {executeBind, planBind, planUnbind} from '../../src/lib/bind/bind.js'
import {
  buildModule,
  configLine,
  driverEnv,
  driverStatus,
  findBuildTree,
  loadModule,
  moduleVermagic,
  renderStatus,
  resolveSettings,
  type Runner,
  unloadModule,
  validateBarIndex,
  validateCache,
  validateMode,
  validateParams,
} from '../../src/lib/bind/driver.js'
import {IopmemError} from '../../src/lib/sys/errors.js'
import {PciScanner} from '../../src/lib/pci/sysfs.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

async function expectError(f: () => unknown, code: string, exit: number, message?: RegExp): Promise<IopmemError> {
  try {
    await f()
  } catch (error) {
    expect(error).to.be.instanceOf(IopmemError)
    const e = error as IopmemError
    expect(e.code, e.message).to.equal(code)
    expect(e.exit, e.message).to.equal(exit)
    if (message) expect(e.message).to.match(message)
    return e
  }
  expect.fail(`expected ${code}`)
}

/** A runner that records calls and answers from a table; `make` writes a fake .ko. */
function recorder(answers: Partial<Record<string, {code: number; stderr?: string}>> = {}, vermagic = '6.12.117 SMP preempt mod_unload ') {
  const calls: Array<{program: string; args: string[]; fd?: string}> = []
  const run: Runner = (program, args, opts = {}) => {
    // A descriptor handed on (insmod's module) is read here, as the program would read its fd 3.
    calls.push({program, args, ...(opts.fd === undefined ? {} : {fd: fs.readFileSync(opts.fd).toString('latin1')})})
    const a = answers[path.basename(program)] ?? {code: 0}
    if (path.basename(program) === 'make' && a.code === 0) {
      const m = args.find((x) => x.startsWith('M='))!.slice(2)
      fs.writeFileSync(path.join(m, 'iopmem.ko'), Buffer.concat([Buffer.from('\x7fELF....'), Buffer.from(`vermagic=${vermagic}\0license=GPL\0`)]))
    }
    return {code: a.code, stdout: '', stderr: a.stderr ?? ''}
  }
  return {run, calls}
}

/** A fake extmod tree (Makefile, Module.symvers, kernel.release). */
function fakeTree(dir: string, release = '6.12.117'): string {
  fs.mkdirSync(path.join(dir, 'include/config'), {recursive: true})
  fs.writeFileSync(path.join(dir, 'Makefile'), '# kernel\n')
  fs.writeFileSync(path.join(dir, 'Module.symvers'), '')
  fs.writeFileSync(path.join(dir, 'include/config/kernel.release'), release + '\n')
  return dir
}

describe('iopmem driver: settings', () => {
  let fx: SysfsFixture
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())
  const fn = (bdf: string = BDF.ivshmem) => new PciScanner(fx.host()).get(bdf)

  it('accepts the two modes and four cache modes, BARs 0-5', async () => {
    for (const m of ['blockdax', 'p2pmem']) expect(validateMode(m)).to.equal(m)
    for (const c of ['wb', 'wc', 'uc', 'wt']) expect(validateCache(c)).to.equal(c)
    expect(validateBarIndex('5')).to.equal(5)
    await expectError(() => validateMode('fsdax'), 'E_BAD_MODE', 2, /blockdax, p2pmem/)
    // devdax needed drivers/dax's private API: gone, with a pointer to what serves instead.
    const e = await expectError(() => validateMode('devdax'), 'E_BAD_MODE', 2, /modes are blockdax, p2pmem/)
    expect(e.suggestions.join('\n')).to.match(/DAX filesystem/)
    await expectError(() => validateCache('wp'), 'E_BAD_CACHE', 2)
    await expectError(() => validateBarIndex('6'), 'E_BAD_BAR', 2, /0-5/)
    await expectError(() => validateBarIndex('02'), 'E_BAD_BAR', 2)
  })

  it('defaults to blockdax, wb and the largest memory BAR', async () => {
    expect(resolveSettings(fn(), {})).to.deep.equal({mode: 'blockdax', bar: 2, cache: 'wb'})
    expect(configLine(BDF.ivshmem, {mode: 'p2pmem', bar: 2, cache: 'wb'})).to.equal(`${BDF.ivshmem} mode=p2pmem bar=2 cache=wb\n`)
  })

  it('--force hands the driver "force" for a cached mapping (wb, wt) only', () => {
    expect(resolveSettings(fn(), {force: true})).to.deep.equal({mode: 'blockdax', bar: 2, cache: 'wb', force: true})
    expect(configLine(BDF.ivshmem, resolveSettings(fn(), {cache: 'wt', force: true}))).to.equal(`${BDF.ivshmem} mode=blockdax bar=2 cache=wt force\n`)
    expect(resolveSettings(fn(), {cache: 'uc', force: true})).to.deep.equal({mode: 'blockdax', bar: 2, cache: 'uc'})
    expect(resolveSettings(fn(), {mode: 'p2pmem', force: true})).to.deep.equal({mode: 'p2pmem', bar: 2, cache: 'wb'})
  })

  it('refuses a BAR that cannot serve, saying why', async () => {
    await expectError(() => resolveSettings(fn(), {bar: '0'}), 'E_BAD_BAR', 7, /BAR 0 .* too small \(256 B/)
    await expectError(() => resolveSettings(fn(), {bar: '1'}), 'E_BAD_BAR', 7, /not implemented/)
    await expectError(() => resolveSettings(fn(), {mode: 'p2pmem', cache: 'wc'}), 'E_BAD_CACHE', 2, /only for --as blockdax/)
    await expectError(() => resolveSettings(fn(), {mode: 'p2pmem', cache: 'uc'}), 'E_BAD_CACHE', 2)
  })

  it('refuses I/O and unaligned BARs', async () => {
    fx.add({
      bdf: '0000:00:09.0',
      vendor: 0x10ee,
      device: 0x9038,
      class: 0x058000,
      bars: [
        {index: 0, start: 0xc000, size: 256, io: true},
        {index: 2, start: 0xf0100000, size: 4 * MiB},
        {index: 4, start: 0xe0000000, size: 3 * MiB},
        {index: 5, start: 0xe0400000, size: 4 * MiB},
      ],
    })
    const f = fn('0000:00:09.0')
    await expectError(() => resolveSettings(f, {bar: '0'}), 'E_BAD_BAR', 7, /I\/O port BAR/)
    await expectError(() => resolveSettings(f, {bar: '2'}), 'E_BAD_BAR', 7, /not 2 MiB aligned \(0x0*f0100000/)
    await expectError(() => resolveSettings(f, {bar: '4'}), 'E_BAD_BAR', 7, /not 2 MiB aligned/)
    // Not prefetchable: reads may have side effects, so only an uncached blockdax (or p2pmem, uncached) may use it.
    for (const cache of ['wb', 'wc', 'wt']) await expectError(() => resolveSettings(f, {bar: '5', cache}), 'E_BAD_BAR', 7, /not prefetchable.*only --cache uc/)
    expect(resolveSettings(f, {bar: '5', cache: 'uc'})).to.deep.equal({mode: 'blockdax', bar: 5, cache: 'uc'})
    expect(resolveSettings(f, {bar: '5', mode: 'p2pmem'})).to.deep.equal({mode: 'p2pmem', bar: 5, cache: 'wb'})
  })

  it('module parameters are checked', async () => {
    expect(validateParams(['mode=p2pmem', 'bar=-1', 'cache=wc'])).to.have.length(3)
    await expectError(() => validateParams(['mode=x']), 'E_BAD_MODE', 2)
    await expectError(() => validateParams(['foo=1']), 'E_BAD_PARAM', 2)
    await expectError(() => validateParams(['bar=7']), 'E_BAD_BAR', 2)
  })
})

describe('iopmem driver: build, load, unload, status', () => {
  let fx: SysfsFixture
  let tmp: string
  let env: NodeJS.ProcessEnv
  beforeEach(() => {
    fx = standardMachine()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-drv-'))
    env = {IOPMEM_KERNEL_RELEASE: '6.12.117', IOPMEM_MODULES_ROOT: path.join(tmp, 'modules'), XDG_CACHE_HOME: path.join(tmp, 'cache')}
    fs.mkdirSync(path.join(tmp, 'modules'))
  })
  afterEach(() => {
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('missing headers: the error names linux-headers-RELEASE', async () => {
    const e = await expectError(() => findBuildTree(driverEnv(fx.host(), env)), 'E_NO_HEADERS', 3, /6\.12\.117/)
    expect(e.suggestions.join(' ')).to.contain('linux-headers-6.12.117')
  })

  it('finds /lib/modules/RELEASE/build, and --kdir trees with their release', async () => {
    fakeTree(path.join(tmp, 'modules/6.12.117/build'))
    expect(findBuildTree(driverEnv(fx.host(), env)).release).to.equal('6.12.117')
    const k = fakeTree(path.join(tmp, 'other'), '6.13.0')
    expect(findBuildTree(driverEnv(fx.host(), env), k)).to.deep.equal({dir: k, release: '6.13.0'})
    fs.rmSync(path.join(k, 'Module.symvers'))
    await expectError(() => findBuildTree(driverEnv(fx.host(), env), k), 'E_BAD_KDIR', 3, /no Module.symvers/)
  })

  it('a Debian header tree\'s release is its UTS_RELEASE (what vermagic carries), not the upstream version in kernel.release', () => {
    const k = fakeTree(path.join(tmp, 'linux-headers-6.1.0-56-amd64'), '6.1.192')
    fs.mkdirSync(path.join(k, 'include/generated'), {recursive: true})
    fs.writeFileSync(path.join(k, 'include/generated/utsrelease.h'), '#define UTS_RELEASE "6.1.0-56-amd64"\n')
    expect(findBuildTree(driverEnv(fx.host(), env), k)).to.deep.equal({dir: k, release: '6.1.0-56-amd64'})
  })

  it('build runs make -C KDIR M=OUT with an argument array, -Werror on request, and reports the vermagic', async () => {
    const k = fakeTree(path.join(tmp, 'tree'))
    const {run, calls} = recorder()
    const r = buildModule(driverEnv(fx.host(), env, run), {kdir: k, werror: true})
    const out = path.join(tmp, 'cache/iopmem/kmod/6.12.117')
    expect(calls).to.deep.equal([{program: 'make', args: ['-C', k, `M=${out}`, 'IOPMEM_WERROR=1', 'modules']}])
    expect(fs.existsSync(path.join(out, 'iopmem.c'))).to.equal(true)
    expect(r).to.include({ko: path.join(out, 'iopmem.ko'), release: '6.12.117', werror: true})
    expect(r.vermagic).to.match(/^6\.12\.117 SMP/)
    expect(moduleVermagic(r.ko)).to.equal(r.vermagic)
  })

  it('a failing build is an error with the compiler output', async () => {
    const k = fakeTree(path.join(tmp, 'tree'))
    const {run} = recorder({make: {code: 2, stderr: 'iopmem.c:1: error: boom'}})
    await expectError(() => buildModule(driverEnv(fx.host(), env, run), {kdir: k}), 'E_BUILD_FAILED', 1, /boom/)
  })

  it('load: insmod of the built module with parameters; already loaded is a no-op', async () => {
    buildModule(driverEnv(fx.host(), env, recorder().run), {kdir: fakeTree(path.join(tmp, 'tree'))})
    const {run, calls} = recorder()
    const r = loadModule(driverEnv(fx.host(), env, run), {params: ['mode=p2pmem']})
    expect(r).to.include({changed: true, how: 'insmod'})
    // insmod loads the descriptor that was checked, inherited as its fd 3, not the path again.
    expect(calls).to.have.length(1)
    expect(calls[0]).to.include({program: 'insmod'})
    expect(calls[0].args).to.deep.equal(['/proc/self/fd/3', 'mode=p2pmem'])
    expect(calls[0].fd).to.equal(fs.readFileSync(path.join(tmp, 'cache/iopmem/kmod/6.12.117/iopmem.ko')).toString('latin1'))
    fx.driver({name: 'iopmem'})
    expect(loadModule(driverEnv(fx.host(), env, run))).to.include({changed: false, how: 'already'})
    expect(calls).to.have.length(1)
  })

  it('load refuses a module built for another kernel, and needs root', async () => {
    buildModule(driverEnv(fx.host(), env, recorder({}, '6.1.0-18-amd64 SMP').run), {kdir: fakeTree(path.join(tmp, 'tree'))})
    await expectError(() => loadModule(driverEnv(fx.host(), env, recorder().run)), 'E_WRONG_KERNEL', 7, /built for kernel 6\.1\.0-18-amd64/)
    await expectError(() => loadModule(driverEnv(fx.host({uid: 1000}), env, recorder().run)), 'E_NOT_ROOT', 4)
  })

  it('load without a built module tries modprobe, and says to build when that fails', async () => {
    const {run, calls} = recorder({modprobe: {code: 1, stderr: "modprobe: FATAL: Module iopmem not found"}})
    await expectError(() => loadModule(driverEnv(fx.host(), env, run)), 'E_NO_MODULE', 3, /not found/)
    expect(calls[0]).to.deep.equal({program: 'modprobe', args: ['iopmem']})
    const ok = recorder()
    expect(loadModule(driverEnv(fx.host(), env, ok.run))).to.include({how: 'modprobe'})
  })

  it('insmod failures carry the hint that fits', async () => {
    buildModule(driverEnv(fx.host(), env, recorder().run), {kdir: fakeTree(path.join(tmp, 'tree'))})
    const {run} = recorder({insmod: {code: 1, stderr: 'insmod: ERROR: could not insert module: Key was rejected by service'}})
    const e = await expectError(() => loadModule(driverEnv(fx.host(), env, run)), 'E_LOAD_FAILED', 6)
    expect(e.suggestions[0]).to.match(/Secure Boot/)
  })

  it('IOPMEM_INSMOD replaces the program (as root only a root-owned one no one else can write)', () => {
    const ko = path.join(tmp, 'x.ko')
    fs.writeFileSync(ko, 'vermagic=6.12.117 SMP\0')
    const fake = path.join(tmp, 'insmod')
    fs.writeFileSync(fake, '#!/bin/sh\n', {mode: 0o755})
    const {run, calls} = recorder()
    loadModule(driverEnv(fx.host(), {...env, IOPMEM_INSMOD: fake}, run), {ko})
    expect(calls[0].program).to.equal(fake)
    if (process.geteuid?.() === 0) {
      fs.chmodSync(fake, 0o775)
      expectError(() => loadModule(driverEnv(fx.host(), {...env, IOPMEM_INSMOD: fake}, run), {ko}), 'E_UNTRUSTED_SEAM', 4, /writable by its group/)
      fs.chmodSync(fake, 0o755)
      fs.chownSync(fake, 65534, 65534)
      expectError(() => loadModule(driverEnv(fx.host(), {...env, IOPMEM_INSMOD: fake}, run), {ko}), 'E_UNTRUSTED_SEAM', 4, /owned by uid 65534/)
      expectError(() => loadModule(driverEnv(fx.host(), {...env, IOPMEM_INSMOD: 'insmod'}, run), {ko}), 'E_UNTRUSTED_SEAM', 4, /absolute path/)
      // Missing, in a directory others can write (sticky /tmp included): someone could create it.
      expectError(() => loadModule(driverEnv(fx.host(), {...env, IOPMEM_INSMOD: path.join(os.tmpdir(), 'no-such-insmod')}, run), {ko}), 'E_UNTRUSTED_SEAM', 4, /someone else could create it/)
      expect(calls).to.have.length(1)
    }
  })

  it('unload refuses while devices are bound, else runs rmmod', async () => {
    fx.driver({name: 'iopmem'})
    fx.bindLinks(BDF.ivshmem, 'iopmem')
    const {run, calls} = recorder()
    await expectError(() => unloadModule(driverEnv(fx.host(), env, run)), 'E_IN_USE', 5, new RegExp(BDF.ivshmem))
    fx.unbindLinks(BDF.ivshmem)
    expect(unloadModule(driverEnv(fx.host(), env, run))).to.deep.equal({changed: true})
    expect(calls).to.deep.equal([{program: 'rmmod', args: ['iopmem']}])
    fs.rmSync(path.join(fx.sys, 'module/iopmem'), {recursive: true})
    expect(unloadModule(driverEnv(fx.host(), env, run))).to.deep.equal({changed: false})
  })

  it('status: version, parameters, config and bound devices with their nodes', async () => {
    fx.driver({name: 'iopmem'})
    fx.writeSys('module/iopmem/version', '0.1.0\n')
    fx.writeSys('module/iopmem/parameters/mode', 'blockdax\n')
    fx.writeSys('module/iopmem/parameters/bar', '-1\n')
    fx.writeSys('kernel/debug/iopmem/fail_probe', '\n')
    fx.writeSys('bus/pci/drivers/iopmem/config', `${BDF.ivshmem} mode=blockdax bar=2 cache=wb force\n`)
    fx.writeSys('bus/pci/drivers/iopmem/last_error', '')
    fx.bindLinks(BDF.ivshmem, 'iopmem')
    const a = path.join(fx.fnDir(BDF.ivshmem), 'iopmem')
    fs.mkdirSync(a)
    for (const [f, v] of Object.entries({mode: 'blockdax', bar: '2', cache: 'wb', node: 'iopmem0', phys: '0x0000000800000000', size: String(64 * MiB), memtype: 'uncached-minus'})) {
      fs.writeFileSync(path.join(a, f), v + '\n')
    }
    const s = driverStatus(driverEnv(fx.host(), env))
    expect(s).to.include({loaded: true, version: '0.1.0', release: '6.12.117', lastError: null, failProbe: null})
    expect(s.parameters).to.deep.equal({bar: '-1', mode: 'blockdax'})
    expect(renderStatus(s), 'the unset test hook is not shown').to.contain('parameters: bar=-1 mode=blockdax\n').and.not.contain('fail_probe')
    expect(s.config).to.deep.equal([`${BDF.ivshmem} mode=blockdax bar=2 cache=wb force`])
    expect(s.devices).to.deep.equal([{bdf: BDF.ivshmem, mode: 'blockdax', bar: 2, cache: 'wb', node: 'iopmem0', path: '/dev/iopmem0', phys: '0x0000000800000000', size: 64 * MiB, memtype: 'uncached-minus'}])
    expect(renderStatus(s)).to.match(/loaded, version 0\.1\.0[\s\S]*blockdax {2}BAR2 64 MiB .*cache wb \(uncached-minus\) {2}\/dev\/iopmem0/)
    // The test hook lives in debugfs now (no writable module parameter), and shows loudly when set.
    fx.writeSys('kernel/debug/iopmem/fail_probe', 'memremap\n')
    fx.writeSys('bus/pci/drivers/iopmem/last_error', `${BDF.ivshmem} BAR 2 is claimed by someone else\n0000:00:09.0 BAR 0 is too small\n`)
    const hooked = renderStatus(driverStatus(driverEnv(fx.host(), env)))
    expect(hooked).to.match(/parameters: bar=-1 mode=blockdax\nwarning: fail_probe=memremap is set: every probe fails at that step/)
    expect(hooked).to.contain(`last refused probe: ${BDF.ivshmem} BAR 2 is claimed by someone else\nlast refused probe: 0000:00:09.0 BAR 0 is too small`)
    fs.rmSync(path.join(fx.sys, 'module/iopmem'), {recursive: true})
    expect(renderStatus(driverStatus(driverEnv(fx.host(), env)))).to.match(/not loaded[\s\S]*iopmem driver build/)
  })
})

describe('bind --driver iopmem on a fake driver core', () => {
  let fx: SysfsFixture
  let core: FakeDriverCore
  const host = () => fx.host({writer: core})
  const cfg = () => fs.readFileSync(path.join(fx.sys, 'bus/pci/drivers/iopmem/config'), 'utf8')

  beforeEach(() => {
    fx = standardMachine()
    core = new FakeDriverCore(fx)
    fx.driver({name: 'iopmem'})
    fx.writeSys('bus/pci/drivers/iopmem/config', '')
    fx.writeSys('bus/pci/drivers/iopmem/last_error', '')
  })
  afterEach(() => fx.cleanup())

  it('writes the settings to drivers/iopmem/config before the override and the bind', async () => {
    const r = await executeBind(host(), planBind(host(), BDF.ivshmem, 'iopmem', {mode: 'p2pmem', bar: '2'}))
    expect(r.driver).to.equal('iopmem')
    expect(core.log.map((w) => [w.file.split('/').slice(-2).join('/'), w.value])).to.deep.equal([
      ['iopmem/config', `${BDF.ivshmem} mode=p2pmem bar=2 cache=wb\n`],
      [`${BDF.ivshmem}/driver_override`, 'iopmem\n'],
      ['iopmem/bind', BDF.ivshmem],
    ])
  })

  it('a refused probe rolls back, forgets the settings and quotes the driver\'s reason', async () => {
    fx.drivers.get('iopmem')!.probe = (b) => {
      // one line per device: another device's reason is not this one's
      fx.writeSys('bus/pci/drivers/iopmem/last_error', `0000:00:09.0 BAR 0 is too small\n${b} memremap_pages of BAR 2 failed (-22)\n`)
      return 'EINVAL'
    }
    const before = fx.hash()
    const e = await expectError(() => executeBind(host(), planBind(host(), BDF.ivshmem, 'iopmem', {})), 'E_BIND_FAILED', 6, /memremap_pages of BAR 2 failed/)
    expect(e.message).to.match(/Rolled back/).and.not.match(/too small/)
    expect(cfg()).to.equal(`${BDF.ivshmem}\n`)
    expect(fx.currentDriver(BDF.ivshmem)).to.equal(undefined)
    expect(before).to.be.a('string')
  })

  it('--mode/--bar/--cache are for iopmem only', async () => {
    await expectError(() => planBind(host(), BDF.ivshmem, 'uio_pci_generic', {mode: 'p2pmem'}), 'E_IOPMEM_ONLY', 2, /--as is for --driver iopmem only/)
    await expectError(() => planBind(host(), BDF.ivshmem, 'vfio-pci', {bar: '2', cache: 'wc'}), 'E_IOPMEM_ONLY', 2, /--bar, --cache are/)
  })

  it('a device already on iopmem: same settings is a no-op, others are refused', async () => {
    await executeBind(host(), planBind(host(), BDF.ivshmem, 'iopmem', {mode: 'p2pmem'}))
    const a = path.join(fx.fnDir(BDF.ivshmem), 'iopmem')
    fs.mkdirSync(a)
    for (const [f, v] of Object.entries({mode: 'p2pmem', bar: '2', cache: 'wb', node: 'p2pmem'})) fs.writeFileSync(path.join(a, f), v + '\n')
    expect(planBind(host(), BDF.ivshmem, 'iopmem', {mode: 'p2pmem'}).noop).to.equal(true)
    await expectError(() => planBind(host(), BDF.ivshmem, 'iopmem', {mode: 'blockdax'}), 'E_ALREADY_BOUND', 5, /already bound to iopmem as p2pmem on BAR 2/)
  })

  it('unbind is refused while /dev/iopmem0 is mounted, or iopmem p2pmem is allocated', async () => {
    fx.add({
      bdf: '0000:00:08.0',
      vendor: 0x10ee,
      device: 0x9038,
      class: 0x058000,
      driver: 'iopmem',
      bars: [{index: 2, start: 0xe0000000, size: 64 * MiB}],
      disks: [{name: 'iopmem0', dev: '259:9', sizeBytes: 64 * MiB, dax: true}],
    })
    fx.mount({dev: '259:9', source: '/dev/iopmem0', target: '/mnt/dax', fstype: 'ext4', options: 'rw,dax=always'})
    await expectError(() => planUnbind(host(), '00:08.0'), 'E_IN_USE', 5, /iopmem0 is mounted on \/mnt\/dax \(ext4, dax=always\)/)
    fx.add({bdf: '0000:00:0a.0', vendor: 0x10ee, device: 0x9038, class: 0x058000, driver: 'iopmem', bars: [{index: 2, start: 0xd0000000, size: 64 * MiB}], p2pmem: {size: 64 * MiB, available: 60 * MiB}})
    await expectError(() => planUnbind(host(), '00:0a.0'), 'E_IN_USE', 5, /4 MiB of its p2pmem is allocated \(iopmem itself holds none\)/)
  })
})
