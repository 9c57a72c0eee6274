/**
 * Why a mapping failed, in words: explainMapError on errno errors as the
 * addon throws them, and openMapping with a fake addon (PAT checks after the
 * mapping, p2pmem's physical address from pagemap). Fixture trees only.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {IopmemError} from '../../src/lib/sys/errors.js'
import {explainMapError, lockdownMode, type MapNative, openMapping, parsePatMemtypes, resolveTarget, type TargetSpec} from '../../src/lib/map/target.js'
import {NativeErrnoError} from '../../src/native/index.js'
import type {CachingMode, Mapping, MapOptions, StatxResult} from '../../src/native/types.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

const ERRNO = {EPERM: 1, ENOENT: 2, EACCES: 13, ENODEV: 19, EINVAL: 22, ENOMEM: 12, EREMOTEIO: 121} as const
const errno = (name: keyof typeof ERRNO, syscall = 'mmap', p = '/sys/x') => new NativeErrnoError(ERRNO[name], syscall, p, `strerror(${name})`)

interface FakeMapping extends Mapping {
  file: string
}

/** A fake addon: map() records what was asked and fails when told to. */
function fakeNative(fail?: (file: string, mode: CachingMode) => Error | undefined) {
  const calls: Array<{file: string; options: MapOptions}> = []
  const native: MapNative & {calls: typeof calls} = {
    calls,
    map(file: string, options: MapOptions = {}): Mapping {
      calls.push({file, options})
      const e = fail?.(file, options.mode ?? 'uc')
      if (e) throw e
      let mapped = true
      const m = {
        id: calls.length,
        base: 0x10000n,
        length: options.length ?? 0,
        offset: options.offset ?? 0,
        mode: options.mode ?? 'uc',
        path: file,
        file,
        writable: !options.readOnly,
        get mapped() {
          return mapped
        },
        sync: false,
        slot: calls.length,
        unmap() {
          const was = mapped
          mapped = false
          return was
        },
      }
      return m as unknown as FakeMapping
    },
    statx: (p: string) => ({size: fs.statSync(p).size, dax: false}) as StatxResult,
    constants: {pageSize: 4096},
  }
  return native
}

function expectError(fn: () => unknown, code: string, exit: number, message: RegExp): IopmemError {
  try {
    fn()
  } catch (error) {
    const e = error as IopmemError
    expect(e).to.be.instanceOf(IopmemError)
    expect(e.code, e.message).to.equal(code)
    expect(e.exit).to.equal(exit)
    expect(e.message).to.match(message)
    return e
  }
  expect.fail(`expected ${code}`)
}

describe('map: failures explained', () => {
  let fx: SysfsFixture
  const resolve = (spec: TargetSpec, uid = 0) => resolveTarget(fx.host({uid}), spec, () => fakeNative())
  const writeSys = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(fx.sys, rel)), {recursive: true})
    fs.writeFileSync(path.join(fx.sys, rel), text)
  }
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  it('EACCES/EPERM as a normal user: needs root', () => {
    const r = resolve({target: BDF.ivshmem})
    for (const name of ['EACCES', 'EPERM'] as const) {
      const e = explainMapError(fx.host({uid: 1000}), r, errno(name, 'open'))
      expect(e).to.include({code: 'E_NOT_ROOT', exit: 4, errno: ERRNO[name], syscall: 'open'})
      expect(e.message).to.match(/Mapping BAR2 of 0000:00:04.0 needs root: .*resource2_wc is readable and writable by root only/)
      expect(e.suggestions).to.deep.equal(['Run as root (sudo).'])
    }
  })

  it('EPERM under lockdown (integrity or confidentiality): Secure Boot, even for root', () => {
    const r = resolve({target: BDF.ivshmem})
    for (const mode of ['integrity', 'confidentiality']) {
      writeSys('kernel/security/lockdown', mode === 'integrity' ? 'none [integrity] confidentiality\n' : 'none integrity [confidentiality]\n')
      expect(lockdownMode(fx.host())).to.equal(mode)
      const e = explainMapError(fx.host(), r, errno('EPERM'))
      expect(e).to.include({code: 'E_LOCKDOWN', exit: 4})
      expect(e.message).to.match(new RegExp(`locked down \\(${mode}, usually because Secure Boot is on\\).*LOCKDOWN_PCI_ACCESS`))
      expect(e.details).to.deep.equal({lockdown: mode})
    }
    // Lockdown "none" with EPERM as root: something else is in the way.
    writeSys('kernel/security/lockdown', '[none] integrity confidentiality\n')
    const e = explainMapError(fx.host(), r, errno('EPERM'))
    expect(e).to.include({code: 'E_PERMISSION', exit: 4})
    expect(e.message).to.match(/although this runs as root/)
  })

  it('EINVAL with a driver bound: strict devmem, with unbind and iomem=relaxed', () => {
    const r = resolve({target: BDF.nvmeCmb, bar: '2', mode: 'uc'})
    const e = explainMapError(fx.host(), r, errno('EINVAL'))
    expect(e).to.include({code: 'E_DEVMEM_STRICT', exit: 6})
    expect(e.message).to.match(/claimed by its driver \(nvme\).*CONFIG_IO_STRICT_DEVMEM/)
    expect(e.suggestions.join(' ')).to.match(/iopmem unbind 0000:03:00.0.*iomem=relaxed/).and.match(/--p2pmem/)
  })

  it('EINVAL on wc with the range already uncached-minus in the PAT table: a PAT conflict', () => {
    writeSys(
      'kernel/debug/x86/pat_memtype_list',
      'PAT memtype list:\nPAT: [mem 0x00000000fd000000-0x00000000fe000000] write-combining\nPAT: [mem 0x0000000800000000-0x0000000800001000] uncached-minus\n',
    )
    const r = resolve({target: BDF.ivshmem, mode: 'wc'})
    const e = explainMapError(fx.host(), r, errno('EINVAL'))
    expect(e).to.include({code: 'E_PAT_CONFLICT', exit: 6})
    expect(e.message).to.match(/already mapped uncached-minus \[0x800000000-0x800001000\).*first mapping's memory type wins/)
    expect(e.details).to.include({existing: 'uncached-minus', asked: 'wc'})
    // Without PAT information and no driver: a plain refusal with where to look.
    fs.rmSync(path.join(fx.sys, 'kernel/debug'), {recursive: true})
    expect(explainMapError(fx.host(), r, errno('EINVAL')).code).to.equal('E_MAP_REFUSED')
  })

  it('parses pat_memtype_list', () => {
    expect(parsePatMemtypes('PAT: [mem 0x00000000fd000000-0x00000000fe000000] write-combining\nPAT: [mem 0x10-0x20] uncached-minus')).to.deep.equal([
      {start: 0xfd000000n, end: 0xfe000000n, type: 'write-combining'},
      {start: 0x10n, end: 0x20n, type: 'uncached-minus'},
    ])
  })

  it('p2pmem ENOMEM: exhausted, with what is available now', () => {
    const r = resolve({target: BDF.nvmeCmb, p2pmem: '1M'})
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmeCmb), 'p2pmem/available'), '65536\n')
    const e = explainMapError(fx.host(), r, errno('ENOMEM'))
    expect(e).to.include({code: 'E_P2PMEM_EXHAUSTED', exit: 6, errno: 12})
    expect(e.message).to.match(/cannot give 1 MiB: 64 KiB \(65536 bytes\) of .* available/)
    // Enough in total but no run that long: fragmentation.
    fs.writeFileSync(path.join(fx.fnDir(BDF.nvmeCmb), 'p2pmem/available'), `${4 * MiB}\n`)
    expect(explainMapError(fx.host(), r, errno('ENOMEM')).message).to.match(/fragmented/)
    expect(explainMapError(fx.host(), r, errno('ENODEV')).code).to.equal('E_NO_P2PMEM')
  })

  it('EREMOTEIO: buffered I/O cannot reach PCI memory; SIGBUS: the device stopped answering', () => {
    const r = resolve({target: BDF.nvmeCmb, p2pmem: '1M'})
    const e = explainMapError(fx.host(), r, errno('EREMOTEIO', 'read'))
    expect(e).to.include({code: 'EREMOTEIO', exit: 6})
    expect(e.message).to.match(/page cache cannot copy/)
    expect(e.suggestions.join(' ')).to.match(/O_DIRECT or io_uring/)
    const sigbus = Object.assign(new Error('SIGBUS'), {code: 'E_SIGBUS'})
    expect(explainMapError(fx.host(), resolve({target: BDF.ivshmem}), sigbus).message).to.match(/raised SIGBUS: the device stopped answering/)
  })

  it('ENOENT: the resource is gone; an explained error passes through', () => {
    const r = resolve({target: BDF.ivshmem})
    expect(explainMapError(fx.host(), r, errno('ENOENT', 'open'))).to.include({code: 'E_NO_TARGET', exit: 3})
    const already = new IopmemError('already said', {code: 'ERANGE', exit: 2})
    expect(explainMapError(fx.host(), r, already)).to.equal(already)
  })

  it('openMapping explains a failed map()', () => {
    const r = resolve({target: BDF.ivshmem}, 1000)
    const n = fakeNative(() => errno('EACCES', 'open'))
    expectError(() => openMapping(fx.host({uid: 1000}), n, r, {writable: false}), 'E_NOT_ROOT', 4, /needs root/)
  })

  it('openMapping maps the resolved file read-only or read-write, with the mode', () => {
    const r = resolve({target: BDF.ivshmem})
    const n = fakeNative()
    const o = openMapping(fx.host(), n, r, {writable: false})
    expect(n.calls[0].file).to.match(/resource2_wc$/)
    expect(n.calls[0].options).to.deep.include({offset: 0, length: 64 * MiB, mode: 'wc', readOnly: true})
    expect(o.facts).to.include({mode: 'wc', writable: false})
    openMapping(fx.host(), n, r, {writable: true})
    expect(n.calls[1].options.readOnly).to.equal(false)
  })

  it('PAT after mapping: confirms wc, remaps auto to uc when the range is uncached-minus, refuses an explicit wc', () => {
    const pat = (type: string) =>
      writeSys('kernel/debug/x86/pat_memtype_list', `PAT memtype list:\nPAT: [mem 0x0000000800000000-0x0000000804000000] ${type}\n`)
    pat('write-combining')
    let n = fakeNative()
    const ok = openMapping(fx.host(), n, resolve({target: BDF.ivshmem}), {writable: false})
    expect(ok.facts.mode).to.equal('wc')
    expect(ok.facts.notes.join(' ')).to.match(/PAT confirms write-combining/)

    pat('uncached-minus')
    n = fakeNative()
    const auto = openMapping(fx.host(), n, resolve({target: BDF.ivshmem}), {writable: false})
    expect(n.calls.map((c) => path.basename(c.file))).to.deep.equal(['resource2_wc', 'resource2'])
    expect(auto.mapping.mapped).to.equal(true)
    expect(auto.facts).to.include({mode: 'uc', modeAsked: 'auto'})
    expect(auto.facts.path).to.match(/resource2$/)
    expect(auto.facts.why).to.match(/already uncached-minus in the PAT table/)
    expect(auto.facts.strategies.copyIn[0]).to.equal('exact64')

    n = fakeNative()
    expectError(() => openMapping(fx.host(), n, resolve({target: BDF.ivshmem, mode: 'wc'}), {writable: false}), 'E_PAT_CONFLICT', 6, /would silently be uc/)
    // And the other way round: uc asked where another mapping holds the range WC.
    pat('write-combining')
    expectError(() => openMapping(fx.host(), fakeNative(), resolve({target: BDF.ivshmem, mode: 'uc'}), {writable: false}), 'E_PAT_CONFLICT', 6, /already mapped write-combining/)
  })

  it('p2pmem: the physical address of the chunk from pagemap (root), placed in its BAR', () => {
    // The fake mapping's base is 0x10000: pagemap entry 0x10 (offset 0x80): present, PFN of 0x880100000.
    const entry = Buffer.alloc(8)
    entry.writeBigUInt64LE((1n << 63n) | (0x880100000n / 4096n))
    fs.mkdirSync(path.join(fx.proc, 'self'), {recursive: true})
    const pm = path.join(fx.proc, 'self/pagemap')
    fs.writeFileSync(pm, Buffer.alloc(0x80))
    fs.appendFileSync(pm, entry)
    const o = openMapping(fx.host(), fakeNative(), resolve({target: BDF.nvmeCmb, p2pmem: '64K'}), {writable: true})
    expect(o.facts).to.include({physStart: '0x0000000880100000', busStart: '0x0000000880100000', mode: 'uc'})
    expect(o.facts.bar).to.include({name: 'BAR2'})
    expect(o.facts.notes.join(' ')).to.match(/offset 0x100000 of BAR2/)
  })
})
