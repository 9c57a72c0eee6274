/**
 * Lazy loader and error glue of the iopmem native addon.
 *
 * Nothing here runs at import time but constant definitions: the addon is
 * loaded by the first `loadNative()`, so `iopmem --help`, `list` and `topo`
 * work where it failed to build. Import this module from the commands that
 * need the addon, and call `loadNative()` inside `run()`.
 *
 * Where it comes from, first hit wins:
 *  1. `IOPMEM_NATIVE=/path/to/iopmem.node` (a build to test, or a copy);
 *  2. node-gyp-build on the package root: `build/Release/iopmem.node` (from
 *     `npm run build:native`), then `prebuilds/linux-x64/*.node` (shipped in
 *     the package, N-API so one serves every Node ≥ 20).
 */
import * as fs from 'node:fs'
import {createRequire} from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'

import {type BulkReader, Exit, type ExitCode, IopmemError, packageRoot, seamValue} from '../lib/sys/index.js'
import type {
  CachingMode,
  FiemapOptions,
  FiemapResult,
  IoRunResult,
  MapOptions,
  Mapping,
  Native,
  NativeAccess,
  RawBinding,
  StatxOptions,
  StatxResult,
  Width,
} from './types.js'

export type * from './types.js'

/** The `abiVersion` this glue was written for; a stale build is refused. */
export const NATIVE_ABI_VERSION = 5

/** FIEMAP extent flags (fe_flags), include/uapi/linux/fiemap.h. */
export const FIEMAP_EXTENT = {
  LAST: 0x1,
  UNKNOWN: 0x2,
  DELALLOC: 0x4,
  ENCODED: 0x8,
  DATA_ENCRYPTED: 0x80,
  NOT_ALIGNED: 0x100,
  DATA_INLINE: 0x200,
  DATA_TAIL: 0x400,
  UNWRITTEN: 0x800,
  MERGED: 0x1000,
  SHARED: 0x2000,
} as const

/** Extent flags that mean "this extent has no address a device can use". */
export const FIEMAP_NO_ADDRESS =
  FIEMAP_EXTENT.UNKNOWN |
  FIEMAP_EXTENT.DELALLOC |
  FIEMAP_EXTENT.ENCODED |
  FIEMAP_EXTENT.DATA_ENCRYPTED |
  FIEMAP_EXTENT.NOT_ALIGNED |
  FIEMAP_EXTENT.DATA_INLINE |
  FIEMAP_EXTENT.DATA_TAIL

/** STATX_ATTR_DAX. */
export const STATX_ATTR_DAX = 0x0020_0000

/** STATX_DIOALIGN (kernel ≥ 6.1). */
export const STATX_DIOALIGN = 0x2000

const O_RDONLY = 0
const O_RDWR = 2
const FIEMAP_FLAG_SYNC = 0x1
const FIEMAP_FLAG_XATTR = 0x2
/** statx(2)'s dirfd and flags (AT_*). */
const AT = {FDCWD: -100, SYMLINK_NOFOLLOW: 0x100, EMPTY_PATH: 0x1000} as const
const STATX_DEFAULT_MASK = 0x07ff | 0x0800 | 0x1000 | STATX_DIOALIGN // basic | btime | mnt_id | dioalign
const S_IFMT = 0o170000
const S_IFREG = 0o100000
const SYSFS_MAGIC = 0x6265_6572
const U64_MAX = 0xffff_ffff_ffff_ffffn

/** One FIEMAP extent as an object (BigInt fields, exact). */
export interface FiemapExtent {
  logical: bigint
  physical: bigint
  length: bigint
  flags: number
}

/** Extent `i` of a fiemap() result as an object. */
export function fiemapExtent(r: FiemapResult, i: number): FiemapExtent {
  return {logical: r.logical[i], physical: r.physical[i], length: r.length[i], flags: r.flags[i]}
}

/** All extents of a fiemap() result as objects (fine for thousands; use the arrays for millions). */
export function fiemapExtents(r: FiemapResult): FiemapExtent[] {
  const out: FiemapExtent[] = new Array(r.count)
  for (let i = 0; i < r.count; i++) out[i] = fiemapExtent(r, i)
  return out
}

// ---- errors -------------------------------------------------------------------

let errnoNames: Map<number, string> | undefined

/** The errno name (`EACCES`) of a positive errno number, `E<n>` if unknown. */
export function errnoName(errno: number): string {
  if (!errnoNames) {
    errnoNames = new Map()
    for (const [name, n] of Object.entries(os.constants.errno)) if (!errnoNames.has(n)) errnoNames.set(n, name)
    // Linux errnos libuv does not list.
    const extra: Record<number, string> = {121: 'EREMOTEIO', 95: 'EOPNOTSUPP', 11: 'EAGAIN', 35: 'EDEADLK', 6: 'ENXIO'}
    for (const [n, name] of Object.entries(extra)) errnoNames.set(Number(n), name)
  }
  return errnoNames.get(errno) ?? `E${errno}`
}

function exitFor(code: string): ExitCode {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return Exit.PERMISSION
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      return Exit.NOT_FOUND
    case 'EOPNOTSUPP':
    case 'ENOTTY':
    case 'ENOSYS':
      return Exit.UNSUPPORTED
    default:
      return Exit.KERNEL
  }
}

/**
 * A failed system call of the addon: `code` the errno name, `errno` the
 * positive errno number, `syscall`, `path`, and strerror's text in `message`.
 */
export class NativeErrnoError extends IopmemError {
  constructor(errno: number, syscall: string, filePath: string | undefined, message: string) {
    const code = errnoName(errno)
    super(filePath === undefined ? `${message} (${syscall})` : `${message} (${syscall} '${filePath}')`, {
      code,
      errno,
      syscall,
      path: filePath,
      exit: exitFor(code),
    })
    this.name = 'NativeErrnoError'
  }
}

// ---- loading ------------------------------------------------------------------

let cached: Native | undefined

function missing(why: string, cause?: unknown): IopmemError {
  return new IopmemError(`the iopmem native addon is not available: ${why}`, {
    code: 'E_NATIVE_MISSING',
    exit: Exit.UNSUPPORTED,
    cause,
    suggestions: [
      'build it: npm run build:native (node-gyp; needs python3, make and a C++ compiler)',
      'or install a package that ships prebuilds/linux-x64/*.node',
      'or point IOPMEM_NATIVE at a built iopmem.node',
    ],
  })
}

function loadRaw(): {raw: RawBinding; file: string} {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw missing(`it is built for x86-64 Linux only (this is ${process.platform}-${process.arch})`)
  const require = createRequire(import.meta.url)
  // As root, only a root-owned addon no one else can write (seamValue's rule): it runs inside this process.
  const override = seamValue('IOPMEM_NATIVE')
  let file: string
  try {
    if (override) {
      file = path.resolve(override)
    } else {
      // node-gyp-build looks in build/Release first too; asking the file system directly spares
      // loading it (~4 ms of every `iopmem list`, which reads sysfs through the addon).
      const built = path.join(packageRoot(), 'build', 'Release', 'iopmem.node')
      const gypBuild = fs.existsSync(built) ? undefined : (require('node-gyp-build') as {resolve(dir: string): string})
      file = gypBuild ? gypBuild.resolve(packageRoot()) : built
    }
  } catch (err) {
    throw missing(`no build/Release/iopmem.node and no prebuild for linux-x64 under ${packageRoot()}`, err)
  }
  let raw: RawBinding
  try {
    raw = require(file) as RawBinding
  } catch (err) {
    throw missing(`${file} failed to load: ${(err as Error).message}`, err)
  }
  if (raw.abiVersion !== NATIVE_ABI_VERSION)
    throw missing(`${file} is a different version of the addon (abi ${raw.abiVersion}, want ${NATIVE_ABI_VERSION}): rebuild it`)
  return {raw, file}
}

/** Try to load the addon; false (no throw) if it is missing. */
export function nativeAvailable(): boolean {
  try {
    loadNative()
    return true
  } catch {
    return false
  }
}

/**
 * The addon's readMany and readManyAsync, for Host.readMany and
 * Host.readManyAsync (setBulkReader), or undefined when the addon cannot be
 * loaded: the host then reads file by file.
 */
export function bulkReader(): BulkReader | undefined {
  try {
    const {raw} = loadNative()
    return {read: raw.readMany, readAsync: raw.readManyAsync}
  } catch {
    return undefined
  }
}

/**
 * Load the addon (once; later calls return the same object). Throws an
 * IopmemError with code `E_NATIVE_MISSING` that says how to build it.
 */
export function loadNative(): Native {
  if (!cached) {
    const {raw, file} = loadRaw()
    cached = wrap(raw, file)
  }
  return cached
}

/**
 * Unmap every live mapping when the process exits; with `signals`, also on
 * SIGINT/SIGTERM, after which the signal is raised again with its default
 * action (so the exit status still says "killed by SIGINT") unless another
 * listener for it is installed. The kernel unmaps at exit anyway; this makes
 * release happen before other exit work and is idempotent.
 */
export function releaseOnExit(options: {signals?: boolean} = {}): void {
  const native = loadNative()
  if (!exitHooked) {
    exitHooked = true
    process.once('exit', () => native.unmapAll())
  }
  if (options.signals && !signalsHooked) {
    signalsHooked = true
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        native.unmapAll()
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
      })
    }
  }
}

let exitHooked = false
let signalsHooked = false

// ---- the wrapped surface ---------------------------------------------------------

function wrap(raw: RawBinding, file: string): Native {
  const fail = (r: number, syscall: string, p?: string): never => {
    throw new NativeErrnoError(-r, syscall, p, raw.strerror(-r))
  }
  const num = (r: number, syscall: string, p?: string): number => (r < 0 ? fail(r, syscall, p) : r)
  const obj = <T>(r: T | number, syscall: string, p?: string): T => (typeof r === 'number' ? fail(r, syscall, p) : r)
  const label = (target: string | number) => (typeof target === 'number' ? `fd:${target}` : target)

  const withFd = <T>(target: string | number, flags: number, fn: (fd: number) => T): T => {
    if (typeof target === 'number') return fn(target)
    const fd = num(raw.open(target, flags), 'open', target)
    try {
      return fn(fd)
    } finally {
      raw.close(fd)
    }
  }

  const statx = (target: string | number, options: StatxOptions = {}): StatxResult => {
    const mask = options.mask ?? STATX_DEFAULT_MASK
    const r =
      typeof target === 'number'
        ? raw.statx(target, '', AT.EMPTY_PATH, mask)
        : raw.statx(AT.FDCWD, target, options.followSymlinks === false ? AT.SYMLINK_NOFOLLOW : 0, mask)
    const st = obj(r, 'statx', label(target))
    return {...st, dax: (st.attributes & STATX_ATTR_DAX) !== 0}
  }

  const map = (target: string | number, options: MapOptions = {}): Mapping => {
    const mode: CachingMode = options.mode ?? 'uc'
    const readOnly = options.readOnly === true
    const offset = options.offset ?? 0
    const where = label(target)
    return withFd(target, readOnly ? O_RDONLY : O_RDWR, (fd) => {
      const st = statx(fd, {mask: 0x07ff})
      let length = options.length
      const regular = (st.mode & S_IFMT) === S_IFREG
      const sysfs = regular && obj(raw.fstatfs(fd), 'fstatfs', where).type === SYSFS_MAGIC
      if (length === undefined) {
        if (st.size > offset) length = st.size - offset
        else
          throw new IopmemError(`cannot tell how much of ${where} to map: its size reads ${st.size}; give a length`, {
            code: 'E_LENGTH',
            exit: Exit.USAGE,
            path: where,
          })
      }
      if (regular && !sysfs && offset + length > st.size)
        throw new IopmemError(
          `${where}: range ${offset}+${length} runs past the end of the file (${st.size} bytes); touching it would raise SIGBUS`,
          {code: 'ERANGE', exit: Exit.USAGE, path: where},
        )
      let flags = 0
      if (options.sync) flags |= raw.constants.MAP_SYNC | raw.constants.MAP_SHARED_VALIDATE
      if (options.populate) flags |= raw.constants.MAP_POPULATE
      return obj(raw.mmap(fd, offset, length, !readOnly, flags, mode, where), 'mmap', where)
    })
  }

  return {
    file,
    raw,
    constants: raw.constants,
    // m?.slot: a non-object gives undefined, which the addon refuses (E_HANDLE).
    read8: (m, o) => raw.read8(m?.slot, o),
    read16: (m, o) => raw.read16(m?.slot, o),
    read32: (m, o) => raw.read32(m?.slot, o),
    read64: (m, o) => raw.read64(m?.slot, o),
    write8: (m, o, v) => raw.write8(m?.slot, o, v),
    write16: (m, o, v) => raw.write16(m?.slot, o, v),
    write32: (m, o, v) => raw.write32(m?.slot, o, v),
    write64: (m, o, v) => raw.write64(m?.slot, o, v),
    readValues: ((m: Mapping, o: number, w: Width, c: number) => raw.readValues(m?.slot, o, w, c)) as NativeAccess['readValues'],
    writeValues: (m, o, w, v) => raw.writeValues(m?.slot, o, w, v),
    copyTo: (m, o, b, s) => raw.copyTo(m?.slot, o, b, s),
    copyFrom: (m, o, b, s) => raw.copyFrom(m?.slot, o, b, s),
    flush: (m, o, n) => raw.flush(m?.slot, o, n),
    unmap: (m) => raw.unmap(m?.slot),
    cpuFeatures: raw.cpuFeatures,
    setIsaLimit: raw.setIsaLimit,
    unmapAll: raw.unmapAll,
    liveMappings: raw.liveMappings,
    strerror: raw.strerror,
    map,
    statx,
    mapAnonymous(length, options = {}) {
      return obj(raw.mapAnonymous(length, options.hugetlb === true, options.thp === true), 'mmap', '[anon]')
    },
    memfd(name, size, options = {}) {
      const fd = num(raw.memfdCreate(name, options.hugetlb === true), 'memfd_create', name)
      const r = raw.ftruncate(fd, size)
      if (r < 0) {
        raw.close(fd)
        fail(r, 'ftruncate', name)
      }
      return fd
    },
    truncate(fd, size) {
      num(raw.ftruncate(fd, size), 'ftruncate', `fd:${fd}`)
    },
    closeFd(fd) {
      num(raw.close(fd), 'close', `fd:${fd}`)
    },
    ioControl: () => new raw.IoControl(),
    async ioRun(options, control) {
      const {buffer, ...rest} = options
      let extra = {}
      if (buffer !== undefined) {
        if (!buffer || typeof buffer !== 'object' || !buffer.mapped)
          throw new IopmemError('ioRun: buffer is not a live mapping', {code: 'E_UNMAPPED', exit: Exit.USAGE})
        // The handle, not the address: the addon resolves, bounds-checks and pins it.
        extra = {bufferSlot: buffer.slot}
      }
      const r = await raw.ioRun({...rest, ...extra}, control)
      if (r.error) {
        const e = r.error
        const where = e.path ?? (e.syscall.includes('write') || e.syscall === 'fdatasync' ? options.dst : options.src)
        const err = new NativeErrnoError(e.errno, e.syscall, where, raw.strerror(e.errno))
        ;(err as NativeErrnoError & {partial?: unknown; offset?: number}).partial = r.engine === undefined ? undefined : r
        ;(err as NativeErrnoError & {offset?: number}).offset = e.offset
        throw err
      }
      return r as IoRunResult
    },
    async memProbe(control, bytes = 64 * 1024 * 1024) {
      return obj(await raw.memProbe(control, bytes), 'mmap', '[probe]')
    },
    ioUring() {
      const flag = process.env.IOPMEM_NO_IO_URING
      if (flag && flag !== '0') return {available: false, reason: 'io_uring disabled by IOPMEM_NO_IO_URING'}
      const r = raw.ioUringProbe()
      return r === 0 ? {available: true} : {available: false, reason: `io_uring_setup failed: ${raw.strerror(-r)}`}
    },
    fiemap(target, options: FiemapOptions = {}) {
      const flags = (options.sync === false ? 0 : FIEMAP_FLAG_SYNC) | (options.xattr ? FIEMAP_FLAG_XATTR : 0)
      return withFd(target, O_RDONLY, (fd) =>
        obj(
          raw.fiemap(fd, options.start ?? 0, options.length ?? U64_MAX, flags, options.batch ?? 8192),
          'ioctl(FS_IOC_FIEMAP)',
          label(target),
        ),
      )
    },
  }
}
