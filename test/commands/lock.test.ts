import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {startCli, waitForFile} from '../helpers/child-cli.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

/**
 * Two iopmem processes on one function: the second is refused naming the
 * first one's pid, or with --wait waits and then finds the work done. The
 * lock lives in the fixture's own run directory, and dies with its holder.
 */
describe('per-function lock: two concurrent binds (child processes)', function () {
  this.timeout(120_000)
  let fx: SysfsFixture
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  const lockFile = () => path.join(fx.root, 'run/lock/iopmem', `pci-${BDF.nvmeCmb}.lock`)

  it('the second bind is refused while the first holds the function, naming its pid (exit 5)', async () => {
    const first = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], {pauseAt: 2})
    expect(await waitForFile(first.marker!, first)).to.equal(true)
    const second = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'uio_pci_generic', '--yes', '--json'])
    const r2 = await second.done
    expect(r2.exit, r2.stderr).to.equal(5)
    expect(r2.json.error).to.deep.include({code: 'E_LOCKED'})
    expect(r2.json.error.message).to.contain(`(pid ${first.proc.pid})`)
    expect(r2.json.error.details.holder).to.equal(first.proc.pid)
    fs.writeFileSync(first.marker + '.go', '')
    const r1 = await first.done
    expect(r1.exit, r1.stderr).to.equal(0)
    expect(r1.json).to.include({driver: 'vfio-pci'})
    expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('vfio-pci')
    expect(fs.existsSync(lockFile())).to.equal(true) // in the fixture's run dir, not /run
  })

  it('with --wait the second waits, then sees the first one\'s result: both end in the state they report', async () => {
    const first = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], {pauseAt: 2})
    expect(await waitForFile(first.marker!, first)).to.equal(true)
    const second = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json', '--wait'])
    await new Promise((r) => setTimeout(r, 1500)) // it is waiting, not done
    expect(second.proc.exitCode).to.equal(null)
    fs.writeFileSync(first.marker + '.go', '')
    const [r1, r2] = await Promise.all([first.done, second.done])
    expect(r1.exit, r1.stderr).to.equal(0)
    expect(r2.exit, r2.stderr).to.equal(0)
    expect(r1.json).to.include({driver: 'vfio-pci', changed: true})
    expect(r2.json).to.include({driver: 'vfio-pci', changed: false})
    expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('vfio-pci')
    expect(fx.override(BDF.nvmeCmb)).to.equal('vfio-pci')
  })

  it('a holder killed with SIGKILL leaves no stale lock', async () => {
    const first = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], {pauseAt: 2})
    expect(await waitForFile(first.marker!, first)).to.equal(true)
    first.proc.kill('SIGKILL')
    await first.done
    const r = await startCli(fx, 'standard', ['unbind', BDF.nvmeCmb, '--yes', '--json']).done
    expect(r.exit, r.stderr).to.not.equal(5)
  })
})
