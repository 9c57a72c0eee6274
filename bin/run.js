#!/usr/bin/env node
import module from 'node:module'

// Node >= 22.1 caches compiled code between runs (oclif's import is most of our
// start-up); Node 20 has no such cache and skips this.
module.enableCompileCache?.()

const argv = process.argv.slice(2)

// `iopmem list` reads some 20 sysfs files per PCI function: they are read on the
// addon's threads while this one loads oclif, instead of after (src/prefetch.ts).
let headStartEnd = () => {}
if (argv[0] === 'list') {
  try {
    const prefetch = await import('../dist/bundle/prefetch.js')
    prefetch.headStart(argv)
    headStartEnd = prefetch.headStartEnd
  } catch {
    // No head start: list reads as it always does.
  }
}

// The bundle's entry (npm run build: tsc, then scripts/bundle.mjs): oclif's run
// path and ours in a few files, not ~190 modules for Node to resolve and link.
const {run, flush, handle, reportUncaught} = await import('../dist/bundle/main.js')

// oclif's execute(), with one change: an error no BaseCommand caught (a plugin
// command's: `iopmem help lst --json`) is reported like ours when oclif raised
// it on purpose.
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
} finally {
  // A head start the command did not take (a usage error, say) keeps the process no longer.
  headStartEnd()
}
