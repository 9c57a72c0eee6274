/**
 * `iopmem map` and `iopmem bench mmio` through runCommand against fixture
 * trees. The fixture's resourceN, resourceN_wc and p2pmem/allocate are
 * regular files, so every operation really runs through the addon against
 * them, and the bytes are checked in the files afterwards.
 */
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {roundRate} from '../../src/lib/sys/index.js'
import {cli, cliProcess, ROOT} from '../helpers/cli.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('iopmem map (fixture BARs are regular files)', () => {
  let fx: SysfsFixture
  const bar = (bdf: string, file: string) => path.join(fx.fnDir(bdf), file)
  const bytes = (file: string, off: number, n: number) => {
    const fd = fs.openSync(file, 'r')
    try {
      const b = Buffer.alloc(n)
      fs.readSync(fd, b, 0, n, off)
      return b
    } finally {
      fs.closeSync(fd)
    }
  }
  const put = (file: string, off: number, data: Buffer) => {
    const fd = fs.openSync(file, 'r+')
    try {
      fs.writeSync(fd, data, 0, data.length, off)
    } finally {
      fs.closeSync(fd)
    }
  }
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  it('with no operation and no terminal: the mapping facts, human and --json', async () => {
    const r = await cli(['map', '00:04.0'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/backend\s+bar\s+\(no driver\)/)
    expect(r.stdout).to.match(/path\s+\/sys\/devices\/pci0000:00\/0000:00:04\.0\/resource2_wc/)
    expect(r.stdout).to.match(/mode\s+wc write-combining\s+\(asked auto\)/)
    expect(r.stdout).to.match(/why\s+BAR2 is prefetchable/)
    expect(r.stdout).to.match(/CPU physical\s+0x0000000800000000/)
    const j = await cli(['map', '00:04.0', '--bar', '0', '--json'], fx)
    expect(j.exit).to.equal(0)
    expect(j.json.op).to.equal(null)
    expect(j.json.held).to.equal(null)
    expect(j.json.mapping).to.deep.include({
      target: '00:04.0',
      backend: 'bar',
      bdf: BDF.ivshmem,
      driver: null,
      mode: 'uc',
      modeAsked: 'auto',
      length: 256,
      offset: 0,
      writable: false,
      physStart: '0x00000000febd5000',
      path: '/sys/devices/pci0000:00/0000:00:04.0/resource0',
    })
    expect(j.json.mapping.why).to.match(/not prefetchable/)
    expect(j.json.mapping.strategies).to.deep.equal({copyIn: ['exact64', 'stream-store'], copyOut: ['stream-load', 'exact64']})
  })

  it('--write of every width lands exactly those bytes (uc → resource2, wc → resource2_wc)', async () => {
    const cases: Array<[string, string, string, Buffer]> = [
      ['8', '0x101', '0xa5', Buffer.from([0xa5])],
      ['16', '0x202', '0xbeef', Buffer.from([0xef, 0xbe])],
      ['32', '0x304', '0xdeadbeef', Buffer.from([0xef, 0xbe, 0xad, 0xde])],
      ['64', '0x408', '0x0102030405060708', Buffer.from([8, 7, 6, 5, 4, 3, 2, 1])],
    ]
    for (const mode of ['uc', 'wc']) {
      for (const [w, off, v, want] of cases) {
        const r = await cli(['map', BDF.ivshmem, '--bar', '2', '--cache', mode, '--write', off, '--value', v, '--width', w, '--yes'], fx)
        expect(r.exit, r.stderr).to.equal(0)
        expect(r.stdout).to.contain(`wrote 1 × ${w}-bit at ${off}`)
        const file = bar(BDF.ivshmem, mode === 'uc' ? 'resource2' : 'resource2_wc')
        expect(bytes(file, Number(off) - 1, want.length + 2).toString('hex'), `${mode} ${w}`).to.equal(`00${want.toString('hex')}00`)
      }
    }
    const many = await cli(['map', BDF.ivshmem, '--write', '0x1000', '--value', '1,2,0x30', '--width', '16', '--readback', '--yes', '--json'], fx)
    expect(many.json.op).to.deep.equal({kind: 'write', offset: 0x1000, width: 16, count: 3, values: ['0x0001', '0x0002', '0x0030'], readback: ['0x0001', '0x0002', '0x0030'], flush: null})
    expect(bytes(bar(BDF.ivshmem, 'resource2_wc'), 0x1000, 6).toString('hex')).to.equal('010002003000')
  })

  it('--read of every width reads the bytes that are there; --count reads on', async () => {
    put(bar(BDF.ivshmem, 'resource2'), 0x40, Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex'))
    const read = async (w: string, count = '1') => (await cli(['map', BDF.ivshmem, '--cache', 'uc', '--read', '0x40', '--width', w, '--count', count, '--json'], fx)).json.op.values
    expect(await read('8')).to.deep.equal(['0x01'])
    expect(await read('16')).to.deep.equal(['0x0201'])
    expect(await read('32', '2')).to.deep.equal(['0x04030201', '0x08070605'])
    expect(await read('64', '2')).to.deep.equal(['0x0807060504030201', '0x100f0e0d0c0b0a09'])
    const human = await cli(['map', BDF.ivshmem, '--cache', 'uc', '--read', '64', '--count', '6'], fx)
    expect(human.exit, human.stderr).to.equal(0)
    expect(human.stdout.trim().split('\n')).to.deep.equal(['0x00000040: 0x04030201 0x08070605 0x0c0b0a09 0x100f0e0d', '0x00000050: 0x00000000 0x00000000'])
    expect(human.stderr).to.match(/0000:00:04\.0 BAR2: 64 MiB uc/)
  })

  it('--dump hexdumps with exact-width reads', async () => {
    put(bar(BDF.ivshmem, 'resource0'), 0x10, Buffer.from('iopmem'))
    const r = await cli(['map', BDF.ivshmem, '--bar', '0', '--dump', '0x10', '--size', '32'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout.split('\n')[0]).to.equal('00000010  69 6f 70 6d 65 6d 00 00  00 00 00 00 00 00 00 00  |iopmem..........|')
    const j = await cli(['map', BDF.ivshmem, '--bar', '0', '--dump', '0x10', '--width', '8', '--json'], fx)
    expect(j.json.op).to.include({kind: 'dump', offset: 16, size: 240, width: 8})
    expect(j.json.op.hex.slice(0, 12)).to.equal(Buffer.from('iopmem').toString('hex'))
  })

  it('--fill then --verify with each strategy; the file holds the pattern; a mismatch is exit 8', async () => {
    const file = bar(BDF.ivshmem, 'resource2_wc')
    for (const strategy of ['stream-store', 'exact64']) {
      const f = await cli(['map', BDF.ivshmem, '--fill', 'u32:0xc0ffee00', '--offset', '4K', '--size', '64K', '--strategy', strategy, '--yes', '--json'], fx)
      expect(f.exit, f.stdout).to.equal(0)
      expect(f.json.op).to.include({kind: 'fill', offset: 4096, size: 65536, pattern: 'u32:0xc0ffee00', strategy, flush: null})
    }
    const want = Buffer.alloc(65536)
    for (let i = 0; i < want.length; i += 4) want.writeUInt32LE(0xc0ffee00, i)
    expect(bytes(file, 4096, 65536).equals(want)).to.equal(true)
    expect(bytes(file, 4092, 4).toString('hex')).to.equal('00000000')
    for (const strategy of ['stream-load', 'exact64']) {
      const v = await cli(['map', BDF.ivshmem, '--verify', 'u32:0xc0ffee00', '--offset', '0x1000', '--size', '0x10000', '--strategy', strategy, '--json'], fx)
      expect(v.exit, v.stdout).to.equal(0)
      expect(v.json.op).to.include({kind: 'verify', strategy, mismatches: 0})
    }
    put(file, 0x2001, Buffer.from([0x42]))
    const bad = await cli(['map', BDF.ivshmem, '--verify', 'u32:0xc0ffee00', '--offset', '4K', '--size', '64K', '--json'], fx)
    expect(bad.exit).to.equal(8)
    expect(bad.json.error).to.deep.include({code: 'E_VERIFY_MISMATCH', exit: 8})
    expect(bad.json.error.details).to.deep.include({mismatches: 1, first: [{offset: 0x2001, expected: '0xee', actual: '0x42'}]})
    const human = await cli(['map', BDF.ivshmem, '--verify', 'u32:0xc0ffee00', '--offset', '4K', '--size', '64K'], fx)
    expect(human.exit).to.equal(8)
    expect(human.stderr).to.match(/Verify failed: 1 of 65536 bytes .* first at 0x2001: expected 0xee, found 0x42/)
  })

  it('--copy-in puts a file at an offset, --copy-out takes it back', async () => {
    const data = Buffer.alloc(100_003)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff
    const src = path.join(fx.root, 'in.bin')
    const dst = path.join(fx.root, 'out.bin')
    fs.writeFileSync(src, data)
    const i = await cli(['map', BDF.ivshmem, '--copy-in', src, '--offset', '1M', '--yes', '--json'], fx)
    expect(i.exit, i.stdout).to.equal(0)
    expect(i.json.op).to.include({kind: 'copy-in', file: src, offset: MiB, size: data.length, strategy: 'stream-store'})
    expect(bytes(bar(BDF.ivshmem, 'resource2_wc'), MiB, data.length).equals(data)).to.equal(true)
    const o = await cli(['map', BDF.ivshmem, '--copy-out', dst, '--offset', '1M', '--size', String(data.length), '--strategy', 'exact64'], fx)
    expect(o.exit, o.stderr).to.equal(0)
    expect(o.stdout).to.match(/copied 97.7 KiB from 0x100000 to .*out\.bin \(exact64/)
    expect(fs.readFileSync(dst).equals(data)).to.equal(true)
    const part = await cli(['map', BDF.ivshmem, '--copy-in', src, '--size', '10', '--yes', '--json'], fx)
    expect(part.json.op.size).to.equal(10)
  })

  it('--p2pmem maps p2pmem/allocate at offset 0, page-rounded, uncached', async () => {
    const alloc = path.join(fx.fnDir(BDF.nvmeCmb), 'p2pmem/allocate')
    fs.truncateSync(alloc, 4 * MiB)
    const r = await cli(['map', BDF.nvmeCmb, '--p2pmem', '100K', '--fill', 'addr', '--yes', '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    expect(r.json.mapping).to.deep.include({backend: 'p2pmem', mode: 'uc', length: 102400, offset: 0, driver: 'nvme', writable: true})
    expect(r.json.mapping.p2pmem).to.deep.equal({size: 64 * MiB - 128 * 1024, available: 64 * MiB - 128 * 1024, published: true})
    expect(r.json.op).to.include({strategy: 'exact64', size: 102400})
    const b = bytes(alloc, 0, 102400)
    expect(b.readBigUInt64LE(0x1000)).to.equal(0x1000n)
    expect(b.readBigUInt64LE(102392)).to.equal(102392n)
    const facts = await cli(['map', BDF.nvmeCmb, '--p2pmem', '4K'], fx)
    expect(facts.stdout).to.match(/p2pmem pool\s+63.9 MiB available/)
    expect(facts.stdout).to.match(/EREMOTEIO/)
  })

  it('--hold keeps the mapping, then releases it; it may follow an operation', async () => {
    const r = await cli(['map', BDF.ivshmem, '--hold', '0.3', '--json'], fx)
    expect(r.exit).to.equal(0)
    expect(r.json.held).to.be.at.least(0.29)
    const w = await cli(['map', BDF.ivshmem, '--write', '0', '--value', '7', '--hold', '0.1', '--yes', '--json'], fx)
    expect(w.json.op.kind).to.equal('write')
    expect(w.json.held).to.be.at.least(0.09)
  })

  it('--hold 0 keeps the mapping through garbage collections until SIGTERM', async function () {
    // The child collects garbage every 20 ms. A hold that left the mapping
    // reachable only from a suspended async frame lost it to the Mapping's
    // finalizer while still saying "holding" (seen in the guest suite).
    this.timeout(20_000)
    const gcEvery = 'data:text/javascript,setInterval(()=>globalThis.gc(),20).unref()'
    const child = spawn(process.execPath, ['--expose-gc', '--import', gcEvery, path.join(ROOT, 'bin/run.js'), 'map', BDF.ivshmem, '--bar', '2', '--cache', 'uc', '--hold', '0'], {
      env: {...process.env, NO_COLOR: '1', CI: '1', ...fx.env()},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const ended = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig === 'SIGTERM' ? 143 : null))))
    try {
      for (let i = 0; i < 200 && !err.includes('holding'); i++) await sleep(50)
      expect(err, 'the holder says it holds').to.contain('holding the mapping')
      const mapped = () => fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8').split('\n').filter((l) => l.endsWith(bar(BDF.ivshmem, 'resource2'))).length
      expect(mapped(), 'mapped when it says holding').to.equal(1)
      await sleep(500) // 25 collections
      expect(mapped(), 'still mapped after the collections').to.equal(1)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await ended, err).to.equal(143)
  })

  it('a warning names the driver that owns a BAR', async () => {
    const r = await cli(['map', BDF.nvmeCmb, '--bar', '2', '--read', '0'], fx)
    expect(r.exit).to.equal(0)
    expect(r.stderr).to.match(/warning: 0000:03:00.0 is bound to nvme/)
  })

  it('a PAT table that shows the range uncached-minus: auto maps uc and says why', async () => {
    fs.mkdirSync(path.join(fx.sys, 'kernel/debug/x86'), {recursive: true})
    fs.writeFileSync(path.join(fx.sys, 'kernel/debug/x86/pat_memtype_list'), 'PAT memtype list:\nPAT: [mem 0x0000000800000000-0x0000000804000000] uncached-minus\n')
    const r = await cli(['map', BDF.ivshmem, '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    expect(r.json.mapping.mode).to.equal('uc')
    expect(r.json.mapping.path).to.match(/resource2$/)
    expect(r.json.mapping.why).to.match(/already uncached-minus in the PAT table/)
  })

  it('--help shows the operations and examples', async () => {
    const r = cliProcess(['map', '--help'])
    expect(r.exit).to.equal(0)
    expect(r.stdout).to.contain('--copy-in').and.contain('EXAMPLES').and.contain('--p2pmem 2M --hold 60')
    const b = cliProcess(['bench', 'mmio', '--help'])
    expect(b.stdout).to.contain('copybw').and.contain('--read-only')
  })
})

describe('iopmem bench mmio', () => {
  let fx: SysfsFixture
  beforeEach(() => {
    fx = standardMachine()
  })
  afterEach(() => fx.cleanup())

  it('a fixture BAR, wc, read-only: copy-out per strategy and read latency; nothing written', async () => {
    const before = fx.hash()
    const r = await cli(['bench', 'mmio', BDF.ivshmem, '--read-only', '--sizes', '4K,64K', '--time', '0.01', '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    const j = r.json
    expect(j.mapping).to.include({mode: 'wc', writable: false})
    expect(j.readOnly).to.equal(true)
    expect(j.sizes).to.deep.equal([4096, 65536])
    expect(j.bandwidth.map((b: any) => `${b.size} ${b.direction} ${b.strategy}`)).to.deep.equal(['4096 out stream-load', '4096 out exact64', '65536 out stream-load', '65536 out exact64'])
    for (const b of j.bandwidth) expect(b.gbps).to.be.greaterThan(0).and.to.equal(roundRate(b.gbps))
    expect(j.latency.map((l: any) => `${l.op} ${l.width}`)).to.deep.equal(['read 8', 'read 16', 'read 32', 'read 64'])
    for (const l of j.latency) expect(l.ns).to.be.greaterThan(0)
    expect(fx.hash()).to.equal(before)
  })

  it('a plain file: copies in and out with memcpy too, a table, and the page-cache note', async () => {
    const file = path.join(fx.root, 'scratch.bin')
    fs.writeFileSync(file, Buffer.alloc(MiB))
    const r = await cli(['bench', 'mmio', file, '--sizes', '64K', '--time', '0.01', '--yes'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/SIZE\s+IN memcpy\s+IN stream-store\s+IN exact64\s+OUT memcpy\s+OUT stream-load\s+OUT exact64/)
    expect(r.stdout).to.match(/^64 KiB(\s+[\d.]+){6}$/m)
    expect(r.stdout).to.match(/WIDTH\s+READ\s+READ RAM\s+WRITE\s+WRITE RAM/)
    expect(r.stdout).to.contain('page-cache file')
    expect(r.stderr).to.match(/warning: .*not DAX/)
    const j = await cli(['bench', 'mmio', file, '--sizes', '4K', '--strategy', 'memcpy', '--time', '0.01', '--isa', 'sse2', '--yes', '--json'], fx)
    expect(j.json.bandwidth.map((b: any) => `${b.direction} ${b.strategy}`)).to.deep.equal(['in memcpy', 'out memcpy'])
    expect(j.json.cpu.isa).to.equal('sse2')
    expect(j.json.latency).to.have.length(8)
  })
})
