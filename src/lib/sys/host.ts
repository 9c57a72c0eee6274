/** Where the kernel's trees (/sys, /dev, /proc) live, and reading and writing them. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, isSystemError} from './errors.js'

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
}

/** Writes one value into a sysfs attribute, as `echo value > path` would. */
export interface SysfsWriter {
  write(file: string, value: string): void
}

/**
 * The kernel's writer: opens an existing attribute write-only (never creates
 * one) and writes the value in one write(2), which is what sysfs store
 * methods expect.
 */
export const kernelWriter: SysfsWriter = {
  write(file, value) {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC)
    try {
      fs.writeSync(fd, value)
    } finally {
      fs.closeSync(fd)
    }
  },
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

  constructor(opts: HostOptions = {}) {
    this.roots = {
      sysfs: path.resolve(opts.roots?.sysfs ?? '/sys'),
      dev: path.resolve(opts.roots?.dev ?? '/dev'),
      proc: path.resolve(opts.roots?.proc ?? '/proc'),
      ...besideSysfs(opts.roots),
    }
    this.writer = opts.writer ?? kernelWriter
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
      },
    })
  }

  /** True when all three roots are the live kernel's. */
  get isLive(): boolean {
    return this.roots.sysfs === '/sys' && this.roots.dev === '/dev' && this.roots.proc === '/proc'
  }

  sys(...parts: string[]): string {
    return path.join(this.roots.sysfs, ...parts)
  }

  dev(...parts: string[]): string {
    return path.join(this.roots.dev, ...parts)
  }

  proc(...parts: string[]): string {
    return path.join(this.roots.proc, ...parts)
  }

  boot(...parts: string[]): string {
    return path.join(this.roots.boot, ...parts)
  }

  modules(...parts: string[]): string {
    return path.join(this.roots.modules, ...parts)
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
    return file.startsWith(this.roots.proc + path.sep) || file.startsWith(path.join(this.roots.sysfs, 'kernel', 'debug') + path.sep)
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
    return t === undefined ? undefined : path.resolve(path.dirname(link), t)
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

  /** A path under one of the roots, shown as the kernel would name it (/sys/..., /dev/...). */
  display(file: string): string {
    for (const [root, real] of [
      [this.roots.sysfs, '/sys'],
      [this.roots.dev, '/dev'],
      [this.roots.proc, '/proc'],
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

/** The boot and modules roots: as given, else the live ones beside the live /sys, else beside a fixture's sys directory. */
function besideSysfs(roots: Partial<HostRoots> | undefined): Pick<HostRoots, 'boot' | 'modules'> {
  const sysfs = path.resolve(roots?.sysfs ?? '/sys')
  const base = sysfs === '/sys' ? '/' : path.dirname(sysfs)
  return {
    boot: path.resolve(roots?.boot ?? path.join(base, 'boot')),
    modules: path.resolve(roots?.modules ?? path.join(base, 'lib', 'modules')),
  }
}

const SMALL = Buffer.alloc(16384)

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
