/**
 * npm run bench: each benchmark puts iopmem beside a baseline in the same run
 * and prints both figures and how they compare.
 *
 *  list-startup  `iopmem list --json` on a 256-function fixture vs a bare
 *                `node -e 0`: median of 10 whole-process runs each; the goal is
 *                at most 150 ms over the baseline. `iopmem --version` is timed
 *                too, to show how much of that is oclif's own start-up.
 *  native-copy   the addon's copy engine beside a C program built in the same
 *                run, into and out of 1 GiB of WB memory (bench/native).
 *  io-engine-vs-fio  bench p2p's I/O engine beside fio (io_uring, O_DIRECT, same
 *                block size, queue depth and jobs) on tmpfs and on disk (bench/p2p.ts).
 *  sysfs-scan    list's scan of the 256-function fixture read through the addon's
 *                readMany beside the same scan file by file (bench/scan.ts).
 *
 * BENCH_ONLY=list-startup npm run bench runs only the named benchmark(s).
 */
import {spawnSync} from 'node:child_process'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {largeMachine} from '../test/helpers/machines.js'
import {nativeCopyBench} from './native/index.js'
import {locateBench} from './locate.js'
import {fioBench} from './p2p.js'
import {scanBench} from './scan.js'
import {median} from './stats.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RUNS = Number(process.env.BENCH_RUNS ?? 10)

function timeRun(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, {env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20})
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return ms
}

function listStartup(): boolean {
  const fx = largeMachine(256)
  try {
    const env = {...process.env, ...fx.env(), NO_COLOR: '1'}
    const cli = [path.join(ROOT, 'bin/run.js'), 'list', '--json']
    // Check the output once, and warm the page cache for both.
    const out = spawnSync(process.execPath, cli, {env, encoding: 'utf8', maxBuffer: 64 << 20})
    const count = JSON.parse(out.stdout).functions.length
    if (count !== 256) throw new Error(`expected 256 functions, got ${count}`)
    timeRun(['-e', '0'], env)
    const base: number[] = []
    const tool: number[] = []
    const floor: number[] = []
    for (let i = 0; i < RUNS; i++) {
      // Interleave so drift in machine load hits all alike.
      base.push(timeRun(['-e', '0'], env))
      tool.push(timeRun(cli, env))
      floor.push(timeRun([path.join(ROOT, 'bin/run.js'), '--version'], env))
    }
    const b = median(base)
    const t = median(tool)
    const f = median(floor)
    const over = t - b
    const goal = 150
    console.log(`list-startup (256 functions, median of ${RUNS})`)
    console.log(`  node -e 0                 ${b.toFixed(1).padStart(7)} ms`)
    console.log(`  iopmem --version          ${f.toFixed(1).padStart(7)} ms   (oclif start-up alone: ${(f - b).toFixed(1)} ms over node)`)
    console.log(`  iopmem list --json        ${t.toFixed(1).padStart(7)} ms`)
    console.log(`  difference                ${over.toFixed(1).padStart(7)} ms   (goal <= ${goal} ms: ${over <= goal ? 'met' : 'NOT met'})`)
    console.log(`  ratio iopmem / node -e 0  ${(t / b).toFixed(2).padStart(7)}`)
    return over <= goal
  } finally {
    fx.cleanup()
  }
}

// BENCH_ONLY=list-startup (comma-separated names) runs only those benchmarks.
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined
const benches: [string, () => boolean | Promise<boolean>][] = [
  ['list-startup', listStartup],
  ['sysfs-scan', scanBench],
  ['native-copy', nativeCopyBench],
  ['io-engine-vs-fio', fioBench],
  ['locate-vs-filefrag', locateBench],
]
const unknown = [...(only ?? [])].filter((n) => !benches.some(([name]) => name === n))
if (unknown.length > 0) throw new Error(`BENCH_ONLY: no benchmark ${unknown.join(', ')} (have ${benches.map(([n]) => n).join(', ')})`)
const results: Record<string, boolean> = {}
for (const [name, run] of benches) {
  if (only && !only.has(name)) continue
  if (Object.keys(results).length > 0) console.log()
  results[name] = await run()
}
const missed = Object.entries(results).filter(([, ok]) => !ok)
console.log(missed.length === 0 ? '\nall goals met' : `\ngoals not met: ${missed.map(([k]) => k).join(', ')}`)
