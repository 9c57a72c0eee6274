/**
 * `--dry-run` of bind, unbind, mkfs-dax and driver load (issue 18): the dry
 * run lists the steps and leaves the fixture byte for byte as it was; the
 * writes and programs it lists are the ones the real run then makes on an
 * identical fixture, as the fake kernel (FakeDriverCore), the fake tools
 * (FakeRunner) and a stand-in insmod record them, not as iopmem reports
 * them; and bad input in a dry run is the real run's error and exit code.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {startCli, waitForFile} from '../helpers/child-cli.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {daxMachine, FakeRunner, installDaxDeps} from '../helpers/dax.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import {type SysfsFixture, trackFixtures} from '../helpers/sysfs-fixture.js'
import {expectSchema} from '../helpers/schemas.js'

const RELEASE = '6.12.117'

/** The changes a dry run lists (its lock and `then` steps are not changes). */
function changes(json: any): Array<{kind: string; file?: string; value?: string; argv?: string[]}> {
  expect(json, 'a dry-run document').to.include({schemaVersion: 1, dryRun: true})
  return json.steps.filter((s: any) => s.kind === 'write' || s.kind === 'run').map(({kind, file, value, argv}: any) => (kind === 'write' ? {kind, file, value} : {kind, argv}))
}

/** What the fake driver core was asked to write, named as the kernel names the files. */
const kernelWrites = (core: FakeDriverCore) => core.log.map((w) => ({kind: 'write', file: '/sys/' + w.file, value: w.value}))

/** A dry run on `fx`, then the same command for real on `twin` (an identical machine): the dry run changed nothing, and listed what the real run did. */
async function dryThenReal(fx: SysfsFixture, twin: SysfsFixture, args: string[], real: string[] = ['--yes']) {
  const before = fx.hash()
  const core = new FakeDriverCore(fx)
  const dry = await cli([...args, '--dry-run', '--json'], fx, {writer: core, uid: 1000})
  expect(dry.exit, dry.stdout + dry.stderr).to.equal(0)
  expect(core.log, 'no write reached the kernel').to.deep.equal([])
  expect(fx.hash(), 'the fixture is byte for byte unchanged').to.equal(before)
  expect(fs.existsSync(path.join(fx.root, 'run')), 'no lock file or directory made').to.equal(false)
  const twinCore = new FakeDriverCore(twin)
  const r = await cli([...args, ...real, '--json'], twin, {writer: twinCore})
  expect(r.exit, r.stdout + r.stderr).to.equal(0)
  expect(twin.hash(), 'the real run changed its fixture').to.not.equal(before)
  // Both documents are what docs/schemas says (dry-run.json, and the command's own).
  expectSchema(args[0], dry.json)
  expectSchema(args[0], r.json)
  return {dry: dry.json, real: r.json, core: twinCore}
}

describe('--dry-run: bind and unbind', () => {
  const track = trackFixtures()
  const machine = () => track(standardMachine())

  it('bind: the writes listed are the writes the real bind makes (taking nvme\'s device for vfio-pci)', async () => {
    const {dry, core} = await dryThenReal(machine(), machine(), ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci'])
    expect(changes(dry)).to.deep.equal(kernelWrites(core))
    expect(changes(dry).map((s) => s.file!.split('/').at(-1))).to.deep.equal(['driver_override', 'unbind', 'bind'])
    expect(dry.steps[0]).to.include({kind: 'lock'})
    expect(dry.steps.at(-1).kind).to.equal('then')
    expect(dry).to.deep.include({command: 'bind', bdf: BDF.nvmeCmb, driver: 'vfio-pci', previousDriver: 'nvme', previousOverride: null})
    expect(dry.needsRoot).to.match(/^bind needs root/)
  })

  it('unbind: the writes listed (unbind, clearing driver_override) are the real unbind\'s', async () => {
    const [fx, twin] = [machine(), machine()]
    for (const f of [fx, twin]) {
      f.bindLinks(BDF.ivshmem, 'uio_pci_generic')
      fs.writeFileSync(path.join(f.fnDir(BDF.ivshmem), 'driver_override'), 'uio_pci_generic\n')
    }
    const {dry, core} = await dryThenReal(fx, twin, ['unbind', BDF.ivshmem])
    expect(changes(dry)).to.deep.equal(kernelWrites(core))
    expect(changes(dry).map((s) => [s.file!.split('/').at(-1), s.value])).to.deep.equal([
      ['unbind', BDF.ivshmem],
      ['driver_override', '\n'],
    ])
    expect(twin.currentDriver(BDF.ivshmem)).to.equal(undefined)
  })

  it('human output: a numbered list of the writes, the root it lacks, no --yes needed', async () => {
    const fx = machine()
    const r = await cli(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '-n'], fx, {writer: new FakeDriverCore(fx), uid: 1000})
    expect(r.exit, r.stderr).to.equal(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).to.equal('dry run: bind 0000:03:00.0 to vfio-pci (now nvme); nothing was changed.')
    expect(lines[1]).to.equal('The real run would, in order:')
    expect(lines[2]).to.match(/^ {2}1\. lock {3}\S+\/pci-0000:03:00\.0\.lock/)
    expect(lines[3]).to.equal(`  2. write  ${fx.kernelPath(BDF.nvmeCmb, 'driver_override')}  "vfio-pci\\n"`)
    expect(lines[4]).to.equal('  3. write  /sys/bus/pci/drivers/nvme/unbind  "0000:03:00.0"')
    expect(lines[5]).to.equal('  4. write  /sys/bus/pci/drivers/vfio-pci/bind  "0000:03:00.0"')
    expect(lines[6]).to.match(/^ {2}5\. then {3}reads \/sys\/devices\/.*\/driver: it must name vfio-pci/)
    expect(r.stdout).to.contain('not root: the real run would stop with "bind needs root')
  })

  it('nothing to do: a bind to the driver it has lists no change', async () => {
    const fx = machine()
    const r = await cli(['bind', BDF.nvmeCmb, '--driver', 'nvme', '-n', '--json'], fx, {writer: new FakeDriverCore(fx)})
    expect(r.exit, r.stdout).to.equal(0)
    expect(changes(r.json)).to.deep.equal([])
    expect(r.json.needsRoot).to.equal(null)
  })

  // Each: the real run's error (code and exit) is the dry run's, and neither wrote anything.
  const refusals: Array<[string, string[], (fx: SysfsFixture) => void, string, number]> = [
    ['a malformed BDF', ['bind', '03:00', '--driver', 'vfio-pci'], () => {}, 'E_BDF_SYNTAX', 2],
    ['no such function', ['bind', '0000:7f:00.0', '--driver', 'vfio-pci'], () => {}, 'E_NO_DEVICE', 3],
    ['a driver not registered', ['bind', BDF.ivshmem, '--driver', 'no_such_drv'], () => {}, 'E_NO_DRIVER', 3],
    ['a bridge', ['bind', BDF.switchDown0, '--driver', 'vfio-pci'], () => {}, 'E_BRIDGE', 5],
    ['a BAR that cannot serve', ['bind', BDF.ivshmem, '--driver', 'iopmem', '--bar', '0'], (fx) => fx.driver({name: 'iopmem'}), 'E_BAD_BAR', 7],
    ['in use (a mounted partition)', ['bind', BDF.nvmePeer, '--driver', 'vfio-pci'], (fx) => fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/data', fstype: 'ext4'}), 'E_IN_USE', 5],
    ['unbind in use', ['unbind', BDF.nvmePeer], (fx) => fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/data', fstype: 'ext4'}), 'E_IN_USE', 5],
  ]
  for (const [what, args, setup, code, exit] of refusals) {
    it(`bad input in a dry run is the real run's error: ${what} (${code}, exit ${exit})`, async () => {
      const fx = machine()
      setup(fx)
      const core = new FakeDriverCore(fx)
      const real = await cli([...args, '--yes', '--json'], fx, {writer: core})
      const dry = await cli([...args, '--dry-run', '--json'], fx, {writer: core})
      expect(real.json.error, real.stdout).to.include({code, exit})
      expect(dry.json.error, dry.stdout).to.deep.equal(real.json.error)
      expect(dry.exit).to.equal(exit)
      expect(core.log).to.deep.equal([])
    })
  }

  it('--dry-run with --persist is refused as bad input (a dry run does not cover the record yet)', async () => {
    const fx = machine()
    const r = await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--dry-run', '--json'], fx)
    expect(r.exit).to.equal(2)
    expect(r.json.error.code).to.equal('E_USAGE')
  })

  it('a dry run takes no lock: it is not blocked by a bind in progress, and the real one is not disturbed', async function () {
    this.timeout(60_000)
    const fx = machine()
    const first = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], {pauseAt: 2})
    expect(await waitForFile(first.marker!, first)).to.equal(true)
    const dry = await startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'uio_pci_generic', '--dry-run', '--json']).done
    expect(dry.exit, dry.stderr).to.equal(0)
    expect(dry.json).to.include({dryRun: true})
    fs.writeFileSync(first.marker + '.go', '')
    const r1 = await first.done
    expect(r1.exit, r1.stderr).to.equal(0)
    expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('vfio-pci')
  })
})

describe('--dry-run: bind that loads the iopmem module, and driver load', function () {
  this.timeout(60_000)
  let tmp: string
  let log: string
  let insmod: string
  let ko: string
  const track = trackFixtures()
  const machine = () => track(standardMachine())
  beforeEach(() => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-dry-')))
    log = path.join(tmp, 'calls.log')
    fs.writeFileSync(log, '')
    // A stand-in insmod: logs its argv, checks the module came as fd 3, and registers the driver in the fixture.
    insmod = path.join(tmp, 'insmod')
    fs.writeFileSync(
      insmod,
      `#!/bin/sh\nprintf '%s' "$0" >> "${log}"; for a in "$@"; do printf ' %s' "$a" >> "${log}"; done; echo >> "${log}"\n` +
        `head -c 65536 "$1" | grep -q vermagic || exit 1\n` +
        `d="$IOPMEM_SYSFS_ROOT/bus/pci/drivers/iopmem"; mkdir -p "$d" "$IOPMEM_SYSFS_ROOT/module/iopmem"; for f in bind unbind new_id remove_id config last_error; do : > "$d/$f"; done\n`,
      {mode: 0o755},
    )
    ko = path.join(tmp, 'cache/iopmem/kmod', RELEASE, 'iopmem.ko')
    fs.mkdirSync(path.dirname(ko), {recursive: true, mode: 0o755})
    fs.writeFileSync(ko, `\x7fELF....vermagic=${RELEASE} SMP\0`, {mode: 0o644})
  })
  afterEach(() => fs.rmSync(tmp, {recursive: true, force: true}))
  const env = () => ({IOPMEM_INSMOD: insmod, IOPMEM_KERNEL_RELEASE: RELEASE, XDG_CACHE_HOME: path.join(tmp, 'cache')})
  const ran = () => fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)

  it('bind to iopmem, module not loaded: insmod of the checked module, then the config, override and bind writes, as the real bind does them', async () => {
    const [fx, twin] = [machine(), machine()]
    const saved: NodeJS.ProcessEnv = {...process.env}
    Object.assign(process.env, env())
    try {
      const before = fx.hash()
      const core = new FakeDriverCore(fx)
      const dry = await cli(['bind', BDF.ivshmem, '--driver', 'iopmem', '--cache', 'uc', '--dry-run', '--json'], fx, {writer: core, uid: 1000})
      expect(dry.exit, dry.stdout + dry.stderr).to.equal(0)
      expect(ran(), 'the dry run ran no program').to.deep.equal([])
      expect(core.log).to.deep.equal([])
      expect(fx.hash()).to.equal(before)
      const steps = changes(dry.json)
      expect(steps[0]).to.deep.equal({kind: 'run', argv: [insmod, '/proc/self/fd/3']})
      expect(dry.json.steps.find((s: any) => s.kind === 'run').fd3).to.equal(ko)
      expect(dry.json.needsRoot).to.match(/^bind needs root/)
      expect(dry.json.steps.at(-1).text).to.match(/^if the bind fails .*rmmod iopmem/)
      // The real bind on the twin machine: what the stand-in insmod and the fake kernel saw.
      twin.driver({name: 'iopmem'})
      fs.rmSync(path.join(twin.sys, 'bus/pci/drivers/iopmem'), {recursive: true})
      fs.rmSync(path.join(twin.sys, 'module/iopmem'), {recursive: true})
      const twinCore = new FakeDriverCore(twin)
      Object.assign(process.env, twin.env()) // where the stand-in insmod registers the driver
      const real = await cli(['bind', BDF.ivshmem, '--driver', 'iopmem', '--cache', 'uc', '--json'], twin, {writer: twinCore})
      expect(real.exit, real.stdout + real.stderr).to.equal(0)
      expect(real.json.moduleLoaded).to.deep.include({how: 'insmod'})
      expect(steps).to.deep.equal([{kind: 'run', argv: ran()[0].split(' ')}, ...kernelWrites(twinCore)])
      expect(kernelWrites(twinCore).map((w) => w.file.split('/').at(-1))).to.deep.equal(['config', 'driver_override', 'bind'])
    } finally {
      for (const k of Object.keys({...env(), ...twin.env()})) {
        if (saved[k] === undefined) delete process.env[k]
        else process.env[k] = saved[k]
      }
    }
  })

  it('driver load: lists insmod with the module as fd 3, runs nothing; the real load runs exactly that', () => {
    const fx = machine()
    const before = fx.hash()
    const dry = cliProcess(['driver', 'load', 'mode=p2pmem', '--dry-run', '--json'], fx, env())
    expect(dry.exit, dry.stdout + dry.stderr).to.equal(0)
    expect(ran()).to.deep.equal([])
    expect(fx.hash()).to.equal(before)
    expect(dry.json).to.deep.include({command: 'driver load', loaded: false, how: 'insmod', ko, params: ['mode=p2pmem']})
    expectSchema('driver load', dry.json)
    expect(dry.json.steps).to.deep.equal([{kind: 'run', argv: [insmod, '/proc/self/fd/3', 'mode=p2pmem'], fd3: ko}])
    const human = cliProcess(['driver', 'load', 'mode=p2pmem', '-n'], fx, env())
    expect(human.stdout).to.contain(`  1. run    ${insmod} /proc/self/fd/3 mode=p2pmem   (fd 3: ${ko}, opened and checked)`)
    const real = cliProcess(['driver', 'load', 'mode=p2pmem', '--json'], fx, env())
    expect(real.exit, real.stdout + real.stderr).to.equal(0)
    expectSchema('driver load', real.json)
    expect(ran()).to.deep.equal([dry.json.steps[0].argv.join(' ')])
    // Loaded now: a dry run says there is nothing to do.
    const again = cliProcess(['driver', 'load', '--dry-run', '--json'], fx, env())
    expect(again.json).to.deep.include({loaded: true, how: 'already', steps: []})
  })

  for (const [what, spoil, code] of [
    ['a module for another kernel', (f: string) => fs.writeFileSync(f, '\x7fELF....vermagic=5.10.0 SMP\0'), 'E_WRONG_KERNEL'],
    ['a module others can write', (f: string) => fs.chmodSync(f, 0o666), 'E_UNTRUSTED_MODULE'],
    ['a FIFO', (f: string) => (fs.rmSync(f), spawnSync('mkfifo', [f])), 'E_BAD_MODULE'],
  ] as const) {
    it(`driver load --dry-run of ${what}: the real load's error (${code}), nothing run`, () => {
      const fx = machine()
      spoil(ko)
      const real = cliProcess(['driver', 'load', '--json'], fx, env())
      const dry = cliProcess(['driver', 'load', '--dry-run', '--json'], fx, env())
      expect(real.json.error.code, real.stdout).to.equal(code)
      expect(dry.json.error).to.deep.equal(real.json.error)
      expect(dry.exit).to.equal(real.exit)
      expect(ran()).to.deep.equal([])
    })
  }
})

describe('--dry-run: mkfs-dax', () => {
  let fx: SysfsFixture
  let twin: SysfsFixture
  let runner: FakeRunner
  let mnt: string
  beforeEach(async () => {
    fx = await daxMachine()
    twin = await daxMachine()
    runner = new FakeRunner()
    await installDaxDeps({runner, statxDax: async () => true, pageSize: async () => 4096})
    mnt = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-dry-mnt-')))
  })
  afterEach(async () => {
    await installDaxDeps({})
    fx.cleanup()
    twin.cleanup()
    fs.rmSync(mnt, {recursive: true, force: true})
  })

  const argvOf = (calls: FakeRunner['calls']) => calls.map((c) => ({kind: 'run', argv: [c.program, ...c.args]}))

  it('--force --mount over an old filesystem: wipefs, mkfs, blkid, mount listed, none run; the real run runs exactly those', async () => {
    runner.has('/dev/pmem0p1', 'xfs')
    const before = fx.hash()
    const dry = await cli(['mkfs-dax', '/dev/pmem0p1', '--force', '--mount', mnt, '--dry-run', '--json'], fx)
    expect(dry.exit, dry.stdout + dry.stderr).to.equal(0)
    expect(runner.writes(), 'nothing but the read-only probe ran').to.deep.equal([])
    expect(runner.signatures.get('/dev/pmem0p1')?.[0].type).to.equal('xfs')
    expect(fs.readdirSync(mnt)).to.deep.equal([])
    expect(fx.hash()).to.equal(before)
    expect(dry.json).to.deep.include({command: 'mkfs-dax', device: '/dev/pmem0p1', filesystem: 'ext4', mount: mnt})
    expect(dry.json.signatures.map((s: any) => s.type)).to.deep.equal(['xfs'])
    const steps = changes(dry.json)
    expect(steps.map((s) => s.argv![0])).to.deep.equal(['wipefs', 'mkfs.ext4', 'blkid', 'mount'])
    expect(dry.json.steps.filter((s: any) => s.kind === 'then').map((s: any) => s.text)).to.have.length(2)
    // The real run on the twin, with the same tools: the calls past the probe are the dry run's steps.
    const probes = runner.calls.length
    const r = await cli(['mkfs-dax', '/dev/pmem0p1', '--force', '--mount', mnt, '--json'], twin)
    expect(r.exit, r.stdout + r.stderr).to.equal(0)
    expect(steps).to.deep.equal(argvOf(runner.calls.slice(probes).filter((c) => !c.args.includes('--no-act'))))
    expect(r.json.commands.map((c: any) => c.argv)).to.deep.equal(steps.map((s) => s.argv))
    expectSchema('mkfs-dax', dry.json)
    expectSchema('mkfs-dax', r.json)
  })

  it('human output: the numbered commands, no --yes needed', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--fs', 'xfs', '-n'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout.split('\n').slice(0, 5)).to.deep.equal([
      'dry run: mkfs-dax xfs on /dev/pmem1 (1022 MiB); nothing was changed.',
      'The real run would, in order:',
      r.stdout.split('\n')[2],
      '  2. run    mkfs.xfs -b size=4096 -d su=2m,sw=1,agcount=2 -m reflink=0 /dev/pmem1',
      '  3. run    blkid --probe --output export /dev/pmem1',
    ])
    expect(r.stdout.split('\n')[2]).to.match(/^ {2}1\. lock {3}\S+\/block-pmem1\.lock/)
    expect(runner.writes()).to.deep.equal([])
  })

  for (const [what, args, setup, code, exit] of [
    ['a signature without --force', ['/dev/pmem1'], (r: FakeRunner) => r.has('/dev/pmem1', 'ext4'), 'E_HAS_SIGNATURE', 5],
    ['not DAX-capable', ['/dev/nvme0n1'], () => {}, 'E_NOT_DAX_CAPABLE', 7],
    ['xfs on a device too small', ['/dev/iopmem0', '--fs', 'xfs'], () => {}, 'E_TOO_SMALL', 7],
    ['a missing mount point', ['/dev/pmem1', '--mount', '/nonexistent/iopmem-dry'], () => {}, 'E_NO_MOUNTPOINT', 3],
  ] as const) {
    it(`bad input in a dry run is the real run's error: ${what} (${code}, exit ${exit})`, async () => {
      setup(runner)
      const real = await cli(['mkfs-dax', ...args, '--yes', '--json'], fx)
      const dry = await cli(['mkfs-dax', ...args, '--dry-run', '--json'], fx)
      expect(real.json.error, real.stdout).to.include({code, exit})
      expect(dry.json.error).to.deep.equal(real.json.error)
      expect(dry.exit).to.equal(exit)
      expect(runner.writes()).to.deep.equal([])
    })
  }

  it('mkfs-dax --dry-run needs root as the real run does: its checks read the device and every process', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--dry-run', '--json'], fx, {uid: 1000})
    expect(r.json.error).to.include({code: 'E_NOT_ROOT', exit: 4})
    expect(runner.calls).to.deep.equal([])
  })
})
