#!/usr/bin/env node
import module from 'node:module'

// Node >= 22.1 caches compiled code between runs (oclif's import is most of our
// start-up); Node 20 has no such cache and skips this.
module.enableCompileCache?.()

const {execute} = await import('@oclif/core')

await execute({dir: import.meta.url})
