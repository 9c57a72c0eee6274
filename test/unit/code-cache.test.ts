/**
 * src/code-cache.ts: a file under the cached folder is compiled with the
 * cache beside it only when that cache is the file's own (same text, same
 * owner, written by no one else), and runs the same with or without one.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import {createRequire} from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'

import {type CodeCache, installCodeCache, installedCodeCache, SUFFIX} from '../../src/code-cache.js'

const require = createRequire(import.meta.url)
const ROOT = path.resolve(import.meta.dirname, '../..')

// A module with a function only a call compiles, a relative import() and a require of a sibling.
const MAIN = `'use strict';
const sibling = require('./sibling.cjs');
function twice(n) { return sibling.add(n, n) }
exports.twice = twice;
exports.load = () => (typeof __iopmemImport === "function" ? __iopmemImport : (s) => import(s))('./esm.mjs');
exports.where = () => __filename + ' ' + __dirname + ' ' + require.resolve('./sibling.cjs');
`

describe('code-cache: V8 code cache for the bundle', () => {
  let dir: string
  let cache: CodeCache | undefined

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-cc-'))
    fs.writeFileSync(path.join(dir, 'main.cjs'), MAIN)
    fs.writeFileSync(path.join(dir, 'sibling.cjs'), `'use strict';\nexports.add = (a, b) => a + b;\n`)
    fs.writeFileSync(path.join(dir, 'esm.mjs'), 'export const answer = 42\n')
  })
  afterEach(() => {
    cache?.uninstall()
    cache = undefined
    for (const f of Object.keys(require.cache)) if (f.startsWith(dir + path.sep)) delete require.cache[f]
    fs.rmSync(dir, {recursive: true, force: true})
  })

  /** Load main.cjs afresh through a new install; what became of its cache, and what it computes. */
  async function load(opts: {record?: boolean} = {}): Promise<{use: string | undefined; twice: number; answer: number}> {
    cache?.uninstall()
    for (const f of Object.keys(require.cache)) if (f.startsWith(dir + path.sep)) delete require.cache[f]
    cache = installCodeCache(dir, opts)
    const m = require(path.join(dir, 'main.cjs')) as {twice(n: number): number; load(): Promise<{answer: number}>; where(): string}
    const file = path.join(dir, 'main.cjs')
    expect(m.where()).to.equal(`${file} ${dir} ${path.join(dir, 'sibling.cjs')}`)
    return {use: cache.used.get(file), twice: m.twice(21), answer: (await m.load()).answer}
  }

  /**
   * Load main.cjs through an install in another process, recording or not:
   * this one's V8 keeps what it compiled (it would answer from memory without
   * reading a cache), and its flags are not a command's (a test sets
   * --expose-gc, and V8 turns down a cache made under other flags).
   */
  function inChild(record = false): {used: Record<string, string>; twice: number; answer: number; written?: string[]} {
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', `
        import {createRequire} from 'node:module'
        import {installCodeCache} from ${JSON.stringify(path.join(ROOT, 'src/code-cache.ts'))}
        const cache = installCodeCache(${JSON.stringify(dir)}, {record: ${record}})
        const m = createRequire(import.meta.url)(${JSON.stringify(path.join(dir, 'main.cjs'))})
        const answer = (await m.load()).answer
        const twice = m.twice(21)
        const written = ${record} ? cache.write() : undefined
        console.log(JSON.stringify({used: Object.fromEntries(cache.used), twice, answer, written}))`],
      {encoding: 'utf8'},
    )
    expect(child.status, child.stderr).to.equal(0)
    return JSON.parse(child.stdout)
  }

  /** Record a cache for main.cjs (and sibling.cjs), with twice() compiled. */
  function record(): void {
    const r = inChild(true)
    expect(r.used[path.join(dir, 'main.cjs')]).to.equal('none')
    expect(r.written!.sort()).to.deep.equal([path.join(dir, 'main.cjs' + SUFFIX), path.join(dir, 'sibling.cjs' + SUFFIX)])
  }

  it('takes the cache the build recorded, and the code runs the same', async () => {
    record()
    expect(inChild()).to.deep.equal({
      used: {[path.join(dir, 'main.cjs')]: 'accepted', [path.join(dir, 'sibling.cjs')]: 'accepted'},
      twice: 42,
      answer: 42,
    })
    // In this process too the file runs the same (whatever V8 makes of the cache here).
    expect((await load()).twice).to.equal(42)
    expect(installedCodeCache()).to.equal(cache)
  })

  it('leaves aside a cache V8 turns down (another V8, or not a cache), and compiles the file', async () => {
    record()
    const target = path.join(dir, 'main.cjs' + SUFFIX)
    const bytes = fs.readFileSync(target)
    // The header (what the cache is, the text's digest) stays: V8 gets bytes that are no cache of its.
    const header = bytes.subarray(0, bytes.indexOf(0x0a, bytes.indexOf(0x0a) + 1) + 1)
    fs.writeFileSync(target, Buffer.concat([header, Buffer.alloc(bytes.length - header.length, 0x5a)]))
    expect(inChild()).to.deep.equal({
      used: {[path.join(dir, 'main.cjs')]: 'rejected', [path.join(dir, 'sibling.cjs')]: 'accepted'},
      twice: 42,
      answer: 42,
    })
  })

  it('compiles as Node does outside its folder, and again after uninstall', () => {
    cache = installCodeCache(dir)
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-cc-other-'))
    try {
      fs.writeFileSync(path.join(other, 'x.cjs'), 'exports.x = 1\n')
      expect((require(path.join(other, 'x.cjs')) as {x: number}).x).to.equal(1)
      expect(cache.used.size).to.equal(0)
    } finally {
      fs.rmSync(other, {recursive: true, force: true})
    }
    cache.uninstall()
    expect(installedCodeCache()).to.equal(undefined)
    expect((require(path.join(dir, 'sibling.cjs')) as {add(a: number, b: number): number}).add(1, 2)).to.equal(3)
  })

  it('refuses a second install while one is in place', () => {
    cache = installCodeCache(dir)
    expect(() => installCodeCache(dir)).to.throw(/already installed/)
  })

  it('leaves a cache aside when the file changed since, even to text of the same length', async () => {
    record()
    const file = path.join(dir, 'main.cjs')
    const changed = MAIN.replace('sibling.add(n, n)', 'sibling.add(n, 1)')
    expect(changed.length).to.equal(MAIN.length)
    fs.writeFileSync(file, changed)
    expect(await load()).to.deep.equal({use: 'stale', twice: 22, answer: 42})
  })

  it('does not read a cache that is a symlink, not a file, or writable by others', async () => {
    record()
    const target = path.join(dir, 'main.cjs' + SUFFIX)
    const elsewhere = path.join(dir, 'elsewhere')
    fs.renameSync(target, elsewhere)
    fs.symlinkSync(elsewhere, target)
    expect((await load()).use).to.equal('refused')
    fs.rmSync(target)
    fs.mkdirSync(target)
    expect((await load()).use).to.equal('refused')
    fs.rmdirSync(target)
    fs.renameSync(elsewhere, target)
    fs.chmodSync(target, 0o664)
    expect((await load()).use).to.equal('refused')
    fs.chmodSync(target, 0o646)
    expect((await load()).use).to.equal('refused')
    fs.chmodSync(target, 0o644)
    expect(inChild().used[path.join(dir, 'main.cjs')]).to.equal('accepted')
    // Another owner than the file's (only root can hand a file to another).
    if (process.getuid?.() === 0) {
      fs.chownSync(target, 65534, 65534)
      expect((await load()).use).to.equal('refused')
    }
  })

  it('answers none without a cache, and a recording writes whole files only', async () => {
    expect(await load()).to.deep.equal({use: 'none', twice: 42, answer: 42})
    const r = await load({record: true})
    expect(r.use).to.equal('none')
    expect(cache!.write().sort()).to.deep.equal([path.join(dir, 'main.cjs' + SUFFIX), path.join(dir, 'sibling.cjs' + SUFFIX)])
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).to.deep.equal([])
  })
})
