#!/usr/bin/env node
import module from 'node:module'

// Node >= 22.1 caches compiled code between runs (oclif's import is most of our
// start-up); Node 20 has no such cache and skips this.
module.enableCompileCache?.()

// oclif's parts, not its index: '@oclif/core' loads every module it has (help,
// ux, the parser's helpers, semver for an engine check) before a command runs.
const [{run}, {flush}] = await Promise.all([import('@oclif/core/run'), import('@oclif/core/flush')])

// oclif's execute(), with one change: an error no BaseCommand caught (a plugin
// command's: `iopmem help lst --json`) is reported like ours when oclif raised
// it on purpose (dist/base-command.js, loaded only then).
const argv = process.argv.slice(2)
try {
  await run(argv, import.meta.url)
  await flush()
} catch (error) {
  let exit
  try {
    const {reportUncaught} = await import('../dist/base-command.js')
    exit = await reportUncaught(error, argv, import.meta.url)
  } catch {
    exit = undefined
  }
  if (exit === undefined) {
    const {handle} = await import('@oclif/core/handle')
    await handle(error)
  } else process.exitCode = exit
}
