/**
 * The head start of `iopmem list` (src/prefetch.ts, lib/pci/prefetch.ts): a
 * scan started before the command is taken by list only for the same host and
 * the same functions, once, and gives what list reads itself; bin/run.js's
 * whole process prints what the command prints in-process.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {listFunctions} from '../../src/lib/pci/list.js'
import {abandonPrefetch, prefetchScan, takePrefetched} from '../../src/lib/pci/prefetch.js'
import {PciScanner} from '../../src/lib/pci/sysfs.js'
import {type Host, setBulkReader, setHost} from '../../src/lib/sys/host.js'
import {bulkReader} from '../../src/native/index.js'
import {headStart} from '../../src/prefetch.js'
import {cli, cliProcess} from '../helpers/cli.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {BDF, largeMachine, standardMachine} from '../helpers/machines.js'

/** The host's readMany calls (a synchronous scan makes a few), counted. */
function counting(host: Host): {host: Host; syncReads: () => number} {
  let n = 0
  const orig = host.readMany.bind(host)
  host.readMany = (requests) => {
    n++
    return orig(requests)
  }
  return {host, syncReads: () => n}
}

describe('list\'s head start: a scan started before the command', () => {
  let fx: SysfsFixture
  beforeEach(() => {
    setBulkReader(bulkReader)
    fx = standardMachine()
  })
  afterEach(() => {
    abandonPrefetch() // nothing left started for the next test
    setBulkReader(undefined)
    setHost(undefined)
    fx.cleanup()
  })

  it('list takes it (no read of its own) and shows what it shows without one', async () => {
    const own = await listFunctions(fx.host(), {all: true})
    const {host, syncReads} = counting(fx.host())
    prefetchScan(host)
    const taken = await listFunctions(host, {all: true})
    expect(syncReads(), 'list read sysfs itself').to.equal(0)
    expect(taken).to.deep.equal(own)
    // Taken once: the next list reads afresh.
    await listFunctions(host, {all: true})
    expect(syncReads()).to.be.above(0)
  })

  it('a scan of another host (another object, even of the same root) is not taken', async () => {
    prefetchScan(fx.host())
    const {host, syncReads} = counting(fx.host())
    await listFunctions(host, {all: true})
    expect(syncReads()).to.be.above(0)
  })

  it('a scan of other functions (one appeared since) is not taken; the list shows the new one', async () => {
    const {host, syncReads} = counting(fx.host())
    prefetchScan(host)
    fx.add({bdf: '0000:09:00.0', vendor: 0x1b36, device: 0x0010, class: 0x010802, bars: [{index: 0, start: 0xfe000000, size: 0x4000}]})
    const r = await listFunctions(host, {all: true})
    expect(syncReads()).to.be.above(0)
    expect(r.functions.map((f) => f.bdf)).to.include('0000:09:00.0')
  })

  it('a scan that failed is not taken: list raises the error its own read raises', async () => {
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmePeer), 'resource'), '0x0000000000000000 0xffffffffffffffffff 0x0000000000040200\n')
    const own = await listFunctions(fx.host(), {all: true}).then(() => undefined, (e: Error) => e.message)
    expect(own).to.be.a('string')
    const host = fx.host()
    prefetchScan(host)
    const taken = await listFunctions(host, {all: true}).then(() => undefined, (e: Error) => e.message)
    expect(taken).to.equal(own)
  })

  it('an abandoned scan reads no further batch and builds no model; list of named functions abandons it', async () => {
    const {host, syncReads} = counting(fx.host())
    let asyncBatches = 0
    const orig = host.readManyAsync.bind(host)
    host.readManyAsync = (requests) => {
      asyncBatches++
      return orig(requests)
    }
    prefetchScan(host)
    abandonPrefetch()
    const bdfs = new PciScanner(host).listBdfs()
    expect(await takePrefetched(host, bdfs)).to.equal(undefined)
    // The first batch was on its way; the other two were never asked for.
    await new Promise((r) => setTimeout(r, 200))
    expect(asyncBatches).to.equal(1)
    const stop = new AbortController()
    stop.abort()
    let rejected: unknown
    await new PciScanner(host).readAllAsync(bdfs, stop.signal).catch((e: unknown) => (rejected = e))
    expect(rejected).to.be.instanceOf(Error)

    prefetchScan(host)
    const r = await listFunctions(host, {bdfs: [BDF.nvmePeer]})
    expect(r.functions.map((f) => f.bdf)).to.deep.equal([BDF.nvmePeer])
    await new Promise((r) => setTimeout(r, 200))
    expect(asyncBatches).to.equal(2)
    expect(syncReads()).to.equal(0)
  })

  it('headStart starts a scan of the process\'s host for list only, not for its help or another command', async () => {
    const host = fx.host()
    setHost(host)
    const bdfs = host.list(host.sys('bus/pci/devices'))
    for (const argv of [['list', '--help'], ['list', '-h'], ['topo'], [], ['lis']]) {
      headStart(argv)
      expect(await takePrefetched(host, bdfs), argv.join(' ')).to.equal(undefined)
    }
    headStart(['list', '--json'])
    expect(await takePrefetched(host, bdfs)).to.have.length(bdfs.length)
  })

  it('bin/run.js requires a built headStart (its try/catch would hide a path that went stale)', async () => {
    const bin = fs.readFileSync(path.join(import.meta.dirname, '../../bin/run.js'), 'utf8')
    const spec = /require\('(\.\.\/dist\/bundle\/prefetch\.cjs)'\)/.exec(bin)
    expect(spec, 'bin/run.js requires the head start').to.not.equal(null)
    const mod = (await import(path.join(import.meta.dirname, '../../bin', spec![1]))) as {headStart?: unknown; headStartEnd?: unknown}
    expect(mod.headStart).to.be.a('function')
    expect(mod.headStartEnd).to.be.a('function')
  })

  it('bin/run.js (with the head start) prints what the command prints in-process, every form of list, a usage error too', async function () {
    this.timeout(120_000)
    const large = largeMachine(24)
    try {
      const forms = [['list', '--json'], ['list', '--all', '--json'], ['list', '--tree', '--json'], ['list', '-s', '01:', '--json'], ['list', '--all', '--wide'], ['list', '0000:01:00.0', '--json'], ['list', '--bogus', '--json']]
      for (const args of forms) {
        const whole = cliProcess(args, large)
        const inProcess = await cli(args, large)
        expect(whole.exit, whole.stderr).to.equal(inProcess.exit)
        expect(whole.stdout, args.join(' ')).to.equal(inProcess.stdout)
      }
    } finally {
      large.cleanup()
    }
  })
})
