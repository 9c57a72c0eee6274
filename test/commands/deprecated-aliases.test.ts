/**
 * Renamed flags keep their old name for one release (docs/vocabulary.md):
 * the old name reaches the same flag, a person is told on stderr what to
 * type instead, and under --json stdout stays one JSON document with no
 * warning in it. Each old name is checked by what it does, not by its help.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cli} from '../helpers/cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('deprecated flag names', function () {
  this.timeout(30_000)
  let fx: SysfsFixture
  let core: FakeDriverCore
  beforeEach(() => {
    fx = standardMachine()
    fx.driver({name: 'iopmem'})
    fx.writeSys('bus/pci/drivers/iopmem/config', '')
    core = new FakeDriverCore(fx)
  })
  afterEach(() => fx.cleanup())

  it('bind --mode is --as: the same validation, and a warning naming --as', async () => {
    for (const flag of ['--as', '--mode']) {
      const r = await cli(['bind', BDF.ivshmem, flag, 'fsdax', '--yes'], fx, {writer: core})
      expect(r.exit, r.stderr).to.equal(2)
      expect(r.stderr).to.match(/Invalid mode "fsdax".*blockdax, p2pmem/s)
      if (flag === '--mode') expect(r.stderr).to.match(/--mode.*deprecated.*--as/is)
      else expect(r.stderr).not.to.match(/deprecated/i)
    }
    // With the value attached (--mode=VALUE, -dVALUE) the old name is still spotted.
    const eq = await cli(['bind', BDF.ivshmem, '--mode=fsdax', '--yes'], fx, {writer: core})
    expect(eq.exit, eq.stderr).to.equal(2)
    expect(eq.stderr).to.match(/--mode.*deprecated.*--as/is)
    const now = await cli(['bind', BDF.ivshmem, '--as=fsdax', '--yes'], fx, {writer: core})
    expect(now.stderr).not.to.match(/deprecated/i)
    // The option is iopmem's: with another driver it is refused under its new name, whichever was typed.
    const o = await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--mode', 'p2pmem', '--yes', '--json'], fx, {writer: core})
    expect(o.exit).to.equal(2)
    expect(o.json.error).to.include({code: 'E_IOPMEM_ONLY', message: '--as is for --driver iopmem only (not uio_pci_generic).'})
    expect(o.stderr, 'no warning under --json').to.equal('')
  })

  it('bind -d is --driver: it binds to that driver, with a warning; under --json stdout is the result alone', async () => {
    const h = await cli(['bind', BDF.ivshmem, '-d', 'uio_pci_generic', '--yes'], fx, {writer: core})
    expect(h.exit, h.stderr).to.equal(0)
    expect(fx.currentDriver(BDF.ivshmem)).to.equal('uio_pci_generic')
    expect(h.stderr).to.match(/-d.*deprecated.*--driver/is)
    await cli(['unbind', BDF.ivshmem, '--yes'], fx, {writer: core})
    const attached = await cli(['bind', BDF.ivshmem, '-duio_pci_generic', '--yes'], fx, {writer: core})
    expect(attached.exit, attached.stderr).to.equal(0)
    expect(attached.stderr).to.match(/-d.*deprecated.*--driver/is)
    await cli(['unbind', BDF.ivshmem, '--yes'], fx, {writer: core})
    const j = await cli(['bind', BDF.ivshmem, '-d', 'uio_pci_generic', '--yes', '--json'], fx, {writer: core})
    expect(j.exit, j.stderr).to.equal(0)
    expect(j.json).to.include({driver: 'uio_pci_generic'})
    expect(j.stdout).not.to.match(/deprecated/i)
    expect(j.stderr).to.equal('')
  })
})

describe('bench p2p --mode is --buffer', function () {
  this.timeout(30_000)
  let tmp: string
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-alias-'))
    fs.writeFileSync(path.join(tmp, 'src'), Buffer.alloc(64 * 1024, 0x5a))
    fs.writeFileSync(path.join(tmp, 'dst'), Buffer.alloc(64 * 1024))
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))
  const args = (flag: string, ...more: string[]) => ['bench', 'p2p', '--src', path.join(tmp, 'src'), '--dst', path.join(tmp, 'dst'), flag, 'bounce', '--size', '64K', '--bs', '4K', '--no-probe', '--yes', ...more]

  it('copies through the bounce buffer only, with a warning on stderr (none under --json)', async () => {
    const j = await cli(args('--mode', '--json'))
    expect(j.exit, j.stderr + j.stdout).to.equal(0)
    expect(j.json.results.map((r: {mode: string}) => r.mode)).to.deep.equal(['bounce'])
    expect(j.stderr).not.to.match(/deprecated/i)
    const h = await cli(args('--mode'))
    expect(h.exit, h.stderr).to.equal(0)
    expect(h.stderr).to.match(/--mode.*deprecated.*--buffer/is)
    const n = await cli(args('--buffer'))
    expect(n.stderr).not.to.match(/deprecated/i)
  })

  it('--force also skips the confirmation, as on bind, unbind and mkfs-dax (one meaning of --force)', async () => {
    const base = args('--buffer').filter((a) => a !== '--yes')
    const asked = await cli(base)
    expect(asked.exit).to.equal(5)
    expect(asked.stderr).to.match(/without confirmation: not on a terminal/)
    const forced = await cli([...base, '--force'])
    expect(forced.exit, forced.stderr).to.equal(0)
  })
})
