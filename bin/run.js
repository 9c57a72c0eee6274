#!/usr/bin/env node
import module from 'node:module'

// Node >= 22.1 caches compiled code between runs (oclif's import is most of our
// start-up); Node 20 has no such cache and skips this.
module.enableCompileCache?.()

// The bundle's entry (npm run build: tsc, then scripts/bundle.mjs): oclif's run
// path and ours in a few files, not ~190 modules for Node to resolve and link.
const {run, flush, handle, reportUncaught} = await import('../dist/bundle/main.js')

// oclif's execute(), with one change: an error no BaseCommand caught (a plugin
// command's: `iopmem help lst --json`) is reported like ours when oclif raised
// it on purpose.
const argv = process.argv.slice(2)
try {
  await run(argv, import.meta.url)
  await flush()
} catch (error) {
  let exit
  try {
    exit = await reportUncaught(error, argv, import.meta.url)
  } catch {
    exit = undefined
  }
  if (exit === undefined) {
    await handle(error)
  } else process.exitCode = exit
}
