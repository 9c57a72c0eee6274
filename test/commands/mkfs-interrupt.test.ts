import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {startCli, waitForFile} from '../helpers/child-cli.js'
import {daxMachine} from '../helpers/dax.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

const alive = (pid: number) => {
  if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`not a process to signal: ${pid}`)
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * mkfs-dax as a real child process whose mkfs is a real program (sh, see
 * fake-cli-main.ts): a signal is passed on to mkfs, which is never left
 * running, and the run ends with exit 130 stating what the device holds; two
 * mkfs-dax of one device never both find it empty.
 */
describe('mkfs-dax under signals and concurrency (child processes)', function () {
  this.timeout(120_000)
  let fx: SysfsFixture
  beforeEach(async () => {
    fx = await daxMachine()
  })
  afterEach(() => fx.cleanup())

  const pidFile = (c: {proc: {pid?: number}}) => path.join(fx.root, `mkfs-${c.proc.pid}.pid`)

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal} while mkfs runs: mkfs gets it and is gone, exit 130, details.state says what the device holds`, async () => {
      const c = startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem1', '--yes', '--json'], {env: {IOPMEM_TEST_MKFS_TICKS: '400'}})
      expect(await waitForFile(pidFile(c), c), (await Promise.race([c.done, Promise.resolve({stderr: ''})])).stderr).to.equal(true)
      const text = fs.readFileSync(pidFile(c), 'utf8')
      // Never signal a pid that is not one: Number('') is 0, and kill(0) is this whole process group.
      expect(text, 'the pid file').to.match(/^[1-9]\d*\n$/)
      const mkfsPid = Number(text)
      expect(mkfsPid).to.not.be.oneOf([1, process.pid])
      c.proc.kill(signal)
      const r = await c.done
      const orphan = alive(mkfsPid)
      if (orphan) process.kill(mkfsPid, 'SIGKILL')
      expect(orphan, 'mkfs outlived iopmem').to.equal(false)
      expect(r.exit, r.stderr).to.equal(130)
      expect(r.json.error).to.deep.include({code: 'E_INTERRUPTED', exit: 130})
      expect(r.json.error.details).to.deep.include({interrupted: true, signal, state: 'mkfs-failed', device: '/dev/pmem1'})
      expect(r.json.error.message).to.contain('State: /dev/pmem1 may hold a partly written filesystem; nothing is mounted.')
      expect(fs.readFileSync(pidFile(c) + '.log', 'utf8')).to.contain('got signal')
    })
  }

  it('two mkfs-dax of one device: the second is refused naming the first one\'s pid; with --wait it then finds the filesystem and refuses to overwrite it', async () => {
    const first = startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem1', '--yes', '--json'], {env: {IOPMEM_TEST_MKFS_TICKS: '100'}})
    expect(await waitForFile(pidFile(first), first)).to.equal(true)
    const second = await startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem1', '--yes', '--json']).done
    expect(second.exit, second.stderr).to.equal(5)
    expect(second.json.error.code).to.equal('E_LOCKED')
    expect(second.json.error.message).to.contain(`(pid ${first.proc.pid})`)
    const third = startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem1', '--yes', '--json', '--wait'])
    const [r1, r3] = await Promise.all([first.done, third.done])
    expect(r1.exit, r1.stderr).to.equal(0)
    expect(r1.json).to.include({device: '/dev/pmem1', filesystem: 'ext4'})
    expect(r3.exit, r3.stderr).to.equal(5)
    expect(r3.json.error.code).to.equal('E_HAS_SIGNATURE')
  })

  it('a partition and its disk share one lock', async () => {
    const first = startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem0', '--yes', '--json', '--force'], {env: {IOPMEM_TEST_MKFS_TICKS: '100'}})
    expect(await waitForFile(pidFile(first), first)).to.equal(true)
    const second = await startCli(fx, 'dax', ['mkfs-dax', '/dev/pmem0p1', '--yes', '--json']).done
    expect(second.json?.error?.code, second.stdout + second.stderr).to.equal('E_LOCKED')
    await first.done
  })
})
