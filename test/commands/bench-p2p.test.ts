/**
 * `iopmem bench p2p` end to end on temp files (--buffer bounce: no PCI device,
 * no /sys or /dev write): the --json shape against the bytes the destination
 * really holds afterwards, --sweep (JSON rows and the terminal chart),
 * --plot (SVG and HTML), Ctrl-C (a child process given SIGINT mid-copy), the
 * pread/pwrite paths, --jobs, and the refusal of a destination another
 * process has open or mapped.
 */
import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import {randomFillSync} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'

import type {BenchP2pResult} from '../../src/lib/bench/index.js'
import {roundRate} from '../../src/lib/sys/index.js'
import {cli, cliProcess, ROOT} from '../helpers/cli.js'
import {standardMachine} from '../helpers/machines.js'

const KiB = 1024
const MiB = 1024 * KiB
const SIZE = MiB

interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** ms from SIGINT to exit. */
  stopMs: number
}

/** `bin/run.js ARGS` as a child; `interruptWhen` says when to send SIGINT. */
function spawnBench(args: string[], interruptWhen: () => boolean): {child: ChildProcess; done: Promise<Finished>} {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/run.js'), ...args], {env: {...process.env, NO_COLOR: '1', CI: '1', COLUMNS: '200'}, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s))
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  let sentAt = 0
  const poll = setInterval(() => {
    if (sentAt === 0 && interruptWhen()) {
      sentAt = Date.now()
      child.kill('SIGINT')
    }
  }, 50)
  const done = new Promise<Finished>((resolve) => {
    child.on('close', (code, signal) => {
      clearInterval(poll)
      resolve({code, signal, stdout, stderr, stopMs: sentAt ? Date.now() - sentAt : -1})
    })
  })
  return {child, done}
}

/** A child node process that holds `file` open (`how` = open) or mapped through the addon, until killed. */
async function holder(file: string, how: 'open' | 'map'): Promise<ChildProcess> {
  const script =
    how === 'open'
      ? `import * as fs from 'node:fs'; fs.openSync(${JSON.stringify(file)}, 'r+'); console.log('ready'); setInterval(() => {}, 1000)`
      : `const {loadNative} = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/native/index.js')).href)}); ` +
        `globalThis.held = loadNative().map(${JSON.stringify(file)}, {length: 4096, mode: 'wb'}); console.log('ready'); setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'pipe']})
  await new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr!.on('data', (b: Buffer) => (err += b))
    child.stdout!.on('data', (b: Buffer) => b.toString().includes('ready') && resolve())
    child.on('exit', (code) => reject(new Error(`holder exited ${code}: ${err}`)))
  })
  return child
}

/** Balanced tags, nothing unescaped: enough to say an SVG document parses. */
function wellFormed(xml: string): boolean {
  const body = xml.replace(/^<!doctype[^>]*>/i, '')
  if (/&(?!amp;|lt;|gt;|quot;|#\d+;)/.test(body)) return false
  const stack: string[] = []
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:"[^"]*"|[^>"])*?)(\/?)>/g)) {
    const [, close, name, , self] = m
    if (self) continue
    if (close) {
      if (stack.pop() !== name) return false
    } else stack.push(name)
  }
  return stack.length === 0 && !/<(?![A-Za-z/!])/.test(body)
}

describe('iopmem bench p2p on files (--buffer bounce)', function () {
  this.timeout(20_000)
  let tmp: string
  let src: string
  let dst: string
  let data: Buffer
  const children: ChildProcess[] = []
  const base = (...more: string[]) => ['bench', 'p2p', '--src', src, '--dst', dst, '--buffer', 'bounce', '--yes', ...more]
  const dstBytes = () => fs.readFileSync(dst)

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-bench-p2p-'))
    src = path.join(tmp, 'src')
    dst = path.join(tmp, 'dst')
    data = randomFillSync(Buffer.alloc(SIZE))
    fs.writeFileSync(src, data)
  })
  beforeEach(() => fs.writeFileSync(dst, Buffer.alloc(SIZE)))
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('the report prints rates as --json gives them: 3 significant digits (GB/s, IOPS)', () => {
    const r = cliProcess(base('--size', '1M', '--bs', '4K'))
    expect(r.exit, r.stderr).to.equal(0)
    const rates = [...r.stdout.matchAll(/([\d.e+-]+) (GB\/s|IOPS)\b/g)].map((m) => m[1])
    expect(rates.length, r.stdout).to.be.at.least(3)
    for (const x of rates) expect(x, r.stdout).to.equal(String(roundRate(Number(x))))
  })

  it('the report fits $COLUMNS (80 when not a terminal): long lines are wrapped, the sweep chart fits', () => {
    for (const cols of ['80', '']) {
      const r = cliProcess(base('--size', '256K', '--sweep', '4K,64K', '--no-probe'), undefined, {COLUMNS: cols})
      expect(r.exit, r.stderr).to.equal(0)
      expect(r.stdout).to.contain('sweep (GB/s by block size)')
      for (const l of r.stdout.split('\n')) expect([...l].length, l).to.be.at.most(80)
    }
  })

  it('--verify --json: the documented shape, and the destination holds the source bytes', async () => {
    const r = await cli(base('--size', '1M', '--bs', '64K', '--qd', '4', '--verify', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    expect(j.src).to.deep.include({path: src, kind: 'file', size: SIZE})
    expect(j.dst).to.deep.include({path: dst, kind: 'file', size: SIZE})
    expect(j.src.align % 512).to.equal(0)
    expect(j).to.deep.include({size: SIZE, bs: 64 * KiB, qd: 4, jobs: 1, choices: [], interrupted: false})
    expect(j).not.to.have.any.keys('via', 'p2pmem', 'sweep')
    expect(j.dramIdleGbps).to.be.a('number').greaterThan(0)
    expect(j.results).to.have.length(1)
    const m = j.results[0]
    expect(m).to.deep.include({mode: 'bounce', bytes: SIZE, dstOffset: 0, stopped: false})
    expect(m.buffer).to.match(/^system RAM/)
    expect(m.latency.count).to.equal(SIZE / (64 * KiB))
    expect(m.latency.p50Us).to.be.greaterThan(0)
    expect(m.latency.p99Us).to.be.at.least(m.latency.p50Us)
    expect(m.latency.p999Us).to.be.at.least(m.latency.p99Us)
    expect(m.latency.maxUs).to.be.at.least(m.latency.p999Us)
    expect(m.seconds).to.be.greaterThan(0)
    // Rates to 3 significant digits, as everywhere (docs/vocabulary.md).
    expect(m.gbps).to.equal(roundRate(SIZE / m.seconds / 1e9))
    expect(m.iops).to.equal(roundRate(16 / m.seconds))
    expect(m.cpu.percentOfOneCore).to.be.at.least(0)
    if (m.engine === 'psync') expect(m.fallbackReason, 'psync only as a fallback here').to.be.a('string')
    else expect(m.engine).to.equal('io_uring')
    expect(m.verify).to.deep.include({ok: true, mismatchAt: -1})
    expect(m.verify!.dstHash).to.equal(m.verify!.srcHash)
    expect(m.dram?.gbps).to.be.greaterThan(0)
    expect([m.dram!.gbps, j.dramIdleGbps]).to.deep.equal([roundRate(m.dram!.gbps), roundRate(j.dramIdleGbps!)])
    expect(m.dram?.ofIdle).to.be.closeTo(m.dram!.gbps / j.dramIdleGbps!, 0.01 * m.dram!.ofIdle)
    expect(dstBytes().equals(data), 'the destination holds the source').to.equal(true)
  })

  it('--dst-offset and --src-offset place the copy, and --no-probe leaves out the DRAM figures', async () => {
    const r = await cli(base('--size', '256K', '--src-offset', '512K', '--dst-offset', '128K', '--no-probe', '--verify', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    expect(j).not.to.have.property('dramIdleGbps')
    expect(j.results[0]).not.to.have.property('dram')
    expect(j.results[0]).to.deep.include({dstOffset: 128 * KiB, bytes: 256 * KiB})
    expect(j.results[0].verify?.ok).to.equal(true)
    const got = dstBytes()
    expect(got.subarray(128 * KiB, 384 * KiB).equals(data.subarray(512 * KiB, 768 * KiB)), 'the copied range').to.equal(true)
    expect(got.subarray(0, 128 * KiB).every((b) => b === 0), 'before --dst-offset untouched').to.equal(true)
    expect(got.subarray(384 * KiB).every((b) => b === 0), 'after the copy untouched').to.equal(true)
  })

  it('--sweep LIST --json: one row per block size, ascending and deduplicated, all measured', async () => {
    const r = await cli(base('--size', '1M', '--sweep', '64K,4K,1M,4K', '--no-probe', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    expect(j.sweep!.map((s) => [s.mode, s.bs])).to.deep.equal([
      ['bounce', 4 * KiB],
      ['bounce', 64 * KiB],
      ['bounce', MiB],
    ])
    for (const s of j.sweep!) {
      expect(s.gbps, `${s.bs}`).to.be.greaterThan(0)
      expect(s.iops).to.be.greaterThan(0)
      expect(s.p99Us).to.be.greaterThan(0)
    }
    expect(dstBytes().equals(data)).to.equal(true)
  })

  it('--sweep default: 4K, 16K, 64K, 128K, 256K, 1M', async () => {
    const r = await cli(base('--size', '1M', '--sweep', 'default', '--no-probe', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    expect(j.sweep!.map((s) => s.bs)).to.deep.equal([4, 16, 64, 128, 256, 1024].map((k) => k * KiB))
    expect(j.sweep!.every((s) => s.mode === 'bounce' && s.gbps > 0)).to.equal(true)
  })

  it('--sweep for a person: the terminal chart, one bar per point', async () => {
    const r = await cli(base('--size', '1M', '--sweep', '4K,64K,1M', '--no-probe'))
    expect(r.exit, r.stderr).to.equal(0)
    const lines = r.stdout.split('\n')
    const at = lines.findIndex((l) => l.trim() === 'sweep (GB/s by block size)')
    expect(at, r.stdout).to.be.greaterThan(0)
    const bars = lines.slice(at + 1).filter((l) => /█/.test(l))
    expect(bars).to.have.length(3)
    expect(bars.map((l) => l.match(/^\s+bounce\s+(\d+ [KM]iB) (█+) (\d+\.\d+)$/)?.[1])).to.deep.equal(['4 KiB', '64 KiB', '1 MiB'])
    const widest = Math.max(...bars.map((l) => l.match(/█+/)![0].length))
    expect(widest, 'the fastest point gets the full 40').to.equal(40)
    expect(r.stdout).to.match(/^ {2}bounce\s+\d+\.\d+ GB\/s\s+\d+ IOPS\s+p50 /m)
  })

  describe('--plot', () => {
    // A directory whose name needs escaping in XML: the chart's title shows the paths.
    let odd: string
    let osrc: string
    let odst: string
    before(() => {
      odd = path.join(tmp, 'a&<b>')
      fs.mkdirSync(odd)
      osrc = path.join(odd, 'src')
      odst = path.join(odd, 'dst')
      fs.writeFileSync(osrc, data)
      fs.writeFileSync(odst, Buffer.alloc(SIZE))
    })
    const plotArgs = (file: string, ...more: string[]) => ['bench', 'p2p', '--src', osrc, '--dst', odst, '--buffer', 'bounce', '--yes', '--size', '1M', '--sweep', '4K,64K,1M', '--no-probe', '--plot', file, ...more]

    it('FILE.svg: a well-formed SVG, one line for the mode, a label and a point per block size, placed by GB/s', async () => {
      const file = path.join(tmp, 'chart.svg')
      const r = await cli(plotArgs(file, '--json'))
      expect(r.exit, r.stderr + r.stdout).to.equal(0)
      const j = r.json as BenchP2pResult
      expect(j.notes).to.include(`chart written to ${file}`)
      const svg = fs.readFileSync(file, 'utf8')
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), svg.slice(0, 80)).to.equal(true)
      expect(svg.trimEnd().endsWith('</svg>')).to.equal(true)
      expect(wellFormed(svg), 'well-formed XML').to.equal(true)
      expect(svg).to.include('a&amp;&lt;b&gt;/src')
      const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)]
      expect(lines, 'one line per mode').to.have.length(1)
      expect(svg).to.match(/>bounce<\/text>/)
      expect(svg).not.to.match(/>p2p<\/text>/)
      for (const label of ['4 KiB', '64 KiB', '1 MiB']) expect(svg).to.include(`>${label}</text>`)
      const pts = lines[0][1].split(' ').map((p) => p.split(',').map(Number))
      expect(pts).to.have.length(3)
      expect(pts[0][0]).to.be.lessThan(pts[1][0])
      expect(pts[1][0]).to.be.lessThan(pts[2][0])
      // y = 320 - gbps / (1.1 × max) × 290 (a 640×360 chart, 30 top, 40 bottom).
      const max = Math.max(...j.sweep!.map((s) => s.gbps)) * 1.1
      for (const [i, s] of j.sweep!.entries()) expect(pts[i][1]).to.be.closeTo(320 - (s.gbps / max) * 290, 1e-6)
    })

    it('FILE.html: the SVG inside an HTML document, and a note for a person', async () => {
      const file = path.join(tmp, 'chart.html')
      const r = await cli(plotArgs(file))
      expect(r.exit, r.stderr).to.equal(0)
      expect(r.stdout).to.include(`note: chart written to ${file}`)
      const html = fs.readFileSync(file, 'utf8')
      expect(html).to.match(/^<!doctype html>/i)
      expect(html).to.include('<meta charset="utf-8">')
      expect(html).to.include('<title>iopmem bench p2p</title>')
      const svg = html.slice(html.indexOf('<svg'))
      expect(svg.trimEnd().endsWith('</svg>')).to.equal(true)
      expect(wellFormed(svg)).to.equal(true)
      expect([...svg.matchAll(/<polyline /g)]).to.have.length(1)
    })

    it('without --sweep, or to a file that is neither .svg nor .html: exit 2, no file', async () => {
      const svg = path.join(tmp, 'nosweep.svg')
      const a = await cli(['bench', 'p2p', '--src', src, '--dst', dst, '--buffer', 'bounce', '--yes', '--plot', svg])
      expect(a.exit).to.equal(2)
      expect(a.stderr).to.match(/--plot needs --sweep/)
      expect(fs.existsSync(svg)).to.equal(false)
      const png = path.join(tmp, 'chart.png')
      const b = await cli(base('--sweep', '4K', '--plot', png))
      expect(b.exit).to.equal(2)
      expect(b.stderr).to.match(/must end in \.svg or \.html/)
      expect(fs.existsSync(png)).to.equal(false)
      expect(dstBytes().every((x) => x === 0), 'nothing copied').to.equal(true)
    })
  })

  describe('Ctrl-C (SIGINT to a child process mid-copy)', () => {
    // A sparse 4 GiB source copied in 4 KiB pread/pwrite steps runs for many seconds.
    let big: string
    let bigDst: string
    const BIG = 4 * 1024 * MiB
    before(() => {
      big = path.join(tmp, 'big')
      const fd = fs.openSync(big, 'w')
      fs.ftruncateSync(fd, BIG)
      fs.closeSync(fd)
    })
    beforeEach(() => {
      bigDst = path.join(tmp, 'big-dst')
      fs.writeFileSync(bigDst, '')
    })
    afterEach(() => fs.rmSync(bigDst, {force: true}))
    const args = (...more: string[]) => ['bench', 'p2p', '--src', big, '--dst', bigDst, '--buffer', 'bounce', '--yes', '--engine', 'psync', '--bs', '4K', '--qd', '1', '--size', '4G', '--no-probe', ...more]
    // Once the copy has written something, and a little more.
    const copying = () => {
      let since = 0
      return () => {
        if (fs.statSync(bigDst).size === 0) return false
        since ||= Date.now()
        return Date.now() - since >= 300
      }
    }

    it('--json: exit 130, one JSON document with interrupted: true and the partial copy, within seconds', async () => {
      const run = spawnBench(args('--json'), copying())
      children.push(run.child)
      const f = await run.done
      expect(f.signal, f.stderr).to.equal(null)
      expect(f.code, f.stderr + f.stdout.slice(-400)).to.equal(130)
      expect(f.stopMs).to.be.within(0, 3000)
      let j: BenchP2pResult
      try {
        j = JSON.parse(f.stdout) as BenchP2pResult
      } catch (error) {
        expect.fail(`stdout is not one JSON document (${(error as Error).message}):\n${f.stdout.slice(-600)}`)
      }
      expect(j.interrupted).to.equal(true)
      expect(j.results).to.have.length(1)
      const m = j.results[0]
      expect(m.stopped).to.equal(true)
      expect(m.bytes).to.be.greaterThan(0)
      expect(m.bytes).to.be.lessThan(BIG)
      expect(m.bytes % (4 * KiB)).to.equal(0)
      expect(m.latency.count).to.equal(m.bytes / (4 * KiB))
      expect(m.engine).to.equal('psync')
      expect(fs.statSync(bigDst).size, 'the destination holds what was counted').to.be.at.least(m.bytes)
      expect(fs.statSync(bigDst).size).to.be.lessThan(BIG)
    })

    it('for a person: the partial results on stdout, "Interrupted" on stderr, exit 130', async () => {
      const run = spawnBench(args(), copying())
      children.push(run.child)
      const f = await run.done
      expect(f.code, f.stderr).to.equal(130)
      expect(f.stopMs).to.be.within(0, 3000)
      expect(f.stdout).to.match(/^bench p2p: .*big → .*big-dst, 4 GiB in 4 KiB blocks/m)
      expect(f.stdout).to.match(/^ {2}bounce\s+\d+(\.\d+)? GB\/s\s+\d+ IOPS/m)
      expect(f.stdout).to.include('interrupted: partial results')
      expect(f.stderr).to.match(/Error: Interrupted: partial results above; buffers unmapped, p2pmem returned\./)
    })
  })

  it('--engine psync: pread/pwrite, and a note that says so (and that --qd does not apply)', async () => {
    const r = await cli(base('--size', '1M', '--bs', '64K', '--qd', '4', '--engine', 'psync', '--verify', '--no-probe', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    const m = j.results[0]
    expect(m).to.deep.include({engine: 'psync', registeredBuffers: false, bytes: SIZE})
    expect(m).not.to.have.property('fallbackReason')
    expect(m.verify?.ok).to.equal(true)
    expect(j.notes).to.include('--engine psync: pread/pwrite used, one I/O at a time per job (--qd 4 does not apply).')
    expect(dstBytes().equals(data)).to.equal(true)
    const h = await cli(base('--size', '1M', '--engine', 'psync', '--qd', '1', '--no-probe'))
    expect(h.exit).to.equal(0)
    expect(h.stdout).to.include('  bounce: pread/pwrite; buffer system RAM')
    expect(h.stdout).to.include('note: --engine psync: pread/pwrite used, one I/O at a time per job.')
  })

  it('IOPMEM_NO_IO_URING=1: the fallback to pread/pwrite, said in a note', () => {
    const env = {IOPMEM_NO_IO_URING: '1'}
    const r = cliProcess(base('--size', '1M', '--verify', '--no-probe', '--json'), undefined, env)
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const m = r.json.results[0]
    expect(m).to.deep.include({engine: 'psync', fallbackReason: 'io_uring disabled by IOPMEM_NO_IO_URING', bytes: SIZE})
    expect(m.verify.ok).to.equal(true)
    expect(r.json.notes).to.include('bounce: io_uring unavailable (io_uring disabled by IOPMEM_NO_IO_URING); pread/pwrite used, one I/O at a time per job.')
    expect(dstBytes().equals(data)).to.equal(true)
    const h = cliProcess(base('--size', '1M', '--no-probe'), undefined, {...env, COLUMNS: '200'}) // content here; fitting is tested in width.test.ts
    expect(h.exit, h.stderr).to.equal(0)
    expect(h.stdout).to.include('pread/pwrite — fallback: io_uring disabled by IOPMEM_NO_IO_URING')
    expect(h.stdout).to.include('note: bounce: io_uring unavailable (io_uring disabled by IOPMEM_NO_IO_URING); pread/pwrite used')
  })

  it('--jobs 3 --qd 2 --verify: every block copied once, verified', async () => {
    const r = await cli(base('--size', '1M', '--bs', '64K', '--jobs', '3', '--qd', '2', '--verify', '--no-probe', '--json'))
    expect(r.exit, r.stderr + r.stdout).to.equal(0)
    const j = r.json as BenchP2pResult
    expect(j).to.deep.include({jobs: 3, qd: 2})
    expect(j.results[0]).to.deep.include({bytes: SIZE, stopped: false})
    expect(j.results[0].latency.count).to.equal(16)
    expect(j.results[0].verify).to.deep.include({ok: true, mismatchAt: -1})
    expect(dstBytes().equals(data)).to.equal(true)
    const h = await cli(base('--size', '1M', '--bs', '64K', '--jobs', '3', '--qd', '2', '--no-probe'))
    expect(h.stdout).to.match(/1 MiB in 64 KiB blocks, qd 2 × 3 jobs, O_DIRECT/)
  })

  describe('a destination another process uses', () => {
    for (const how of ['open', 'map'] as const) {
      it(`held ${how === 'open' ? 'open' : 'mapped'} by another process: refused (exit 5, E_IN_USE, names the pid); --force goes on`, async () => {
        const child = await holder(dst, how)
        children.push(child)
        const what = how === 'open' ? `has ${dst} open` : `maps ${dst}`
        const comm = fs.readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim()
        const r = await cli(base('--size', '1M', '--no-probe', '--json'))
        expect(r.exit, r.stdout).to.equal(5)
        expect(r.json.error.code).to.equal('E_IN_USE')
        expect(r.json.error.message).to.equal(`Refusing to overwrite ${dst}: process ${comm} (pid ${child.pid}) ${what}.`)
        expect(r.json.error.details.processes).to.deep.equal([{pid: child.pid, comm, what}])
        expect(dstBytes().every((b) => b === 0), 'the destination was written').to.equal(true)
        const h = await cli(base('--size', '1M', '--no-probe'))
        expect(h.exit).to.equal(5)
        expect(h.stderr).to.include(`Error: Refusing to overwrite ${dst}: process ${comm} (pid ${child.pid}) ${what}.`)
        expect(h.stderr).to.match(/--force/)
        const f = await cli(base('--size', '1M', '--no-probe', '--verify', '--force', '--json'))
        expect(f.exit, f.stderr + f.stdout).to.equal(0)
        expect(f.json.results[0].verify.ok).to.equal(true)
        expect(dstBytes().equals(data), 'forced copy').to.equal(true)
      })
    }

    it('open in this process itself: not a reason to refuse', async () => {
      const fd = fs.openSync(dst, 'r+')
      try {
        const r = await cli(base('--size', '1M', '--no-probe', '--json'))
        expect(r.exit, r.stdout).to.equal(0)
        expect(dstBytes().equals(data)).to.equal(true)
      } finally {
        fs.closeSync(fd)
      }
    })

    it("through the host's /proc root: a fixture process holding the destination's /dev node is named", async () => {
      const fx = standardMachine()
      try {
        fx.process({pid: 4242, comm: 'fio', fds: ['/dev/null', '/dev/nvme1n1']})
        fx.process({pid: 4243, comm: 'qemu', maps: ['/usr/lib/libc.so.6', '/dev/nvme1n1']})
        const node = path.join(fx.dev, 'nvme1n1')
        const before = fx.hash()
        const r = await cli(['bench', 'p2p', '--src', src, '--dst', node, '--buffer', 'bounce', '--size', '4K', '--yes', '--json'], fx)
        expect(r.exit, r.stdout).to.equal(5)
        expect(r.json.error.code).to.equal('E_IN_USE')
        expect(r.json.error.details.reasons).to.deep.equal(['process fio (pid 4242) has /dev/nvme1n1 open', 'process qemu (pid 4243) maps /dev/nvme1n1'])
        expect(fx.hash(), 'fixture tree changed').to.equal(before)
        const other = await cli(['bench', 'p2p', '--src', src, '--dst', path.join(fx.dev, 'nvme0n1'), '--buffer', 'bounce', '--size', '4K', '--yes', '--no-probe', '--json'], fx)
        expect(other.exit, other.stdout).to.equal(0)
        expect(fs.readFileSync(path.join(fx.dev, 'nvme0n1')).equals(data.subarray(0, 4 * KiB))).to.equal(true)
      } finally {
        fx.cleanup()
      }
    })

    // One detector (wipefs/libblkid) for mkfs-dax and bench p2p: an unmounted LUKS volume or a bare MBR is refused too.
    for (const [what, sign, words] of [
      ['a LUKS header', (b: Buffer) => b.write('LUKS\xba\xbe\x00\x01', 0, 'latin1'), /holds a LUKS encrypted volume \(crypto_LUKS at offset 0x0 of /],
      ['an MBR (0x55AA)', (b: Buffer) => b.writeUInt16LE(0xaa55, 510), /holds an MBR \(dos\) partition table \(dos at offset 0x1fe of /],
    ] as const) {
      it(`an unmounted destination (a fixture device node) with ${what}: refused (exit 5, E_IN_USE); --force goes on`, async () => {
        const fx = standardMachine()
        try {
          const node = path.join(fx.dev, 'nvme0n1')
          const signed = Buffer.alloc(64 * KiB)
          sign(signed)
          fs.writeFileSync(node, signed)
          const args = ['bench', 'p2p', '--src', src, '--dst', node, '--buffer', 'bounce', '--size', '4K', '--yes', '--no-probe', '--json']
          const r = await cli(args, fx)
          expect(r.exit, r.stdout).to.equal(5)
          expect(r.json.error.code).to.equal('E_IN_USE')
          expect(r.json.error.details.reasons).to.have.length(1)
          expect(r.json.error.details.reasons[0]).to.match(words)
          expect(fs.readFileSync(node).equals(signed), 'the destination was written').to.equal(true)
          const f = await cli([...args, '--force'], fx)
          expect(f.exit, f.stderr + f.stdout).to.equal(0)
          expect(fs.readFileSync(node).subarray(0, 4 * KiB).equals(data.subarray(0, 4 * KiB)), 'forced copy').to.equal(true)
        } finally {
          fx.cleanup()
        }
      })
    }
  })
})
