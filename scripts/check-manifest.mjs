#!/usr/bin/env node
// Fails when the committed oclif.manifest.json differs from the one the build
// just generated (npm run build rewrites it): commit the regenerated file.
import {execFileSync} from 'node:child_process'

let diff = ''
try {
  execFileSync('git', ['rev-parse', '--is-inside-work-tree'], {stdio: 'ignore'})
} catch {
  console.log('check:manifest: not a git checkout; skipped')
  process.exit(0)
}
try {
  diff = execFileSync('git', ['diff', '--stat', '--', 'oclif.manifest.json'], {encoding: 'utf8'})
} catch (error) {
  console.error(`check:manifest: git diff failed: ${error.message}`)
  process.exit(1)
}
if (diff.trim() !== '') {
  console.error('oclif.manifest.json is stale: the build regenerated it with changes.\n' + diff + 'Commit the regenerated oclif.manifest.json.')
  process.exit(1)
}
console.log('check:manifest: oclif.manifest.json is up to date')
