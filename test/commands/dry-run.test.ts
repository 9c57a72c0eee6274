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

import {onPath} from '../../src/lib/sys/index.js'
import {startCli, waitForFile} from '../helpers/child-cli.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {daxMachine, FakeRunner, installDaxDeps} from '../helpers/dax.js'
import {RULE_MARKER} from '../../src/lib/persist/index.js'
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

  /** The fixture's etc tree (its etc root included): each directory (null) and file (its text, the fixture's root written ROOT), by the path the system names it. */
  const etcTree = (fx: SysfsFixture) => {
    const out = new Map<string, string | null>()
    const etc = path.join(fx.root, 'etc')
    const walk = (p: string) => {
      const st = fs.lstatSync(p, {throwIfNoEntry: false})
      if (!st) return
      const name = '/etc' + p.slice(etc.length)
      if (!st.isDirectory()) return out.set(name, fs.readFileSync(p, 'utf8').replaceAll(fx.root, 'ROOT'))
      out.set(name, null)
      for (const f of fs.readdirSync(p)) walk(path.join(p, f))
    }
    walk(etc)
    return out
  }
  /** What a real run did to the etc tree, as dry-run steps. */
  const etcChanges = (before: Map<string, string | null>, after: Map<string, string | null>) => [
    ...[...after].filter(([k, v]) => v === null && !before.has(k)).map(([k]) => ({kind: 'mkdir', file: k})),
    ...[...after].filter(([k, v]) => v !== null && before.get(k) !== v).map(([k, v]) => ({kind: 'write-file', file: k, content: v})),
    ...[...before].filter(([k]) => !after.has(k)).map(([k]) => ({kind: 'remove', file: k})),
  ]
  const etcSteps = (json: any) => json.steps.filter((s: any) => ['mkdir', 'write-file', 'remove'].includes(s.kind))
  /** Steps as a set (the order is checked on its own), the fixture's root written ROOT. */
  const asSet = (steps: any[], root: string) =>
    steps.map((s) => JSON.stringify(s.content === undefined ? s : {...s, content: s.content.replaceAll(root, 'ROOT')})).sort()
  const rooted = (v: any, root: string) => JSON.parse(JSON.stringify(v).replaceAll(root, 'ROOT'))

  /** Dry run on fx, real run on twin: the etc steps listed are what the real run did under its etc root, and the sysfs writes are the kernel's. */
  async function persistTwins(args: string[], setup: (f: SysfsFixture) => void = () => {}) {
    const [fx, twin] = [machine(), machine()]
    for (const f of [fx, twin]) setup(f)
    const before = etcTree(twin)
    const {dry, real, core} = await dryThenReal(fx, twin, args)
    expect(changes(dry)).to.deep.equal(kernelWrites(core))
    const did = etcChanges(before, etcTree(twin))
    expect(asSet(etcSteps(dry), fx.root)).to.deep.equal(asSet(did, twin.root))
    expect(rooted(dry.persist, fx.root)).to.deep.equal(rooted(real.persist, twin.root))
    return {dry, real, twin}
  }
  const writeRecord = (f: SysfsFixture, bdf: string, driver: string) => {
    const file = path.join(f.root, 'etc/iopmem/bind.d', `${bdf}.conf`)
    fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o755})
    fs.writeFileSync(file, `driver=${driver}\n`, {mode: 0o644})
  }

  it('bind --persist on a machine with no etc tree: the directories, then the record and the udev rule with their exact content, as the real run makes them', async () => {
    const {dry} = await persistTwins(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist'])
    // In the real run's order: the function's lock and writes, then under the persist lock the record's directories and record, then the rule's.
    const kinds = dry.steps.map((s: any) => (s.kind === 'lock' ? `lock ${path.basename(s.file)}` : s.kind === 'write' ? 'write' : `${s.kind} ${s.file ?? ''}`.trim()))
    expect(kinds.slice(kinds.indexOf('lock persist.lock'))).to.deep.equal([
      'lock persist.lock',
      'mkdir /etc',
      'mkdir /etc/iopmem',
      'mkdir /etc/iopmem/bind.d',
      `write-file /etc/iopmem/bind.d/${BDF.ivshmem}.conf`,
      'mkdir /etc/udev',
      'mkdir /etc/udev/rules.d',
      'write-file /etc/udev/rules.d/89-iopmem.rules',
    ])
    expect(kinds.indexOf('lock persist.lock')).to.be.greaterThan(kinds.lastIndexOf('write'))
    expect(dry.persist).to.include({changed: true, ruleAction: 'written'})
  })

  it('bind --persist over an old record, rule in place: only the record is rewritten', async () => {
    // The twin's rule is the one a real bind --persist writes; the dry run's fixture gets the same bytes.
    const fx0 = machine()
    const first = await cli(['bind', BDF.nvmePeer, '--driver', 'vfio-pci', '--persist', '--yes', '--json'], fx0, {writer: new FakeDriverCore(fx0)})
    expect(first.exit, first.stdout).to.equal(0)
    const ruleText = fs.readFileSync(path.join(fx0.root, 'etc/udev/rules.d/89-iopmem.rules'), 'utf8')
    const {dry} = await persistTwins(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist'], (f) => {
      writeRecord(f, BDF.ivshmem, 'vfio-pci')
      fs.mkdirSync(path.join(f.root, 'etc/udev/rules.d'), {recursive: true, mode: 0o755})
      fs.writeFileSync(path.join(f.root, 'etc/udev/rules.d/89-iopmem.rules'), ruleText.replaceAll(fx0.root, f.root), {mode: 0o644})
    })
    expect(etcSteps(dry).map((s: any) => s.kind)).to.deep.equal(['write-file'])
    expect(dry.persist).to.include({changed: true, ruleAction: 'kept'})
  })

  it('unbind --persist of the last record: the record and the udev rule removed, as the real run removes them', async () => {
    const {dry, twin} = await persistTwins(['unbind', BDF.ivshmem, '--persist'], (f) => {
      f.bindLinks(BDF.ivshmem, 'uio_pci_generic')
      writeRecord(f, BDF.ivshmem, 'uio_pci_generic')
      fs.mkdirSync(path.join(f.root, 'etc/udev/rules.d'), {recursive: true, mode: 0o755})
      fs.writeFileSync(path.join(f.root, 'etc/udev/rules.d/89-iopmem.rules'), `${RULE_MARKER} stand-in\n`, {mode: 0o644})
    })
    expect(etcSteps(dry)).to.deep.equal([
      {kind: 'remove', file: `/etc/iopmem/bind.d/${BDF.ivshmem}.conf`},
      {kind: 'remove', file: '/etc/udev/rules.d/89-iopmem.rules'},
    ])
    expect(fs.existsSync(path.join(twin.root, 'etc/udev/rules.d/89-iopmem.rules'))).to.equal(false)
    expect(dry.persist).to.include({changed: true, ruleAction: 'removed'})
  })

  it('unbind --persist with another record left: only its record removed, the rule kept', async () => {
    const {dry} = await persistTwins(['unbind', BDF.ivshmem, '--persist'], (f) => {
      f.bindLinks(BDF.ivshmem, 'uio_pci_generic')
      writeRecord(f, BDF.ivshmem, 'uio_pci_generic')
      writeRecord(f, BDF.nvmePeer, 'vfio-pci')
      fs.mkdirSync(path.join(f.root, 'etc/udev/rules.d'), {recursive: true, mode: 0o755})
      fs.writeFileSync(path.join(f.root, 'etc/udev/rules.d/89-iopmem.rules'), `${RULE_MARKER} stand-in\n`, {mode: 0o644})
    })
    expect(etcSteps(dry)).to.deep.equal([{kind: 'remove', file: `/etc/iopmem/bind.d/${BDF.ivshmem}.conf`}])
    expect(dry.persist).to.include({ruleAction: 'kept'})
  })

  it('human output of bind --persist: the record and rule files with their exact lines', async () => {
    const fx = machine()
    const r = await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '-n'], fx, {writer: new FakeDriverCore(fx), uid: 1000})
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/\. mkdir {2}\/etc\/iopmem\/bind\.d {2}\(mode 0755\)\n/)
    expect(r.stdout).to.match(new RegExp(`\\. file {3}/etc/iopmem/bind\\.d/${BDF.ivshmem.replaceAll('.', '\\.')}\\.conf {2}\\(written whole, then renamed into place; \\d+ bytes\\):\n( {9}\\| .*\n)+ {9}\\| driver=uio_pci_generic\n`))
    expect(r.stdout).to.contain('         | ACTION=="add", SUBSYSTEM=="pci"')
    expect(fs.existsSync(path.join(fx.root, 'etc'))).to.equal(false)
  })

  it('bind --persist --dry-run refuses what the real run refuses: a foreign udev rule in iopmem\'s place (E_RULE_FOREIGN)', async () => {
    const fx = machine()
    fs.mkdirSync(path.join(fx.root, 'etc/udev/rules.d'), {recursive: true, mode: 0o755})
    fs.writeFileSync(path.join(fx.root, 'etc/udev/rules.d/89-iopmem.rules'), 'SUBSYSTEM=="pci", RUN+="/bin/true"\n', {mode: 0o644})
    const core = new FakeDriverCore(fx)
    const args = ['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json']
    const real = await cli([...args, '--yes'], fx, {writer: core})
    const dry = await cli([...args, '--dry-run'], fx, {writer: core})
    expect(real.json.error, real.stdout).to.include({code: 'E_RULE_FOREIGN'})
    expect(dry.json.error).to.deep.equal(real.json.error)
    expect(core.log).to.deep.equal([])
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
  const env = () => ({IOPMEM_INSMOD: insmod, IOPMEM_RMMOD: '/bin/true', IOPMEM_KERNEL_RELEASE: RELEASE, XDG_CACHE_HOME: path.join(tmp, 'cache')})
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

  it('driver load --dry-run with insmod not installed (its seam names no file): the real load\'s E_PROGRAM_MISSING, before anything', () => {
    const fx = machine()
    const gone = {...env(), IOPMEM_INSMOD: path.join(tmp, 'no-such-insmod')}
    const real = cliProcess(['driver', 'load', '--json'], fx, gone)
    const dry = cliProcess(['driver', 'load', '--dry-run', '--json'], fx, gone)
    expect(real.json.error, real.stdout + real.stderr).to.include({code: 'E_PROGRAM_MISSING', exit: 7})
    expect(real.json.error.message).to.equal(`${gone.IOPMEM_INSMOD} is not installed.`)
    expect(dry.json.error).to.deep.equal(real.json.error)
    expect(dry.exit).to.equal(7)
  })

  it('bind --dry-run that would load the module: insmod missing is the real bind\'s error, nothing written; rmmod missing is said in the rollback step', async () => {
    const saved: NodeJS.ProcessEnv = {...process.env}
    const fx = machine()
    const core = new FakeDriverCore(fx)
    const args = ['bind', BDF.ivshmem, '--driver', 'iopmem', '--cache', 'uc', '--json']
    try {
      Object.assign(process.env, env(), {IOPMEM_INSMOD: path.join(tmp, 'no-such-insmod')})
      const real = await cli([...args, '--yes'], fx, {writer: core})
      const dry = await cli([...args, '--dry-run'], fx, {writer: core})
      expect(real.json.error, real.stdout).to.include({code: 'E_PROGRAM_MISSING'})
      expect(dry.json.error).to.deep.equal(real.json.error)
      expect(core.log).to.deep.equal([])
      // insmod there, rmmod not: the dry run lists the load and says the rollback could not unload it.
      Object.assign(process.env, {IOPMEM_INSMOD: insmod, IOPMEM_RMMOD: path.join(tmp, 'no-such-rmmod')})
      const dry2 = await cli([...args, '--dry-run'], fx, {writer: core})
      expect(dry2.exit, dry2.stdout).to.equal(0)
      expect(dry2.json.steps.at(-1).text).to.equal(`if the bind fails (or is interrupted and rolled back): would unload the module it loaded, but ${tmp}/no-such-rmmod is not installed (E_PROGRAM_MISSING): the module would be left loaded`)
      expect(ran()).to.deep.equal([])
    } finally {
      for (const k of Object.keys(env())) {
        if (saved[k] === undefined) delete process.env[k]
        else process.env[k] = saved[k]
      }
    }
  })

  it('driver unload with rmmod not installed (its seam names no file): E_PROGRAM_MISSING, the module stays loaded', () => {
    const fx = machine()
    expect(cliProcess(['driver', 'load', '--json'], fx, env()).exit).to.equal(0)
    const r = cliProcess(['driver', 'unload', '--json'], fx, {...env(), IOPMEM_RMMOD: path.join(tmp, 'no-such-rmmod')})
    expect(r.json.error, r.stdout + r.stderr).to.include({code: 'E_PROGRAM_MISSING', exit: 7})
    expect(fs.existsSync(path.join(fx.sys, 'module/iopmem'))).to.equal(true)
  })

  it('a program is found as spawn finds it: on the PATH given (a fixture PATH lacking the tool does not find it), or at the path a seam names', () => {
    const bin = path.join(tmp, 'bin')
    const empty = path.join(tmp, 'empty')
    fs.mkdirSync(bin)
    fs.mkdirSync(empty)
    fs.writeFileSync(path.join(bin, 'mytool'), '#!/bin/sh\n', {mode: 0o755})
    fs.writeFileSync(path.join(bin, 'noexec'), '', {mode: 0o644})
    expect(onPath('mytool', `${empty}:${bin}`)).to.equal(true)
    expect(onPath('mytool', empty)).to.equal(false)
    expect(onPath('noexec', bin)).to.equal(false)
    expect(onPath(path.join(bin, 'mytool'), '')).to.equal(true)
    expect(onPath(path.join(empty, 'mytool'), bin)).to.equal(false)
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

  // The real run used to find a missing mkfs or mount only when it got there: after wipefs had erased the old filesystem.
  for (const [missing, args] of [
    ['mkfs.ext4', ['/dev/pmem0p1', '--force']],
    ['mount', ['/dev/pmem0p1', '--force', '--mount', 'MNT']],
    ['umount', ['/dev/pmem0p1', '--force', '--mount', 'MNT']],
  ] as const) {
    it(`${missing} not installed: the real run and the dry run refuse it (E_PROGRAM_MISSING) before wipefs erases anything`, async () => {
      runner.has('/dev/pmem0p1', 'xfs').uninstall(missing)
      const argv = args.map((a) => (a === 'MNT' ? mnt : a))
      const before = fx.hash()
      const real = await cli(['mkfs-dax', ...argv, '--yes', '--json'], fx)
      const dry = await cli(['mkfs-dax', ...argv, '--dry-run', '--json'], fx)
      expect(real.json.error, real.stdout).to.include({code: 'E_PROGRAM_MISSING', exit: 7})
      expect(real.json.error.message).to.match(new RegExp(`^${missing.replace('.', '\\.')} is not installed`))
      expect(dry.json.error).to.deep.equal(real.json.error)
      expect(runner.writes(), 'nothing erased or made').to.deep.equal([])
      expect(runner.signatures.get('/dev/pmem0p1')?.[0].type).to.equal('xfs')
      expect(fx.hash()).to.equal(before)
    })
  }

  it('mkfs-dax --dry-run needs root as the real run does: its checks read the device and every process', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--dry-run', '--json'], fx, {uid: 1000})
    expect(r.json.error).to.include({code: 'E_NOT_ROOT', exit: 4})
    expect(runner.calls).to.deep.equal([])
  })
})
