/**
 * Host.readMany and the scan's read-ahead: the addon's bulk reader answers as
 * the single Host calls do, kind by kind (with the failures the single calls
 * turn into undefined, [] or false), and a scan through it gives the very
 * model a file-by-file scan gives, on every fixture machine the suite has.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {bulkReader, loadNative} from '../../src/native/index.js'
import {isBdfName} from '../../src/lib/pci/bdf.js'
import {nearestPciAncestor, PciScanner} from '../../src/lib/pci/sysfs.js'
import {Host, joinUnder, resolveLinkTarget, setBulkReader, type SysRead} from '../../src/lib/sys/host.js'
import {BDF, largeMachine, standardMachine} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {skylakeMachine, topoMachine, xeonE5Machine} from '../helpers/topo-machines.js'

describe('Host.readMany and the bulk reader', () => {
  let dir: string
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-readmany-'))
    fs.writeFileSync(path.join(dir, 'small'), 'hello\n')
    fs.writeFileSync(path.join(dir, 'bad-utf8'), Buffer.from([0x61, 0xff, 0x62]))
    fs.writeFileSync(path.join(dir, 'big'), 'x'.repeat(40_000))
    fs.writeFileSync(path.join(dir, 'bytes'), Buffer.from([0, 1, 2, 3, 4, 5, 6, 7]))
    fs.symlinkSync('../somewhere/else', path.join(dir, 'link'))
    fs.mkdirSync(path.join(dir, 'sub'))
    for (const n of ['b', 'a', 'c']) fs.writeFileSync(path.join(dir, 'sub', n), n)
    execFileSync('mkfifo', [path.join(dir, 'fifo')])
  })
  after(() => {
    setBulkReader(undefined)
    fs.rmSync(dir, {recursive: true, force: true})
  })

  const requests = (): SysRead[] => [
    {kind: 'text', path: path.join(dir, 'small')},
    {kind: 'text', path: path.join(dir, 'bad-utf8')},
    {kind: 'text', path: path.join(dir, 'big')}, // fills the bulk reader's buffer: read again, whole (checked below)
    {kind: 'text', path: path.join(dir, 'missing')},
    {kind: 'text', path: path.join(dir, 'sub')}, // EISDIR
    {kind: 'bytes', path: path.join(dir, 'bytes'), length: 4},
    {kind: 'bytes', path: path.join(dir, 'bytes'), length: 64},
    {kind: 'bytes', path: path.join(dir, 'missing'), length: 4},
    {kind: 'link', path: path.join(dir, 'link')},
    {kind: 'link', path: path.join(dir, 'small')}, // EINVAL: not a link
    {kind: 'list', path: path.join(dir, 'sub')},
    {kind: 'list', path: path.join(dir, 'missing')},
    {kind: 'exists', path: path.join(dir, 'link')}, // a dangling link exists (lstat)
    {kind: 'exists', path: path.join(dir, 'missing')},
  ]

  it('answers each kind as the single Host call does, failures included', () => {
    const host = new Host()
    setBulkReader(undefined)
    const single = host.readMany(requests())
    setBulkReader(bulkReader)
    const bulk = host.readMany(requests())
    expect(bulk.length).to.equal(single.length)
    for (const [i, a] of bulk.entries()) expect(a, `request ${i}`).to.deep.equal(single[i])
    expect(single[2] === 'x'.repeat(40_000), 'the big file whole').to.equal(true)
    expect([...single.slice(0, 2), ...single.slice(3)]).to.deep.equal([
      'hello\n',
      'a\uFFFDb',
      undefined,
      undefined,
      Buffer.from([0, 1, 2, 3]),
      Buffer.from([0, 1, 2, 3, 4, 5, 6, 7]),
      undefined,
      '../somewhere/else',
      undefined,
      ['a', 'b', 'c'],
      [],
      true,
      false,
    ])
  })

  it('readManyAsync answers as readMany, on other threads: the raw answers, and Host.readManyAsync as readMany', async () => {
    const raw = loadNative().raw
    const n = 3000
    const kinds = Uint8Array.from({length: n}, (_, i) => i % 5)
    const paths = Array.from({length: n}, (_, i) => path.join(dir, ['small', 'bytes', 'link', 'sub', 'missing'][i % 5]))
    const sizes = new Uint32Array(n).fill(16)
    const pending = raw.readManyAsync(kinds, paths, sizes)
    expect(pending).to.be.instanceOf(Promise)
    expect(await pending).to.deep.equal(raw.readMany(kinds, paths, sizes))
    setBulkReader(bulkReader)
    const host = new Host()
    expect(await host.readManyAsync(requests())).to.deep.equal(host.readMany(requests()))
    setBulkReader(undefined)
    expect(await host.readManyAsync(requests())).to.deep.equal(host.readMany(requests()))
  })

  it('readManyAsync refuses bad input at once, before reading anything, as readMany does', () => {
    const raw = loadNative().raw
    expect(() => raw.readManyAsync(Uint8Array.of(0, 9), [path.join(dir, 'small'), '/'], Uint32Array.of(16, 16))).to.throw(TypeError, /kinds\[1\]/)
    expect(() => raw.readManyAsync(Uint8Array.of(0), [`${dir}/small\0x`], Uint32Array.of(16))).to.throw(/NUL/)
    expect(() => raw.readManyAsync(Uint8Array.of(0), ['/'], Uint32Array.of(0))).to.throw(RangeError)
  })

  it('keeps the order over thousands of requests on several threads', () => {
    const raw = loadNative().raw
    const n = 5000
    const paths = Array.from({length: n}, (_, i) => path.join(dir, i % 3 === 0 ? 'small' : i % 3 === 1 ? 'missing' : 'bytes'))
    const got = raw.readMany(new Uint8Array(n), paths, new Uint32Array(n).fill(16))
    expect(got).to.have.length(n)
    for (let i = 0; i < n; i++) {
      const want = i % 3 === 0 ? 'hello\n' : i % 3 === 1 ? -2 : '\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007'
      if (got[i] !== want) expect.fail(`answer ${i}: ${JSON.stringify(got[i])}, want ${JSON.stringify(want)}`)
    }
  })

  it('a batch the addon refuses (a path longer than it takes) is read file by file instead', () => {
    setBulkReader(bulkReader)
    const long = path.join(dir, 'x'.repeat(70_000))
    const got = new Host().readMany([{kind: 'text', path: path.join(dir, 'small')}, {kind: 'text', path: long}, {kind: 'exists', path: long}])
    expect(got).to.deep.equal(['hello\n', undefined, false])
  })

  it('does not wait on a FIFO nobody writes to', () => {
    const raw = loadNative().raw
    // Opened O_NONBLOCK: an empty read at once (a blocking open would hang this test).
    expect(raw.readMany(Uint8Array.of(0), [path.join(dir, 'fifo')], Uint32Array.of(16))).to.deep.equal([''])
  })

  it('a text request that fills the buffer answers -EOVERFLOW', () => {
    const raw = loadNative().raw
    expect(raw.readMany(Uint8Array.of(0, 0), [path.join(dir, 'small'), path.join(dir, 'small')], Uint32Array.of(6, 7))).to.deep.equal([-75, 'hello\n'])
  })

  it('reads /proc files (served a page per read) whole, not by the bulk reader', () => {
    setBulkReader(bulkReader)
    const keep = Array.from({length: 64}, () => Buffer.allocUnsafeSlow(1 << 20))
    const [maps] = new Host().readMany([{kind: 'text', path: '/proc/self/maps'}]) as string[]
    expect(keep.length).to.equal(64)
    expect(maps.length).to.be.above(16384)
    expect(maps).to.contain('[stack]')
  })
})

describe('the scan reads ahead in bulk and gives the same model', () => {
  afterEach(() => setBulkReader(undefined))

  function vfMachine(): SysfsFixture {
    const fx = standardMachine()
    fx.add({bdf: '0000:05:00.0', vendor: 0x1af4, device: 0x1110, class: 0x050000, revision: 2, subsystemVendor: 0x1af4, subsystemDevice: 0x1100})
    fx.add({bdf: '0000:05:00.1', vendor: 0x8086, device: 0x154c, class: 0x020000, revision: 1})
    const vf = fx.fnDir('0000:05:00.1')
    const cfg = fs.readFileSync(path.join(vf, 'config'))
    cfg.writeUInt32LE(0xffffffff, 0)
    fs.writeFileSync(path.join(vf, 'config'), cfg)
    fs.symlinkSync('../0000:05:00.0', path.join(vf, 'physfn'))
    return fx
  }

  const machines: Array<[string, () => SysfsFixture]> = [
    ['the standard machine (p2pmem, partitions, holders, IO BARs)', () => standardMachine()],
    ['a VF and a device with 64 bytes of config', () => vfMachine()],
    ['unprivileged config (64 bytes)', () => standardMachine({configSize: 64})],
    ['a switch topology', () => topoMachine()],
    ['a Skylake-SP root complex', () => skylakeMachine()],
    ['a Xeon E5 root complex', () => xeonE5Machine()],
    ['48 NVMe functions', () => largeMachine(48)],
  ]

  for (const [name, make] of machines) {
    it(name, () => {
      const fx = make()
      try {
        const host = fx.host()
        const one = new PciScanner(host)
        const byOne = one.listBdfs().map((b) => one.get(b))
        setBulkReader(undefined)
        const jsAhead = new PciScanner(host).scanAll()
        setBulkReader(bulkReader)
        const bulkAhead = new PciScanner(host).scanAll()
        expect(jsAhead).to.deep.equal(byOne)
        expect(bulkAhead).to.deep.equal(byOne)
        expect(byOne.length).to.be.above(0)
      } finally {
        fx.cleanup()
      }
    })
  }

  it('readAllAsync, fetching on the addon\'s threads, gives the model readAll gives, on each machine', async () => {
    for (const [name, make] of machines) {
      const fx = make()
      try {
        setBulkReader(bulkReader)
        const scanner = new PciScanner(fx.host())
        const bdfs = scanner.listBdfs()
        expect(await scanner.readAllAsync(bdfs), name).to.deep.equal(scanner.readAll(bdfs))
      } finally {
        fx.cleanup()
      }
    }
  })

  it('reads nothing file by file on a machine of NVMe functions: read() asks only for what was fetched', () => {
    const fx = largeMachine(16)
    try {
      const host = fx.host()
      const single: string[] = []
      for (const m of ['read', 'readBytes', 'readLink', 'list', 'exists'] as const) {
        const orig = host[m].bind(host) as (...a: unknown[]) => unknown
        ;(host as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
          single.push(`${m} ${String(a[0])}`)
          return orig(...a)
        }
      }
      setBulkReader(bulkReader)
      const fns = new PciScanner(host, {names: false}).scanAll()
      expect(fns).to.have.length(16)
      expect(fns.every((f) => f.blockDevices.length === 1)).to.equal(true)
      // listBdfs' one directory read is all that is left.
      expect(single).to.deep.equal([`list ${host.sys('bus/pci/devices')}`])
    } finally {
      fx.cleanup()
    }
  })

  it('each scan reads afresh: a driver unbound between two scans shows in the second', () => {
    const fx = standardMachine()
    try {
      const host = fx.host()
      setBulkReader(bulkReader)
      const before = new PciScanner(host).scanAll().find((f) => f.bdf === BDF.nvmePeer)!
      fs.rmSync(path.join(fx.fnDir(BDF.nvmePeer), 'driver'))
      const after = new PciScanner(host).scanAll().find((f) => f.bdf === BDF.nvmePeer)!
      expect(before.driver).to.equal('nvme')
      expect(after.driver).to.equal(null)
    } finally {
      fx.cleanup()
    }
  })
})

describe('resolveLinkTarget: a link resolved as path.resolve(dirname(link), target)', () => {
  it('agrees with path.resolve on sysfs links and on odd ones', () => {
    const cases: Array<[string, string]> = [
      ['/sys/bus/pci/devices/0000:03:00.0', '../../../devices/pci0000:00/0000:00:01.0/0000:03:00.0'],
      ['/sys/class/block/nvme0n1', '../../devices/pci0000:00/0000:00:02.0/nvme/nvme0/nvme0n1'],
      ['/sys/devices/x/driver', '../../../bus/pci/drivers/nvme'],
      ['/a/b', '../../../../../up-past-root'],
      ['/a/b', './c/./d//e/'],
      ['/a/b', '/abs/../olute'],
      ['/a//b/c', '../d'],
      ['/a/./b/c', '../d'],
      ['/a/b/../c', 'd'],
      ['/.hidden/x', '../y'],
      ['/a/b/', '../c'],
      ['relative/link', '../x'],
      ['/link', '..'],
      ['/a/link', ''],
    ]
    for (const [link, target] of cases) expect(resolveLinkTarget(link, target), `${link} → ${target}`).to.equal(path.resolve(path.dirname(link), target))
  })
})

describe('joinUnder: path.join(root, ...parts), joined plainly when nothing needs normalizing', () => {
  it('agrees with path.join on every combination of odd roots and segments', () => {
    const roots = ['/', '/sys', '/tmp/iopmem-fx-1/sys', 'rel', 'rel/', '', '.', './r', '/a/../b', '/a/./b', '//x']
    const segs = ['', '.', '..', 'bus/pci/devices', '0000:00:1f.0', '.hidden', '..x', '...', 'b/', '/c', 'a//b', 'x/./y', 'x/../y', '/']
    let n = 0
    for (const root of roots) {
      for (const a of segs) {
        expect(joinUnder(root, [a]), `${root} + ${a}`).to.equal(path.join(root, a))
        for (const b of segs) {
          expect(joinUnder(root, [a, b]), `${root} + ${a} + ${b}`).to.equal(path.join(root, a, b))
          n++
        }
      }
      expect(joinUnder(root, [])).to.equal(path.join(root))
    }
    expect(n).to.equal(roots.length * segs.length * segs.length)
  })
})

describe('nearestPciAncestor: the deepest PCI function directory of a path', () => {
  it('answers as walking up with path.dirname and path.basename does', () => {
    const byWalking = (p: string) => {
      for (let cur = p; cur !== path.dirname(cur); cur = path.dirname(cur)) if (isBdfName(path.basename(cur))) return cur
      return undefined
    }
    const cases = [
      '/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0/nvme/nvme0/nvme0n1',
      '/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0',
      '/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0/',
      '/sys/devices/pci0000:00/0000:00:01.0//0000:03:00.0/x',
      '/sys/devices/platform/ndbus0/region0/pfn0.1/block/pmem0',
      '/0000:00:00.0',
      '/',
      'rel/0000:03:00.0/x',
      '/tmp/fx/sys/devices/pci0000:08/0000:08:1f.0/block/nvme1n1/nvme1n1p2',
      '/a/./0000:01:00.0/b',
    ]
    for (const p of cases) expect(nearestPciAncestor(p), p).to.equal(byWalking(p))
  })
})
