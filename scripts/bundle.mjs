#!/usr/bin/env node
// Bundles dist/ (tsc's output) into dist/bundle with esbuild: one entry per
// command and hook, bin/run.js's entries (dist/main.js, dist/prefetch.js), and
// the modules tests reach into (test seams). Start-up was mostly Node's module
// machinery (resolving, reading and linking ~190 files for `iopmem list`); a
// bundle is a handful of files. The code entries share is then regrouped into
// a few chunks by Rollup (GROUPS below), written as CommonJS (.cjs) so that
// bin/run.js can compile them through V8's code cache (src/code-cache.ts; the
// build writes the caches: scripts/code-cache.mjs). oclif finds the commands
// through package.json's oclif.commands (./dist/bundle/commands).
//
// package.json's sideEffects says which of our modules do something when
// loaded (only base-command.js: it installs the addon's bulk reader). esbuild
// leaves out every other module nothing uses, so importing a domain's index.ts
// costs only what is taken from it (`list` no longer loads mkfs and locate).
import * as esbuild from 'esbuild'
import {rollup} from 'rollup'
import {readFileSync, readdirSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
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
  // bin/run.js's head start for `iopmem list` (src/prefetch.ts).
  path.join(dist, 'prefetch.js'),
  ...jsUnder(path.join(dist, 'commands')),
  ...jsUnder(path.join(dist, 'hooks')),
  ...SEAMS.map((s) => path.join(dist, s)),
  // locate's worker thread (src/lib/dax/locate.ts finds it here).
  path.join(dist, 'lib/dax/locate-worker.js'),
]

// Start-up (docs/speed.md): every command pays for oclif's own start-up before it
// runs. oclif is CommonJS, and esbuild evaluates a CommonJS module when its
// importer is evaluated, so all ~100 of oclif's modules (help, ux, spinners,
// globbing, templates) ran before `iopmem --version` could answer. oclifLean
// changes oclif as it is bundled, in ways that keep what it does:
// - a top-level `const x_1 = require("…")` (also wrapped in __importDefault or
//   __importStar, as tsc writes them) becomes lazy: the module is evaluated on
//   the first use of x_1, so `--version` evaluates ~40 modules, not ~105;
// - PATCHES below, each replacing one piece of text that must be there (the
//   build fails when an oclif update changes it, so each is looked at again).
const OCLIF_LIB = /[/\\]node_modules[/\\]@oclif[/\\]core[/\\]lib[/\\].*\.js$/
const TOP_REQUIRE = /^(const|var) (\w+) = ((?:__importDefault|__importStar)\(require\("[^"]+"\)\)|require\("[^"]+"\));$/gm
const LAZY = `var __iopmemLazy = (load) => { let m; const get = () => (m ??= load()); return new Proxy({}, {
  get: (_, k) => get()[k], has: (_, k) => k in get(), set: (_, k, v) => ((get()[k] = v), true),
  ownKeys: () => Reflect.ownKeys(get()),
  getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(get(), k); if (d) d.configurable = true; return d },
}) };\n`
// An npm package name: minimatch matches it only to itself.
const PLAIN_NAME = String.raw`/^(@[a-z0-9~-][a-z0-9._~-]*\/)?[a-z0-9~-][a-z0-9._~-]*$/`
const PATCHES = [
  // Sorting the commands with localeCompare builds ICU's collator on the first
  // call: ~10 ms of every start-up. Ids of [a-z0-9:-] (all of ours) are sorted by
  // code units instead. That is localeCompare's order under the root collation
  // and all but a few locales (cs, sk, om and uz tailor these letters; our ids
  // then come in another order in this list). Help sorts by code units itself,
  // the did-you-mean hook sorts its candidates, and the completion scripts offer
  // the same commands (the shell sorts what it offers).
  ['config/plugin.js', '.sort((a, b) => a.id.localeCompare(b.id));',
    '.sort((a, b) => (/^[a-z0-9:-]*$/.test(a.id) && /^[a-z0-9:-]*$/.test(b.id) ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.id.localeCompare(b.id)));'],
  // package.json's oclif.plugins are plain names: compare them, rather than build
  // a minimatch pattern per dependency and plugin (~5 ms); globs still go to minimatch.
  ['config/plugin-loader.js', 'return Object.keys(dependencies).filter((p) => patterns.some((w) => (0, minimatch_1.minimatch)(p, w)));',
    `return Object.keys(dependencies).filter((p) => patterns.some((w) => (${PLAIN_NAME}.test(w) ? p === w : (0, minimatch_1.minimatch)(p, w))));`],
  // Whether this is WSL, from is-wsl itself rather than through wsl-utils, which
  // re-exports it but also loads child_process and PowerShell helpers.
  ['util/os.js', "return (await import('wsl-utils')).isWsl ?", "return (await import('is-wsl')).default ?"],
  // oclif's debug logging is on only with DEBUG set (the debug package reads it once,
  // when loaded, and nothing in the bundle enables it later): without DEBUG a logger
  // is a no-op, and debug (with tty and supports-color) is not loaded at all.
  ['logger.js', '    const debug = (0, debug_1.default)(namespace);',
    '    const debug = process.env.DEBUG ? (0, debug_1.default)(namespace) : Object.assign(() => {}, {enabled: false, namespace});'],
]

// Packages oclif needs only off the common path: ejs (help's templates),
// tinyglobby (finding commands without a manifest), minimatch (plugin names that
// are globs), lilconfig (a plugin configured outside its package.json),
// cli-spinners (ux.action). Each is bundled on its own into
// dist/bundle/vendor/NAME.cjs, which oclif's (lazy) require loads on first use
// through package.json's imports (#oclif-vendor/NAME), so that start-up does
// not compile their ~300 KB. They are resolved from oclif's own folder, as
// oclif would find them.
const VENDOR = ['ejs', 'tinyglobby', 'minimatch', 'lilconfig', 'cli-spinners']
const oclifRequire = createRequire(createRequire(import.meta.url).resolve('@oclif/core'))

const oclifLean = {
  name: 'oclif-lean',
  setup(build) {
    build.onResolve({filter: new RegExp(`^(${VENDOR.join('|')})$`)}, (args) =>
      OCLIF_LIB.test(args.importer) ? {path: `#oclif-vendor/${args.path}`, external: true} : undefined,
    )
    build.onLoad({filter: OCLIF_LIB}, (args) => {
      let text = readFileSync(args.path, 'utf8')
      const rel = args.path.replace(/\\/g, '/').replace(/.*\/@oclif\/core\/lib\//, '')
      for (const [file, from, to] of PATCHES) {
        if (file !== rel) continue
        if (!text.includes(from)) throw new Error(`scripts/bundle.mjs: @oclif/core/lib/${file} no longer has: ${from}`)
        text = text.replace(from, to)
      }
      let lazy = 0
      text = text.replace(TOP_REQUIRE, (_, kw, name, expr) => (lazy++, `${kw} ${name} = __iopmemLazy(() => ${expr});`))
      if (lazy > 0) text = text.startsWith('"use strict";\n') ? text.replace('"use strict";\n', `"use strict";\n${LAZY}`) : LAZY + text
      return {contents: text, loader: 'js'}
    })
  },
}

// esbuild splits shared code into a chunk per set of entries that share it, and
// has no way to say otherwise: `iopmem list` loaded 23 of them that way. Each
// file costs Node's ESM loader a resolve, an asynchronous read and a link
// (docs/speed.md). So esbuild writes to a staging folder, and Rollup, which
// can place modules in chunks by name (manualChunks), joins every chunk that
// GROUPS' entries load statically into one chunk per group, in this order:
// - scan: what bin/run.js's head start needs (the host, the scanner, the
//   addon), small so that the scan starts early;
// - core: the rest of what main.js needs, which every process loads (oclif's
//   run path, errors; `--version` loads no more);
// - command: the rest of what `list`, the command the head start serves,
//   loads: mostly what every command loads (the base command, oclif's Command
//   and parser), and the modules list shares with other commands (list.js
//   keeps what is its own).
// Other commands' own code stays in their files and in esbuild's chunks,
// loaded when they run. Rollup only moves code (treeshake: false): what
// esbuild wrote is what runs. A group also takes the modules named third (by
// esbuild's entry name for them) that its code imports dynamically on every
// run: oclif's `await import('is-wsl')` in every start-up's config. Their
// chunks join the group's rather than stay files of their own, and the
// import() finds them in a chunk already loaded. With the code cache's hook,
// list loads 7 of the bundle's files, --version 4.
const GROUPS = [
  ['scan', ['prefetch.js']],
  ['core', ['main.js'], ['node_modules/is-wsl/index.js']],
  ['command', ['commands/list.js']],
]
const staging = path.join(dist, 'bundle-split')
const out = path.join(dist, 'bundle')
rmSync(out, {recursive: true, force: true})
rmSync(staging, {recursive: true, force: true})
const split = await esbuild.build({
  entryPoints,
  // The metafile's paths (read below) are relative to this.
  absWorkingDir: root,
  outbase: dist,
  outdir: staging,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  // typescript: oclif requires it only to run a plugin from its sources (development).
  // The addon is a .node file found at run time (node-gyp-build).
  external: ['typescript', '*.node'],
  plugins: [oclifLean],
  // Less text for V8 to compile at start-up (~3 ms of list's, docs/speed.md).
  // Names are kept, so stack traces and error classes read as in the sources.
  minifyWhitespace: true,
  minifySyntax: true,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
})

// A warning fails the build: among them, an import esbuild drops because
// sideEffects says its module does nothing when loaded.
if (split.warnings.length > 0) throw new Error(`scripts/bundle.mjs: esbuild warned ${split.warnings.length} time(s) (above)`)
const outputs = split.metafile.outputs
const stagingRel = path.relative(root, staging).split(path.sep).join('/')
// Each chunk (never an entry) an entry of a group loads statically, unless an earlier group has it.
const groupOf = new Map()
// The dynamically imported modules' chunks the groups take: not entries for Rollup.
const joined = new Set()
for (const [group, entries, dynamic = []] of GROUPS) {
  const todo = entries.map((e) => `${stagingRel}/${e}`)
  for (const e of todo) if (!outputs[e]?.entryPoint) throw new Error(`scripts/bundle.mjs: GROUPS names ${e}, which esbuild did not write`)
  for (const d of dynamic) {
    const o = Object.keys(outputs).find((k) => outputs[k].entryPoint === d && k.startsWith(`${stagingRel}/chunks/`))
    if (!o) throw new Error(`scripts/bundle.mjs: GROUPS names ${d}, which nothing imports dynamically`)
    todo.push(o)
    joined.add(o)
    if (!groupOf.has(o)) groupOf.set(o, group)
  }
  for (const seen = new Set(); todo.length > 0; ) {
    for (const i of outputs[todo.pop()].imports) {
      if (i.kind !== 'import-statement' || i.external || seen.has(i.path) || outputs[i.path]?.entryPoint) continue
      seen.add(i.path)
      todo.push(i.path)
      if (!groupOf.has(i.path)) groupOf.set(i.path, group)
    }
  }
}
const entryOutputs = Object.keys(outputs).filter((o) => outputs[o].entryPoint && o.endsWith('.js') && !joined.has(o))
// What is left of import(): a specifier only known at run time (oclif loading
// a plugin's ES module command, as `iopmem help` does). Node 20 gives no
// import() to code compiled by vm.Script, as src/code-cache.ts compiles the
// bundle, so such a call goes through the __iopmemImport its wrapper passes;
// compiled by Node (no code cache: tests, other loaders) it is import().
const viaImportParameter = {
  name: 'via-import-parameter',
  renderDynamicImport: ({targetModuleId}) =>
    targetModuleId ? null : {left: '(typeof __iopmemImport === "function" ? __iopmemImport : (s) => import(s))(', right: ')'},
}
const chunkOf = new Map([...groupOf].map(([o, group]) => [path.join(root, o), group]))
const rejoined = await rollup({
  input: Object.fromEntries(entryOutputs.map((o) => [o.slice(stagingRel.length + 1, -'.js'.length), path.join(root, o)])),
  // node: builtins and the packages esbuild left to run time.
  external: (id) => !id.startsWith('.') && !path.isAbsolute(id),
  treeshake: false,
  preserveEntrySignatures: 'strict',
  plugins: [viaImportParameter],
  onwarn(warning) {
    throw new Error(`scripts/bundle.mjs: rollup: ${warning.message}`)
  },
})
await rejoined.write({
  dir: out,
  // CommonJS: Node 20 has V8's code cache only for scripts (vm.Script's
  // cachedData), not for ES modules. It also spares the ES module facade of
  // each Node module imported (the one of node:fs reads fs.ReadStream, which
  // loads Node's streams; the one of node:process opens process.stdin).
  format: 'cjs',
  exports: 'named',
  entryFileNames: '[name].cjs',
  chunkFileNames: 'chunks/[name]-[hash].cjs',
  manualChunks: (id) => chunkOf.get(id),
  // Node loads what a chunk imports when it links it: a hint to preload more is only more imports.
  hoistTransitiveImports: false,
  // A chunk imported dynamically is required (in a promise), as any other.
  dynamicImportInCjs: false,
})
await rejoined.close()
rmSync(staging, {recursive: true})

// Bundled alone, as CommonJS: the code cache's hook, which must load before the
// files it serves, and the packages of VENDOR.
const alone = {bundle: true, format: 'cjs', platform: 'node', target: 'node20', legalComments: 'none', logLevel: 'warning'}
await esbuild.build({...alone, entryPoints: [path.join(dist, 'code-cache.js')], outfile: path.join(out, 'code-cache.cjs')})
await esbuild.build({
  ...alone,
  entryPoints: Object.fromEntries(VENDOR.map((name) => [name, oclifRequire.resolve(name)])),
  outdir: path.join(dist, 'bundle/vendor'),
  outExtension: {'.js': '.cjs'},
})
