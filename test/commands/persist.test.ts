import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {interruptAtPause, startCli} from '../helpers/child-cli.js'
import {cli} from '../helpers/cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

/**
 * `bind --persist`, `unbind --persist` and the `persist` topic on fixture
 * trees: the records under the fixture's etc/ (beside its sys/, never the
 * host's /etc), the udev rule, the states `persist list` reports, the
 * re-apply entry point, driverctl coexistence, hostile files, interruption.
 */

/** The fake driver core plus the iopmem driver's side: a bind to iopmem makes iopmem/{mode,bar,cache,node} from the config line. */
class IopmemCore extends FakeDriverCore {
  private config = new Map<string, string>()
  write(file: string, value: string): void {
    const rel = path.relative(this.fx.sys, file)
    if (rel === 'bus/pci/drivers/iopmem/config') {
      const [bdf, ...kv] = value.trim().split(' ')
      if (kv.length === 0) this.config.delete(bdf)
      else this.config.set(bdf, kv.join(' '))
      this.log.push({file: rel, value})
      return
    }
    super.write(file, value)
    const m = /^bus\/pci\/drivers\/(iopmem)\/(bind|unbind)$/.exec(rel)
    if (!m) return
    const dir = path.join(this.fx.fnDir(value.trim()), 'iopmem')
    if (m[2] === 'unbind') fs.rmSync(dir, {recursive: true, force: true})
    else {
      const kv = Object.fromEntries((this.config.get(value.trim()) ?? '').split(' ').map((x) => x.split('=')))
      fs.mkdirSync(dir, {recursive: true})
      for (const [k, v] of Object.entries({mode: kv.mode, bar: kv.bar, cache: kv.cache, node: 'iopmem0'})) fs.writeFileSync(path.join(dir, k), `${v}\n`)
    }
  }
}

describe('iopmem bind --persist / unbind --persist / persist list|apply|remove', function () {
  this.timeout(60_000)
  let fx: SysfsFixture
  let core: IopmemCore
  let etc: string
  const rec = (bdf: string) => path.join(etc, 'iopmem/bind.d', `${bdf}.conf`)
  const rule = () => path.join(etc, 'udev/rules.d/89-iopmem.rules')
  const writeRecord = (bdf: string, text: string) => {
    fs.mkdirSync(path.dirname(rec(bdf)), {recursive: true, mode: 0o755})
    fs.writeFileSync(rec(bdf), text, {mode: 0o644})
  }
  const run = (args: string[]) => cli(args, fx, {writer: core})
  beforeEach(() => {
    fx = standardMachine()
    fx.driver({name: 'iopmem'})
    fx.writeSys('bus/pci/drivers/iopmem/config', '')
    core = new IopmemCore(fx)
    etc = path.join(fx.root, 'etc')
  })
  afterEach(() => fx.cleanup())

  it('bind --persist binds, writes the record and the udev rule; persist list shows it applied', async () => {
    const r = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'])
    expect(r.exit, r.stdout).to.equal(0)
    expect(fx.currentDriver(BDF.ivshmem)).to.equal('uio_pci_generic')
    expect(r.json.persist).to.deep.equal({file: rec(BDF.ivshmem), changed: true, rule: rule(), ruleAction: 'written'})
    expect(fs.readFileSync(rec(BDF.ivshmem), 'utf8')).to.match(/^# iopmem: 0000:00:04\.0 is bound to uio_pci_generic at boot.*\n.*\ndriver=uio_pci_generic\n$/)
    expect((fs.statSync(rec(BDF.ivshmem)).mode & 0o777).toString(8)).to.equal('644')
    const text = fs.readFileSync(rule(), 'utf8')
    expect(text).to.contain(`ACTION=="add", SUBSYSTEM=="pci", TEST=="${etc}/iopmem/bind.d/$kernel.conf", RUN+="${fs.realpathSync(process.execPath)} `)
    expect(text).to.match(/\/bin\/run\.js persist apply \$kernel --kmsg"\n$/)
    const l = await run(['persist', 'list', '--json'])
    expect(l.exit).to.equal(0)
    expect(l.json.rule).to.deep.equal({path: rule(), installed: true})
    expect(l.json.records).to.have.length(1)
    expect(l.json.records[0]).to.deep.include({bdf: BDF.ivshmem, state: 'applied', driver: 'uio_pci_generic', record: {bdf: BDF.ivshmem, driver: 'uio_pci_generic'}})
    const human = await run(['persist', 'list'])
    expect(human.stdout).to.match(/0000:00:04\.0\s+uio_pci_generic\s+applied\s+uio_pci_generic/)
  })

  it('for iopmem the record holds the resolved mode, BAR and cache; apply on the bound function is a no-op', async () => {
    const r = await run(['bind', BDF.ivshmem, '--as', 'blockdax', '--cache', 'wc', '--persist', '--json'])
    expect(r.exit, r.stdout).to.equal(0)
    expect(fs.readFileSync(rec(BDF.ivshmem), 'utf8')).to.match(/\ndriver=iopmem\nmode=blockdax\nbar=2\ncache=wc\n$/)
    const l = await run(['persist', 'list', '--json'])
    expect(l.json.records[0]).to.deep.include({state: 'applied', record: {bdf: BDF.ivshmem, driver: 'iopmem', iopmem: {mode: 'blockdax', bar: 2, cache: 'wc'}}})
    const writes = core.log.length
    const a = await run(['persist', 'apply', BDF.ivshmem, '--json'])
    expect(a.exit, a.stdout).to.equal(0)
    expect(a.json).to.deep.include({outcome: 'already'})
    expect(core.log.length, 'no sysfs write').to.equal(writes)
  })

  it('bind --persist of a function already bound as asked changes nothing in sysfs and records it', async () => {
    expect((await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic'])).exit).to.equal(0)
    const writes = core.log.length
    const r = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'])
    expect(r.exit, r.stdout).to.equal(0)
    expect(r.json).to.deep.include({changed: false})
    expect(r.json.persist).to.deep.include({changed: true, ruleAction: 'written'})
    expect(core.log.length).to.equal(writes)
    expect(fs.readFileSync(rec(BDF.ivshmem), 'utf8')).to.contain('driver=uio_pci_generic\n')
    // Once more: the same record, nothing rewritten.
    const again = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'])
    expect(again.json.persist).to.deep.include({changed: false, ruleAction: 'kept'})
  })

  it('apply binds a pending function as recorded (mode recreated), and is idempotent', async () => {
    writeRecord(BDF.ivshmem, 'driver=iopmem\nmode=p2pmem\nbar=2\ncache=wb\n')
    const before = await run(['persist', 'list', '--json'])
    expect(before.json.records[0]).to.deep.include({state: 'pending', driver: null})
    const a = await run(['persist', 'apply', '00:04.0', '--json'])
    expect(a.exit, a.stdout).to.equal(0)
    expect(a.json).to.deep.include({outcome: 'applied', bdf: BDF.ivshmem})
    expect(fx.currentDriver(BDF.ivshmem)).to.equal('iopmem')
    expect(fs.readFileSync(path.join(fx.fnDir(BDF.ivshmem), 'iopmem/mode'), 'utf8')).to.equal('p2pmem\n')
    expect((await run(['persist', 'apply', BDF.ivshmem, '--json'])).json).to.deep.include({outcome: 'already'})
    expect((await run(['persist', 'list', '--json'])).json.records[0]).to.deep.include({state: 'applied'})
  })

  it('apply --kmsg (what the rule runs) puts its outcome, or its error, in the kernel log', async () => {
    const log = path.join(fx.dev, 'kmsg')
    fs.writeFileSync(log, '')
    writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n')
    expect((await run(['persist', 'apply', BDF.ivshmem, '--kmsg'])).exit).to.equal(0)
    expect((await run(['persist', 'apply', '0000:00:09.0', '--kmsg'])).exit).to.equal(3)
    expect(fs.readFileSync(log, 'utf8')).to.equal(
      `<5>iopmem: persist apply ${BDF.ivshmem}: applied, bound to uio_pci_generic\n` +
        `<3>iopmem: persist apply 0000:00:09.0 failed: No binding is recorded for 0000:00:09.0 (${rec('0000:00:09.0')}).\n`,
    )
  })

  it('force-cache=yes (bind --force with a cached mapping) is handed to the driver by apply, without forcing past an in-use check', async () => {
    const b = await run(['bind', BDF.ivshmem, '--as', 'blockdax', '--cache', 'wt', '--force', '--persist', '--json'])
    expect(b.exit, b.stdout).to.equal(0)
    expect(fs.readFileSync(rec(BDF.ivshmem), 'utf8')).to.match(/\ncache=wt\nforce-cache=yes\n$/)
    expect((await run(['unbind', BDF.ivshmem, '--yes'])).exit).to.equal(0)
    core.log.length = 0
    const a = await run(['persist', 'apply', BDF.ivshmem, '--json'])
    expect(a.exit, a.stdout).to.equal(0)
    expect(core.log[0]).to.deep.equal({file: 'bus/pci/drivers/iopmem/config', value: `${BDF.ivshmem} mode=blockdax bar=2 cache=wt force\n`})
  })

  it('a function bound to iopmem in another mode is pending in list, and apply refuses to change it (unbind first)', async () => {
    expect((await run(['bind', BDF.ivshmem, '--as', 'blockdax', '--yes'])).exit).to.equal(0)
    writeRecord(BDF.ivshmem, 'driver=iopmem\nmode=p2pmem\nbar=2\ncache=wb\n')
    expect((await run(['persist', 'list', '--json'])).json.records[0]).to.deep.include({state: 'pending'})
    const a = await run(['persist', 'apply', BDF.ivshmem, '--json'])
    expect(a.exit).to.equal(5)
    expect(a.json.error.code).to.equal('E_ALREADY_BOUND')
  })

  it('unbind --persist unbinds and removes the record, and the rule with the last one', async () => {
    expect((await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist'])).exit).to.equal(0)
    expect((await run(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--persist', '--yes'])).exit).to.equal(0)
    const u1 = await run(['unbind', BDF.ivshmem, '--persist', '--yes', '--json'])
    expect(u1.exit, u1.stdout).to.equal(0)
    expect(u1.json.persist).to.deep.include({changed: true, ruleAction: 'kept'})
    expect(fs.existsSync(rec(BDF.ivshmem))).to.equal(false)
    expect(fs.existsSync(rule())).to.equal(true)
    const u2 = await run(['unbind', BDF.nvmeCmb, '--persist', '--yes'])
    expect(u2.exit, u2.stderr).to.equal(0)
    expect(u2.stdout).to.contain(`removed the record ${rec(BDF.nvmeCmb)} and the udev rule ${rule()}`)
    expect(fs.existsSync(rule())).to.equal(false)
    expect((await run(['persist', 'list'])).stdout).to.contain('No bindings are recorded')
  })

  it('unbind without --persist warns that the record binds the function again at the next boot', async () => {
    expect((await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist'])).exit).to.equal(0)
    const u = await run(['unbind', BDF.ivshmem, '--yes'])
    expect(u.exit).to.equal(0)
    expect(u.stdout).to.contain('warning: a binding is recorded for 0000:00:04.0: the next boot binds it again')
    expect(fs.existsSync(rec(BDF.ivshmem))).to.equal(true)
  })

  it('a record whose function is gone or whose driver is missing is reported by list and apply, not skipped', async () => {
    writeRecord('0000:00:09.0', 'driver=uio_pci_generic\n')
    writeRecord(BDF.ivshmem, 'driver=igb_uio\n')
    const l = await run(['persist', 'list', '--json'])
    expect(l.exit).to.equal(0)
    const by = Object.fromEntries(l.json.records.map((x: any) => [x.bdf, x]))
    expect(by['0000:00:09.0']).to.deep.include({state: 'device-missing'})
    expect(by['0000:00:09.0'].detail).to.contain('no PCI function 0000:00:09.0 is present')
    expect(by[BDF.ivshmem]).to.deep.include({state: 'driver-missing'})
    expect(by[BDF.ivshmem].detail).to.contain('the driver igb_uio is not registered: load it with `modprobe igb_uio`')
    const human = await run(['persist', 'list'])
    expect(human.stdout).to.match(/0000:00:09\.0\s+uio_pci_generic\s+device-missing/)
    const gone = await run(['persist', 'apply', '0000:00:09.0', '--json'])
    expect(gone.exit).to.equal(3)
    expect(gone.json.error.code).to.equal('E_NO_DEVICE')
    const nodrv = await run(['persist', 'apply', BDF.ivshmem, '--json'])
    expect(nodrv.exit).to.equal(3)
    expect(nodrv.json.error.code).to.equal('E_NO_DRIVER')
    const none = await run(['persist', 'apply', BDF.nvmeCmb, '--json'])
    expect(none.exit).to.equal(3)
    expect(none.json.error.code).to.equal('E_NO_RECORD')
    // persist remove forgets the gone function's record without touching any device.
    const rm = await run(['persist', 'remove', '0000:00:09.0', '--json'])
    expect(rm.exit, rm.stdout).to.equal(0)
    expect(fs.existsSync(rec('0000:00:09.0'))).to.equal(false)
    expect((await run(['persist', 'remove', '0000:00:09.0'])).exit).to.equal(3)
    expect(core.log).to.deep.equal([])
  })

  describe('driverctl', () => {
    const driverctl = (bdf: string, driver: string) => {
      fs.mkdirSync(path.join(etc, 'driverctl.d'), {recursive: true})
      fs.writeFileSync(path.join(etc, 'driverctl.d', `pci-${bdf}`), `${driver}\n`)
    }

    it('bind --persist is refused before any change when driverctl has an override for the function', async () => {
      driverctl(BDF.ivshmem, 'vfio-pci')
      const r = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'])
      expect(r.exit).to.equal(5)
      expect(r.json.error.code).to.equal('E_DRIVERCTL')
      expect(r.json.error.message).to.contain(`driverctl keeps an override for ${BDF.ivshmem} (${etc}/driverctl.d/pci-${BDF.ivshmem}: vfio-pci)`)
      expect(r.json.error.suggestions.join('\n')).to.contain(`driverctl unset-override ${BDF.ivshmem}`)
      expect(core.log).to.deep.equal([])
      expect(fx.currentDriver(BDF.ivshmem)).to.equal(undefined)
      expect(fs.existsSync(path.join(etc, 'iopmem'))).to.equal(false)
    })

    it('apply defers to driverctl (no change, exit 0) and list says so', async () => {
      writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n')
      driverctl(BDF.ivshmem, 'vfio-pci')
      const a = await run(['persist', 'apply', BDF.ivshmem, '--json'])
      expect(a.exit, a.stdout).to.equal(0)
      expect(a.json).to.deep.include({outcome: 'deferred'})
      expect(core.log).to.deep.equal([])
      expect((await run(['persist', 'list', '--json'])).json.records[0]).to.deep.include({state: 'deferred'})
    })
  })

  describe('hostile files in etc/iopmem are refused clearly, and nothing is bound', () => {
    const cases: Array<{name: string; setup: () => void; message: RegExp}> = [
      {name: 'an unknown key', setup: () => writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\nrun=/bin/sh\n'), message: /line 2: unknown key "run"/},
      {name: 'a key given twice', setup: () => writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\ndriver=vfio-pci\n'), message: /line 2: driver is given twice/},
      {name: 'a driver name with shell in it', setup: () => writeRecord(BDF.ivshmem, 'driver=x;rm -rf /\n'), message: /line 1: Invalid driver name/},
      {name: 'a bad mode', setup: () => writeRecord(BDF.ivshmem, 'driver=iopmem\nmode=devdax\nbar=2\ncache=wb\n'), message: /line 2: Invalid mode "devdax"/},
      {name: 'iopmem without its BAR', setup: () => writeRecord(BDF.ivshmem, 'driver=iopmem\nmode=blockdax\ncache=wb\n'), message: /driver=iopmem needs bar/},
      {name: 'iopmem settings for another driver', setup: () => writeRecord(BDF.ivshmem, 'driver=vfio-pci\nmode=blockdax\n'), message: /mode is for driver=iopmem only/},
      {name: 'no driver line', setup: () => writeRecord(BDF.ivshmem, '# nothing\n'), message: /it has no driver= line/},
      {name: 'a NUL byte', setup: () => writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n\0'), message: /holds a NUL byte/},
      {name: 'control characters', setup: () => writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\u001b[2J\n'), message: /control characters/},
      {name: 'an oversized file', setup: () => writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n' + '#'.repeat(5000)), message: /more than the 4096/},
      {
        name: 'a symlink',
        setup: () => {
          writeRecord('0000:00:09.0', 'driver=uio_pci_generic\n')
          fs.symlinkSync(rec('0000:00:09.0'), rec(BDF.ivshmem))
        },
        message: /it is a symbolic link/,
      },
      {
        name: 'a FIFO (never waited on)',
        setup: () => {
          writeRecord('0000:00:09.0', 'driver=uio_pci_generic\n')
          fs.rmSync(rec('0000:00:09.0'))
          execFileSync('mkfifo', ['-m', '0644', rec(BDF.ivshmem)])
        },
        message: /not a regular file/,
      },
      {
        name: 'a group-writable file',
        setup: () => {
          writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n')
          fs.chmodSync(rec(BDF.ivshmem), 0o664)
        },
        message: /writable by group or others \(mode 664\)/,
      },
      {
        name: 'a record directory that is a symlink',
        setup: () => {
          fs.mkdirSync(path.join(fx.root, 'elsewhere'), {mode: 0o755})
          fs.writeFileSync(path.join(fx.root, 'elsewhere', `${BDF.ivshmem}.conf`), 'driver=uio_pci_generic\n', {mode: 0o644})
          fs.mkdirSync(path.join(etc, 'iopmem'), {recursive: true})
          fs.symlinkSync(path.join(fx.root, 'elsewhere'), path.join(etc, 'iopmem/bind.d'))
        },
        message: /bind\.d: it is a symbolic link/,
      },
      {
        name: 'a world-writable record directory',
        setup: () => {
          writeRecord(BDF.ivshmem, 'driver=uio_pci_generic\n')
          fs.chmodSync(path.dirname(rec(BDF.ivshmem)), 0o777)
        },
        message: /writable by group or others \(mode 777\)/,
      },
    ]
    for (const c of cases) {
      it(`${c.name}: apply exits 5 naming the file, and list reports it`, async () => {
        c.setup()
        const a = await run(['persist', 'apply', BDF.ivshmem, '--json'])
        expect(a.exit, a.stdout).to.equal(5)
        expect(a.json.error.code).to.be.oneOf(['E_BAD_RECORD', 'E_ETC_DIR'])
        expect(a.json.error.message).to.match(c.message)
        expect(a.json.error.message).to.contain(etc)
        expect(core.log, 'nothing written to sysfs').to.deep.equal([])
        const l = await run(['persist', 'list', '--json'])
        if (l.exit === 0) {
          const mine = l.json.records.find((x: any) => x.bdf === BDF.ivshmem)
          expect(mine).to.deep.include({state: 'invalid', record: null})
          expect(mine.detail).to.match(c.message)
        } else expect(l.json.error.message).to.match(c.message)
      })
    }

    it('a malformed record is replaced by bind --persist (a regular root-owned file), a symlink in its place is not', async () => {
      writeRecord(BDF.ivshmem, 'garbage\n')
      expect((await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist'])).exit).to.equal(0)
      expect(fs.readFileSync(rec(BDF.ivshmem), 'utf8')).to.contain('driver=uio_pci_generic\n')
      const target = path.join(fx.root, 'target')
      fs.writeFileSync(target, 'keep\n')
      fs.rmSync(rec(BDF.nvmeCmb), {force: true})
      fs.symlinkSync(target, rec(BDF.nvmeCmb))
      const r = await run(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--persist', '--yes', '--json'])
      expect(r.exit).to.equal(5)
      expect(r.json.error.message).to.contain('it is a symbolic link')
      expect(fx.currentDriver(BDF.nvmeCmb), 'refused before the bind').to.equal('nvme')
      expect(fs.readFileSync(target, 'utf8')).to.equal('keep\n')
    })

    it('a rules file in the rule\'s place that is not iopmem\'s is never overwritten (refused before the bind)', async () => {
      fs.mkdirSync(path.dirname(rule()), {recursive: true})
      fs.writeFileSync(rule(), 'ACTION=="add", RUN+="/usr/local/bin/mine"\n')
      const r = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'])
      expect(r.exit).to.equal(5)
      expect(r.json.error.code).to.equal('E_RULE_FOREIGN')
      expect(core.log).to.deep.equal([])
      expect(fs.readFileSync(rule(), 'utf8')).to.equal('ACTION=="add", RUN+="/usr/local/bin/mine"\n')
    })
  })

  describe('interrupted writes', () => {
    it('a temporary file a killed write left is ignored (the old record stands), listed, and removed by the next write', async () => {
      writeRecord(BDF.nvmeCmb, 'driver=uio_pci_generic\n')
      const temp = path.join(etc, 'iopmem/bind.d', `.${BDF.nvmeCmb}.conf.tmp-4242`)
      fs.writeFileSync(temp, 'driver=vfio-p')
      const l = await run(['persist', 'list', '--json'])
      expect(l.json.records).to.have.length(1)
      expect(l.json.records[0]).to.deep.include({bdf: BDF.nvmeCmb, record: {bdf: BDF.nvmeCmb, driver: 'uio_pci_generic'}})
      expect(l.json.leftovers).to.deep.equal([temp])
      expect((await run(['persist', 'list'])).stdout).to.contain(`note: ${temp} is a temporary file an interrupted write left`)
      const a = await run(['persist', 'apply', BDF.nvmeCmb, '--json'])
      expect(a.json, a.stdout).to.deep.include({outcome: 'applied'})
      expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('uio_pci_generic')
      const b = await run(['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--persist', '--yes'])
      expect(b.exit, b.stderr).to.equal(0)
      expect(fs.existsSync(temp)).to.equal(false)
      expect(fs.readFileSync(rec(BDF.nvmeCmb), 'utf8')).to.contain('driver=vfio-pci\n')
    })

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      it(`${signal} during the bind rolls it back and leaves the old record as it was (child process, exit 130)`, async () => {
        writeRecord(BDF.nvmeCmb, 'driver=uio_pci_generic\n')
        const old = fs.readFileSync(rec(BDF.nvmeCmb), 'utf8')
        // 1 driver_override, 2 nvme/unbind, 3 vfio-pci/bind
        const child = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--persist', '--yes', '--json'], {pauseAt: 2})
        const r = await interruptAtPause(child, signal)
        expect(r.exit, r.stderr).to.equal(130)
        expect(r.json, r.stdout).to.include({interrupted: true, rolledBack: true, driver: 'nvme'})
        expect(r.json.persist).to.equal(undefined)
        expect(fs.readFileSync(rec(BDF.nvmeCmb), 'utf8')).to.equal(old)
        expect(fs.readdirSync(path.dirname(rec(BDF.nvmeCmb)))).to.deep.equal([`${BDF.nvmeCmb}.conf`])
        expect(fs.existsSync(rule())).to.equal(false)
      })
    }
  })

  it('SIGHUP during the last write of the bind: the bind is complete, nothing is recorded, and it says so (exit 130)', async () => {
    const child = startCli(fx, 'standard', ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--persist', '--yes'], {pauseAt: 3})
    const r = await interruptAtPause(child, 'SIGHUP')
    expect(r.exit, r.stderr).to.equal(130)
    expect(r.stderr).to.contain('Interrupted (SIGHUP) after the last step; the change is complete: 0000:03:00.0 is bound to vfio-pci, driver_override vfio-pci. Nothing was recorded.')
    expect(fx.currentDriver(BDF.nvmeCmb)).to.equal('vfio-pci')
    expect(fs.existsSync(rec(BDF.nvmeCmb))).to.equal(false)
  })

  it('as a normal user on fixture roots bind --persist is refused before anything (not root)', async () => {
    const r = await cli(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--json'], fx, {writer: core, uid: 1000})
    expect(r.exit).to.equal(4)
    expect(fs.existsSync(path.join(etc, 'iopmem'))).to.equal(false)
  })
})
