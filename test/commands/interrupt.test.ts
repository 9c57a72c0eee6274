import {expect} from 'chai'
import * as fs from 'node:fs'

import {interruptAtPause, startCli} from '../helpers/child-cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

/**
 * SIGINT, SIGTERM and SIGHUP in the middle of each sysfs write of bind and
 * unbind, sent to a real child process (the fake driver core pauses the Nth
 * write): the command finishes that write, rolls back (or, after the last
 * write, stops with the change complete), prints the state under --json with
 * "interrupted": true, and exits 130; the state printed is the state of the tree.
 */
describe('bind and unbind under SIGINT/SIGTERM/SIGHUP (child processes)', function () {
  this.timeout(120_000)
  let fx: SysfsFixture
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  const state = (bdf: string) => ({driver: fx.currentDriver(bdf) ?? null, override: fx.override(bdf) ?? null})

  // bind 0000:03:00.0 (nvme) to vfio-pci: 1 driver_override, 2 nvme/unbind, 3 vfio-pci/bind
  const cases: Array<{at: number; signal: NodeJS.Signals; rolledBack: boolean; driver: string; override: string | null}> = [
    {at: 1, signal: 'SIGINT', rolledBack: true, driver: 'nvme', override: null},
    {at: 2, signal: 'SIGTERM', rolledBack: true, driver: 'nvme', override: null},
    {at: 3, signal: 'SIGHUP', rolledBack: false, driver: 'vfio-pci', override: 'vfio-pci'},
  ]
  for (const c of cases) {
    it(`bind: ${c.signal} during write ${c.at} → ${c.rolledBack ? 'rolled back' : 'complete'}, the state printed, exit 130`, async () => {
      const child = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--json'], {pauseAt: c.at})
      const r = await interruptAtPause(child, c.signal)
      expect(r.exit, r.stderr).to.equal(130)
      expect(r.json, r.stdout).to.include({interrupted: true, signal: c.signal, rolledBack: c.rolledBack, driver: c.driver, override: c.override})
      expect(state(BDF.nvmeCmb)).to.deep.equal({driver: c.driver, override: c.override})
    })
  }

  it('bind without --json: says it was interrupted and what the state is, exit 130', async () => {
    const child = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes'], {pauseAt: 2})
    const r = await interruptAtPause(child, 'SIGINT')
    expect(r.exit).to.equal(130)
    expect(r.stderr).to.contain(`Interrupted (SIGINT); rolled back: ${BDF.nvmeCmb} is bound to nvme, driver_override (null), as it was.`)
    expect(state(BDF.nvmeCmb)).to.deep.equal({driver: 'nvme', override: null})
  })

  // unbind of a function on uio_pci_generic with driver_override set: 1 unbind, 2 clear driver_override
  for (const c of [
    {at: 1, signal: 'SIGINT' as const, rolledBack: true, driver: 'uio_pci_generic', override: 'uio_pci_generic'},
    {at: 2, signal: 'SIGTERM' as const, rolledBack: false, driver: null, override: null},
  ]) {
    it(`unbind: ${c.signal} during write ${c.at} → ${c.rolledBack ? 'bound again' : 'complete'}, exit 130`, async () => {
      const core = new FakeDriverCore(fx)
      core.write(`${fx.fnDir(BDF.ivshmem)}/driver_override`, 'uio_pci_generic\n')
      core.write(`${fx.sys}/bus/pci/drivers/uio_pci_generic/bind`, BDF.ivshmem)
      const child = startCli(fx, 'standard', ['unbind', BDF.ivshmem, '--yes', '--json'], {pauseAt: c.at})
      const r = await interruptAtPause(child, c.signal)
      expect(r.exit, r.stderr).to.equal(130)
      expect(r.json, r.stdout).to.include({interrupted: true, rolledBack: c.rolledBack, driver: c.driver, override: c.override})
      expect(state(BDF.ivshmem)).to.deep.equal({driver: c.driver, override: c.override})
    })
  }
})

describe('map --fill under SIGINT (child process)', function () {
  this.timeout(120_000)
  let fx: SysfsFixture
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  it('stops between chunks with the bytes done, exit 130, and does not print a success', async () => {
    const marker = `${fx.root}/copy-pause`
    const child = startCli(fx, 'standard', ['map', BDF.ivshmem, '--bar', '2', '--fill', '0xa5', '--yes', '--json'], {env: {IOPMEM_TEST_PAUSE_COPY: marker}})
    const r = await interruptAtPause({...child, marker}, 'SIGINT')
    expect(r.exit, r.stderr).to.equal(130)
    expect(r.json, r.stdout).to.include({interrupted: true, signal: 'SIGINT'})
    expect(r.json.op).to.include({kind: 'fill', interrupted: true, size: 64 * 1024 * 1024})
    expect(r.json.op.done).to.be.greaterThan(0).and.lessThan(64 * 1024 * 1024)
    // The bytes done are the bytes filled: the first `done` bytes of the BAR hold the pattern, the next do not.
    const bar = fs.readFileSync(`${fx.fnDir(BDF.ivshmem)}/resource2_wc`)
    expect(bar[r.json.op.done - 1]).to.equal(0xa5)
    expect(bar[r.json.op.done]).to.equal(0)
  })
})
