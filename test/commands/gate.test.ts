/**
 * The gate to the outside world under fixture roots: stand-ins for every
 * external program, first on PATH (and named by the insmod/rmmod/modprobe
 * seams), log their argv while the commands run as child processes; no argv
 * may hold a path into the host's /dev, /sys or /proc. Plus the kernel-write
 * rules (no symlink followed) and the module rules of `bind` and `driver load`.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {Host} from '../../src/lib/sys/host.js'
import {cli, cliProcess, ROOT} from '../helpers/cli.js'
import {daxMachine} from '../helpers/dax.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

const PROGRAMS = ['wipefs', 'mkfs.ext4', 'mkfs.xfs', 'blkid', 'mount', 'umount', 'insmod', 'modprobe', 'rmmod', 'make', 'filefrag', 'qemu-system-x86_64', 'dkms']
const RELEASE = '6.12.117'

/**
 * One stand-in for all programs: logs its name and argv (fields split by
 * \x1f) to $REC_LOG and plays the part: wipefs finds ext4 on pmem0, blkid
 * reports ext4, insmod checks the module reached it as fd 3 and registers the
 * driver in the fixture, rmmod removes it, make writes a module.
 */
const STANDIN = `#!/bin/sh
name=$(basename "$0")
{ printf '%s' "$name"; for a in "$@"; do printf '\\037%s' "$a"; done; printf '\\n'; } >> "$REC_LOG"
last=""; for a in "$@"; do last="$a"; done
# Only ever inside a fixture: without its root, play nothing.
case "$IOPMEM_SYSFS_ROOT" in */iopmem-fx-*) ;; *) exit 0;; esac
case "$name" in
  wipefs)
    case "$*" in *--no-act*) case "$last" in *pmem0) printf '{"signatures":[{"device":"%s","offset":"0x438","type":"ext4","uuid":"u","label":null}]}\\n' "$last";; esac;; esac;;
  blkid) printf 'TYPE=ext4\\nBLOCK_SIZE=4096\\nUUID=0000\\n';;
  insmod)
    # A person's Ctrl-C (or a service manager's SIGTERM) reaching iopmem while insmod runs.
    if [ -n "$REC_SIGNAL_PARENT" ]; then kill -"$REC_SIGNAL_PARENT" "$PPID"; sleep 0.3; fi
    if head -c 65536 "$1" | grep -q vermagic; then echo "insmod-fd-ok" >> "$REC_LOG"; fi
    d="$IOPMEM_SYSFS_ROOT/bus/pci/drivers/iopmem"; mkdir -p "$d" "$IOPMEM_SYSFS_ROOT/module/iopmem"
    for f in bind unbind new_id remove_id config last_error; do : > "$d/$f"; done;;
  rmmod)
    if [ -n "$REC_SIGNAL_PARENT" ]; then kill -"$REC_SIGNAL_PARENT" "$PPID"; sleep 0.3; fi
    rm -rf "$IOPMEM_SYSFS_ROOT/bus/pci/drivers/iopmem" "$IOPMEM_SYSFS_ROOT/module/iopmem";;
  dkms)
    # A Ctrl-C during dkms build reaches iopmem (and dkms: it fails).
    if [ "$1" = build ] && [ -n "$REC_SIGNAL_PARENT" ]; then kill -"$REC_SIGNAL_PARENT" "$PPID"; sleep 0.3; exit 1; fi;;
  make) for a in "$@"; do case "$a" in M=*) printf 'vermagic=${RELEASE} SMP\\0' > "\${a#M=}/iopmem.ko";; esac; done;;
esac
exit 0
`

interface Call {
  program: string
  args: string[]
}

/** A bin directory of stand-ins and its log. */
function recorderPath(dir: string): {bin: string; log: string; calls(): Call[]} {
  const bin = path.join(dir, 'bin')
  fs.mkdirSync(bin, {mode: 0o755})
  for (const p of PROGRAMS) fs.writeFileSync(path.join(bin, p), STANDIN, {mode: 0o755})
  const log = path.join(dir, 'calls.log')
  fs.writeFileSync(log, '')
  return {
    bin,
    log,
    calls: () =>
      fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l && l !== 'insmod-fd-ok')
        .map((l) => {
          const [program, ...args] = l.split('\x1f')
          return {program, args}
        }),
  }
}

/** The environment of a recorded run: the log, stand-in insmod and rmmod (as seams), a kernel release and a private cache. */
function recorderEnv(tmp: string, rec: ReturnType<typeof recorderPath>): Record<string, string> {
  return {REC_LOG: rec.log, IOPMEM_INSMOD: path.join(rec.bin, 'insmod'), IOPMEM_RMMOD: path.join(rec.bin, 'rmmod'), IOPMEM_KERNEL_RELEASE: RELEASE, XDG_CACHE_HOME: path.join(tmp, 'cache')}
}

/** The host paths an argument names: itself when absolute, or what follows an `=` (M=/dev/…). */
function hostPath(arg: string, fx: SysfsFixture): string | undefined {
  const p = arg.startsWith('/') ? arg : arg.includes('=/') ? arg.slice(arg.indexOf('=') + 1) : undefined
  if (p === undefined) return undefined
  if (/^\/proc\/self\/fd\/\d+$/.test(p)) return undefined // the program's own inherited descriptor
  for (const q of [p, safeRealpath(p)]) {
    if (q === undefined || q === fx.root || q.startsWith(fx.root + '/')) continue
    if (['/dev', '/sys', '/proc'].some((t) => q === t || q.startsWith(t + '/'))) return q
  }
  return undefined
}

function safeRealpath(p: string): string | undefined {
  try {
    return fs.realpathSync(p)
  } catch {
    return undefined
  }
}

describe('the gate: under fixture roots no external program gets a host path', function () {
  this.timeout(120_000)
  let fx: SysfsFixture
  let tmp: string
  let rec: ReturnType<typeof recorderPath>
  let env: Record<string, string>
  beforeEach(async () => {
    fx = await daxMachine()
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-gate-')))
    rec = recorderPath(tmp)
    env = {...recorderEnv(tmp, rec), PATH: `${rec.bin}:${process.env.PATH}`, IOPMEM_MODPROBE: path.join(rec.bin, 'modprobe')}
  })
  afterEach(() => {
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('mkfs-dax (probe, wipe, mkfs, blkid, mount, umount), driver build/load/unload, bind, unbind and bench p2p', () => {
    const run = (args: string[]) => cliProcess(args, fx, env)
    const mnt = path.join(tmp, 'mnt')
    fs.mkdirSync(mnt)
    // mkfs-dax on the fixture's /dev/pmem1 with a mount (the stand-in mount does not mount, so DAX is not proven: exit 6 after umount).
    const m1 = run(['mkfs-dax', '/dev/pmem1', '--mount', mnt, '--yes', '--json'])
    expect(m1.exit, m1.stdout + m1.stderr).to.be.oneOf([0, 6])
    // mkfs-dax --force over pmem0's ext4: wipefs --all, then mkfs.
    const m0 = run(['mkfs-dax', '/dev/pmem0', '--force', '--json'])
    expect(m0.exit, m0.stdout + m0.stderr).to.equal(0)
    expect(m0.json.commands.map((c: {argv: string[]}) => c.argv[0])).to.include('wipefs')
    // driver build (make -C KDIR M=OUT), load (insmod of fd 3), unload (rmmod).
    const kdir = path.join(tmp, 'kdir')
    fs.mkdirSync(path.join(kdir, 'include/config'), {recursive: true})
    fs.writeFileSync(path.join(kdir, 'Makefile'), '')
    fs.writeFileSync(path.join(kdir, 'Module.symvers'), '')
    fs.writeFileSync(path.join(kdir, 'include/config/kernel.release'), RELEASE + '\n')
    const b = run(['driver', 'build', '--kdir', kdir, '--json'])
    expect(b.exit, b.stdout + b.stderr).to.equal(0)
    const l = run(['driver', 'load', '--json'])
    expect(l.exit, l.stdout + l.stderr).to.equal(0)
    expect(fs.readFileSync(rec.log, 'utf8'), 'insmod read the module from its fd 3').to.contain('insmod-fd-ok')
    const u = run(['driver', 'unload', '--json'])
    expect(u.exit, u.stdout + u.stderr).to.equal(0)
    // driver install/remove: dkms (status, add, build, install; remove) with the fixture's trees.
    fs.mkdirSync(path.join(fx.root, 'lib/modules', RELEASE), {recursive: true})
    fs.symlinkSync(kdir, path.join(fx.root, 'lib/modules', RELEASE, 'build'))
    const di = run(['driver', 'install', '--json'])
    expect(di.exit, di.stdout + di.stderr).to.equal(0)
    const dr = run(['driver', 'remove', '--json'])
    expect(dr.exit, dr.stdout + dr.stderr).to.equal(0)
    // bind to iopmem loads the module (after the plan); without a driver core the probe does not happen, so it fails and unloads it again.
    const bi = run(['bind', BDF.ivshmem, '--yes', '--json'])
    expect(bi.exit, bi.stdout + bi.stderr).to.not.equal(0)
    // unbind of a bound function, and bench p2p onto a fixture device node.
    fx.bindLinks(BDF.ivshmem, 'uio_pci_generic')
    const ub = run(['unbind', BDF.ivshmem, '--yes', '--json'])
    expect(ub.exit, ub.stdout + ub.stderr).to.be.oneOf([0, 6])
    const src = path.join(tmp, 'src.bin')
    fs.writeFileSync(src, Buffer.alloc(64 * 1024, 7))
    fs.writeFileSync(path.join(fx.dev, 'nvme0n1'), Buffer.alloc(64 * 1024))
    const p = run(['bench', 'p2p', '--src', src, '--dst', path.join(fx.dev, 'nvme0n1'), '--buffer', 'bounce', '--size', '4K', '--yes', '--no-probe', '--json'])
    expect(p.exit, p.stdout + p.stderr).to.equal(0)

    const calls = rec.calls()
    const ran = new Set(calls.map((c) => c.program))
    for (const prog of ['wipefs', 'mkfs.ext4', 'blkid', 'mount', 'umount', 'make', 'insmod', 'rmmod', 'dkms']) expect(ran.has(prog), `${prog} ran`).to.equal(true)
    const offending = calls.flatMap((c) => c.args.filter((a) => hostPath(a, fx) !== undefined).map((a) => `${c.program} ${a}`))
    expect(offending, 'host paths handed to external programs').to.deep.equal([])
    // And the programs did get the fixture's files: the device itself, not a name.
    const mkfs = calls.find((c) => c.program === 'mkfs.ext4')!
    expect(mkfs.args.at(-1)).to.equal(path.join(fx.dev, 'pmem1'))
    // dkms got the fixture's trees, never its defaults (/usr/src, /var/lib/dkms, /lib/modules), and no depmod.
    const build = calls.find((c) => c.program === 'dkms' && c.args[0] === 'build')!
    expect(build.args).to.include.members([`--dkmstree=${fx.root}/var/lib/dkms`, `--sourcetree=${fx.root}/usr/src`, `--installtree=${fx.root}/lib/modules`])
    expect(calls.find((c) => c.program === 'dkms' && c.args[0] === 'install')!.args).to.include('--no-depmod')
  })

  it('a path that leads out of the fixture into the live /dev is refused with E_NOT_LIVE, and nothing runs', async () => {
    const host = new Host({roots: {sysfs: fx.sys, dev: fx.dev, proc: fx.proc}})
    const link = path.join(tmp, 'disk')
    fs.symlinkSync('/dev/null', link)
    expect(() => host.programPath(link)).to.throw().with.property('code', 'E_NOT_LIVE')
    expect(() => host.programPath('/sys/bus/pci')).to.not.throw() // a kernel name: the fixture's own
    expect(host.argv([host.programPath('/dev/pmem7')])).to.deep.equal([path.join(fx.dev, 'pmem7')])
    // A word carrying a path is a programming error, never passed through.
    expect(() => host.argv(['/dev/pmem7'])).to.throw(/carries a path/)
    expect(() => host.argv(['M=/tmp/x'])).to.throw(/carries a path/)
    // Through a command: mkfs-dax --mount onto a link into the live /dev does not reach mount.
    const r = cliProcess(['mkfs-dax', link, '--yes', '--json'], fx, env)
    expect(r.exit).to.not.equal(0)
    expect(rec.calls()).to.deep.equal([])
  })
})

describe('kernel writes: no symlink followed, nothing created or truncated', () => {
  let fx: SysfsFixture
  let tmp: string
  beforeEach(() => {
    fx = standardMachine()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-kw-'))
  })
  afterEach(() => {
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('bind with driver_override replaced by a symlink: refused by the kernel writer, the target untouched', async () => {
    const victim = path.join(tmp, 'victim')
    fs.writeFileSync(victim, 'precious data\n\nmore\n')
    const before = fs.statSync(victim).mtimeMs
    const attr = path.join(fx.fnDir(BDF.ivshmem), 'driver_override')
    fs.rmSync(attr, {force: true})
    fs.symlinkSync(victim, attr)
    fx.driver({name: 'uio_pci_generic'})
    const r = await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--yes', '--json'], fx)
    expect(r.exit, r.stdout).to.not.equal(0)
    expect(r.json.error.details.steps[0]).to.include({value: 'uio_pci_generic', ok: false, error: 'ELOOP'})
    // Not written, not even written and "restored" by the rollback.
    expect(fs.readFileSync(victim, 'utf8')).to.equal('precious data\n\nmore\n')
    expect(fs.statSync(victim).mtimeMs).to.equal(before)
  })

  it('the writer never creates a missing attribute, writes a plain attribute in place, and nothing outside the sysfs root', () => {
    const host = new Host({roots: {sysfs: fx.sys, dev: fx.dev, proc: fx.proc}})
    const missing = path.join(fx.fnDir(BDF.ivshmem), 'no_such_attr')
    expect(() => host.write(missing, 'x')).to.throw().with.property('code', 'ENOENT')
    expect(fs.existsSync(missing)).to.equal(false)
    const attr = path.join(fx.fnDir(BDF.ivshmem), 'driver_override')
    fs.writeFileSync(attr, 'uio_pci_generic\n')
    host.write(attr, 'iopmem')
    expect(fs.readFileSync(attr, 'utf8')).to.equal('iopmem')
    // Nothing outside the host's sysfs root is ever written as a kernel attribute.
    const outside = path.join(tmp, 'outside')
    fs.writeFileSync(outside, 'keep\n')
    expect(() => host.write(outside, 'x')).to.throw(/not under the sysfs root/)
    expect(fs.readFileSync(outside, 'utf8')).to.equal('keep\n')
  })
})

describe('modules: bind loads after the plan, unloads on failure; driver load checks the file it loads', function () {
  this.timeout(60_000)
  let fx: SysfsFixture
  let tmp: string
  let rec: ReturnType<typeof recorderPath>
  let env: Record<string, string>
  let ko: string
  beforeEach(() => {
    fx = standardMachine()
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-mod-')))
    rec = recorderPath(tmp)
    env = recorderEnv(tmp, rec)
    ko = path.join(tmp, 'mod', 'iopmem.ko')
    fs.mkdirSync(path.dirname(ko), {mode: 0o755})
    fs.writeFileSync(ko, `\x7fELF....vermagic=${RELEASE} SMP\0`, {mode: 0o644})
  })
  afterEach(() => {
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })
  const programs = () => rec.calls().map((c) => c.program)

  it('bind of a bad device, or without confirmation: the module is never loaded', () => {
    fs.mkdirSync(path.join(tmp, 'cache/iopmem/kmod', RELEASE), {recursive: true})
    fs.copyFileSync(ko, path.join(tmp, 'cache/iopmem/kmod', RELEASE, 'iopmem.ko'))
    const bad = cliProcess(['bind', '0000:7f:00.0', '--json'], fx, env)
    expect(bad.json.error.code).to.equal('E_NO_DEVICE')
    const noBar = cliProcess(['bind', BDF.ivshmem, '--bar', '0', '--json'], fx, env)
    expect(noBar.json.error.code).to.equal('E_BAD_BAR')
    fx.bindLinks(BDF.ivshmem, 'uio_pci_generic')
    const unconfirmed = cliProcess(['bind', BDF.ivshmem, '--json'], fx, env)
    expect(unconfirmed.json.error.code).to.equal('E_CONFIRM')
    expect(programs()).to.deep.equal([])
  })

  it('bind that loaded the module and then fails unloads it again, and says so', () => {
    fs.mkdirSync(path.join(tmp, 'cache/iopmem/kmod', RELEASE), {recursive: true})
    fs.copyFileSync(ko, path.join(tmp, 'cache/iopmem/kmod', RELEASE, 'iopmem.ko'))
    // No driver core behind the fixture: the probe never happens and the bind fails.
    const r = cliProcess(['bind', BDF.ivshmem, '--yes', '--json'], fx, env)
    expect(r.exit, r.stdout).to.not.equal(0)
    expect(programs()).to.deep.equal(['insmod', 'rmmod'])
    expect(r.json.error.details.module).to.equal('unloaded')
    expect(fs.existsSync(path.join(fx.sys, 'module/iopmem'))).to.equal(false)
  })

  it('bind that loads the module and succeeds keeps it and reports it', async () => {
    fs.mkdirSync(path.join(tmp, 'cache/iopmem/kmod', RELEASE), {recursive: true})
    fs.copyFileSync(ko, path.join(tmp, 'cache/iopmem/kmod', RELEASE, 'iopmem.ko'))
    const core = new FakeDriverCore(fx)
    const saved = {...process.env}
    Object.assign(process.env, env, fx.env())
    try {
      const r = await cli(['bind', BDF.ivshmem, '--driver', 'iopmem', '--json'], fx, {writer: core})
      expect(r.exit, r.stdout + r.stderr).to.equal(0)
      expect(programs()).to.deep.equal(['insmod'])
      expect(r.json.moduleLoaded).to.deep.include({how: 'insmod'})
      expect(fx.currentDriver(BDF.ivshmem)).to.equal('iopmem')
      expect(fs.existsSync(path.join(fx.sys, 'module/iopmem')), 'still loaded').to.equal(true)
    } finally {
      for (const k of Object.keys({...env, ...fx.env()})) if (saved[k] === undefined) delete process.env[k]
      Object.assign(process.env, saved)
    }
  })

  for (const [what, make, pattern] of [
    ['/dev/zero (a character device)', () => '/dev/zero', /not a regular file \(a character device\)/],
    ['a FIFO', (dir: string) => (spawnSync('mkfifo', [path.join(dir, 'fifo.ko')]), path.join(dir, 'fifo.ko')), /not a regular file \(a FIFO\)/],
    ['a directory', (dir: string) => dir, /not a regular file \(a directory\)/],
    ['a symlink to the module', (dir: string) => (fs.symlinkSync(path.join(dir, 'mod/iopmem.ko'), path.join(dir, 'link.ko')), path.join(dir, 'link.ko')), /symbolic link/],
    [
      'a file over the size limit',
      (dir: string) => {
        const f = path.join(dir, 'big.ko')
        fs.writeFileSync(f, '')
        fs.truncateSync(f, 64 * 1024 * 1024 + 1)
        return f
      },
      /over the 67108864-byte limit/,
    ],
  ] as const) {
    it(`driver load --ko ${what}: refused at once (E_BAD_MODULE), nothing read without bound, nothing loaded`, () => {
      const file = make(tmp)
      const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/run.js'), 'driver', 'load', '--ko', file, '--json'], {
        encoding: 'utf8',
        timeout: 20_000,
        env: {...process.env, ...fx.env(), ...env, NO_COLOR: '1', CI: '1'},
      })
      expect(r.signal, 'it hung').to.equal(null)
      const json = JSON.parse(r.stdout)
      expect(json.error.code, r.stdout).to.equal('E_BAD_MODULE')
      expect(json.error.message).to.match(pattern)
      expect(programs()).to.deep.equal([])
    })
  }

  for (const [what, spoil, pattern] of [
    ['writable by its group', (f: string) => fs.chmodSync(f, 0o664), /writable by its group/],
    ['writable by others', (f: string) => fs.chmodSync(f, 0o646), /writable by others/],
    ['in a directory others can write', (f: string) => fs.chmodSync(path.dirname(f), 0o777), /its directory .* is writable by group or others/],
    ['owned by another user', (f: string) => fs.chownSync(f, 65534, 65534), /owned by uid 65534/],
  ] as const) {
    it(`driver load --ko of a module ${what}: refused (E_UNTRUSTED_MODULE), not loaded`, function () {
      if (what === 'owned by another user' && process.geteuid?.() !== 0) this.skip()
      spoil(ko)
      const r = cliProcess(['driver', 'load', '--ko', ko, '--json'], fx, env)
      expect(r.json.error.code, r.stdout).to.equal('E_UNTRUSTED_MODULE')
      expect(r.json.error.message).to.match(pattern)
      expect(programs()).to.deep.equal([])
    })
  }

  for (const sig of ['INT', 'TERM', 'HUP']) {
    it(`driver load: SIG${sig} while insmod runs does not kill iopmem; the load completes and the state is said (exit 130)`, () => {
      const r = cliProcess(['driver', 'load', '--ko', ko, '--json'], fx, {...env, REC_SIGNAL_PARENT: sig})
      expect(r.exit, r.stdout + r.stderr).to.equal(130)
      expect(r.json).to.include({interrupted: true, signal: `SIG${sig}`, changed: true})
      expect(fs.existsSync(path.join(fx.sys, 'module/iopmem')), 'the module the stand-in loaded').to.equal(true)
    })
  }

  it('driver unload: SIGINT while rmmod runs: the unload completes and is said (exit 130)', () => {
    expect(cliProcess(['driver', 'load', '--ko', ko, '--json'], fx, env).exit).to.equal(0)
    const r = cliProcess(['driver', 'unload', '--json'], fx, {...env, REC_SIGNAL_PARENT: 'INT'})
    expect(r.exit, r.stdout + r.stderr).to.equal(130)
    expect(r.json).to.include({interrupted: true, signal: 'SIGINT', changed: true})
    expect(fs.existsSync(path.join(fx.sys, 'module/iopmem'))).to.equal(false)
  })

  it('driver install: SIGINT during dkms build: what it did is undone (dkms remove, the source copy), said, exit 130', () => {
    fs.mkdirSync(path.join(fx.root, 'lib/modules', RELEASE, 'build'), {recursive: true})
    fs.writeFileSync(path.join(fx.root, 'lib/modules', RELEASE, 'build/Makefile'), '')
    const r = cliProcess(['driver', 'install', '--json'], fx, {...env, IOPMEM_DKMS: path.join(tmp, 'bin/dkms'), REC_SIGNAL_PARENT: 'INT'})
    expect(r.exit, r.stdout + r.stderr).to.equal(130)
    expect(r.json.error).to.include({code: 'E_INTERRUPTED'})
    expect(r.json.error.message).to.match(/^SIGINT: stopped before the DKMS install finished\. Rolled back: dkms remove iopmem\/[0-9.]+ undid the add; .*iopmem-[0-9.]+ was removed\.$/)
    expect(rec.calls().filter((c) => c.program === 'dkms').map((c) => c.args[0])).to.deep.equal(['status', 'add', 'build', 'remove'])
    expect(fs.readdirSync(path.join(fx.root, 'usr/src'))).to.deep.equal([])
  })

  it('driver load --ko of a module owned by the user (under fixture roots) with safe modes: insmod gets it as fd 3', () => {
    const r = cliProcess(['driver', 'load', '--ko', ko, '--json'], fx, env)
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    expect(rec.calls()).to.deep.equal([{program: 'insmod', args: ['/proc/self/fd/3']}])
    expect(fs.readFileSync(rec.log, 'utf8')).to.contain('insmod-fd-ok')
  })
})
