/** Where the kernel's trees (/sys, /dev, /proc) live, and reading and writing them. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, isSystemError, SafetyCode} from './errors.js'

/**
 * The one place that knows where the kernel's trees live. Every read and
 * write of /sys, /dev and /proc goes through a Host, whose roots come from
 * IOPMEM_SYSFS_ROOT, IOPMEM_DEV_ROOT and IOPMEM_PROC_ROOT (default /sys,
 * /dev, /proc). Tests point them at fixture trees and give the host a fake
 * driver core as its writer.
 */
export interface HostRoots {
  sysfs: string
  dev: string
  proc: string
  /**
   * /boot (kernel configs) and /lib/modules (modules.dep, modules.builtin):
   * IOPMEM_BOOT_ROOT and IOPMEM_MODULES_ROOT, else the live ones when sysfs
   * is the live /sys, else `boot` and `lib/modules` beside a fixture's sys.
   */
  boot: string
  modules: string
  /**
   * /etc, where `bind --persist` keeps its records (iopmem/bind.d) and its udev
   * rule (udev/rules.d), and where driverctl keeps its overrides (driverctl.d):
   * IOPMEM_ETC_ROOT, else /etc when sysfs is the live /sys, else `etc` beside
   * a fixture's sys. Tests never write the host's /etc.
   */
  etc: string
}

/** Writes one value into a sysfs attribute, as `echo value > path` would. */
export interface SysfsWriter {
  write(file: string, value: string): void
  /**
   * configfs's own operations (mkdir makes an item and the kernel fills it with its
   * attributes; rmdir drops it; a symlink links two items). Absent: the plain system calls,
   * which is what the kernel's configfs takes. A test's fake configfs plays the kernel here.
   */
  configfs?: ConfigfsOps
}

/** The system calls configfs is driven with: never a file created with O_CREAT. */
export interface ConfigfsOps {
  mkdir(dir: string): void
  rmdir(dir: string): void
  symlink(target: string, link: string): void
  unlink(link: string): void
}

/**
 * The kernel's writer: opens an existing attribute write-only with
 * O_NOFOLLOW (a symlink in the attribute's place is refused with ELOOP, not
 * followed) and never O_CREAT or O_TRUNC (sysfs has no use for either; on
 * anything else they would create or empty a file), then writes the value in
 * one write(2), which is what sysfs store methods expect. Only directories
 * above the attribute may be symlinks, as sysfs's own are
 * (/sys/bus/pci/devices/BDF).
 */
export const kernelWriter: SysfsWriter = {
  write(file, value) {
    writeAttribute(file, value, false)
  },
}

/**
 * The writer for fixture trees (roots that are not the live kernel's): the
 * same open as the kernel's, and afterwards the plain file is cut to what was
 * written, as a sysfs attribute would read back. Never used on the live roots.
 */
export const fixtureWriter: SysfsWriter = {
  write(file, value) {
    writeAttribute(file, value, true)
  },
}

function writeAttribute(file: string, value: string, cut: boolean): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) {
      throw Object.assign(new Error(`${file} is not an attribute file`), {code: 'EINVAL', errno: -22, syscall: 'open', path: file})
    }
    const n = fs.writeSync(fd, value)
    if (cut) fs.ftruncateSync(fd, n)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * A path handed to an external program. Only a Host makes one
 * (`host.programPath`), after mapping it to its roots, so no caller can pass a
 * path the host has not seen: `shown` is the name the kernel would use
 * (/dev/pmem7), `real` what the program gets (the fixture's file under
 * fixture roots, the same under the live ones). `prefix` is glued in front
 * (`M=` for make).
 */
export class ProgramPath {
  private constructor(
    readonly shown: string,
    readonly real: string,
    readonly prefix: string,
  ) {}

  /** @internal Host's own factory. */
  static make(token: symbol, shown: string, real: string, prefix: string): ProgramPath {
    if (token !== PATH_TOKEN) throw new Error('ProgramPath: only a Host makes these (host.programPath)')
    return new ProgramPath(shown, real, prefix)
  }
}

const PATH_TOKEN = Symbol('ProgramPath')

/** An argument of an external program: an option or word (no path in it), or a path the host mapped. */
export type ProgramArg = string | ProgramPath

/** The kernel's own trees: under fixture roots no external program may be handed a path into one of these. */
export const LIVE_TREES = ['/dev', '/sys', '/proc']

/** Whether an argument string carries a path (absolute, or after an `=`): such strings must be ProgramPaths. */
export function carriesPath(arg: string): boolean {
  return arg.startsWith('/') || /=\//.test(arg) || arg.startsWith('./') || arg.startsWith('../')
}

export interface HostOptions {
  roots?: Partial<HostRoots>
  writer?: SysfsWriter
  /** Effective uid; defaults to process.geteuid(). Tests set it to act as a normal user. */
  uid?: number
}

export class Host {
  readonly roots: HostRoots
  readonly writer: SysfsWriter
  readonly uid: number
  /** Where isSeqFile() looks (computed once: read() asks for every file). */
  private readonly seqRoots: [string, string]

  constructor(opts: HostOptions = {}) {
    this.roots = {
      sysfs: path.resolve(opts.roots?.sysfs ?? '/sys'),
      dev: path.resolve(opts.roots?.dev ?? '/dev'),
      proc: path.resolve(opts.roots?.proc ?? '/proc'),
      ...besideSysfs(opts.roots),
    }
    this.writer = opts.writer ?? (this.isLiveRoots() ? kernelWriter : fixtureWriter)
    this.seqRoots = [this.roots.proc + path.sep, path.join(this.roots.sysfs, 'kernel', 'debug') + path.sep]
    this.uid = opts.uid ?? (process.geteuid ? process.geteuid() : -1)
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env, opts: Omit<HostOptions, 'roots'> = {}): Host {
    return new Host({
      ...opts,
      roots: {
        sysfs: env.IOPMEM_SYSFS_ROOT || '/sys',
        dev: env.IOPMEM_DEV_ROOT || '/dev',
        proc: env.IOPMEM_PROC_ROOT || '/proc',
        ...(env.IOPMEM_BOOT_ROOT ? {boot: env.IOPMEM_BOOT_ROOT} : {}),
        ...(env.IOPMEM_MODULES_ROOT ? {modules: env.IOPMEM_MODULES_ROOT} : {}),
        ...(env.IOPMEM_ETC_ROOT ? {etc: env.IOPMEM_ETC_ROOT} : {}),
      },
    })
  }

  /** True when all three roots are the live kernel's. */
  get isLive(): boolean {
    return this.isLiveRoots()
  }

  private isLiveRoots(): boolean {
    return this.roots.sysfs === '/sys' && this.roots.dev === '/dev' && this.roots.proc === '/proc'
  }

  /**
   * The one way a path reaches an external program. A kernel name
   * (/dev/pmem7, /sys/...) becomes the file under our roots; under fixture
   * roots a path that is (or resolves, through symlinks, to) a file in the
   * live kernel's trees (LIVE_TREES) and not under the roots is refused with
   * E_NOT_LIVE. Any other path (an image file, a mount point) is passed as
   * itself, absolute.
   */
  programPath(p: string, prefix = ''): ProgramPath {
    if (p === '' || p.includes('\0')) throw new Error(`programPath: invalid path ${JSON.stringify(p)}`)
    const abs = path.resolve(p)
    if (this.isLive) return ProgramPath.make(PATH_TOKEN, abs, abs, prefix)
    const mapped = this.fromSystemPath(abs)
    const real = this.realpath(mapped)
    const inRoots = (q: string) => [this.roots.sysfs, this.roots.dev, this.roots.proc].some((r) => q === r || q.startsWith(r + '/'))
    const inLive = (q: string) => LIVE_TREES.some((t) => q === t || q.startsWith(t + '/'))
    for (const q of [mapped, real]) {
      if (q !== undefined && !inRoots(q) && inLive(q)) {
        throw new IopmemError(
          `Not handing ${p} to an external program: it is on the live system (${q}), but the sysfs/dev/proc roots are a fixture (${this.roots.sysfs}, ${this.roots.dev}, ${this.roots.proc}).`,
          {code: SafetyCode.NOT_LIVE, exit: Exit.UNSUPPORTED, path: p, details: {roots: this.roots, resolved: q}},
        )
      }
    }
    return ProgramPath.make(PATH_TOKEN, this.display(mapped), mapped, prefix)
  }

  /**
   * A descriptor the program inherits as its fd `n`, named as it opens it
   * (/proc/self/fd/N). The one /proc path handed out even under fixture roots:
   * it names the child's own descriptor, nothing of the host's.
   */
  inheritedFd(n: number): ProgramPath {
    if (!Number.isInteger(n) || n < 3) throw new Error(`inheritedFd: ${n} is not an extra descriptor`)
    return ProgramPath.make(PATH_TOKEN, `/proc/self/fd/${n}`, `/proc/self/fd/${n}`, '')
  }

  /**
   * The argv an external program gets: words as they are, ProgramPaths as
   * their real path (or, for a stand-in runner that plays the kernel's world
   * under its names, as shown). A word that carries a path is a programming
   * error: it would bypass the mapping.
   */
  argv(args: readonly ProgramArg[], as: 'real' | 'shown' = 'real'): string[] {
    return args.map((a) => {
      if (a instanceof ProgramPath) return a.prefix + (as === 'real' ? a.real : a.shown)
      if (carriesPath(a)) throw new Error(`argv: ${JSON.stringify(a)} carries a path; pass it as host.programPath()`)
      return a
    })
  }

  sys(...parts: string[]): string {
    return joinUnder(this.roots.sysfs, parts)
  }

  dev(...parts: string[]): string {
    return joinUnder(this.roots.dev, parts)
  }

  proc(...parts: string[]): string {
    return joinUnder(this.roots.proc, parts)
  }

  boot(...parts: string[]): string {
    return joinUnder(this.roots.boot, parts)
  }

  modules(...parts: string[]): string {
    return joinUnder(this.roots.modules, parts)
  }

  etc(...parts: string[]): string {
    return joinUnder(this.roots.etc, parts)
  }

  isRoot(): boolean {
    return this.uid === 0
  }

  /**
   * The file's text, or undefined when it does not exist or cannot be read.
   * Sysfs attributes are small and report a size of 4096 whatever they hold,
   * so read into a reused buffer (open, read, close) rather than
   * readFileSync's stat-and-grow loop; fall back to it for larger files.
   */
  read(file: string): string | undefined {
    let fd: number
    try {
      fd = fs.openSync(file, 'r')
    } catch {
      return undefined
    }
    try {
      const n = fs.readSync(fd, SMALL, 0, SMALL.length, null)
      // A sysfs attribute comes whole in one read (at most a page). A seq_file under /proc
      // (mountinfo, maps) or debugfs (pat_memtype_list) hands out about a page per read, so a
      // short read there is not the end.
      if (n < SMALL.length && !this.isSeqFile(file)) return SMALL.toString('utf8', 0, n)
      return Buffer.concat([SMALL.subarray(0, n), fs.readFileSync(fd)]).toString('utf8')
    } catch {
      return undefined
    } finally {
      fs.closeSync(fd)
    }
  }

  /** Under /proc or debugfs (/sys/kernel/debug): files the kernel serves a page or so per read. */
  private isSeqFile(file: string): boolean {
    return file.startsWith(this.seqRoots[0]) || file.startsWith(this.seqRoots[1])
  }

  /** read() with surrounding whitespace removed. */
  readTrim(file: string): string | undefined {
    const s = this.read(file)
    return s === undefined ? undefined : s.trim()
  }

  readInt(file: string, radix = 10): number | undefined {
    const s = this.readTrim(file)
    if (s === undefined || s === '') return undefined
    const n = radix === 16 ? Number.parseInt(s.replace(/^0x/i, ''), 16) : Number.parseInt(s, radix)
    return Number.isNaN(n) ? undefined : n
  }

  readBytes(file: string, length?: number): Buffer | undefined {
    try {
      if (length === undefined) return fs.readFileSync(file)
      const fd = fs.openSync(file, 'r')
      try {
        const buf = Buffer.alloc(length)
        const n = fs.readSync(fd, buf, 0, length, 0)
        return buf.subarray(0, n)
      } finally {
        fs.closeSync(fd)
      }
    } catch {
      return undefined
    }
  }

  readLink(file: string): string | undefined {
    try {
      return fs.readlinkSync(file)
    } catch {
      return undefined
    }
  }

  /** Basename of a symlink's target (e.g. the driver name from `driver`). */
  linkName(file: string): string | undefined {
    const t = this.readLink(file)
    return t === undefined ? undefined : path.basename(t)
  }

  exists(file: string): boolean {
    try {
      // throwIfNoEntry: a missing file is the common answer, and exceptions are slow.
      return fs.lstatSync(file, {throwIfNoEntry: false}) !== undefined
    } catch {
      return false
    }
  }

  list(dir: string): string[] {
    try {
      return fs.readdirSync(dir).sort()
    } catch {
      return []
    }
  }

  /**
   * Where a symlink that sits in a real directory points, resolved with one
   * readlink(2) instead of realpath's walk over every component (sysfs
   * paths are deep: this is most of `list`'s system calls otherwise).
   */
  resolveLink(link: string): string | undefined {
    const t = this.readLink(link)
    return t === undefined ? undefined : resolveLinkTarget(link, t)
  }

  /**
   * Many reads at once, each answered as the method of its kind answers it
   * (`text`: read(), `bytes`: readBytes(path, length), `link`: readLink(),
   * `list`: list(), `exists`: exists()). With a bulk reader installed
   * (setBulkReader: the addon's readMany) the system calls are made in one
   * native call per 8192 requests instead of up to three Node fs calls per
   * file, each of which costs several µs more than its system call. Without
   * one, when it refuses a batch (a path it will not take), or for files
   * served a page per read (/proc, debugfs), each is read here.
   */
  readMany(requests: readonly SysRead[]): SysAnswer[] {
    const bulk = installedBulkReader()
    if (!bulk) return requests.map((r) => this.readOne(r))
    const out: SysAnswer[] = []
    for (const part of bulkChunks(requests)) this.takeAnswers(part, unlessRefused(() => bulk.read(...bulkArgs(part))), out)
    return out
  }

  /**
   * readMany with the system calls on the addon's threads (libuv's pool): the
   * JavaScript thread goes on meanwhile, so reads started early overlap work
   * that needs no answers yet (start-up's module loading: see
   * lib/pci/prefetch.ts). Answers as readMany's; without the addon it is
   * readMany.
   */
  async readManyAsync(requests: readonly SysRead[]): Promise<SysAnswer[]> {
    const bulk = installedBulkReader()
    if (!bulk) return this.readMany(requests)
    const out: SysAnswer[] = []
    for (const part of bulkChunks(requests)) {
      this.takeAnswers(part, await unlessRefused(() => bulk.readAsync(...bulkArgs(part)))?.catch(() => undefined), out)
    }
    return out
  }

  /** A chunk's answers onto out, as readOne would answer; each one here when the addon refused the chunk. */
  private takeAnswers(part: readonly SysRead[], answers: unknown[] | undefined, out: SysAnswer[]): void {
    for (let i = 0; i < part.length; i++) out.push(answers ? this.bulkAnswer(part[i], answers[i]) : this.readOne(part[i]))
  }

  /**
   * A view of this host that answers the reads fetched into it (fetch(), one
   * readMany per call) from what was read then, and passes every other call
   * to the host. For a scan that reads the same attributes of many devices in
   * one go; the answers are as old as the fetch, so keep a view no longer
   * than the scan.
   */
  readAhead(): ReadAhead {
    const host = this
    // One map per kind, keyed by the path itself: no key strings to build for thousands of reads.
    const text = new Map<string, string | undefined>()
    const bytes = new Map<string, {length: number; value: Buffer | undefined}>()
    const links = new Map<string, string | undefined>()
    const lists = new Map<string, string[]>()
    const found = new Map<string, boolean>()
    const view = Object.create(host) as ReadAhead
    const store = (requests: readonly SysRead[], got: SysAnswer[]) => {
      // Index loops here and in takeAnswers: a cold process runs them once, interpreted, and
      // entries() made an array per request (~5,000 for a large machine's scan).
      for (let i = 0; i < requests.length; i++) {
        const r = requests[i]
        const a = got[i]
        if (r.kind === 'text') text.set(r.path, a as string | undefined)
        else if (r.kind === 'bytes') bytes.set(r.path, {length: r.length, value: a as Buffer | undefined})
        else if (r.kind === 'link') links.set(r.path, a as string | undefined)
        else if (r.kind === 'list') lists.set(r.path, a as string[])
        else found.set(r.path, a as boolean)
      }
    }
    view.fetch = (requests) => store(requests, host.readMany(requests))
    view.fetchAsync = async (requests) => store(requests, await host.readManyAsync(requests))
    view.read = (file) => (text.has(file) ? text.get(file) : host.read(file))
    view.readBytes = (file, length) => {
      const b = bytes.get(file)
      return b !== undefined && b.length === length ? b.value : host.readBytes(file, length)
    }
    view.readLink = (file) => (links.has(file) ? links.get(file) : host.readLink(file))
    view.list = (dir) => lists.get(dir)?.slice() ?? host.list(dir)
    view.exists = (file) => found.get(file) ?? host.exists(file)
    return view
  }

  private readOne(r: SysRead): SysAnswer {
    switch (r.kind) {
      case 'text':
        return this.read(r.path)
      case 'bytes':
        return this.readBytes(r.path, r.length)
      case 'link':
        return this.readLink(r.path)
      case 'list':
        return this.list(r.path)
      case 'exists':
        return this.exists(r.path)
    }
  }

  /** The addon's answer as readOne's: -errno is "not there", as the single calls treat any error. */
  private bulkAnswer(r: SysRead, a: unknown): SysAnswer {
    const failed = typeof a === 'number'
    switch (r.kind) {
      case 'text':
        // A file that filled the buffer, or one served a page per read: read it whole here.
        if (a === OVERFLOWED || this.isSeqFile(r.path)) return this.read(r.path)
        return failed ? undefined : (a as string)
      case 'bytes':
        return failed ? undefined : (a as Buffer)
      case 'link':
        return failed ? undefined : (a as string)
      case 'list':
        return failed ? [] : (a as string[]).sort()
      case 'exists':
        return a === true
    }
  }

  realpath(file: string): string | undefined {
    try {
      return fs.realpathSync.native(file)
    } catch {
      return undefined
    }
  }

  /**
   * Write a sysfs attribute. Errors come back as IopmemError with the errno
   * kept, so callers can roll back and explain.
   */
  write(file: string, value: string): void {
    // Kernel writes go to sysfs under this host's root and nowhere else (under fixture roots: never the live /sys).
    if (!file.startsWith(this.roots.sysfs + '/')) throw new Error(`Host.write: ${file} is not under the sysfs root ${this.roots.sysfs}`)
    try {
      this.writer.write(file, value)
    } catch (error) {
      if (isSystemError(error)) {
        const perm = error.code === 'EACCES' || error.code === 'EPERM'
        throw new IopmemError(`Writing ${JSON.stringify(value)} to ${this.display(file)} failed: ${error.message}`, {
          code: error.code ?? 'EIO',
          errno: error.errno,
          syscall: error.syscall ?? 'write',
          path: this.display(file),
          exit: perm ? Exit.PERMISSION : Exit.KERNEL,
          suggestions: perm ? ['Run as root (sudo).'] : [],
          cause: error,
        })
      }
      throw error
    }
  }

  /** A path under one of the roots, shown as the system names it (/sys/..., /dev/..., /etc/...). */
  display(file: string): string {
    for (const [root, real] of [
      [this.roots.sysfs, '/sys'],
      [this.roots.dev, '/dev'],
      [this.roots.proc, '/proc'],
      [this.roots.etc, '/etc'],
    ] as const) {
      if (root !== real && (file === root || file.startsWith(root + '/'))) return real + file.slice(root.length)
    }
    return file
  }

  /** The inverse of display(): a kernel path (as found in /proc/PID/fd links) to a path under our roots. */
  fromSystemPath(p: string): string {
    for (const [real, root] of [
      ['/sys', this.roots.sysfs],
      ['/dev', this.roots.dev],
      ['/proc', this.roots.proc],
    ] as const) {
      if (p === real || p.startsWith(real + '/')) return root + p.slice(real.length)
    }
    return p
  }
}

/** The boot, modules and etc roots: as given, else the live ones beside the live /sys, else beside a fixture's sys directory. */
function besideSysfs(roots: Partial<HostRoots> | undefined): Pick<HostRoots, 'boot' | 'modules' | 'etc'> {
  const sysfs = path.resolve(roots?.sysfs ?? '/sys')
  const base = sysfs === '/sys' ? '/' : path.dirname(sysfs)
  return {
    boot: path.resolve(roots?.boot ?? path.join(base, 'boot')),
    modules: path.resolve(roots?.modules ?? path.join(base, 'lib', 'modules')),
    etc: path.resolve(roots?.etc ?? path.join(base, 'etc')),
  }
}

const SMALL = Buffer.alloc(16384)

/**
 * path.join(root, ...parts), without its normalizing when there is nothing to
 * normalize: a scan joins thousands of sysfs paths, and path.join's work was a
 * visible part of a cold `iopmem list`. Whenever the plain concatenation has an
 * empty, `.` or `..` segment or a trailing slash, path.join answers.
 */
export function joinUnder(root: string, parts: readonly string[]): string {
  let joined = root
  for (const p of parts) joined += '/' + p
  return root === '' || NOT_NORMAL.test(joined) ? path.join(root, ...parts) : joined
}

/** What path.normalize would change: a doubled slash, a `.` or `..` segment, a trailing slash. */
const NOT_NORMAL = /\/\/|(^|\/)\.\.?(\/|$)|.\/$/

/**
 * path.resolve(path.dirname(link), target), done with split and join when the
 * link is an absolute path with nothing to normalize (every sysfs link a scan
 * follows: `list` resolves ~500): path.resolve walks each path character by
 * character in JavaScript, ~7 ms of a cold `list`.
 */
export function resolveLinkTarget(link: string, target: string): string {
  if (!link.startsWith('/') || target.startsWith('/') || link.includes('//') || link.includes('/.') || link.endsWith('/')) {
    return path.resolve(path.dirname(link), target)
  }
  const parts = link.split('/')
  parts.pop() // the link's own name: its directory is the base
  for (const seg of target.split('/')) {
    if (seg === '..') {
      if (parts.length > 1) parts.pop()
    } else if (seg !== '.' && seg !== '') parts.push(seg)
  }
  return parts.length === 1 ? '/' : parts.join('/')
}

/** One request of Host.readMany: what to read, and how (the Host method it stands for). */
export type SysRead =
  | {kind: 'text'; path: string}
  | {kind: 'bytes'; path: string; length: number}
  | {kind: 'link'; path: string}
  | {kind: 'list'; path: string}
  | {kind: 'exists'; path: string}

/** Host.readAhead's view: a Host whose reads of what was fetched come from one readMany. */
export interface ReadAhead extends Host {
  /** Read these now (one readMany); later reads of them are answered from here. */
  fetch(requests: readonly SysRead[]): void
  /** fetch() with the reads on the addon's threads (Host.readManyAsync). */
  fetchAsync(requests: readonly SysRead[]): Promise<void>
}

/** What readMany answers for a request: the return value of its Host method. */
export type SysAnswer = string | Buffer | string[] | boolean | undefined

/**
 * Many small reads in one native call (the addon's readMany): kinds 0 text,
 * 1 bytes, 2 link, 3 dir, 4 exists; one answer each, -errno when it failed.
 */
export interface BulkReader {
  read(kinds: Uint8Array, paths: string[], sizes: Uint32Array): unknown[]
  /** read() on other threads; bad input throws at once, as read()'s does. */
  readAsync(kinds: Uint8Array, paths: string[], sizes: Uint32Array): Promise<unknown[]>
}

/** readMany's arguments for a chunk of requests: kinds, paths, sizes. */
function bulkArgs(part: readonly SysRead[]): [Uint8Array, string[], Uint32Array] {
  const kinds = new Uint8Array(part.length)
  const sizes = new Uint32Array(part.length)
  const paths = part.map((r, i) => {
    kinds[i] = BULK_KIND[r.kind]
    sizes[i] = r.kind === 'bytes' ? r.length : r.kind === 'text' ? SMALL.length : 0
    return r.path
  })
  return [kinds, paths, sizes]
}

function* bulkChunks(requests: readonly SysRead[]): Generator<readonly SysRead[]> {
  for (let at = 0; at < requests.length; at += BULK_CHUNK) yield requests.slice(at, at + BULK_CHUNK)
}

/** The bulk reader's answer, or undefined when it refused the chunk: it checks every request before it reads anything, so a refused chunk read nothing. */
function unlessRefused<T>(call: () => T): T | undefined {
  try {
    return call()
  } catch {
    return undefined
  }
}

const BULK_KIND = {text: 0, bytes: 1, link: 2, list: 3, exists: 4} as const
const BULK_CHUNK = 8192
/** The addon's answer for a text file that filled the buffer: -EOVERFLOW. */
const OVERFLOWED = -75

let bulkSource: (() => BulkReader | undefined) | undefined
let bulkReader: BulkReader | null | undefined

/**
 * Install where readMany gets its bulk reader: the command base passes the
 * addon's (src/base-command.ts); without one, or when it answers undefined
 * (the addon is not built), readMany reads file by file. Asked once, on first use.
 */
export function setBulkReader(source: (() => BulkReader | undefined) | undefined): void {
  bulkSource = source
  bulkReader = undefined
}

function installedBulkReader(): BulkReader | undefined {
  if (bulkReader === undefined) bulkReader = bulkSource?.() ?? null
  return bulkReader ?? undefined
}

let current: Host | undefined

/** The process's host: from the environment unless a test installed one. */
export function getHost(): Host {
  current ??= Host.fromEnv()
  return current
}

/** Install a host (tests) or clear it so the next getHost() reads the environment again. */
export function setHost(host: Host | undefined): void {
  current = host
}
