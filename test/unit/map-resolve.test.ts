/**
 * Target resolution for `iopmem map` on fixture trees: which file, which
 * mode and why, and the refusals that come before anything is mapped.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {IopmemError} from '../../src/lib/sys/errors.js'
import {type MapNative, parseBarIndex, resolveTarget, type TargetSpec} from '../../src/lib/map/target.js'
import type {StatxResult} from '../../src/native/types.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'

/** A fake addon whose statx says DAX for files named *.dax. */
const fakeNative = (): MapNative => ({
  map: () => {
    throw new Error('resolution must not map')
  },
  statx: (p: string) => ({size: fs.statSync(p).size, dax: p.endsWith('.dax')}) as StatxResult,
  constants: {pageSize: 4096},
})

function rejects(fn: () => unknown, code: string, exit: number, message?: RegExp): IopmemError {
  try {
    fn()
  } catch (error) {
    const e = error as IopmemError
    expect(e, String(error)).to.be.instanceOf(IopmemError)
    expect(e.code, e.message).to.equal(code)
    expect(e.exit, e.message).to.equal(exit)
    if (message) expect(e.message).to.match(message)
    return e
  }
  expect.fail(`expected ${code}`)
}

describe('map: target resolution', () => {
  const fx = standardMachine()
  // A function with every awkward BAR: IO, disabled, unassigned, prefetchable without _wc.
  fx.add({
    bdf: '0000:00:07.0',
    vendor: 0x10ee,
    device: 0x9038,
    class: 0x058000,
    bars: [
      {index: 0, start: 0xfe000000, size: 1 * MiB},
      {index: 1, start: 0xc100, size: 64, io: true},
      {index: 2, start: 0xd0000000, size: 256 * MiB, prefetch: true, disabled: true},
      {index: 3, start: 0, size: 512 * MiB, prefetch: true, unset: true},
      {index: 4, start: 0xe0000000, size: 32 * MiB, prefetch: true, wc: false},
    ],
  })
  const host = fx.host()
  const resolve = (spec: TargetSpec) => resolveTarget(host, spec, fakeNative)
  after(() => fx.cleanup())

  it('a BDF maps its largest memory BAR, write-combining when it is prefetchable and _wc exists', () => {
    const r = resolve({target: '00:04.0'})
    expect(r).to.include({backend: 'bar', bdf: BDF.ivshmem, mode: 'wc', modeAsked: 'auto', length: 64 * MiB, physStart: '0x0000000800000000'})
    expect(r.path).to.equal('/sys/devices/pci0000:00/0000:00:04.0/resource2_wc')
    expect(r.file.startsWith(fx.sys)).to.equal(true)
    expect(r.why).to.match(/prefetchable.*resource2_wc/)
    expect(r.bar).to.include({index: 2, name: 'BAR2', prefetchable: true, busStart: '0x0000000800000000'})
    expect(r.strategies.copyIn[0]).to.equal('stream-store')
    expect(r.ucFile).to.match(/resource2$/)
  })

  it('--cache uc and non-prefetchable BARs map resourceN, uncached', () => {
    const uc = resolve({target: BDF.ivshmem, mode: 'uc'})
    expect(uc).to.include({mode: 'uc'})
    expect(uc.path).to.match(/resource2$/)
    expect(uc.why).to.match(/^asked/)
    const bar0 = resolve({target: BDF.ivshmem, bar: '0'})
    expect(bar0).to.include({mode: 'uc', length: 256})
    expect(bar0.why).to.match(/not prefetchable/)
    expect(resolve({target: BDF.ivshmem, bar: 'BAR0'}).bar?.index).to.equal(0)
  })

  it('a prefetchable BAR without _wc maps uc under auto and says so; wc is refused', () => {
    const r = resolve({target: '00:07.0', bar: '4'})
    expect(r.mode).to.equal('uc')
    expect(r.why).to.match(/prefetchable but this kernel\/architecture offers no resource4_wc/)
    rejects(() => resolve({target: '00:07.0', bar: '4', mode: 'wc'}), 'E_WC_UNAVAILABLE', 7, /no resource4_wc/)
  })

  it('the default BAR skips disabled and unassigned ones', () => {
    // BAR3 (512 MiB, unset) and BAR2 (256 MiB, disabled) are larger, but unusable.
    expect(resolve({target: '00:07.0'}).bar?.index).to.equal(4)
  })

  it('refuses I/O, disabled, unassigned and missing BARs before mapping', () => {
    rejects(() => resolve({target: '00:07.0', bar: '1'}), 'E_BAR_IO', 7, /I\/O port BAR/)
    rejects(() => resolve({target: '00:07.0', bar: '2'}), 'E_BAR_DISABLED', 7, /disabled/)
    rejects(() => resolve({target: '00:07.0', bar: '3'}), 'E_BAR_UNASSIGNED', 7, /could not assign/)
    rejects(() => resolve({target: '00:07.0', bar: '5'}), 'E_NO_BAR', 3, /has no BAR5.*BAR0 \(1 MiB\)/)
    rejects(() => resolve({target: BDF.hostBridge}), 'E_NO_MEM_BAR', 3)
    rejects(() => resolve({target: BDF.nic, bar: '2'}), 'E_BAR_IO', 7)
  })

  it('wc of a non-prefetchable BAR, and wb/wt of any BAR, say why and what would give them', () => {
    const e = rejects(() => resolve({target: BDF.ivshmem, bar: '0', mode: 'wc'}), 'E_WC_NOT_PREFETCHABLE', 7, /BAR0 of 0000:00:04.0 is not prefetchable/)
    expect(e.suggestions.join(' ')).to.match(/--cache uc/)
    for (const mode of ['wb', 'wt'] as const) {
      const w = rejects(() => resolve({target: BDF.ivshmem, mode}), 'E_MODE_NEEDS_DRIVER', 7, /kernel driver/)
      expect(w.suggestions.join(' ')).to.match(/iopmem bind 0000:00:04.0.*blockdax mode with --cache wb.*mkfs-dax/)
    }
  })

  it('warns when a driver owns the BAR and when the device is not enabled', () => {
    const cmb = resolve({target: BDF.nvmeCmb, bar: '2'})
    expect(cmb.warnings.join(' ')).to.match(/bound to nvme.*queues in the CMB.*--p2pmem/)
    const f2 = new SysfsFixture()
    try {
      f2.add({bdf: '0000:05:00.0', vendor: 0x1af4, device: 0x1110, class: 0x050000, bars: [{index: 2, start: 0xd0000000, size: MiB, prefetch: true}]})
      const dir = f2.fnDir('0000:05:00.0')
      fs.writeFileSync(path.join(dir, 'enable'), '0\n')
      expect(resolveTarget(f2.host(), {target: '05:00.0'}, fakeNative).warnings.join(' ')).to.match(/not enabled \(enable = 0\): memory decoding may be off/)
      const cfg = fs.readFileSync(path.join(dir, 'config'))
      cfg.writeUInt16LE(0x0004, 4) // bus master only: Memory Space off
      fs.writeFileSync(path.join(dir, 'config'), cfg)
      expect(resolveTarget(f2.host(), {target: '05:00.0'}, fakeNative).warnings.join(' ')).to.match(/Memory Space off: reads return all ones/)
    } finally {
      f2.cleanup()
    }
  })

  it('sysfs resource paths mean their BDF and BAR; the file decides the mode', () => {
    const wc = resolve({target: '/sys/bus/pci/devices/0000:00:04.0/resource2_wc'})
    expect(wc).to.include({backend: 'bar', mode: 'wc', bdf: BDF.ivshmem})
    const uc = resolve({target: '/sys/devices/pci0000:00/0000:00:04.0/resource2'})
    expect(uc).to.include({mode: 'uc'})
    expect(uc.bar?.index).to.equal(2)
    rejects(() => resolve({target: '/sys/bus/pci/devices/0000:00:04.0/resource2', mode: 'wc'}), 'E_FLAG_COMBO', 2, /contradicts/)
    rejects(() => resolve({target: '/sys/bus/pci/devices/0000:00:04.0/resource2', bar: '0'}), 'E_FLAG_COMBO', 2)
  })

  it('a BAR reached any other way (a /sys/class link, a relative path, a link of one\'s own) is the BAR, with the BAR checks', () => {
    // /sys/class/nvme/nvme0 -> the controller under the function; its `device` -> the function.
    const ctrl = path.join(fx.fnDir(BDF.nvmeCmb), 'nvme', 'nvme0')
    fs.mkdirSync(path.join(fx.sys, 'class/nvme'), {recursive: true})
    fs.symlinkSync(path.relative(path.join(fx.sys, 'class/nvme'), ctrl), path.join(fx.sys, 'class/nvme/nvme0'))
    fs.symlinkSync('../..', path.join(ctrl, 'device'))
    const viaClass = resolve({target: '/sys/class/nvme/nvme0/device/resource2'})
    expect(viaClass).to.include({backend: 'bar', bdf: BDF.nvmeCmb, mode: 'uc'})
    expect(viaClass.warnings.join(' ')).to.match(/bound to nvme, which owns this memory/)
    const own = path.join(fx.root, 'my-bar')
    fs.symlinkSync(path.join(fx.fnDir(BDF.nvmeCmb), 'resource2_wc'), own)
    expect(resolve({target: own})).to.include({backend: 'bar', bdf: BDF.nvmeCmb, mode: 'wc'})
    const cwd = process.cwd()
    try {
      process.chdir(fx.fnDir(BDF.nvmeCmb))
      for (const rel of ['resource2', './resource2', '../0000:03:00.0/resource2']) {
        const r = resolve({target: rel})
        expect(r, rel).to.include({backend: 'bar', bdf: BDF.nvmeCmb})
        expect(r.warnings.join(' '), rel).to.match(/bound to nvme/)
      }
      // Another sysfs file is no memory to map: refused at once.
      rejects(() => resolve({target: 'config'}), 'E_TARGET_KIND', 2, /a sysfs attribute/)
    } finally {
      process.chdir(cwd)
    }
  })

  it('--p2pmem maps p2pmem/allocate: page-rounded, uc only, checked against the pool', () => {
    const r = resolve({target: BDF.nvmeCmb, p2pmem: '5000'})
    expect(r).to.include({backend: 'p2pmem', mode: 'uc', length: 8192, offset: 0})
    expect(r.path).to.match(/0000:03:00\.0\/p2pmem\/allocate$/)
    expect(r.notes.join(' ')).to.match(/rounded up to 8 KiB/).and.match(/EREMOTEIO/)
    expect(r.why).to.match(/kernel maps p2pmem/)
    expect(resolve({target: BDF.nvmeCmb, p2pmem: '1M', mode: 'uc'}).length).to.equal(MiB)
    rejects(() => resolve({target: BDF.nvmeCmb, p2pmem: '1M', mode: 'wc'}), 'E_MODE_UNAVAILABLE', 7, /kernel.*chooses/)
    rejects(() => resolve({target: BDF.nvmeCmb, p2pmem: '128M'}), 'E_P2PMEM_SIZE', 2, /larger than .* whole p2pmem pool/)
    rejects(() => resolve({target: BDF.nvmeCmb, p2pmem: '0'}), 'E_SIZE_RANGE', 2)
    rejects(() => resolve({target: BDF.ivshmem, p2pmem: '1M'}), 'E_NO_P2PMEM', 7, /has no p2pmem/)
    rejects(() => resolve({target: BDF.nvmeCmb, p2pmem: '1M', bar: '2'}), 'E_FLAG_COMBO', 2)
  })

  it('p2pmem: asking more than is available is refused with what is left', () => {
    const f2 = new SysfsFixture()
    try {
      f2.add({bdf: '0000:06:00.0', vendor: 0x1b36, device: 0x10, class: 0x010802, bars: [{index: 2, start: 0xd0000000, size: 8 * MiB, prefetch: true}], p2pmem: {size: 8 * MiB, available: MiB}})
      rejects(() => resolveTarget(f2.host(), {target: '06:00.0', p2pmem: '2M'}, fakeNative), 'E_P2PMEM_EXHAUSTED', 6, /1 MiB \(1048576 bytes\) of 8 MiB available/)
    } finally {
      f2.cleanup()
    }
  })

  it('device-dax: /dev/daxX.Y through the dev root, write-back, whole multiples of align', () => {
    const f2 = new SysfsFixture()
    try {
      f2.add({bdf: '0000:08:00.0', vendor: 0x1de5, device: 0x1, class: 0x058000, bars: [{index: 0, start: 0xd0000000, size: 64 * MiB, prefetch: true}], dax: ['dax0.0']})
      const sysDir = path.join(f2.fnDir('0000:08:00.0'), 'dax', 'dax0.0')
      fs.writeFileSync(path.join(sysDir, 'size'), `${64 * MiB}\n`)
      fs.writeFileSync(path.join(sysDir, 'align'), `${2 * MiB}\n`)
      fs.writeFileSync(path.join(sysDir, 'resource'), '0xd0000000\n')
      const r = resolveTarget(f2.host(), {target: '/dev/dax0.0'}, fakeNative)
      expect(r).to.include({backend: 'devdax', mode: 'wb', length: 64 * MiB, path: '/dev/dax0.0', physStart: '0x00000000d0000000'})
      expect(r.strategies.copyIn[0]).to.equal('memcpy')
      rejects(() => resolveTarget(f2.host(), {target: '/dev/dax0.0', mode: 'uc'}, fakeNative), 'E_MODE_UNAVAILABLE', 7, /write-back/)
      fs.writeFileSync(path.join(sysDir, 'size'), '0\n')
      rejects(() => resolveTarget(f2.host(), {target: '/dev/dax0.0'}, fakeNative), 'E_EMPTY', 7)
    } finally {
      f2.cleanup()
    }
  })

  it('files: DAX files map write-back; a page-cache file is refused unless allowed', () => {
    const dir = fs.mkdtempSync(path.join(fx.root, 'files-'))
    const dax = path.join(dir, 'data.dax')
    const plain = path.join(dir, 'data.bin')
    fs.writeFileSync(dax, Buffer.alloc(8192))
    fs.writeFileSync(plain, Buffer.alloc(4096))
    const r = resolve({target: dax})
    expect(r).to.include({backend: 'fsdax', mode: 'wb', length: 8192, path: dax})
    expect(r.notes.join(' ')).to.match(/iopmem locate/)
    const e = rejects(() => resolve({target: plain}), 'E_NOT_DAX', 7, /not a DAX file.*page cache/)
    expect(e.suggestions.join(' ')).to.match(/mkfs-dax/)
    const p = resolve({target: plain, allowPageCache: true})
    expect(p).to.include({backend: 'file', mode: 'wb'})
    expect(p.warnings.join(' ')).to.match(/page-cache RAM/)
    rejects(() => resolve({target: dax, mode: 'wc'}), 'E_MODE_UNAVAILABLE', 7)
    rejects(() => resolve({target: dir}), 'E_TARGET_KIND', 2, /directory/)
    rejects(() => resolve({target: path.join(dir, 'nope')}), 'E_NO_TARGET', 3)
    fs.writeFileSync(path.join(dir, 'empty.dax'), '')
    rejects(() => resolve({target: path.join(dir, 'empty.dax')}), 'E_EMPTY', 2)
    rejects(() => resolve({target: dax, bar: '2'}), 'E_FLAG_COMBO', 2)
    rejects(() => resolve({target: dax, p2pmem: '1M'}), 'E_FLAG_COMBO', 2)
  })

  it('malformed targets and flags', () => {
    rejects(() => resolve({target: 'zz:00.0'}), 'E_BDF_SYNTAX', 2)
    rejects(() => resolve({target: 'nonsense'}), 'E_NO_TARGET', 2, /neither a PCI address/)
    rejects(() => resolve({target: '0000:42:00.0'}), 'E_NO_DEVICE', 3)
    rejects(() => resolve({target: BDF.ivshmem, bar: '6'}), 'E_BAR_SYNTAX', 2)
    rejects(() => resolve({target: BDF.ivshmem, bar: 'x'}), 'E_BAR_SYNTAX', 2)
    expect(parseBarIndex('bar5')).to.equal(5)
  })
})
