import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {loadNative} from '../../src/native/index.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {daxMachine, fakeFiemap, fakeFileOps, installFileOps} from '../helpers/dax.js'
import {EXTENT_FLAGS as X} from '../../src/lib/dax/locate.js'
import {MiB} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {realFsDir} from '../native/helpers.js'

/** A fixture whose NVMe disk is the real filesystem under a scratch directory (real FIEMAP, fixture sysfs). */
function onRealDisk(prefix: string, fn: (scratch: {dir: string}, f2: SysfsFixture) => void): void {
  const scratch = realFsDir(prefix)
  try {
    const st = loadNative().statx(scratch.dir)
    const f2 = new SysfsFixture()
    try {
      f2.addDisk('pci0000:00/0000:00:03.0/nvme/nvme0', {name: 'nvme0n1', dev: `${st.devMajor}:${st.devMinor}`, sizeBytes: 2 ** 40})
      f2.mount({id: Number(st.mntId), dev: `${st.devMajor}:${st.devMinor}`, source: '/dev/nvme0n1', target: '/', fstype: 'ext4'})
      fn(scratch, f2)
    } finally {
      f2.cleanup()
    }
  } finally {
    scratch.cleanup()
  }
}

describe('iopmem locate', () => {
  let fx: SysfsFixture
  let tmp: string
  let file: string
  beforeEach(async () => {
    fx = await daxMachine()
    fx.mount({id: 500, dev: '259:10', source: '/dev/pmem0', target: '/mnt/dax', fstype: 'ext4', options: 'rw,dax=always'})
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-locate-cmd-'))
    file = path.join(tmp, 'data.bin')
    fs.writeFileSync(file, Buffer.alloc(4096))
  })
  afterEach(async () => {
    await installFileOps(undefined)
    fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  const onPmem = (extents: Parameters<typeof fakeFiemap>[0], stat: Record<string, unknown> = {}) => {
    const ops = fakeFileOps({devMajor: 259, devMinor: 10, size: 0x30_0000, ...stat}, fakeFiemap(extents))
    return installFileOps(ops).then(() => ops)
  }

  it('prints the chain, one line per extent with its physical address, and the totals', async () => {
    await onPmem([
      [0, 0x840_0000, 0x1_0000, 0],
      [0x1_0000, 0x805_0000, 0xf_0000, 0],
      [0x10_0000, 0x860_0000, 0x20_0000, X.LAST],
    ])
    const r = await cli(['locate', file], fx)
    expect(r.exit, r.stderr).to.equal(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).to.equal(`${file}  3 MiB (3145728 bytes), DAX`)
    expect(lines[1]).to.equal('  on /dev/pmem0 (ext4, mounted on /mnt/dax, dax=always)')
    expect(lines[2]).to.equal('  /dev/pmem0: fsdax pmem, 512 MiB, byte 0 at physical 0x60000000 (/sys/devices/platform/e820_pmem/ndbus0/region0/namespace0.0/resource)')
    expect(lines[4]).to.match(/^#\s+FILE OFFSET\s+LENGTH\s+DEVICE OFFSET\s+PHYSICAL\s+FLAGS$/)
    expect(lines[5]).to.match(/^0\s+0x0\s+65536\s+0x8400000\s+0x68400000$/)
    expect(lines[6]).to.match(/^1\s+0x10000\s+983040\s+0x8050000\s+0x68050000$/)
    expect(lines[7]).to.match(/^2\s+0x100000\s+2097152\s+0x8600000\s+0x68600000\s+last$/)
    expect(r.stdout).to.contain('3 extents, 3 MiB; 3 contiguous segments; largest contiguous run 2 MiB at file offset 0x100000 (physical 0x68600000)')
  })

  it('--json: the documented shape', async () => {
    await onPmem([[0, 0x840_0000, 0x30_0000, X.LAST | X.MERGED]])
    const r = await cli(['locate', file, '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    expect(Object.keys(r.json)).to.deep.equal(['schemaVersion', 'file', 'size', 'window', 'dax', 'synced', 'addressing', 'filesystem', 'device', 'totals', 'warnings', 'notes', 'extents'])
    expect(r.json).to.deep.include({file, size: 0x30_0000, dax: true, synced: true, addressing: 'memory'})
    expect(Object.keys(r.json.device)).to.deep.equal(['node', 'dev', 'kind', 'disk', 'diskSize', 'partitionStart', 'logicalBlockSize', 'daxCapable', 'base', 'busBase', 'source', 'pci', 'nvme'])
    expect(r.json.extents).to.deep.equal([{fileOffset: 0, length: 0x30_0000, deviceOffset: 0x840_0000, physical: '0x0000000068400000', flags: ['last', 'merged']}])
    expect(r.json.totals).to.deep.equal({
      extents: 1,
      bytes: 0x30_0000,
      holeBytes: 0,
      unwrittenBytes: 0,
      sharedBytes: 0,
      segments: 1,
      largestRun: {fileOffset: 0, length: 0x30_0000, deviceOffset: 0x840_0000, physical: '0x0000000068400000'},
    })
  })

  it('--offset and --size take units and hex, and clip the extents', async () => {
    const ops = await onPmem([[0, 0x840_0000, 0x30_0000, X.LAST]])
    const r = await cli(['locate', file, '--offset', '1M', '--size', '0x1000', '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    expect(ops.fiemapCalls[0]).to.deep.equal({start: MiB, length: 0x1000, sync: true})
    expect(r.json.window).to.deep.equal({offset: MiB, length: 0x1000, clipped: true})
    expect(r.json.extents[0]).to.deep.include({fileOffset: MiB, length: 0x1000, physical: '0x0000000068500000'})
    const h = await cli(['locate', file, '--offset', '1M', '--length', '4K'], fx)
    expect(h.stdout).to.contain('window: file offset 0x100000, 4096 bytes')
    // The old name still works for one release, with a deprecation warning on stderr.
    expect(h.exit).to.equal(0)
    expect(h.stderr).to.match(/--length.*deprecated.*--size/is)
  })

  it('--no-sync skips FIEMAP_FLAG_SYNC', async () => {
    const ops = await onPmem([[0, 0x840_0000, 0x1000, X.LAST]])
    const r = await cli(['locate', file, '--no-sync', '--json'], fx)
    expect(r.exit).to.equal(0)
    expect(ops.fiemapCalls[0].sync).to.equal(false)
    expect(r.json.synced).to.equal(false)
  })

  it('a non-DAX file on pmem is refused with a plain explanation; --offsets-only shows device offsets', async () => {
    fx.mount({id: 501, dev: '259:10', source: '/dev/pmem0', target: '/mnt/plain', fstype: 'xfs'})
    await installFileOps(fakeFileOps({devMajor: 259, devMinor: 10, dax: false, mntId: 501n}, fakeFiemap([[0, 0x1000, 0x1000, X.LAST]])))
    const r = await cli(['locate', file], fx)
    expect(r.exit).to.equal(5)
    expect(r.stderr).to.contain(`Error: ${file} is not DAX (xfs on /dev/pmem0, mounted on /mnt/plain: it is mounted without -o dax). Its data may live in the page cache, so a physical address would be a lie`)
    expect(r.stderr).to.contain('--offsets-only shows its device offsets anyway')
    const o = await cli(['locate', file, '--offsets-only'], fx)
    expect(o.exit).to.equal(0)
    expect(o.stdout).to.match(/^#\s+FILE OFFSET\s+LENGTH\s+DEVICE OFFSET\s+FLAGS$/m)
    expect(o.stdout).not.to.contain('PHYSICAL')
    expect(o.stdout).to.contain('note: data.bin is not DAX: device offsets only')
  })

  it('unwritten and shared extents are located with warnings', async () => {
    await onPmem([
      [0, 0x1000, 0x1000, X.UNWRITTEN],
      [0x1000, 0x2000, 0x1000, X.SHARED | X.LAST],
    ])
    const r = await cli(['locate', file], fx)
    expect(r.exit).to.equal(0)
    expect(r.stdout).to.match(/warning: 1 unwritten extent \(4 KiB\)/).and.match(/warning: 1 shared extent \(4 KiB\)/)
  })

  it('an iopmem disk gets a bus-address column', async () => {
    await installFileOps(fakeFileOps({devMajor: 252, devMinor: 0}, fakeFiemap([[0, 0x2000, 0x1000, X.LAST]])))
    const r = await cli(['locate', file], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/PHYSICAL\s+BUS ADDRESS\s+FLAGS/).and.match(/0x800002000\s+0x800002000\s+last/)
    expect(r.stdout).to.contain('/dev/iopmem0: iopmem (PCI BAR), 64 MiB, byte 0 at physical 0x800000000, bus 0x800000000 (0000:00:04.0 BAR2)')
  })

  it('--help works without the native addon, and locating without it says how to build it', () => {
    const env = {IOPMEM_NATIVE: '/nonexistent/iopmem.node'}
    const h = cliProcess(['locate', '--help'], fx, env)
    expect(h.exit).to.equal(0)
    expect(h.stdout).to.contain('--offsets-only')
    const r = cliProcess(['locate', file, '--json'], fx, env)
    expect(r.exit).to.equal(7)
    expect(r.json.error.code).to.equal('E_NATIVE_MISSING')
  })

  it('whole process, real FIEMAP on a real fragmented file: the extents filefrag sees, in one pass or two halves', () => {
    onRealDisk('iopmem-locate-e2e', (scratch, f2) => {
    const p = path.join(scratch.dir, 'frag')
    const fd = fs.openSync(p, 'w')
    for (let i = 0; i < 300; i++) fs.writeSync(fd, Buffer.alloc(4096, i), 0, 4096, i * 8192)
    fs.closeSync(fd)
    const r = cliProcess(['locate', p, '--json'], f2)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.json.extents).to.have.length(300)
    const ff = execFileSync('filefrag', ['-v', '-b4096', p], {encoding: 'utf8'})
    const phys = [...ff.matchAll(/^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\./gm)].map((m) => Number(m[1]) * 4096)
    expect(r.json.extents.map((e: any) => e.deviceOffset)).to.deep.equal(phys)
    // The same file mapped as two halves (a worker thread takes the second): the same bytes out.
    for (const extra of [[], ['--offset', '12345', '--length', '1500000'], ['--offset', '409600'], ['--length', '9000']]) {
      const one = cliProcess(['locate', p, '--json', ...extra], f2, {IOPMEM_LOCATE_SPLIT: 'off'})
      const probed = cliProcess(['locate', p, '--json', ...extra], f2)
      const two = cliProcess(['locate', p, '--json', ...extra], f2, {IOPMEM_LOCATE_SPLIT: 'on'})
      expect(one.exit, one.stderr).to.equal(0)
      expect(probed.stdout).to.equal(one.stdout)
      expect(two.stdout).to.equal(one.stdout)
    }
    })
  })

  it('whole process, real FIEMAP: one- and two-thread paths, the probe, and the table give the same merged extents (big extents cut by the ranges asked)', () => {
    onRealDisk('iopmem-locate-merge', (scratch, f2) => {
    // A 3 MiB extent (split at 48 KiB by the probe before the fix), then a fragmented tail.
    const p = path.join(scratch.dir, 'mixed')
    const fd = fs.openSync(p, 'w')
    fs.writeSync(fd, Buffer.alloc(3 * MiB, 7), 0, 3 * MiB, 0)
    for (let i = 0; i < 64; i++) fs.writeSync(fd, Buffer.alloc(4096, i), 0, 4096, 4 * MiB + i * 8192)
    fs.writeSync(fd, Buffer.alloc(2 * MiB, 9), 0, 2 * MiB, 5 * MiB)
    fs.closeSync(fd)
    execFileSync('sync', [p])
    const ff = execFileSync('filefrag', ['-v', '-b4096', p], {encoding: 'utf8'})
    // filefrag's extents, merged where contiguous in file and device (as locate reports them).
    const merged: Array<[number, number, number]> = []
    for (const m of ff.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\./gm)) {
      const [lo, hi, ph] = [Number(m[1]) * 4096, (Number(m[2]) + 1) * 4096, Number(m[3]) * 4096]
      const last = merged.at(-1)
      if (last && last[0] + last[2] === lo && last[1] + last[2] === ph) last[2] += hi - lo
      else merged.push([lo, ph, hi - lo])
    }
    for (const extra of [[], ['--offset', '12345', '--size', '1500000'], ['--offset', '4096'], ['--offset', '4M']]) {
      const one = cliProcess(['locate', p, '--json', ...extra], f2, {IOPMEM_LOCATE_SPLIT: 'off'})
      const probed = cliProcess(['locate', p, '--json', ...extra], f2)
      const two = cliProcess(['locate', p, '--json', ...extra], f2, {IOPMEM_LOCATE_SPLIT: 'on'})
      expect(one.exit, one.stderr).to.equal(0)
      expect(probed.stdout, `probe path ${extra.join(' ')}`).to.equal(one.stdout)
      expect(two.stdout, `two threads ${extra.join(' ')}`).to.equal(one.stdout)
      // The table shows the same extents as --json.
      const table = cliProcess(['locate', p, ...extra], f2, {COLUMNS: '200'})
      expect(table.exit, table.stderr).to.equal(0)
      const rows = table.stdout.split('\n').filter((l) => /^\s*\d+\s+0x/.test(l)).map((l) => l.trim().split(/\s+/))
      expect(rows.map((r) => [Number(r[1]), Number(r[2]), Number(r[3])])).to.deep.equal(one.json.extents.map((e: any) => [e.fileOffset, e.length, e.deviceOffset]))
      if (extra.length === 0) expect(one.json.extents.map((e: any) => [e.fileOffset, e.deviceOffset, e.length])).to.deep.equal(merged)
    }
    })
  })
})
