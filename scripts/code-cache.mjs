#!/usr/bin/env node
// npm run build's last step: V8's code cache for the bundle (src/code-cache.ts).
// `iopmem list --json` runs once, bin/run.js itself, on the test suite's
// 256-function fixture, with every bundle file compiled through a recording
// hook; then each file it loaded gets its cache beside it (FILE.v8cache),
// holding every function compiled by then: what a start-up runs. Files no
// start-up of list loads get none and are compiled as before.
//
// `node --import tsx scripts/code-cache.mjs` makes the fixture (a TypeScript
// test helper) and runs itself again with `--record`, without tsx: the
// recording process must load the bundle exactly as a command does.
import {spawnSync} from 'node:child_process'
import {createRequire} from 'node:module'
import * as path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bundle = path.join(root, 'dist', 'bundle')
const ARGV = ['list', '--json']

if (process.argv[2] === '--record') {
  const cache = createRequire(import.meta.url)(path.join(bundle, 'code-cache.cjs')).installCodeCache(bundle, {record: true})
  // bin/run.js as `iopmem list --json` runs it; it keeps the hook installed here.
  const bin = path.join(root, 'bin', 'run.js')
  process.argv = [process.argv[0], bin, ...ARGV]
  await import(pathToFileURL(bin).href)
  if (process.exitCode) throw new Error(`scripts/code-cache.mjs: iopmem ${ARGV.join(' ')} exited ${process.exitCode}`)
  const written = cache.write()
  process.stderr.write(`code cache: ${written.length} files (${written.map((f) => path.relative(bundle, f)).join(', ')})\n`)
} else {
  const {largeMachine} = await import('../test/helpers/machines.ts')
  const fx = largeMachine(256)
  try {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--record'], {
      env: {...process.env, ...fx.env(), NO_COLOR: '1'},
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    if (r.status !== 0) throw new Error(`scripts/code-cache.mjs: recording exited ${r.status ?? r.signal}`)
  } finally {
    fx.cleanup()
  }
}
