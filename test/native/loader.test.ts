/**
 * The lazy loader: a prebuild loads where build/ is absent (a temp copy of the
 * package, as `npm pack` + install without a compiler would leave it),
 * IOPMEM_NATIVE overrides, and a missing addon is E_NATIVE_MISSING with the
 * way to build it, raised by loadNative() and never at import.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import {createRequire} from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'

import {loadNative, nativeAvailable} from '../../src/native/index.js'
import {ROOT} from './helpers.js'

const PREBUILD_DIR = path.join(ROOT, 'prebuilds', 'linux-x64')
const {sourceHash} = createRequire(import.meta.url)(path.join(ROOT, 'native', 'source-hash.cjs')) as {sourceHash(root: string): string}

/** A copy of the package without build/: package.json, src/, optionally prebuilds/, node_modules linked. */
function packageCopy(withPrebuilds: boolean): {dir: string; cleanup(): void} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-pkg-'))
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  fs.cpSync(path.join(ROOT, 'src'), path.join(dir, 'src'), {recursive: true})
  if (withPrebuilds) fs.cpSync(path.join(ROOT, 'prebuilds'), path.join(dir, 'prebuilds'), {recursive: true})
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  return {dir, cleanup: () => fs.rmSync(dir, {recursive: true, force: true})}
}

const PROBE = `
  import {loadNative, nativeAvailable} from './src/native/index.ts'
  let out
  try {
    const n = loadNative()
    const fd = n.memfd('probe', 4096)
    const m = n.map(fd, {mode: 'wb'})
    n.write32(m, 8, 0xfeedface)
    out = {ok: true, file: n.file, value: n.read32(m, 8), available: nativeAvailable(), sourceHash: n.raw.sourceHash}
  } catch (e) {
    out = {ok: false, code: e.code, message: e.message, suggestions: e.suggestions, exit: e.exit, available: nativeAvailable()}
  }
  console.log(JSON.stringify(out))
`

function probe(cwd: string, env: Record<string, string | undefined> = {}): any {
  const childEnv: NodeJS.ProcessEnv = {...process.env, ...env}
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k]
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROBE], {cwd, env: childEnv, encoding: 'utf8'})
  expect(r.status, r.stderr).to.equal(0)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

describe('native: loader', function () {
  this.timeout(60000)

  it('loads once and hands back the same object', () => {
    expect(loadNative()).to.equal(loadNative())
    expect(nativeAvailable()).to.equal(true)
    expect(fs.existsSync(loadNative().file)).to.equal(true)
  })

  it('a prebuild (prebuilds/linux-x64) loads in a copy of the package that has no build/', () => {
    const files = fs.existsSync(PREBUILD_DIR) ? fs.readdirSync(PREBUILD_DIR).filter((f) => f.endsWith('.node')) : []
    expect(files, 'no prebuilds/linux-x64/*.node: run the prebuildify script first').to.not.be.empty
    const pkg = packageCopy(true)
    try {
      expect(fs.existsSync(path.join(pkg.dir, 'build'))).to.equal(false)
      const out = probe(pkg.dir, {IOPMEM_NATIVE: undefined, IOPMEM_PREBUILD: undefined})
      expect(out.ok, out.message).to.equal(true)
      expect(out.file.startsWith(path.join(pkg.dir, 'prebuilds', 'linux-x64') + path.sep)).to.equal(true)
      expect(out.value).to.equal(0xfeedface)
      expect(out.sourceHash, 'the prebuild is stale: rebuild it (prebuildify --napi --strip) and commit it').to.equal(sourceHash(ROOT))
    } finally {
      pkg.cleanup()
    }
  })

  it('IOPMEM_NATIVE names the .node file to load', () => {
    const pkg = packageCopy(false)
    try {
      const copy = path.join(pkg.dir, 'elsewhere.node')
      fs.copyFileSync(loadNative().file, copy)
      const out = probe(pkg.dir, {IOPMEM_NATIVE: copy})
      expect(out.ok, out.message).to.equal(true)
      expect(out.file).to.equal(copy)
    } finally {
      pkg.cleanup()
    }
  })

  it('without build/ or prebuilds, loadNative() throws E_NATIVE_MISSING saying how to build; importing does not', () => {
    const pkg = packageCopy(false)
    try {
      const out = probe(pkg.dir, {IOPMEM_NATIVE: undefined, IOPMEM_PREBUILD: undefined})
      expect(out.ok).to.equal(false)
      expect(out.code).to.equal('E_NATIVE_MISSING')
      expect(out.exit).to.equal(7)
      expect(out.suggestions.join('\n')).to.contain('npm run build:native')
      expect(out.available).to.equal(false)
    } finally {
      pkg.cleanup()
    }
  })

  it('a bad IOPMEM_NATIVE is E_NATIVE_MISSING naming the file', () => {
    const out = probe(ROOT, {IOPMEM_NATIVE: '/nonexistent/iopmem.node'})
    expect(out.code).to.equal('E_NATIVE_MISSING')
    expect(out.message).to.contain('/nonexistent/iopmem.node')
  })

  it('as root, IOPMEM_NATIVE naming an addon others can write is refused, not loaded', function () {
    if (process.geteuid?.() !== 0) this.skip()
    const pkg = packageCopy(false)
    try {
      const copy = path.join(pkg.dir, 'elsewhere.node')
      fs.copyFileSync(loadNative().file, copy)
      fs.chmodSync(copy, 0o666)
      const out = probe(pkg.dir, {IOPMEM_NATIVE: copy})
      expect(out.ok).to.equal(false)
      expect(out.code).to.equal('E_UNTRUSTED_SEAM')
      expect(out.message).to.match(/writable by its group/)
    } finally {
      pkg.cleanup()
    }
  })
})
