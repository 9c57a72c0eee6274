/** The iopmem kernel module from user space: building, loading, unloading it and reading or setting what it serves. */
import {spawnSync} from 'node:child_process'
import {X509Certificate} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {isBdfName} from '../pci/index.js'
import {type Effects, Exit, IopmemError, onPath, packageRoot, type ProgramArg, type ProgramPath, programMissing, realEffects, SafetyCode, seamValue, trustedOwner, untrustedReason, usage} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import type {PciFunction} from '../pci/index.js'
import {formatBytes} from '../sys/index.js'
import {dkmsInstalled, dkmsTrees} from './dkms.js'
import {enrolledAsMok, type ModuleSignature, mokImportStep, moduleSignature, type SecureBootState, secureBootState} from './modsig.js'

/**
 * The iopmem kernel driver (native/kmod/iopmem.c) seen from user space:
 * building it against a kernel build tree, loading and unloading it, its
 * status from sysfs, and the per-device settings `iopmem bind` hands it.
 *
 * The driver claims no PCI IDs. Settings reach it through
 * /sys/bus/pci/drivers/iopmem/config, one line per device written before the
 * bind: "0000:03:00.0 mode=blockdax bar=2 cache=wb". A bound device shows
 * what it got in /sys/bus/pci/devices/BDF/iopmem/{mode,bar,cache,node,phys,size,memtype};
 * a refused probe leaves its reason in drivers/iopmem/last_error, one line per
 * device (native/kmod/ABI describes every file).
 *
 * External programs (make, insmod, modprobe, rmmod) run with argument arrays
 * the host builds (paths only as host.programPath), never through a shell.
 * IOPMEM_MAKE, IOPMEM_INSMOD, IOPMEM_MODPROBE and IOPMEM_RMMOD replace them
 * (the tests point them at recorders), as root only when they pass
 * seamValue()'s ownership rule; IOPMEM_MODULES_ROOT replaces /lib/modules and
 * IOPMEM_KERNEL_RELEASE the running kernel's release.
 *
 * A module file is opened once (O_NOFOLLOW, O_NONBLOCK so a FIFO cannot
 * hang), checked on that descriptor (a regular file of at most
 * MODULE_MAX_BYTES, owned by root — the current euid under fixture roots —
 * and writable by no one else, nor its directories), its vermagic read from
 * it, and insmod is handed that same descriptor as /proc/self/fd/3: what was
 * checked is what the kernel loads.
 */

export const DRIVER = 'iopmem'
export const MODES = ['blockdax', 'p2pmem'] as const
export type Mode = (typeof MODES)[number]
export const CACHE_MODES = ['wb', 'wc', 'uc', 'wt'] as const
export type CacheMode = (typeof CACHE_MODES)[number]
/** memremap_pages works in 2 MiB subsections: a BAR must be at least that, and aligned to it. */
export const BAR_ALIGN = 2 * 1024 * 1024

export interface DeviceSettings {
  mode: Mode
  bar: number
  cache: CacheMode
  /** Accept a CPU-cached mapping (wb where the platform really caches it, wt) that device writes do not keep coherent. */
  force?: boolean
}

export function validateMode(s: string): Mode {
  if ((MODES as readonly string[]).includes(s)) return s as Mode
  const hints = ['blockdax: /dev/iopmemN, a block device (DAX with --cache wb); p2pmem: a P2PDMA provider.']
  // devdax needed drivers/dax's private API (docs/driver.md says why it went).
  if (s === 'devdax') hints.push('For a mappable BAR use blockdax --cache wb and a file on a DAX filesystem (`iopmem mkfs-dax`), or p2pmem.')
  throw usage(`Invalid mode ${JSON.stringify(s.slice(0, 40))}: the iopmem driver's modes are ${MODES.join(', ')}.`, 'E_BAD_MODE', hints)
}

export function validateCache(s: string): CacheMode {
  if ((CACHE_MODES as readonly string[]).includes(s)) return s as CacheMode
  throw usage(`Invalid cache mode ${JSON.stringify(s.slice(0, 40))}: one of ${CACHE_MODES.join(', ')}.`, 'E_BAD_CACHE')
}

export function validateBarIndex(s: string | number): number {
  const text = String(s)
  if (!/^[0-5]$/.test(text)) {
    throw usage(`Invalid BAR ${JSON.stringify(text.slice(0, 40))}: a BAR index is 0-5.`, 'E_BAD_BAR', ['`iopmem list BDF` shows the function\'s BARs.'])
  }
  return Number(text)
}

/**
 * Settings for one device, checked against its BARs before the kernel sees
 * them, so that a BAR that cannot serve is refused with the reason.
 */
export function resolveSettings(fn: PciFunction, opts: {mode?: string; bar?: string | number; cache?: string; force?: boolean}): DeviceSettings {
  const mode = validateMode(opts.mode ?? 'blockdax')
  const cache = validateCache(opts.cache ?? 'wb')
  if (mode !== 'blockdax' && cache !== 'wb') {
    throw usage(`--cache ${cache} is only for --as blockdax: p2pmem keeps the kernel's own (uncached) mapping.`, 'E_BAD_CACHE')
  }
  let bar: number
  if (opts.bar === undefined) {
    const mems = fn.bars.filter((b) => b.index < 6 && b.type === 'mem' && b.size > 0).sort((a, b) => b.size - a.size)
    if (mems.length === 0) {
      throw new IopmemError(`${fn.bdf} has no memory BAR: the iopmem driver needs one.`, {code: 'E_BAD_BAR', exit: Exit.UNSUPPORTED})
    }
    bar = mems[0].index
  } else bar = validateBarIndex(opts.bar)
  const b = fn.bars.find((x) => x.index === bar)
  const refuse = (why: string): never => {
    throw new IopmemError(`BAR ${bar} of ${fn.bdf} cannot be used: ${why}.`, {
      code: 'E_BAD_BAR',
      exit: Exit.UNSUPPORTED,
      suggestions: ['`iopmem list ' + fn.bdf + '` shows its BARs; pick one with --bar.'],
    })
  }
  if (!b || b.size === 0) refuse('it is not implemented')
  if (b!.type !== 'mem') refuse('it is an I/O port BAR, not memory')
  if (b!.size < BAR_ALIGN) refuse(`it is too small (${formatBytes(b!.size)}; the driver needs at least 2 MiB)`)
  if (BigInt(b!.start) % BigInt(BAR_ALIGN) !== 0n || b!.size % BAR_ALIGN !== 0) {
    refuse(`it is not 2 MiB aligned (${b!.start}, ${formatBytes(b!.size)}), which memremap_pages needs`)
  }
  if (mode === 'blockdax' && cache !== 'uc' && !b!.prefetchable) {
    refuse(`it is not prefetchable, and --cache ${cache} may read ahead and merge accesses; only --cache uc is safe on it`)
  }
  // The driver refuses a cached mapping the device cannot keep coherent unless forced (wb: where the platform really caches it).
  const force = mode === 'blockdax' && (cache === 'wb' || cache === 'wt') && Boolean(opts.force)
  return force ? {mode, bar, cache, force} : {mode, bar, cache}
}

export function configLine(bdf: string, s: DeviceSettings): string {
  return `${bdf} mode=${s.mode} bar=${s.bar} cache=${s.cache}${s.force ? ' force' : ''}\n`
}

/** The driver's reason for the last refused probe of `bdf` (drivers/iopmem/last_error keeps one line per device). */
export function lastErrorFor(host: Host, bdf: string): string | undefined {
  const lines = (host.readTrim(host.sys('bus/pci/drivers', DRIVER, 'last_error')) ?? '').split('\n')
  return lines.find((l) => l.startsWith(bdf + ' '))?.slice(bdf.length + 1)
}

// ---- programs ---------------------------------------------------------------

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * `fd`: a descriptor the program inherits as its fd 3 (the module insmod loads, as /proc/self/fd/3);
 * `env`: variables added to the program's environment (DKMS's signing settings).
 */
export type Runner = (program: string, args: string[], opts?: {cwd?: string; fd?: number; env?: Record<string, string>}) => RunResult

export const spawnRunner: Runner = (program, args, opts = {}) => {
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe']
  if (opts.fd !== undefined) stdio.push(opts.fd)
  const env = opts.env ? {...process.env, ...opts.env} : undefined
  const r = spawnSync(program, args, {cwd: opts.cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, stdio})
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException
    return {code: e.code === 'ENOENT' ? 127 : 126, stdout: '', stderr: `${program}: ${e.message}`}
  }
  return {code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

export interface DriverEnv {
  host: Host
  run: Runner
  /** Programs (IOPMEM_MAKE, …) and roots (IOPMEM_MODULES_ROOT, IOPMEM_KERNEL_RELEASE). */
  env: NodeJS.ProcessEnv
}

export function driverEnv(host: Host, env: NodeJS.ProcessEnv = process.env, run: Runner = spawnRunner): DriverEnv {
  return {host, run, env}
}

export type DriverProgram = 'make' | 'insmod' | 'modprobe' | 'rmmod' | 'dkms' | 'modinfo'

function program(d: DriverEnv, name: DriverProgram): string {
  const override = seamValue(`IOPMEM_${name.toUpperCase()}` as 'IOPMEM_MAKE', d.env)
  if (override) return override
  // Against a fixture tree (IOPMEM_SYSFS_ROOT…), never touch the real kernel's modules. make, dkms
  // and modinfo only build, copy or read files, and get every path through the host (dkms its trees in the fixture).
  if (!['make', 'dkms', 'modinfo'].includes(name) && d.run === spawnRunner && !d.host.isLive) {
    throw new IopmemError(`Not running ${name}: the sysfs/dev/proc roots are not the live kernel's (set IOPMEM_${name.toUpperCase()} to a stand-in).`, {
      code: SafetyCode.NOT_LIVE,
      exit: Exit.UNSUPPORTED,
    })
  }
  return name
}

/** Run a driver program with an argv the host built: words, and paths only as host.programPath(). */
export function runArgs(d: DriverEnv, name: DriverProgram, args: ProgramArg[], opts: {fd?: number; env?: Record<string, ProgramPath>} = {}): RunResult {
  const env = opts.env ? Object.fromEntries(Object.entries(opts.env).map(([k, v]) => [k, d.host.argv([v])[0]])) : undefined
  return d.run(program(d, name), d.host.argv(args), {fd: opts.fd, env})
}

/**
 * Whether spawnRunner finds the program as `program` names it (a seam's path, or a name on PATH).
 * Another runner (the tests') finds its own.
 */
function installed(d: DriverEnv, prog: string): boolean {
  return d.run !== spawnRunner || onPath(prog)
}

/**
 * runArgs through a change's Effects: run, or in a dry run list the argv (the program as it
 * would run, seams and the gate applied; paths as the kernel names them) and run nothing.
 * A program that is not there is refused first (E_PROGRAM_MISSING), in a dry run as in the real one.
 */
function runEffect(d: DriverEnv, effects: Effects, name: DriverProgram, args: ProgramArg[], opts: {fd?: number; fd3?: string} = {}): RunResult | undefined {
  const argv = [program(d, name), ...d.host.argv(args, 'shown')]
  if (!installed(d, argv[0])) throw programMissing(argv[0])
  return effects.run(argv, () => runArgs(d, name, args, {fd: opts.fd}), {fd3: opts.fd3})
}

export function kernelRelease(d: DriverEnv): string {
  return d.env.IOPMEM_KERNEL_RELEASE || os.release()
}

/** The files of native/kmod a build needs. */
export const KMOD_SOURCES = ['iopmem.c', 'iopmem_compat.h', 'Kbuild'] as const

/** The module's sources: native/kmod in this package. */
export function kmodSourceDir(): string {
  return path.join(packageRoot(), 'native', 'kmod')
}

export function defaultOutDir(release: string, env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(cache, 'iopmem', 'kmod', release)
}

/** A kernel build tree: a Makefile and the kernel's Module.symvers (full source or extmod tree). */
export function findBuildTree(d: DriverEnv, kdir?: string): {dir: string; release: string | null} {
  if (kdir !== undefined) {
    if (kdir === '' || /[\n\0]/.test(kdir)) throw usage(`Invalid --kdir ${JSON.stringify(kdir)}.`, 'E_BAD_KDIR')
    const dir = path.resolve(kdir)
    let st: fs.Stats | undefined
    try {
      st = fs.statSync(dir)
    } catch {
      st = undefined
    }
    if (!st) throw new IopmemError(`--kdir ${dir} does not exist.`, {code: 'E_BAD_KDIR', exit: Exit.NOT_FOUND})
    if (!st.isDirectory()) throw new IopmemError(`--kdir ${dir} is not a directory.`, {code: 'E_BAD_KDIR', exit: Exit.USAGE})
    checkTree(dir)
    return {dir, release: treeRelease(dir)}
  }
  const release = kernelRelease(d)
  const root = seamValue('IOPMEM_MODULES_ROOT', d.env) || '/lib/modules'
  const dir = path.join(root, release, 'build')
  if (!fs.existsSync(path.join(dir, 'Makefile'))) {
    throw new IopmemError(`No kernel build tree for the running kernel ${release}: ${dir} is missing; install linux-headers-${release}.`, {
      code: 'E_NO_HEADERS',
      exit: Exit.NOT_FOUND,
      suggestions: [
        `Install the headers: \`apt install linux-headers-${release}\` (Debian/Ubuntu), \`dnf install kernel-devel-${release}\` (Fedora/RHEL).`,
        'Or point --kdir at a kernel build tree (a built source tree, or one from `make scripts/package/install-extmod-build`).',
      ],
    })
  }
  checkTree(dir)
  return {dir: fs.realpathSync(dir), release: treeRelease(dir) ?? release}
}

function checkTree(dir: string): void {
  const missing = ['Makefile', 'Module.symvers'].filter((f) => !fs.existsSync(path.join(dir, f)))
  if (missing.length > 0) {
    throw new IopmemError(`${dir} is not a kernel build tree: it has no ${missing.join(' and no ')}.`, {
      code: 'E_BAD_KDIR',
      exit: Exit.NOT_FOUND,
      suggestions: ['A build tree is /lib/modules/RELEASE/build (the linux-headers package) or a kernel source tree after `make modules_prepare` and a full build.'],
    })
  }
}

/**
 * The release a module built against `dir` is for: UTS_RELEASE, what vermagic carries. Debian's
 * header packages put the upstream version (6.1.192) in include/config/kernel.release, not the
 * package's release (6.1.0-56-amd64), so that file is only the fallback.
 */
export function treeRelease(dir: string): string | null {
  try {
    const m = /^#define UTS_RELEASE "([^"\n]+)"$/m.exec(fs.readFileSync(path.join(dir, 'include/generated/utsrelease.h'), 'utf8'))
    if (m) return m[1]
  } catch {}
  try {
    return fs.readFileSync(path.join(dir, 'include/config/kernel.release'), 'utf8').trim() || null
  } catch {
    return null
  }
}

/** vermagic of a built module (the release it was built for is its first word); null when unreadable or none. */
export function moduleVermagic(ko: string): string | null {
  let m: OpenModule
  try {
    m = openModule(ko, -1)
  } catch {
    return null
  }
  try {
    return vermagicOf(m.data)
  } finally {
    fs.closeSync(m.fd)
  }
}

/** The largest module file read or loaded: iopmem.ko is well under 1 MiB, 16 MiB with full debug info. */
export const MODULE_MAX_BYTES = 64 * 1024 * 1024

export interface OpenModule {
  fd: number
  /** Its real location (from the descriptor). */
  real: string
  data: Buffer
}

/**
 * Open a module file once and check it on that descriptor: no symlink as the
 * last component (O_NOFOLLOW), no hang on a FIFO (O_NONBLOCK), a regular file
 * of at most MODULE_MAX_BYTES, read whole and bounded; when `owner` is not
 * -1, owned by it and writable by no one else, nor its directories. The
 * caller closes fd.
 */
export function openModule(ko: string, owner: number): OpenModule {
  let fd: number
  try {
    fd = fs.openSync(ko, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new IopmemError(`No module file ${ko}.`, {code: 'E_NO_MODULE', exit: Exit.NOT_FOUND})
    if (code === 'ELOOP') throw badModule(ko, 'it is a symbolic link; give the module file itself')
    throw badModule(ko, `it cannot be opened (${(error as Error).message})`, Exit.PERMISSION)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw badModule(ko, `it is not a regular file (${kindOf(st)})`)
    if (st.size > MODULE_MAX_BYTES) throw badModule(ko, `it is ${st.size} bytes, over the ${MODULE_MAX_BYTES}-byte limit for a module`)
    const real = fs.readlinkSync(`/proc/self/fd/${fd}`)
    if (owner !== -1) {
      const why = untrustedReason(st, real, owner)
      if (why) {
        throw new IopmemError(`Refusing to load ${ko}: ${why}.`, {
          code: SafetyCode.UNTRUSTED_MODULE,
          exit: Exit.REFUSED,
          suggestions: [
            owner === 0 ? 'A module root loads must be owned by root and writable only by root, in directories only root can write: `sudo chown root:root FILE; sudo chmod 0644 FILE`, or build it as root (`sudo iopmem driver build`).' : `Under fixture roots the module must be owned by uid ${owner} (the current user).`,
          ],
          details: {ko, real, owner},
        })
      }
    }
    // Bounded: at most st.size (itself bounded) and one more byte to see a file that grew.
    const data = Buffer.alloc(st.size + 1)
    let n = 0
    while (n < data.length) {
      const got = fs.readSync(fd, data, n, data.length - n, n)
      if (got === 0) break
      n += got
    }
    if (n > st.size) throw badModule(ko, 'it changed while being read')
    return {fd, real, data: data.subarray(0, n)}
  } catch (error) {
    fs.closeSync(fd)
    throw error
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory'
  if (st.isFIFO()) return 'a FIFO'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'not a file'
}

function badModule(ko: string, why: string, exit: (typeof Exit)[keyof typeof Exit] = Exit.USAGE): IopmemError {
  return new IopmemError(`${ko} cannot be a module: ${why}.`, {code: SafetyCode.BAD_MODULE, exit, details: {ko}})
}

function vermagicOf(buf: Buffer): string | null {
  const i = buf.indexOf('vermagic=')
  if (i < 0) return null
  const end = buf.indexOf(0, i)
  return buf.subarray(i + 9, end < 0 ? undefined : end).toString('latin1')
}

export interface BuildResult {
  ko: string
  kdir: string
  release: string | null
  vermagic: string | null
  werror: boolean
  log: string
  /** The module's signature after the build (signed with --sign/--cert, or none). */
  signature: ModuleSignature
}

export interface SigningKey {
  key: string
  cert: string
}

/**
 * --sign KEY --cert CERT: both or neither, each a readable regular file, the certificate an
 * X.509 one (PEM or DER), checked before anything is built.
 */
export function validateSigning(sign: string | undefined, cert: string | undefined): SigningKey | undefined {
  if (sign === undefined && cert === undefined) return undefined
  if (sign === undefined || cert === undefined) {
    throw usage('--sign KEY and --cert CERT go together: the private key signs, the certificate names it in the signature.', 'E_BAD_SIGNING', [
      'A throw-away pair: `openssl req -new -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=my module key/" -keyout mok.key -outform DER -out mok.der`.',
    ])
  }
  const file = (what: string, p: string): string => {
    const abs = path.resolve(p)
    const st = fs.statSync(abs, {throwIfNoEntry: false})
    if (!st) throw new IopmemError(`${what} ${abs} does not exist.`, {code: 'E_BAD_SIGNING', exit: Exit.NOT_FOUND})
    if (!st.isFile()) throw new IopmemError(`${what} ${abs} is not a regular file.`, {code: 'E_BAD_SIGNING', exit: Exit.USAGE})
    return abs
  }
  const k = file('--sign', sign)
  const c = file('--cert', cert)
  try {
    new X509Certificate(fs.readFileSync(c))
  } catch (error) {
    throw new IopmemError(`--cert ${c} is not an X.509 certificate (PEM or DER): ${(error as Error).message}.`, {code: 'E_BAD_SIGNING', exit: Exit.USAGE})
  }
  try {
    fs.accessSync(k, fs.constants.R_OK)
  } catch {
    throw new IopmemError(`--sign ${k} cannot be read.`, {code: 'E_BAD_SIGNING', exit: Exit.PERMISSION})
  }
  return {key: k, cert: c}
}

/** The hash the kernel signs modules with (CONFIG_MODULE_SIG_HASH), sha256 when the tree does not say. */
export function treeSigHash(dir: string): string {
  try {
    const m = /^CONFIG_MODULE_SIG_HASH="([a-z0-9-]+)"$/m.exec(fs.readFileSync(path.join(dir, 'include/config/auto.conf'), 'utf8'))
    if (m) return m[1]
  } catch {}
  return 'sha256'
}

/** Sign `ko` in place with the tree's own scripts/sign-file. */
export function signModule(d: DriverEnv, tree: string, ko: string, signing: SigningKey): ModuleSignature {
  const signFile = path.join(tree, 'scripts/sign-file')
  if (!fs.existsSync(signFile)) {
    throw new IopmemError(`${tree} has no scripts/sign-file to sign the module with.`, {
      code: 'E_NO_SIGN_FILE',
      exit: Exit.NOT_FOUND,
      suggestions: ['Debian: it comes with linux-kbuild-VERSION (a dependency of linux-headers); a source tree builds it with `make scripts`.'],
    })
  }
  const h = d.host
  const r = d.run(h.argv([h.programPath(signFile)])[0], h.argv([treeSigHash(tree), h.programPath(signing.key), h.programPath(signing.cert), h.programPath(ko)]))
  if (r.code !== 0) {
    throw new IopmemError(`Signing ${ko} failed: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`, {code: 'E_SIGN_FAILED', exit: Exit.FAILURE})
  }
  return moduleSignature(fs.readFileSync(ko), ko)
}

/**
 * The signature of a module file: read here for a .ko (or .ko.gz); a .ko.xz or .ko.zst (what
 * DKMS installs for kernels that compress their modules) through `modinfo FILE`'s signer and sig_key.
 */
export function fileSignature(d: DriverEnv, file: string): ModuleSignature {
  const own = moduleSignature(fs.readFileSync(file), file)
  if (!own.unreadable || !/\.(xz|zst)$/.test(file)) return own
  const r = runArgs(d, 'modinfo', [d.host.programPath(file)])
  if (r.code !== 0) return own
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(r.stdout)?.[1].trim() || null
  const signer = field('signer')
  return {signed: signer !== null, signer, serial: field('sig_key')?.replaceAll(':', '').toUpperCase() ?? null}
}

/** Copy the sources to `out` and run `make -C KDIR M=OUT modules` there; with `sign`, sign the result. */
export function buildModule(d: DriverEnv, opts: {kdir?: string; out?: string; werror?: boolean; sign?: SigningKey} = {}): BuildResult {
  const tree = findBuildTree(d, opts.kdir)
  const release = tree.release ?? kernelRelease(d)
  const out = path.resolve(opts.out ?? defaultOutDir(release, d.env))
  const src = kmodSourceDir()
  fs.mkdirSync(out, {recursive: true})
  for (const f of KMOD_SOURCES) fs.copyFileSync(path.join(src, f), path.join(out, f))
  const argv: ProgramArg[] = ['-C', d.host.programPath(tree.dir), d.host.programPath(out, 'M='), ...(opts.werror ? ['IOPMEM_WERROR=1'] : []), 'modules']
  const args = d.host.argv(argv)
  const r = runArgs(d, 'make', argv)
  const log = (r.stdout + r.stderr).trim()
  const ko = path.join(out, 'iopmem.ko')
  if (r.code !== 0 || !fs.existsSync(ko)) {
    const missingTool = r.code === 127 ? ' (make is not installed: `apt install build-essential`)' : ''
    throw new IopmemError(`Building the iopmem module against ${tree.dir} failed${missingTool}.\n${log.split('\n').slice(-15).join('\n')}`, {
      code: 'E_BUILD_FAILED',
      exit: Exit.FAILURE,
      details: {args, exit: r.code},
      suggestions: ['A gcc of the version the kernel was built with is needed (see /proc/version).'],
    })
  }
  const signature = opts.sign ? signModule(d, tree.dir, ko, opts.sign) : moduleSignature(fs.readFileSync(ko), ko)
  return {ko, kdir: tree.dir, release, vermagic: moduleVermagic(ko), werror: Boolean(opts.werror), log, signature}
}

// ---- load / unload ----------------------------------------------------------

export function isLoaded(host: Host): boolean {
  return host.exists(host.sys('module', DRIVER))
}

export function boundDevices(host: Host): string[] {
  return host.list(host.sys('bus/pci/drivers', DRIVER)).filter((n) => isBdfName(n)).sort()
}

const PARAM_RE = /^(mode|bar|cache)=(.+)$/

export function validateParams(params: string[]): string[] {
  for (const p of params) {
    const m = PARAM_RE.exec(p)
    if (!m) throw usage(`Invalid module parameter ${JSON.stringify(p.slice(0, 60))}: use mode=M, bar=N or cache=C.`, 'E_BAD_PARAM')
    if (m[1] === 'mode') validateMode(m[2])
    else if (m[1] === 'cache') validateCache(m[2])
    else if (m[2] !== '-1') validateBarIndex(m[2])
  }
  return params
}

export interface LoadResult {
  loaded: boolean
  changed: boolean
  how: 'already' | 'insmod' | 'modprobe'
  ko?: string
  params: string[]
}

export function requireRoot(host: Host, what: string): void {
  if (!host.isRoot()) {
    throw new IopmemError(`${what} needs root.`, {code: 'E_NOT_ROOT', exit: Exit.PERMISSION, suggestions: ['Run it with sudo.']})
  }
}

/**
 * Load the module: `--ko FILE`, else the module `driver build` made for this
 * kernel, else `modprobe iopmem` (an installed one). Checks the vermagic
 * first, so a module for another kernel is refused with the reason.
 */
export function loadModule(d: DriverEnv, opts: {ko?: string; params?: string[]; effects?: Effects} = {}): LoadResult {
  const effects = opts.effects ?? realEffects()
  const params = validateParams(opts.params ?? [])
  if (isLoaded(d.host)) return {loaded: true, changed: false, how: 'already', params: []}
  // Root is needed to load a module; the checks below (the file, its owner, its vermagic) a dry run makes as the real run would.
  effects.requireRoot(d.host, 'Loading the iopmem module needs root.')
  const release = kernelRelease(d)
  let ko = opts.ko === undefined ? undefined : path.resolve(opts.ko)
  if (ko === undefined) {
    const built = path.join(defaultOutDir(release, d.env), 'iopmem.ko')
    if (fs.lstatSync(built, {throwIfNoEntry: false}) !== undefined) ko = built
  }
  if (ko !== undefined) {
    const m = openModule(ko, trustedOwner(d.host))
    try {
      const vm = vermagicOf(m.data)
      if (vm === null) throw new IopmemError(`${ko} is not a kernel module (no vermagic).`, {code: 'E_BAD_MODULE', exit: Exit.USAGE})
      const built = vm.split(' ')[0]
      if (built !== release) {
        throw new IopmemError(`${ko} was built for kernel ${built}, but this kernel is ${release}.`, {
          code: 'E_WRONG_KERNEL',
          exit: Exit.UNSUPPORTED,
          suggestions: ['Rebuild it: `iopmem driver build`.'],
        })
      }
      // insmod gets the descriptor checked above as its fd 3, and opens it by /proc/self/fd/3
      // (kmod then calls finit_module on it): the file cannot be swapped after the check.
      const r = runEffect(d, effects, 'insmod', [d.host.inheritedFd(3), ...params], {fd: m.fd, fd3: ko})
      if (r && r.code !== 0) throw loadError(r, `insmod ${ko}`)
    } finally {
      fs.closeSync(m.fd)
    }
    return {loaded: true, changed: true, how: 'insmod', ko, params}
  }
  const r = runEffect(d, effects, 'modprobe', [DRIVER, ...params])
  if (r && r.code !== 0) {
    throw new IopmemError(`The iopmem module is not built for ${release} and modprobe cannot find it: ${r.stderr.trim() || `exit ${r.code}`}`, {
      code: 'E_NO_MODULE',
      exit: Exit.NOT_FOUND,
      suggestions: ['Build it first: `iopmem driver build` (needs the kernel headers), then `iopmem driver load`.'],
    })
  }
  return {loaded: true, changed: true, how: 'modprobe', params}
}

/**
 * Whether `bind` may load the module itself: as root, on the live system, or
 * under fixture roots when a stand-in insmod or modprobe is set (the tests).
 */
export function canLoadModule(d: DriverEnv, effects: Effects = realEffects()): boolean {
  // A dry run plans as the real run (as root) would; it notes the root it lacks (loadModule).
  return (d.host.isRoot() || effects.dryRun) && (d.host.isLive || Boolean(d.env.IOPMEM_INSMOD || d.env.IOPMEM_MODPROBE))
}

/** A dry run's word on the unload a failed bind makes: rmmod, or that it is missing and the module would stay loaded. */
function rmmodThen(d: DriverEnv): string {
  const when = 'if the bind fails (or is interrupted and rolled back)'
  let prog: string
  try {
    prog = program(d, 'rmmod')
  } catch (error) {
    return `${when}: would unload the module it loaded, but cannot run rmmod (${(error as Error).message}); the module would be left loaded`
  }
  if (!installed(d, prog)) return `${when}: would unload the module it loaded, but ${prog} is not installed (E_PROGRAM_MISSING): the module would be left loaded`
  return `${when}: runs rmmod iopmem, unloading the module it loaded`
}

/**
 * Load the module (when `load`), run `work`, and unload the module again if this call loaded
 * it and `work` then failed, or returned a result `keep` says is not worth the module (an
 * interrupted, rolled-back bind). The unload's outcome is reported, never hidden.
 */
export async function withModule<T>(
  d: DriverEnv,
  load: boolean,
  work: () => Promise<T>,
  keep: (result: T) => boolean = () => true,
  effects: Effects = realEffects(),
): Promise<{result: T; loaded: LoadResult | null; unloaded?: string}> {
  const loaded = load ? loadModule(d, {effects}) : null
  if (effects.dryRun) {
    const result = await work()
    if (loaded?.changed) effects.then(rmmodThen(d))
    return {result, loaded: null}
  }
  const unloadAgain = (): string => {
    try {
      unloadModule(d)
      return 'unloaded'
    } catch (error_) {
      return `left loaded: ${(error_ as Error).message}`
    }
  }
  let result: T
  try {
    result = await work()
  } catch (error) {
    if (loaded?.changed) {
      const state = unloadAgain()
      if (error instanceof IopmemError) {
        Object.assign(error, {details: {...error.details, module: state}})
        error.message += `\nThe iopmem module this command loaded was ${state === 'unloaded' ? 'unloaded again' : state}.`
      }
    }
    throw error
  }
  if (loaded?.changed && !keep(result)) return {result, loaded, unloaded: unloadAgain()}
  return {result, loaded}
}

function loadError(r: RunResult, what: string): IopmemError {
  const msg = r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`
  const hints: string[] = ['`dmesg | tail` has the kernel\'s reason.']
  if (/Unknown symbol|Invalid module format/i.test(msg)) hints.unshift('The module does not match this kernel: rebuild it with `iopmem driver build`.')
  if (/Key was rejected|Required key not available/i.test(msg)) hints.unshift('Secure Boot requires signed modules: sign it (scripts/sign-file) or enroll a MOK.')
  return new IopmemError(`${what} failed: ${msg}`, {code: 'E_LOAD_FAILED', exit: Exit.KERNEL, suggestions: hints})
}

export interface UnloadResult {
  changed: boolean
}

export function unloadModule(d: DriverEnv): UnloadResult {
  if (!isLoaded(d.host)) return {changed: false}
  const bound = boundDevices(d.host)
  if (bound.length > 0) {
    throw new IopmemError(`Refusing to unload iopmem: ${bound.length === 1 ? 'a device is' : `${bound.length} devices are`} bound to it (${bound.join(', ')}).`, {
      code: 'E_IN_USE',
      exit: Exit.REFUSED,
      suggestions: bound.map((b) => `iopmem unbind ${b}`),
      details: {bound},
    })
  }
  requireRoot(d.host, 'Unloading the iopmem module')
  if (!installed(d, program(d, 'rmmod'))) throw programMissing(program(d, 'rmmod'))
  const r = runArgs(d, 'rmmod', [DRIVER])
  if (r.code !== 0) {
    throw new IopmemError(`rmmod iopmem failed: ${r.stderr.trim() || `exit ${r.code}`}`, {
      code: 'E_UNLOAD_FAILED',
      exit: Exit.KERNEL,
      suggestions: ['A filesystem still mounted on a removed /dev/iopmemN holds the module: unmount it.'],
    })
  }
  return {changed: true}
}

// ---- status -----------------------------------------------------------------

export interface BoundDevice {
  bdf: string
  mode: string | null
  bar: number | null
  cache: string | null
  /** iopmem0 or p2pmem. */
  node: string | null
  /** /dev/iopmem0 or the p2pmem sysfs directory. */
  path: string | null
  phys: string | null
  size: number | null
  /** What the CPU mapping really is: write-back, uncached-minus, write-combining, uncached, write-through. */
  memtype: string | null
}

export interface DriverStatus {
  loaded: boolean
  version: string | null
  release: string
  parameters: Record<string, string>
  config: string[]
  /** Every line of drivers/iopmem/last_error: "BDF reason", one per device whose last probe failed. */
  lastError: string | null
  /** The probe step debugfs iopmem/fail_probe makes fail (a test hook), null when unset or unreadable. */
  failProbe: string | null
  devices: BoundDevice[]
  /** The module `driver build` made for this kernel, if any, and its signature. */
  built: {ko: string; vermagic: string | null; signature: ModuleSignature} | null
  /** The module DKMS installed for this kernel (`driver install`), if any, and its signature. */
  installed: {ko: string; signature: ModuleSignature} | null
  signing: SigningStatus
}

export interface SigningStatus {
  secureBoot: SecureBootState['secureBoot']
  sigEnforce: boolean | null
  /** Whether this kernel loads only modules whose signature it trusts. */
  needsSignature: boolean
  /** The loaded module: whether the kernel verified its signature (no E taint); null when not loaded. */
  loadedVerified: boolean | null
  /** Whether the signer of the installed (else built) module is an enrolled MOK; null when unknown. */
  enrolled: boolean | null
  /** What to do, when something stands between this module and a kernel that needs a signature. */
  advice: string[]
}

export function deviceInfo(host: Host, bdf: string): BoundDevice {
  const dir = host.sys('bus/pci/devices', bdf, DRIVER)
  const r = (f: string) => host.readTrim(path.join(dir, f)) ?? null
  const mode = r('mode')
  const node = r('node') || null
  const bar = r('bar')
  const size = r('size')
  let p: string | null = null
  if (node && mode === 'p2pmem') p = host.display(host.sys('bus/pci/devices', bdf, 'p2pmem'))
  else if (node) p = '/dev/' + node
  return {bdf, mode, bar: bar === null ? null : Number(bar), cache: r('cache'), node, path: p, phys: r('phys'), size: size === null ? null : Number(size), memtype: r('memtype')}
}

/** Whether Secure Boot needs a signature, and whether the modules at hand have one the kernel trusts. */
export function signingStatus(d: DriverEnv, loaded: boolean, sigs: {built: ModuleSignature | null; installed: ModuleSignature | null}): SigningStatus {
  const h = d.host
  const sb = secureBootState(h)
  const taint = loaded ? h.readTrim(h.sys('module', DRIVER, 'taint')) : undefined
  const loadedVerified = loaded ? taint !== undefined && !taint.includes('E') : null
  const sig = sigs.installed ?? sigs.built
  const enrolled = sig ? enrolledAsMok(sig, sb) : null
  const advice: string[] = []
  if (sb.needsSignature) {
    const why = sb.secureBoot === 'on' ? 'Secure Boot is on' : 'module.sig_enforce is set'
    if (!sig) advice.push(`${why}: the module must be signed: \`iopmem driver install\` (DKMS signs it) or \`iopmem driver build --sign KEY --cert CERT\`.`)
    else if (!sig.signed && !sig.unreadable) advice.push(`${why}, and the module is not signed: the kernel will refuse it. Sign it: \`iopmem driver build --sign KEY --cert CERT\`, or install it through DKMS (\`iopmem driver install\`).`)
    else if (enrolled === false) {
      const cert = sigs.installed ? '/var/lib/dkms/mok.pub (or the --cert given to `driver install`)' : 'the certificate given to --cert'
      advice.push(`${why}, and the module's signer (${sig.signer ?? '?'}) is not an enrolled MOK: ${mokImportStep(cert)}.`)
    }
    if (loadedVerified === false) advice.push('The loaded iopmem did not pass the signature check (taint E): unload it and load a signed one.')
  }
  return {secureBoot: sb.secureBoot, sigEnforce: sb.sigEnforce, needsSignature: sb.needsSignature, loadedVerified, enrolled, advice}
}

export function driverStatus(d: DriverEnv): DriverStatus {
  const h = d.host
  const release = kernelRelease(d)
  const parameters: Record<string, string> = {}
  for (const p of h.list(h.sys('module', DRIVER, 'parameters'))) parameters[p] = h.readTrim(h.sys('module', DRIVER, 'parameters', p)) ?? ''
  const drv = (f: string) => h.readTrim(h.sys('bus/pci/drivers', DRIVER, f))
  const ko = path.join(defaultOutDir(release, d.env), 'iopmem.ko')
  const loaded = isLoaded(h)
  const built = fs.existsSync(ko) ? {ko, vermagic: moduleVermagic(ko), signature: fileSignature(d, ko)} : null
  const dkmsKo = dkmsInstalled(dkmsTrees(d), release)
  const installed = dkmsKo ? {ko: h.display(dkmsKo), signature: fileSignature(d, dkmsKo)} : null
  return {
    loaded,
    version: h.readTrim(h.sys('module', DRIVER, 'version')) ?? null,
    release,
    parameters,
    config: (drv('config') ?? '').split('\n').filter(Boolean),
    lastError: drv('last_error') || null,
    failProbe: h.readTrim(h.sys('kernel/debug', DRIVER, 'fail_probe')) || null,
    devices: boundDevices(h).map((b) => deviceInfo(h, b)),
    built,
    installed,
    signing: signingStatus(d, loaded, {built: built?.signature ?? null, installed: installed?.signature ?? null}),
  }
}

function signatureText(s: ModuleSignature): string {
  if (s.signed) return `signed by ${s.signer ?? '?'}`
  return s.unreadable ? `signature unknown: ${s.unreadable}` : 'not signed'
}

export function renderStatus(s: DriverStatus): string {
  const lines: string[] = []
  lines.push(`iopmem driver: ${s.loaded ? `loaded, version ${s.version ?? '?'}` : 'not loaded'} (kernel ${s.release})`)
  if (s.built) lines.push(`built module: ${s.built.ko}${s.built.vermagic ? ` (${s.built.vermagic.split(' ')[0]})` : ''}, ${signatureText(s.built.signature)}`)
  if (s.installed) lines.push(`DKMS module: ${s.installed.ko}, ${signatureText(s.installed.signature)}`)
  const g = s.signing
  const sb = {on: 'on', off: 'off', 'no-efi': 'not an EFI boot', unknown: 'unknown'}[g.secureBoot]
  lines.push(`Secure Boot: ${sb}; ${g.needsSignature ? 'modules must be signed by a trusted key' : 'unsigned modules load (the kernel is tainted)'}${g.loadedVerified === null ? '' : `; loaded module ${g.loadedVerified ? 'signature verified' : 'not verified (taint E)'}`}`)
  for (const a of g.advice) lines.push(`  → ${a}`)
  const shown = Object.entries(s.parameters)
  if (shown.length > 0) lines.push(`parameters: ${shown.map(([k, v]) => `${k}=${v}`).join(' ')}`)
  // fail_probe is the driver's test hook: shown only when set, and then loudly.
  if (s.failProbe) lines.push(`warning: fail_probe=${s.failProbe} is set: every probe fails at that step (a test hook; \`echo > /sys/kernel/debug/iopmem/fail_probe\` clears it)`)
  if (s.loaded) {
    if (s.devices.length === 0) lines.push('no devices bound')
    for (const dev of s.devices) {
      const size = dev.size === null ? '' : ` ${formatBytes(dev.size)}`
      const memtype = dev.memtype ? ` (${dev.memtype})` : ''
      lines.push(`  ${dev.bdf}  ${dev.mode ?? '?'}  BAR${dev.bar ?? '?'}${size} at ${dev.phys ?? '?'}  cache ${dev.cache ?? '?'}${memtype}  ${dev.path ?? ''}`)
    }
    for (const l of s.lastError?.split('\n') ?? []) lines.push(`last refused probe: ${l}`)
  } else lines.push(s.built ? 'load it: `iopmem driver load`' : 'build it: `iopmem driver build`, then `iopmem driver load`')
  return lines.join('\n')
}
