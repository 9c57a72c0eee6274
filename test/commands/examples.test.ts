/**
 * Help that is true (issue 18): every example of every command's help, as
 * the oclif manifest lists it, is run on a fixture machine and must exit 0,
 * or the non-zero status its own text documents. The few that cannot run
 * on a host fixture are listed below with the reason and where they are
 * run instead; an example added to a command is run without touching this
 * file. Root-only examples (`sudo …`) run as uid 0 on the fixture, the
 * others as a normal user.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {cli, ROOT} from '../helpers/cli.js'
import {daxMachine, fakeFiemap, fakeFileOps, FakeRunner, installDaxDeps, installFileOps} from '../helpers/dax.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {expectSchema} from '../helpers/schemas.js'
import {realFsDir} from '../native/helpers.js'

/** Examples not run here: each needs a real kernel, a guest or a minute, and is run (or its path is) where said. */
const SKIP: Record<string, string> = {
  'map 0000:03:00.0 --p2pmem 2M --hold 60': "p2pmem/allocate is the kernel's, and it holds for a minute (test/vm/map.test.ts maps p2pmem)",
  'map /dev/dax0.0 --copy-in image.bin --offset 2M --yes': 'a device-dax character device (test/vm/dax.test.ts)',
  'topo --probe': 'DMA between real devices (test/vm/topo-probe.test.ts)',
  'bench p2p --yes': 'O_DIRECT I/O to NVMe namespaces (test/vm/p2pbench.test.ts)',
  'bench p2p --src /dev/nvme0n1 --dst /dev/nvme1n1 --via 0000:03:00.0 --buffer both --verify --yes': 'O_DIRECT I/O to NVMe namespaces (test/vm/p2pbench.test.ts)',
  'bench mmio 0000:03:00.0 --p2pmem 4M --sizes 4K,64K,1M --yes --json': "p2pmem/allocate is the kernel's (test/vm/bench-mmio.test.ts)",
}
/** Commands none of whose examples can run on a host fixture. */
const SKIP_COMMANDS: Record<string, string> = {
  sandbox: 'boots QEMU or builds a kernel (test/vm/sandbox.test.ts)',
  'driver build': 'builds the kernel module against kernel headers or a tree, signs it (test/vm/driver.test.ts, stock-kernel.test.ts)',
  'driver install': 'DKMS on a real kernel, as root (test/vm/stock-kernel.test.ts)',
  'driver remove': 'DKMS on a real kernel, as root (test/vm/stock-kernel.test.ts)',
  'driver load': 'insmod/modprobe on a real kernel, as root (test/vm/driver.test.ts)',
  'driver unload': 'rmmod on a real kernel, as root (test/vm/driver.test.ts)',
  // bind's --persist example asks first (exit 5 below), so nothing is recorded for these to act on; they need the iopmem driver's config interface.
  'persist apply': 'acts on a binding `bind --persist` recorded (test/commands/persist.test.ts with a fake iopmem driver; test/vm/persist.test.ts)',
  'persist remove': 'acts on a binding `bind --persist` recorded (test/commands/persist.test.ts; test/vm/persist.test.ts)',
  // A topic: every nvmet command acts on the configfs of a loaded nvmet, which a sysfs fixture does not have.
  nvmet: 'the configfs of a loaded nvmet (test/commands/nvmet.test.ts on a fixture configfs; test/vm/nvmet.test.ts on the real kernel)',
}

/** Examples whose documented outcome off a terminal is not 0. */
const EXIT: Record<string, {exit: number; why: RegExp}> = {
  // "without a terminal, a change needs --yes" (docs/vocabulary.md): the example shows the question a person is asked.
  'bind 0000:03:00.0': {exit: 5, why: /without confirmation: not on a terminal/},
  'bind 0000:03:00.0 --as p2pmem --bar 2': {exit: 5, why: /without confirmation: not on a terminal/},
  'bind 0000:03:00.0 --as blockdax --persist': {exit: 5, why: /without confirmation: not on a terminal/},
  'unbind 0000:03:00.0': {exit: 5, why: /without confirmation: not on a terminal/},
  'mkfs-dax /dev/pmem1 --mount /mnt/dax': {exit: 5, why: /without confirmation: not on a terminal/},
}

const key = (e: Example) => `${e.id.replaceAll(':', ' ')}${e.line ? ' ' + e.line : ''}`

interface Example {
  id: string
  line: string
  args: string[]
  root: boolean
}

function manifestExamples(): Example[] {
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {examples?: Array<string | {command: string}>}>}
  const out: Example[] = []
  for (const [id, cmd] of Object.entries(manifest.commands)) {
    const name = id.replaceAll(':', ' ')
    for (const e of cmd.examples ?? []) {
      const text = (typeof e === 'string' ? e : e.command).replace('<%= config.bin %>', 'iopmem').replace('<%= command.id %>', name)
      const root = text.startsWith('sudo ')
      const words = (text.replace(/^sudo /, '').match(/'[^']*'|\S+/g) ?? []).map((w) => w.replace(/^'(.*)'$/, '$1'))
      expect(words[0]).to.equal('iopmem')
      out.push({id, line: words.slice(1 + name.split(' ').length).join(' '), args: words.slice(1), root})
    }
  }
  return out
}

describe('every example in the help', function () {
  this.timeout(120_000)
  const all = manifestExamples()
  let fx: SysfsFixture
  let core: FakeDriverCore
  let scratch: {dir: string; cleanup(): void}
  const cwd = process.cwd()
  /** A path under /mnt in an example is that path under the scratch directory (a mount point the fixture mounts there). */
  const placed = (arg: string) => (arg.startsWith('/mnt/') ? path.join(scratch.dir, arg) : arg)
  before(async () => {
    // The files the examples name, in the directory they run in (O_DIRECT needs a real filesystem, not tmpfs).
    scratch = realFsDir('iopmem-examples')
    for (const f of ['scratch.bin', 'a.bin', 'b.bin']) fs.writeFileSync(path.join(scratch.dir, f), Buffer.alloc(8 * 1024 * 1024, 0x5a))
    for (const d of ['mnt/dax', 'mnt/nvme', 'mnt/bar']) fs.mkdirSync(path.join(scratch.dir, d), {recursive: true})
    process.chdir(scratch.dir)
    await installDaxDeps({runner: new FakeRunner(), statxDax: async () => true, pageSize: async () => 4096})
  })
  // One machine per command (bind, unbind and persist share one: persist applies what bind --persist recorded):
  // its examples run in order on it, as a person would type them (map --fill, then --verify).
  const machines = new Map<string, {fx: SysfsFixture; core: FakeDriverCore}>()
  beforeEach(async function () {
    const id = this.currentTest?.title.split(' ')[1] ?? ''
    const group = ['bind', 'unbind', 'persist'].includes(id) ? 'bind' : id
    let m = machines.get(group)
    if (!m) {
      const f = await daxMachine()
      f.driver({name: 'iopmem'})
      m = {fx: f, core: new FakeDriverCore(f)}
      machines.set(group, m)
    }
    fx = m.fx
    core = m.core
  })
  afterEach(async () => {
    await installFileOps(undefined)
    for (const f of ['mnt/dax/data.bin', 'mnt/nvme/data.bin']) fs.rmSync(path.join(scratch.dir, f), {force: true})
  })
  after(async () => {
    process.chdir(cwd)
    await installDaxDeps({})
    for (const m of machines.values()) m.fx.cleanup()
    scratch.cleanup()
  })

  it('lists its skips explicitly, and each names an example that exists', () => {
    const have = new Set(all.map((e) => key(e)))
    for (const k of [...Object.keys(SKIP), ...Object.keys(EXIT)]) expect(have.has(k), `no example "${k}" (any more): drop it from the list`).to.equal(true)
    expect(have.size).to.be.greaterThan(30)
    expect(Object.keys(SKIP).length + Object.keys(SKIP_COMMANDS).length, 'the skip lists stay short').to.be.at.most(15)
    for (const c of Object.keys(SKIP_COMMANDS)) expect(all.some((e) => e.id.replaceAll(':', ' ') === c || e.id.startsWith(c + ':')), `no command or topic "${c}" (any more)`).to.equal(true)
  })

  const order = (id: string) => ['bind', 'persist', 'unbind'].indexOf(id.split(':')[0])
  for (const e of [...all].sort((a, b) => order(a.id) - order(b.id))) {
    const k = key(e)
    if (SKIP_COMMANDS[e.id.split(':')[0]] || SKIP_COMMANDS[e.id.replaceAll(':', ' ')] || SKIP[k]) continue
    it(`iopmem ${k}`, async () => {
      if (e.id === 'locate') {
        // statx and FIEMAP played: the file is 3 MiB in one extent on pmem0 (DAX) or nvme0n1, mounted where the example says.
        const onNvme = e.args[1].startsWith('/mnt/nvme')
        fs.writeFileSync(placed(e.args[1]), Buffer.alloc(3 * 1024 * 1024))
        await installFileOps(fakeFileOps({devMajor: 259, devMinor: onNvme ? 0 : 10, size: 0x30_0000}, fakeFiemap([[0, 0x10_0000, 0x30_0000, 1]])))
        if (onNvme) fx.mount({id: 501, dev: '259:0', source: '/dev/nvme0n1', target: placed('/mnt/nvme'), fstype: 'ext4'})
        else fx.mount({id: 500, dev: '259:10', source: '/dev/pmem0', target: placed('/mnt/dax'), fstype: 'ext4', options: 'rw,dax=always'})
      }
      const r = await cli(e.args.map((a) => placed(a)), fx, {writer: core, uid: e.root ? 0 : 1000})
      const want = EXIT[k]
      expect(r.exit, `${k}\n${r.stderr}${r.stdout.slice(-2000)}`).to.equal(want?.exit ?? 0)
      if (want) expect(r.stderr + r.stdout).to.match(want.why)
      // Its --json document is what docs/schemas/ says (the result's schema, or the error envelope's).
      if (e.args.includes('--json')) expectSchema(e.id, r.json)
    })
  }
})

describe('help lists each topic and command once', () => {
  it('`iopmem help` and `iopmem --help`', async () => {
    for (const args of [['help'], ['--help']]) {
      const r = await cli(args)
      const names = (section: string) =>
        (r.stdout.split(`\n${section}\n`)[1]?.split('\n\n')[0] ?? '')
          .split('\n')
          .map((l) => /^ {2}(\S+)/.exec(l)?.[1])
          .filter(Boolean)
      const listed = [...names('TOPICS'), ...names('COMMANDS')]
      expect(listed.length, r.stdout).to.be.greaterThan(8)
      expect(listed, args.join(' ')).to.deep.equal([...new Set(listed)])
      expect(listed).to.include.members(['bench', 'driver', 'sandbox', 'list', 'topo'])
    }
  })
})
