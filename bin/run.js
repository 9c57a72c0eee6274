#!/usr/bin/env node
import {createRequire} from 'node:module'

// The bundle is CommonJS (scripts/bundle.mjs): required, not imported, it is
// compiled by Node's CommonJS loader, through the hook below.
const require = createRequire(import.meta.url)
const bundle = require('node:path').dirname(require.resolve('../dist/bundle/main.cjs'))

// V8's code cache for the bundle (src/code-cache.ts): the build compiled what
// start-up runs, and each file's code is taken from there, not parsed and
// compiled again. A cache this Node cannot use is left aside: the file is
// compiled as without one. The build's recording (scripts/code-cache.mjs)
// installs its own before it runs this file.
try {
  const codeCache = require('../dist/bundle/code-cache.cjs')
  if (!codeCache.installedCodeCache()) codeCache.installCodeCache(bundle)
} catch {
  // No code cache: every file is compiled from its text.
}

const argv = process.argv.slice(2)

// `iopmem list` reads some 20 sysfs files per PCI function: they are read on the
// addon's threads while this one loads oclif, instead of after (src/prefetch.ts).
let headStartEnd = () => {}
if (argv[0] === 'list') {
  try {
    const prefetch = require('../dist/bundle/prefetch.cjs')
    prefetch.headStart(argv)
    headStartEnd = prefetch.headStartEnd
  } catch {
    // No head start: list reads as it always does.
  }
}

// The bundle's entry (npm run build: tsc, then scripts/bundle.mjs): oclif's run
// path and ours in a few files, not ~190 modules for Node to resolve and link.
const {run, flush, handle, reportUncaught} = require('../dist/bundle/main.cjs')

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
