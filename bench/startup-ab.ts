/**
 * Start-up of two builds side by side: `node --import tsx bench/startup-ab.ts
 * OTHER_CHECKOUT [ROUNDS]` times `node -e 0`, then `--version` and `list --json`
 * (on the 256-function fixture of list-startup) of the other checkout and of
 * this one, in turn, ROUNDS times (default 25), each a whole process, and
 * prints each one's min and median over `node -e 0`. Taking turns makes drift
 * in the machine's load hit both builds alike, so two builds compare even on
 * a shared machine; both checkouts must be built (`npm run build`).
 */
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {largeMachine} from '../test/helpers/machines.js'
import {median} from './stats.js'

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const [otherArg, roundsArg] = process.argv.slice(2)
if (!otherArg || !fs.existsSync(path.join(otherArg, 'bin/run.js'))) {
  console.error('usage: node --import tsx bench/startup-ab.ts OTHER_CHECKOUT [ROUNDS]  (a built iopmem checkout)')
  process.exit(2)
}
const other = path.resolve(otherArg)
const rounds = Number(roundsArg ?? 25)

const fx = largeMachine(256)
try {
  const env = {...process.env, ...fx.env(), NO_COLOR: '1'}
  const runs: Array<[string, string[]]> = [
    ['node -e 0', ['-e', '0']],
    ['other --version', [path.join(other, 'bin/run.js'), '--version']],
    ['this --version', [path.join(HERE, 'bin/run.js'), '--version']],
    ['other list --json', [path.join(other, 'bin/run.js'), 'list', '--json']],
    ['this list --json', [path.join(HERE, 'bin/run.js'), 'list', '--json']],
  ]
  const times = new Map<string, number[]>(runs.map(([name]) => [name, []]))
  for (let i = 0; i < rounds; i++) {
    for (const [name, args] of runs) {
      const t0 = process.hrtime.bigint()
      const r = spawnSync(process.execPath, args, {env, stdio: ['ignore', 'ignore', 'pipe']})
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      if (r.status !== 0) throw new Error(`${name} exited ${r.status}: ${r.stderr}`)
      times.get(name)!.push(ms)
    }
  }
  const min = (name: string) => Math.min(...times.get(name)!)
  console.log(`start-up, ${rounds} rounds taking turns; other = ${other}`)
  console.log(`  node -e 0            min ${min('node -e 0').toFixed(1)} ms, median ${median(times.get('node -e 0')!).toFixed(1)} ms`)
  for (const [name] of runs.slice(1)) {
    const overMin = min(name) - min('node -e 0')
    const overMedian = median(times.get(name)!) - median(times.get('node -e 0')!)
    console.log(`  ${name.padEnd(20)} over node: min ${overMin.toFixed(1)} ms, median ${overMedian.toFixed(1)} ms`)
  }
} finally {
  fx.cleanup()
}
