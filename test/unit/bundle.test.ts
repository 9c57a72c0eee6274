/**
 * The bundle's layout (scripts/bundle.mjs): the files a whole process loads.
 * Start-up is mostly Node's work per file loaded (docs/speed.md), so the
 * grouping of chunks is checked here by what `iopmem --version` and `iopmem
 * list` load, through a module hook that reports each file resolved.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as path from 'node:path'

import {largeMachine} from '../helpers/machines.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const BUNDLE = path.join(ROOT, 'dist/bundle') + '/'

// Runs in the loader's thread: every file URL resolved, one line each on stderr.
const HOOK = `data:text/javascript,${encodeURIComponent(`
import {register} from 'node:module'
register('data:text/javascript,' + encodeURIComponent(\`
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context)
  if (r.url.startsWith('file:')) process._rawDebug('LOADED ' + r.url)
  return r
}\`))`)}`

/** The bundle's files (relative to dist/bundle) a process of iopmem with these arguments loads. */
function loaded(args: string[], env: Record<string, string>): string[] {
  const r = spawnSync(process.execPath, ['--import', HOOK, path.join(ROOT, 'bin/run.js'), ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', ...env},
  })
  expect(r.status, r.stderr).to.equal(0)
  const files = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('LOADED file://'))
    .map((l) => decodeURIComponent(new URL(l.slice('LOADED '.length)).pathname))
    .filter((f) => f.startsWith(BUNDLE))
    .map((f) => f.slice(BUNDLE.length))
  return [...new Set(files)].sort()
}

describe('the bundle: what a process loads', () => {
  const fx = largeMachine(8)
  after(() => fx.cleanup())

  it('list loads its own file and the scan, core and command chunks, nothing of another command', function () {
    this.timeout(60_000)
    const files = loaded(['list', '--json'], fx.env())
    for (const group of ['scan', 'core', 'command']) {
      expect(files.filter((f) => f.startsWith(`chunks/${group}-`)), `${group} chunk in ${files.join(' ')}`).to.have.length(1)
    }
    expect(files).to.include.members(['prefetch.js', 'main.js', 'commands/list.js'])
    expect(files.filter((f) => /^(commands|hooks|lib|native)\//.test(f))).to.deep.equal(['commands/list.js'])
    // 8 today: the three entries, the three groups, and the two chunks oclif's WSL check imports on demand.
    expect(files.length, files.join(' ')).to.be.at.most(10)
  })

  it('--version loads no command and not the command chunk', function () {
    this.timeout(60_000)
    const files = loaded(['--version'], fx.env())
    expect(files).to.include('main.js')
    expect(files.filter((f) => f.startsWith('chunks/core-'))).to.have.length(1)
    expect(files.filter((f) => /^(commands|hooks)\/|^chunks\/command-|^prefetch\.js$/.test(f)), files.join(' ')).to.deep.equal([])
  })
})
