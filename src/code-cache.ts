/**
 * V8's code cache for the bundle: bin/run.js installs it before it loads the
 * bundle, so that start-up takes the compiled code of the functions it runs
 * from the build instead of parsing and compiling them again (docs/speed.md).
 * Bundled on its own (dist/bundle/code-cache.cjs): it must load before the
 * files it serves.
 */
import {hash} from 'node:crypto'
import * as fs from 'node:fs'
import NodeModuleClass from 'node:module'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'
import * as vm from 'node:vm'

/**
 * What became of a file's cache: taken (`accepted`), none beside the file
 * (`none`), not read because it could be another's (`refused`: a symlink, not a
 * regular file, another owner than the file's, writable by group or others),
 * written for other text (`stale`: the file changed since), or turned down by
 * V8 (`rejected`: another V8 version or other flags).
 */
export type CacheUse = 'accepted' | 'none' | 'refused' | 'stale' | 'rejected'

export interface CodeCache {
  /** Each file compiled through the cache so far, and what became of its cache. */
  readonly used: ReadonlyMap<string, CacheUse>
  /**
   * With record: write each compiled file's cache beside it (FILE + SUFFIX),
   * holding every function compiled so far. For the build only
   * (scripts/code-cache.mjs); returns the files written.
   */
  write(): string[]
  /** Compile as Node does again. */
  uninstall(): void
}

/** A file's cache is FILE + SUFFIX. */
export const SUFFIX = '.v8cache'
// The header's first line: what this is (the SHA-256 of the text follows, header()).
const MAGIC = 'iopmem v8 code cache 1\n'

// Node's CommonJS wrapper, with one more parameter: the bundle's import() goes
// through __iopmemImport (scripts/bundle.mjs), since Node 20 has no import()
// for code compiled by vm.Script without --experimental-vm-modules. On line 1,
// so that line numbers stay the file's.
const HEAD = '(function (exports, require, module, __filename, __dirname, __iopmemImport) { '
const TAIL = '\n})'

interface NodeModule {
  exports: unknown
  require(id: string): unknown
}
interface ModuleStatics {
  prototype: {_compile(this: NodeModule, content: string, filename: string, ...rest: unknown[]): unknown}
  _resolveFilename(request: string, parent: NodeModule, isMain: boolean, options?: {paths?: string[]}): string
  _resolveLookupPaths(request: string, parent: NodeModule): string[] | null
  _extensions: unknown
  _cache: unknown
}
const Module = NodeModuleClass as unknown as ModuleStatics

let installed: CodeCache | undefined

/**
 * Compile each `.cjs` file under dir (an absolute path) through its cache from
 * now on. One at a time: a second install while one is in place throws.
 */
export function installCodeCache(dir: string, opts: {record?: boolean} = {}): CodeCache {
  if (installed) throw new Error('code-cache: already installed')
  const prefix = path.resolve(dir) + path.sep
  const used = new Map<string, CacheUse>()
  const compiled = new Map<string, {script: vm.Script; content: string}>()
  const original = Module.prototype._compile
  Module.prototype._compile = function (content, filename, ...rest) {
    // Only CommonJS (.cjs) under dir; anything else (another folder, an ES module required) as Node compiles it.
    if (!filename.startsWith(prefix) || !filename.endsWith('.cjs')) return original.call(this, content, filename, ...rest)
    const cached = readCache(filename, content)
    const script = new vm.Script(HEAD + content + TAIL, {filename, cachedData: cached.data})
    used.set(filename, cached.data === undefined ? cached.use : script.cachedDataRejected ? 'rejected' : 'accepted')
    if (opts.record) compiled.set(filename, {script, content})
    const wrapper = script.runInThisContext({displayErrors: true}) as (...args: unknown[]) => unknown
    return wrapper.call(this.exports, this.exports, requireOf(this), this, filename, path.dirname(filename), importOf(filename))
  }
  const cache: CodeCache = {
    used,
    write() {
      const written: string[] = []
      for (const [file, {script, content}] of compiled) {
        const target = file + SUFFIX
        const tmp = `${target}.${process.pid}.tmp`
        fs.writeFileSync(tmp, Buffer.concat([Buffer.from(header(content)), script.createCachedData()]), {mode: 0o644, flag: 'wx'})
        fs.renameSync(tmp, target)
        written.push(target)
      }
      return written
    },
    uninstall() {
      if (installed !== cache) return
      Module.prototype._compile = original
      installed = undefined
    },
  }
  installed = cache
  return cache
}

/** The code cache installed now, if any (what bin/run.js installed: tests read its `used`). */
export function installedCodeCache(): CodeCache | undefined {
  return installed
}

/** A cache's header: what it is, and the SHA-256 of the text it was made from. */
function header(content: string): string {
  return MAGIC + hash('sha256', content) + '\n'
}

/**
 * The cache beside file, if it may be trusted as the file is and was made from
 * this text (content). The text is hashed only then: a file with no cache
 * (another command's, a vendored package) costs one failed open.
 */
function readCache(file: string, content: string): {data: Buffer} | {data?: undefined; use: 'none' | 'refused' | 'stale'} {
  let fd: number
  try {
    fd = fs.openSync(file + SUFFIX, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  } catch (e) {
    return {use: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'none' : 'refused'}
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile() || st.uid !== fs.statSync(file).uid || (st.mode & 0o022) !== 0) return {use: 'refused'}
    const bytes = fs.readFileSync(fd)
    const expected = header(content)
    if (bytes.length <= expected.length || bytes.toString('latin1', 0, expected.length) !== expected) return {use: 'stale'}
    return {data: bytes.subarray(expected.length)}
  } catch {
    return {use: 'refused'}
  } finally {
    fs.closeSync(fd)
  }
}

/** The require a module compiled by Node would get. */
function requireOf(mod: NodeModule): NodeJS.Require {
  const require = ((id: string) => mod.require(id)) as NodeJS.Require
  const resolve = ((request: string, options?: {paths?: string[]}) => Module._resolveFilename(request, mod, false, options)) as NodeJS.RequireResolve
  resolve.paths = (request: string) => Module._resolveLookupPaths(request, mod)
  require.resolve = resolve
  require.main = process.mainModule
  require.extensions = Module._extensions as NodeJS.Require['extensions']
  require.cache = Module._cache as NodeJS.Require['cache']
  return require
}

/** import() for a file's code: a relative specifier is the file's sibling, as import() there would take it. */
function importOf(file: string): (specifier: string) => Promise<unknown> {
  return (specifier) => import(specifier.startsWith('./') || specifier.startsWith('../') ? pathToFileURL(path.resolve(path.dirname(file), specifier)).href : specifier)
}
