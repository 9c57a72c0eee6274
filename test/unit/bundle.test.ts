/**
 * The bundle's layout (scripts/bundle.mjs): the files a whole process loads,
 * and the code cache it compiles them through (src/code-cache.ts). Start-up is
 * mostly Node's work per file loaded and V8's compiling (docs/speed.md), so
 * the grouping of chunks is checked here by what `iopmem --version` and
 * `iopmem list` load, and the cache by what became of each file's, both read
 * off the process as it exits.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as path from 'node:path'

import {largeMachine} from '../helpers/machines.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const BUNDLE = path.join(ROOT, 'dist/bundle') + '/'

// At exit: every CommonJS file loaded (the bundle is CommonJS), then what
// became of each file's code cache, one line each on stderr.
const HOOK = `data:text/javascript,${encodeURIComponent(`
import Module from 'node:module'
process.on('exit', () => {
  for (const f of Object.keys(Module._cache)) process._rawDebug('LOADED ' + f)
  const cc = Module._cache[${JSON.stringify(BUNDLE + 'code-cache.cjs')}]
  for (const [f, use] of cc?.exports.installedCodeCache()?.used ?? []) process._rawDebug('CACHE ' + use + ' ' + f)
})`)}`

interface Loaded {
  /** The bundle's files (relative to dist/bundle) the process loaded. */
  files: string[]
  /** What became of each compiled file's code cache, by file relative to dist/bundle. */
  cache: Map<string, string>
}

function loaded(args: string[], env: Record<string, string>): Loaded {
  const r = spawnSync(process.execPath, ['--import', HOOK, path.join(ROOT, 'bin/run.js'), ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', ...env},
  })
  expect(r.status, r.stderr).to.equal(0)
  const lines = r.stderr.split('\n')
  const files = lines
    .filter((l) => l.startsWith('LOADED ' + BUNDLE))
    .map((l) => l.slice('LOADED '.length + BUNDLE.length))
  const cache = new Map(
    lines.filter((l) => l.startsWith('CACHE ')).map((l) => {
      const [, use, file] = l.split(' ')
      return [file.slice(BUNDLE.length), use]
    }),
  )
  return {files: [...new Set(files)].sort(), cache}
}

describe('the bundle: what a process loads', () => {
  const fx = largeMachine(8)
  after(() => fx.cleanup())

  it('list loads its own file and the scan, core and command chunks, nothing of another command', function () {
    this.timeout(60_000)
    const {files} = loaded(['list', '--json'], fx.env())
    for (const group of ['scan', 'core', 'command']) {
      expect(files.filter((f) => f.startsWith(`chunks/${group}-`)), `${group} chunk in ${files.join(' ')}`).to.have.length(1)
    }
    expect(files).to.include.members(['code-cache.cjs', 'prefetch.cjs', 'main.cjs', 'commands/list.cjs'])
    expect(files.filter((f) => /^(commands|hooks|lib|native)\//.test(f))).to.deep.equal(['commands/list.cjs'])
    // 7 today: the code cache's hook, the three entries and the three groups (oclif's WSL check is in core).
    expect(files.length, files.join(' ')).to.be.at.most(8)
  })

  it('list compiles every bundle file it loads from the code cache the build wrote', function () {
    this.timeout(60_000)
    const {files, cache} = loaded(['list', '--json'], fx.env())
    // The hook itself loads before it is installed: the rest go through it.
    expect([...cache.keys()].sort()).to.deep.equal(files.filter((f) => f !== 'code-cache.cjs'))
    for (const [file, use] of cache) expect(use, file).to.equal('accepted')
  })

  it('--version loads no command and not the command chunk', function () {
    this.timeout(60_000)
    const {files} = loaded(['--version'], fx.env())
    expect(files).to.include('main.cjs')
    expect(files.filter((f) => f.startsWith('chunks/core-'))).to.have.length(1)
    expect(files.filter((f) => /^(commands|hooks)\/|^chunks\/command-|^prefetch\.cjs$/.test(f)), files.join(' ')).to.deep.equal([])
  })
})
