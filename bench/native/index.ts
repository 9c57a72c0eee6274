/**
 * native-copy: the addon's copy engine beside a C baseline built in the same
 * run (bench/native/copybench.c, `cc -O2`), both copying into ("copy-in",
 * host → mapping, copyTo) and out of ("copy-out", mapping → host, copyFrom) a
 * 1 GiB mapping of WB memory: a memfd (4 KiB pages), anonymous memory with
 * transparent hugepages advised, and a hugetlb memfd where enough hugepages
 * are reserved. The host side is a 1 GiB Buffer (malloc'd, as in the C
 * program).
 *
 * Method: the C program runs beside the bench in serve mode and the two take
 * turns copy by copy (C first on even rounds, iopmem first on odd ones),
 * BENCH_COPY_ROUNDS rounds (default 4) in each of BENCH_COPY_SESSIONS sessions
 * (default 3) with freshly allocated buffers on both sides. GB/s printed are
 * the best of all rounds; each ratio is the median, over all rounds, of that
 * round's iopmem/C ratio. Why: on this shared 2-core machine identical memcpy
 * calls measured as separate batches came out ±10 % apart, from the machine's
 * load and from where each buffer's pages fall in DRAM (fixed for the life of
 * the buffers); back-to-back pairs, fresh buffers and a median cancel both.
 *
 * Ratios printed (iopmem / C), per direction:
 *   memcpy pair   copyTo/copyFrom 'auto' on a `wb` mapping (= memcpy)  vs  memcpy
 *   stream pair   copyTo 'stream-store' / copyFrom 'stream-load'       vs  an SSE2 streaming-store loop
 *   best vs best  the faster iopmem strategy vs the faster C one in each round:
 *                 the engines compared. The goal (>= 1.0) and the floor (0.95,
 *                 the return value) apply to it. The memcpy pair is the same
 *                 glibc function on both sides, so it reads 1.0 give or take noise.
 *
 * Also: the per-call overhead of one 32-bit read through the addon
 * (`native.read32(m, off)`), in ns, best of 3 × 2M calls.
 *
 * Environment: BENCH_COPY_BYTES (default 1 GiB), BENCH_COPY_ROUNDS,
 * BENCH_COPY_SESSIONS, BENCH_COPY_DEBUG (print every copy), CC.
 */
import {type ChildProcessWithoutNullStreams, spawn, spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {loadNative, type Mapping, type Native} from '../../src/native/index.js'
import {median} from '../stats.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const GOAL = 1.0
const FLOOR = 0.95

type Backing = 'memfd' | 'anon' | 'hugetlb'
interface Rates {
  memcpy_in: number
  memcpy_out: number
  stream_in: number
  stream_out: number
}

function hugepagesFree(): number {
  try {
    const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))
    const sz = /Hugepagesize:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))
    return m && sz ? Number(m[1]) * Number(sz[1]) * 1024 : 0
  } catch {
    return 0
  }
}

function buildC(): string {
  const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-bench-')), 'copybench')
  const r = spawnSync(process.env.CC ?? 'cc', ['-O2', '-o', exe, path.join(HERE, 'copybench.c')], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`cc -O2 copybench.c failed: ${r.error?.message ?? r.stderr}`)
  return exe
}

const KEYS = ['memcpy_in', 'memcpy_out', 'stream_in', 'stream_out'] as const
type Key = (typeof KEYS)[number]

/** The C program in serve mode: one copy per request, answering its GB/s. */
class CServer {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly lines: string[] = []
  private waiting: ((line: string) => void) | undefined
  private buffer = ''
  private onExit: ((err: Error) => void) | undefined

  constructor(exe: string, size: number, backing: Backing) {
    this.child = spawn(exe, [String(size), '0', backing, 'serve'])
    this.child.on('exit', (code) => this.onExit?.(new Error(`copybench exited ${code}`)))
    this.child.stdout.setEncoding('utf8')
    this.child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk
      let i
      while ((i = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, i)
        this.buffer = this.buffer.slice(i + 1)
        if (this.waiting) {
          const w = this.waiting
          this.waiting = undefined
          w(line)
        } else this.lines.push(line)
      }
    })
  }

  private next(): Promise<string> {
    const line = this.lines.shift()
    if (line !== undefined) return Promise.resolve(line)
    return new Promise((resolve, reject) => {
      this.waiting = resolve
      this.onExit = reject
    })
  }

  async ready(): Promise<void> {
    const line = await this.next()
    if (line !== 'ready') throw new Error(`copybench: ${line}`)
  }

  async copy(key: Key): Promise<number> {
    this.child.stdin.write(`${key}\n`)
    return Number(await this.next())
  }

  close(): void {
    this.child.stdin.end('quit\n')
  }
}

/** The addon side of one backing: the mapping, and one timed copy per call. */
function addonSide(n: Native, host: Buffer, backing: Backing): {copy(key: Key): number; close(): void} {
  const size = host.length
  let fd = -1
  let m: Mapping
  if (backing === 'anon') m = n.mapAnonymous(size, {thp: true})
  else {
    fd = n.memfd('iopmem-bench', size, {hugetlb: backing === 'hugetlb'})
    m = n.map(fd, {mode: 'wb'})
  }
  n.copyTo(m, 0, host, 'memcpy') // touch every page of the mapping
  const ops: Record<Key, () => unknown> = {
    memcpy_in: () => n.copyTo(m, 0, host, 'auto'),
    memcpy_out: () => n.copyFrom(m, 0, host, 'auto'),
    stream_in: () => n.copyTo(m, 0, host, 'stream-store'),
    stream_out: () => n.copyFrom(m, 0, host, 'stream-load'),
  }
  return {
    copy(key) {
      const t0 = process.hrtime.bigint()
      ops[key]()
      return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9
    },
    close() {
      m.unmap()
      if (fd >= 0) n.closeFd(fd)
    },
  }
}

function maxRates(x: Rates, y: Rates): Rates {
  return {
    memcpy_in: Math.max(x.memcpy_in, y.memcpy_in),
    memcpy_out: Math.max(x.memcpy_out, y.memcpy_out),
    stream_in: Math.max(x.stream_in, y.stream_in),
    stream_out: Math.max(x.stream_out, y.stream_out),
  }
}

/**
 * One session: a fresh C server and a fresh addon mapping over `host`; per
 * round, each copy once on each side back to back (C first on even rounds,
 * iopmem first on odd ones). Returns every round's GB/s.
 */
async function interleaved(n: Native, exe: string, host: Buffer, backing: Backing, rounds: number): Promise<Array<{c: Rates; a: Rates}>> {
  const samples: Array<{c: Rates; a: Rates}> = []
  const server = new CServer(exe, host.length, backing)
  let side: ReturnType<typeof addonSide> | undefined
  try {
    await server.ready()
    side = addonSide(n, host, backing)
    // Let V8's background threads (GC after the big allocations) settle.
    await new Promise((r) => setTimeout(r, 100))
    for (let round = 0; round < rounds; round++) {
      const seen: string[] = []
      const c: Rates = {memcpy_in: 0, memcpy_out: 0, stream_in: 0, stream_out: 0}
      const a: Rates = {...c}
      for (const key of KEYS) {
        let x: number
        let y: number
        if (round % 2 === 0) {
          x = await server.copy(key)
          y = side.copy(key)
        } else {
          y = side.copy(key)
          x = await server.copy(key)
        }
        c[key] = x
        a[key] = y
        seen.push(`${key} C ${x.toFixed(2)} A ${y.toFixed(2)}`)
      }
      samples.push({c, a})
      if (process.env.BENCH_COPY_DEBUG) console.log(`    ${round}: ${seen.join(' | ')}`)
    }
  } finally {
    server.close()
    side?.close()
  }
  return samples
}

function perCallRead32(n: Native): {publicNs: number; rawNs: number} {
  const fd = n.memfd('iopmem-bench-read', 1 << 16)
  const m = n.map(fd, {mode: 'uc'})
  try {
    const N = 2_000_000
    const slot = m.slot
    let sink = 0
    const viaPublic = () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) sink += n.read32(m, (i & 1023) << 2)
      return Number(process.hrtime.bigint() - t0) / N
    }
    const viaRaw = () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) sink += n.raw.read32(slot, (i & 1023) << 2)
      return Number(process.hrtime.bigint() - t0) / N
    }
    viaPublic()
    viaRaw() // warm up: let the JIT settle
    let publicNs = Infinity
    let rawNs = Infinity
    for (let r = 0; r < 3; r++) {
      publicNs = Math.min(publicNs, viaPublic())
      rawNs = Math.min(rawNs, viaRaw())
    }
    if (sink === -1) console.log('') // keep the loop
    return {publicNs, rawNs}
  } finally {
    m.unmap()
    n.closeFd(fd)
  }
}

const f2 = (x: number) => x.toFixed(2).padStart(6)

/** Run the bench, print it, and say whether every ratio met the floor. */
export async function nativeCopyBench(): Promise<boolean> {
  const n = loadNative()
  const size = Number(process.env.BENCH_COPY_BYTES ?? 2 ** 30)
  const rounds = Number(process.env.BENCH_COPY_ROUNDS ?? 4)
  const sessions = Number(process.env.BENCH_COPY_SESSIONS ?? 3)
  const exe = buildC()
  const cpu = n.cpuFeatures()
  const backings: Backing[] = ['memfd', 'anon']
  if (hugepagesFree() >= size) backings.push('hugetlb')
  const gib = (size / 2 ** 30).toFixed(size % 2 ** 30 ? 2 : 0)
  console.log(`native-copy (${gib} GiB of WB memory; ${sessions} sessions x ${rounds} rounds, C and iopmem taking turns copy by copy; GB/s = 1e9 B/s)`)
  console.log('  GB/s: best of all rounds; ratios: median over the rounds of iopmem/C within each round')
  console.log(`  iopmem loops: stream-store ${cpu.streamStore}, stream-load ${cpu.streamLoad}; C: glibc memcpy, SSE2 stream loop (cc -O2)`)
  if (!backings.includes('hugetlb')) console.log('  hugetlb: skipped (not enough hugepages reserved: HugePages_Free)')
  let worst = Infinity
  // Host buffers stay referenced to the end: dropping one would leave a GC
  // to run beside the timed copies.
  const hosts: Buffer[] = []
  try {
    for (const backing of backings) {
      // Fresh buffers on both sides for each session: where the pages land in
      // physical memory (DRAM banks) moves a 1 GiB copy by several % for the
      // whole life of the buffers, so one session per side would measure
      // placement luck, not code.
      const samples: Array<{c: Rates; a: Rates}> = []
      for (let session = 0; session < sessions; session++) {
        const host = Buffer.allocUnsafeSlow(size).fill(2)
        hosts.push(host)
        samples.push(...(await interleaved(n, exe, host, backing, rounds)))
      }
      const zero: Rates = {memcpy_in: 0, memcpy_out: 0, stream_in: 0, stream_out: 0}
      const c = samples.reduce((acc, x) => maxRates(acc, x.c), zero)
      const a = samples.reduce((acc, x) => maxRates(acc, x.a), zero)
      // Ratios: the median over the rounds of each round's ratio (its C and
      // iopmem copies were made back to back), robust to a lucky or unlucky
      // moment on either side.
      const ratio = (f: (r: Rates) => number) => median(samples.map((x) => f(x.a) / f(x.c)))
      const label = backing === 'anon' ? 'anonymous+THP' : backing === 'hugetlb' ? 'hugetlb memfd' : 'memfd'
      const row = (name: string, x: number, y: number) => console.log(`    ${name.padEnd(36)}${f2(x)}    ${f2(y)}`)
      console.log(`  ${label.padEnd(38)}copy-in  copy-out`)
      row('C memcpy (GB/s, best)', c.memcpy_in, c.memcpy_out)
      row('C SSE2 stream loop', c.stream_in, c.stream_out)
      row('iopmem auto (wb: memcpy)', a.memcpy_in, a.memcpy_out)
      row('iopmem stream-store / stream-load', a.stream_in, a.stream_out)
      row('ratio iopmem/C: memcpy pair', ratio((r) => r.memcpy_in), ratio((r) => r.memcpy_out))
      row('ratio iopmem/C: stream pair', ratio((r) => r.stream_in), ratio((r) => r.stream_out))
      const best = [
        ratio((r) => Math.max(r.memcpy_in, r.stream_in)),
        ratio((r) => Math.max(r.memcpy_out, r.stream_out)),
      ]
      row('ratio iopmem/C: best vs best', best[0], best[1])
      worst = Math.min(worst, ...best)
    }
  } finally {
    fs.rmSync(path.dirname(exe), {recursive: true, force: true})
  }
  const {publicNs, rawNs} = perCallRead32(n)
  console.log(`  read32 per call: ${publicNs.toFixed(1)} ns (native.read32(m, off)); ${rawNs.toFixed(1)} ns (raw binding, slot)`)
  const met = worst >= FLOOR
  console.log(
    `  worst best-vs-best ratio (median) ${worst.toFixed(2)}: goal >= ${GOAL.toFixed(2)} ${worst >= GOAL ? 'met' : 'not met'}, floor ${FLOOR} ${met ? 'met' : 'NOT met'}`,
  )
  return met
}
