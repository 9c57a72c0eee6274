/**
 * Entry point of a child iopmem process on a fixture tree with the fake
 * driver core as its kernel and file-backed fake mkfs tools, so tests can
 * send real signals to real processes and run two of them at once.
 * Started by startCli() (child-cli.ts); IOPMEM_FAKE_CLI holds {root, machine}.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'

import {distModule, ROOT} from './cli.js'
import {daxMachine, FakeRunner} from './dax.js'
import {FakeConfigfs} from './fake-configfs.js'
import {FakeDriverCore} from './fake-driver-core.js'
import {standardMachine} from './machines.js'
import type {SysfsFixture} from './sysfs-fixture.js'
import type {ExecResult, Runner} from '../../src/lib/sys/exec.js'

const spec = JSON.parse(process.env.IOPMEM_FAKE_CLI!) as {root: string; machine: 'standard' | 'dax' | 'nvmet'}

// The machine's specs (driver ID tables, functions) are rebuilt in a scratch tree; the object is then
// pointed at the shared tree, whose files hold the state (links, overrides) every process sees.
const shadow = spec.machine === 'dax' ? await daxMachine() : standardMachine()
process.once('exit', () => shadow.cleanup())
const at = (p: string) => ({value: path.join(spec.root, p)})
const fx = Object.create(shadow, {root: {value: spec.root}, sys: at('sys'), dev: at('dev'), proc: at('proc')}) as SysfsFixture

/** FakeRunner whose device table lives in a file, and whose mkfs is a real child process (sh) that a signal can stop. */
class SharedRunner implements Runner {
  private readonly file = path.join(spec.root, 'fake-tools.json')
  async run(program: string, args: string[]): Promise<ExecResult> {
    const fake = new FakeRunner()
    if (fs.existsSync(this.file)) for (const [k, v] of JSON.parse(fs.readFileSync(this.file, 'utf8'))) fake.signatures.set(k, v)
    if (program.startsWith('mkfs.')) {
      const exec = (await import(distModule('lib/sys/exec.cjs'))) as typeof import('../../src/lib/sys/exec.js')
      const pidFile = path.join(spec.root, `mkfs-${process.pid}.pid`)
      // The trap is set before the pid is shown, and the pid file appears whole (renamed into
      // place): a test that sees the file may signal at once, and never reads it empty.
      const script = `trap 'echo "$$ got signal" >> '"'${pidFile}.log'"'; exit 130' INT TERM HUP; echo $$ > '${pidFile}.tmp' && mv '${pidFile}.tmp' '${pidFile}'; i=0; while [ $i -lt ${process.env.IOPMEM_TEST_MKFS_TICKS ?? 10} ]; do sleep 0.05; i=$((i+1)); done`
      const r = await exec.processRunner.run('sh', ['-c', script])
      if (r.code !== 0) return r
    }
    const r = await fake.run(program, args)
    fs.writeFileSync(this.file, JSON.stringify([...fake.signatures]))
    return r
  }
}

const host = (await import(distModule('lib/sys/host.cjs'))) as typeof import('../../src/lib/sys/host.js')
// 'nvmet': the standard machine with the fake nvmet configfs as the kernel.
const writer = spec.machine === 'nvmet' ? new FakeConfigfs(fx) : new FakeDriverCore(fx)
host.setHost(new host.Host({roots: {sysfs: fx.sys, dev: fx.dev, proc: fx.proc}, writer, uid: 0}))
const dax = (await import(distModule('lib/dax/mkfs.cjs'))) as typeof import('../../src/lib/dax/mkfs.js')
dax.setDaxDeps({runner: new SharedRunner(), statxDax: async () => true, pageSize: async () => 4096})

// IOPMEM_TEST_PAUSE_COPY=F: the first bulk copy into a mapping writes F and waits for F.go (map --fill tests).
if (process.env.IOPMEM_TEST_PAUSE_COPY) {
  const marker = process.env.IOPMEM_TEST_PAUSE_COPY
  const nat = (await import(distModule('native/index.cjs'))) as typeof import('../../src/native/index.js')
  const n = nat.loadNative()
  const copyTo = n.copyTo.bind(n)
  let first = true
  n.copyTo = ((...a: Parameters<typeof copyTo>) => {
    if (first) {
      first = false
      fs.writeFileSync(marker, 'copy\n')
      const nap = new Int32Array(new SharedArrayBuffer(4))
      const until = Date.now() + 20_000
      while (!fs.existsSync(marker + '.go') && Date.now() < until) Atomics.wait(nap, 0, 0, 10)
    }
    return copyTo(...a)
  }) as typeof n.copyTo
}

// The build's own oclif (the bundle's), the one its commands are made of.
const {run, flush, handle} = (await import(distModule('main.cjs'))) as typeof import('../../src/main.js')
const argv = process.argv.slice(2)
try {
  await run(argv, pathToFileURL(path.join(ROOT, 'bin/run.js')).href)
  await flush()
} catch (error) {
  await handle(error as Error)
}
