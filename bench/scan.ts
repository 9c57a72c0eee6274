/**
 * sysfs-scan: the scan behind `iopmem list` (PciScanner.scanAll) of the
 * 256-function fixture, in a fresh process each time (cold, as a command
 * runs it), read through the addon's readMany (Host.readMany, what the CLI
 * does) beside the same scan read file by file through Node's fs (the
 * baseline, what the CLI does without the addon). Interleaved, median of
 * BENCH_RUNS (default 10). Both build the same model: checked once here, and
 * by test/unit/read-many.test.ts on every fixture machine.
 */
import {spawnSync} from 'node:child_process'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {largeMachine} from '../test/helpers/machines.js'
import {median} from './stats.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RUNS = Number(process.env.BENCH_RUNS ?? 10)

// tsc's output (dist/lib, dist/native): the modules the bundle is made from.
const SCRIPT = `
const {PciScanner} = await import(${JSON.stringify(path.join(ROOT, 'dist/lib/pci/index.js'))})
const {Host, setBulkReader} = await import(${JSON.stringify(path.join(ROOT, 'dist/lib/sys/index.js'))})
const {bulkReader} = await import(${JSON.stringify(path.join(ROOT, 'dist/native/index.js'))})
if (process.argv[1] === 'bulk') setBulkReader(bulkReader)
const t0 = performance.now()
const fns = new PciScanner(Host.fromEnv()).scanAll()
const ms = performance.now() - t0
console.log(JSON.stringify({ms, count: fns.length, model: process.argv[2] === 'model' ? fns : undefined}))
`

function once(how: 'bulk' | 'file', env: NodeJS.ProcessEnv, model = false): {ms: number; count: number; model?: unknown} {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT, how, ...(model ? ['model'] : [])], {env, encoding: 'utf8', maxBuffer: 64 << 20})
  if (r.status !== 0) throw new Error(`scan (${how}) exited ${r.status}: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

export function scanBench(): boolean {
  const fx = largeMachine(256)
  try {
    const env = {...process.env, ...fx.env()}
    const a = once('bulk', env, true)
    const b = once('file', env, true)
    if (a.count !== 256 || JSON.stringify(a.model) !== JSON.stringify(b.model)) throw new Error('the two scans differ')
    const bulk: number[] = []
    const file: number[] = []
    for (let i = 0; i < RUNS; i++) {
      bulk.push(once('bulk', env).ms)
      file.push(once('file', env).ms)
    }
    const mb = median(bulk)
    const mf = median(file)
    console.log(`sysfs-scan (256 functions, a fresh process each, median of ${RUNS})`)
    console.log(`  file by file (Node fs)      ${mf.toFixed(1).padStart(7)} ms`)
    console.log(`  readMany (the addon)        ${mb.toFixed(1).padStart(7)} ms`)
    console.log(`  ratio file / readMany       ${(mf / mb).toFixed(2).padStart(7)}   (goal: above 1)`)
    return mf / mb > 1
  } finally {
    fx.cleanup()
  }
}
