#!/usr/bin/env node
// Bundles dist/ (tsc's output) into dist/bundle with esbuild: one entry per
// command and hook, bin/run.js's entry (dist/main.js), and the modules tests
// reach into (test seams); code they share goes into chunks. Start-up was
// mostly Node's module machinery (resolving, reading and linking ~190 files
// for `iopmem list`); a bundle is a handful of files. oclif finds the commands
// through package.json's oclif.commands (./dist/bundle/commands).
import * as esbuild from 'esbuild'
import {readdirSync, rmSync} from 'node:fs'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = path.join(root, 'dist')

function jsUnder(dir) {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => path.join(e.parentPath ?? e.path, e.name))
}

// Modules the host-side tests import to install a fixture host, a fake exec or
// driver core: they must be the very instances the commands use.
const SEAMS = ['lib/sys/host.js', 'lib/sys/exec.js', 'lib/dax/mkfs.js', 'lib/dax/locate.js', 'native/index.js']

const entryPoints = [
  path.join(dist, 'main.js'),
  ...jsUnder(path.join(dist, 'commands')),
  ...jsUnder(path.join(dist, 'hooks')),
  ...SEAMS.map((s) => path.join(dist, s)),
  // locate's worker thread (src/lib/dax/locate.ts finds it here).
  path.join(dist, 'lib/dax/locate-worker.js'),
]

rmSync(path.join(dist, 'bundle'), {recursive: true, force: true})
await esbuild.build({
  entryPoints,
  outbase: dist,
  outdir: path.join(dist, 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  // typescript: oclif requires it only to run a plugin from its sources (development).
  // The addon is a .node file found at run time (node-gyp-build).
  external: ['typescript', '*.node'],
  // CommonJS packages (oclif) call require() for Node's own modules.
  banner: {js: "import {createRequire as __iopmemRequire} from 'node:module'; const require = __iopmemRequire(import.meta.url);"},
  legalComments: 'none',
  logLevel: 'warning',
})
