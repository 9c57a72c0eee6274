/**
 * The TypeScript surface of the iopmem native addon (native/src, built to
 * build/Release/iopmem.node or shipped as prebuilds/linux-x64/*.node).
 *
 * Two layers:
 *  - {@link RawBinding}: what the .node file exports. Functions that make a
 *    system call return `-errno` (a negative number) on failure; misuse that
 *    can be seen before any system call (bad handle, unmapped, out of range,
 *    misaligned, bad value) throws an Error with a `code`.
 *  - {@link Native}: what `loadNative()` returns. The same functions, but
 *    every `-errno` becomes a thrown {@link NativeErrnoError}: an
 *    `IopmemError` whose `code` is the errno name (`EACCES`, `EREMOTEIO`, …),
 *    `errno` the positive errno number, `syscall`, `path`, and a message from
 *    strerror. The accessors (read8…write64, readValues, writeValues,
 *    copyTo, copyFrom, flush) take the Mapping and pass its `slot` number
 *    to the native function: nothing else stands between caller and access.
 *
 * Error codes thrown for misuse (never a crash):
 *  - `E_HANDLE`    (TypeError)  the handle is not a Mapping made by map() (raw: not a slot)
 *  - `E_UNMAPPED`  (Error)      the mapping was unmapped (unmap/unmapAll/finalizer)
 *  - `ERANGE`      (RangeError) offset/length outside the mapping, or not a safe integer
 *  - `E_ALIGN`     (RangeError) the address is not naturally aligned for the width
 *  - `E_VALUE`     (RangeError/TypeError) a value does not fit the width
 *  - `E_READONLY`  (Error)      a write to a mapping made with `readOnly: true`
 *  - `E_STRATEGY`  (TypeError)  unknown copy strategy, or one for the other direction
 *  - `E_MODE`      (TypeError)  unknown caching mode
 *  - `E_ARG`       (TypeError)  any other argument of the wrong type
 *  - `E_SIGBUS`    (Error)      the access raised SIGBUS (file truncated under
 *                               the mapping, device gone): caught, not fatal
 *  - `E_LENGTH`    (IopmemError) map() could not tell the length (no `length`
 *                               given and the file reports size 0)
 */

/**
 * The CPU caching mode of a mapping, as the caller says it has. The addon
 * cannot choose it: for a PCI BAR it is decided by which file is mapped
 * (`resourceN` → `uc`, `resourceN_wc` → `wc`); DAX files and device-dax are
 * `wb`. It selects the copy strategy that `'auto'` uses.
 */
export type CachingMode = 'uc' | 'wc' | 'wb' | 'wt'

/**
 * How a bulk copy moves bytes:
 *  - `auto`: by mode — copyTo: wc → stream-store, uc → exact64, wb/wt → memcpy;
 *    copyFrom: uc/wc → stream-load, wb/wt → memcpy;
 *  - `memcpy`: libc memcpy (WB memory only: it may use any access width);
 *  - `stream-store`: non-temporal stores + sfence (copyTo only);
 *  - `stream-load`: SSE4.1/AVX2/AVX-512 `movntdqa` loads (copyFrom only; falls
 *    back to exact64 without SSE4.1);
 *  - `exact64`: 8-byte volatile accesses, naturally aligned 1/2/4-byte ones at
 *    the ends.
 */
export type CopyStrategy = 'auto' | 'memcpy' | 'stream-store' | 'stream-load' | 'exact64'

/** The strategy a copy actually used (`auto` resolved). */
export type UsedStrategy = Exclude<CopyStrategy, 'auto'>

/** Access width in bytes. */
export type Width = 1 | 2 | 4 | 8

/** Vector ISA names, in increasing width. */
export type IsaName = 'sse2' | 'sse4.1' | 'avx' | 'avx2' | 'avx512f'

/** The cache-line instruction `flush()` used (`sfence` alone if the CPU has none). */
export type FlushInstruction = 'clwb' | 'clflushopt' | 'clflush' | 'sfence'

/**
 * A live (or formerly live) mapping: the object `map()` returns. Pass it to
 * the accessors. Unmapped by `unmap()`, `unmapAll()`, or the garbage
 * collector when it becomes unreachable.
 */
export interface Mapping {
  /** Process-unique id, in creation order. */
  readonly id: number
  /** Virtual address of byte 0 of the mapping (0n once unmapped). */
  readonly base: bigint
  /** Length in bytes the caller may access. */
  readonly length: number
  /** File offset of byte 0 (any value; the page rounding is internal). */
  readonly offset: number
  /** The caching mode the caller declared. */
  readonly mode: CachingMode
  /** The path mapped (`fd:N` for a descriptor, `[anon]` for anonymous memory). */
  readonly path: string
  /** False for a mapping made with `readOnly: true`; writes then throw E_READONLY. */
  readonly writable: boolean
  /** False once unmapped; every access then throws E_UNMAPPED. */
  readonly mapped: boolean
  /** True if mapped with MAP_SYNC (DAX: CPU writes durable once flushed). */
  readonly sync: boolean
  /**
   * The number the raw binding's accessors take for this mapping
   * (generation·2^22 + table index); a stale one is refused with E_UNMAPPED.
   */
  readonly slot: number
  /** munmap now. Returns false if it was already unmapped; throws E_BUSY while an `ioRun` uses it as its buffer. */
  unmap(): boolean
}

/** One entry of `liveMappings()`. */
export interface MappingInfo {
  /** Same as {@link Mapping.id}. */
  id: number
  /** Same as {@link Mapping.path}. */
  path: string
  /** Same as {@link Mapping.base}. */
  base: bigint
  /** Same as {@link Mapping.length}. */
  length: number
  /** Same as {@link Mapping.offset}. */
  offset: number
  /** Same as {@link Mapping.mode}. */
  mode: CachingMode
  /** Same as {@link Mapping.writable}. */
  writable: boolean
}

/** Options of `map()`. */
export interface MapOptions {
  /** File offset to map from (default 0). Need not be page aligned. */
  offset?: number
  /**
   * Bytes to map. Default: the file's size less `offset` (a sysfs
   * `resourceN` reports the BAR size). Required where the size reads 0
   * (`p2pmem/allocate`, `/dev/daxX.Y`).
   */
  length?: number
  /** The caching mode this file gives (metadata; picks `auto` copies). Default `uc`, the safe one. */
  mode?: CachingMode
  /** Open and map read-only (PROT_READ). Default false (read/write). */
  readOnly?: boolean
  /** MAP_SYNC | MAP_SHARED_VALIDATE: only a DAX file accepts it (EOPNOTSUPP otherwise). */
  sync?: boolean
  /** MAP_POPULATE: fault every page in now. */
  populate?: boolean
}

/** Options of `fiemap()`. */
export interface FiemapOptions {
  /** First logical byte asked about (default 0). */
  start?: number | bigint
  /** Bytes from `start` (default: to the end of the file). */
  length?: number | bigint
  /** FIEMAP_FLAG_SYNC on the first call: flush delayed allocations so they have addresses (default true). */
  sync?: boolean
  /** FIEMAP_FLAG_XATTR: map the extended-attribute tree instead of the data. */
  xattr?: boolean
  /** Extents asked for per ioctl (default 8192; 56 bytes each). */
  batch?: number
}

/**
 * FIEMAP answer as flat arrays, index i describing extent i, in logical order.
 * BigUint64Array keeps every u64 exact and 1M extents compact (24 MiB, no
 * per-extent objects); `Number(x)` is exact below 2^53 (8 PiB), which holds
 * for any real file and device. Use `fiemapExtent(r, i)` for one as an object.
 */
export interface FiemapResult {
  /** Number of extents. */
  count: number
  /** FS_IOC_FIEMAP ioctls made (count / batch, rounded up, at least 1). */
  calls: number
  /** fe_logical: byte offset in the file. */
  logical: BigUint64Array
  /** fe_physical: byte offset on the filesystem's block device (0 where flags say unknown). */
  physical: BigUint64Array
  /** fe_length in bytes. */
  length: BigUint64Array
  /** fe_flags: FIEMAP_EXTENT_* bits (see `FIEMAP_EXTENT`). */
  flags: Uint32Array
}

/** Options of `statx()`. */
export interface StatxOptions {
  /** Follow a final symlink (default true); false adds AT_SYMLINK_NOFOLLOW. */
  followSymlinks?: boolean
  /** STATX_* mask to ask for (default basic stats | BTIME | MNT_ID | DIOALIGN). */
  mask?: number
}

/** statx(2) result (raw syscall, so DIOALIGN is there whatever glibc's struct has). */
export interface StatxResult {
  /** STATX_* bits the kernel filled in. */
  mask: number
  /** Preferred I/O block size. */
  blksize: number
  /** STATX_ATTR_* bits (DAX is 0x00200000). */
  attributes: number
  /** Which STATX_ATTR_* bits this filesystem supports. */
  attributesMask: number
  /** Hard links. */
  nlink: number
  /** Owner uid. */
  uid: number
  /** Owner gid. */
  gid: number
  /** st_mode: type and permission bits. */
  mode: number
  /** Inode number (BigInt: 64-bit on xfs and others). */
  ino: bigint
  /** Size in bytes (Number: exact below 8 PiB). */
  size: number
  /** 512-byte blocks allocated. */
  blocks: number
  /** Major number of the device holding the file. */
  devMajor: number
  /** Minor number of the device holding the file. */
  devMinor: number
  /** Major number the file is (for block/char device nodes), else 0. */
  rdevMajor: number
  /** Minor number the file is (for block/char device nodes), else 0. */
  rdevMinor: number
  /** Mount id (as in /proc/self/mountinfo). */
  mntId: bigint
  /** O_DIRECT buffer alignment (STATX_DIOALIGN, kernel ≥ 6.1); 0 when not reported or unsupported. */
  dioMemAlign: number
  /** O_DIRECT file offset/length alignment; 0 when not reported or unsupported. */
  dioOffsetAlign: number
  /** Access time, ms since the epoch. */
  atimeMs: number
  /** Birth time, ms since the epoch (0 if the filesystem has none). */
  btimeMs: number
  /** Status change time, ms since the epoch. */
  ctimeMs: number
  /** Modification time, ms since the epoch. */
  mtimeMs: number
  /** STATX_ATTR_DAX is set: the file's data is accessed directly (no page cache). */
  dax: boolean
}

/** What cpuid says, and what the copy loops use. */
export interface CpuFeatures {
  /** SSE2 (baseline x86-64). */
  sse2: boolean
  /** SSE4.1: movntdqa streaming loads. */
  sse41: boolean
  /** AVX, with the OS saving YMM state. */
  avx: boolean
  /** AVX2: 256-bit streaming loads. */
  avx2: boolean
  /** AVX-512F, with the OS saving ZMM state. */
  avx512f: boolean
  /** CLFLUSH. */
  clflush: boolean
  /** CLFLUSHOPT. */
  clflushopt: boolean
  /** CLWB. */
  clwb: boolean
  /** Cache-line size used by flush() (cpuid), bytes. */
  cacheLine: number
  /** Widest ISA the copy loops may use now (see setIsaLimit). */
  isa: IsaName
  /** The stream-store loop in use. */
  streamStore: 'avx512f' | 'avx' | 'sse2'
  /** The stream-load loop in use (`none`: exact64 fallback). */
  streamLoad: 'avx512f' | 'avx2' | 'sse4.1' | 'none'
  /** The instruction flush() uses. */
  flush: FlushInstruction
}

/** Numbers the glue needs from the addon. */
export interface NativeConstants {
  /** MAP_SHARED_VALIDATE (0x03). */
  MAP_SHARED_VALIDATE: number
  /** MAP_SYNC (0x80000). */
  MAP_SYNC: number
  /** MAP_POPULATE. */
  MAP_POPULATE: number
  /** MAP_LOCKED. */
  MAP_LOCKED: number
  /** MAP_NORESERVE. */
  MAP_NORESERVE: number
  /** The page size (sysconf). */
  pageSize: number
}

/**
 * The single loads and stores, on a mapping named by `M`: the Mapping itself
 * (NativeAccess) or its slot (the binding underneath, RawBinding).
 */
export interface ScalarAccess<M> {
  /** One volatile 8-bit load at `offset`. */
  read8(m: M, offset: number): number
  /** One volatile 16-bit load; `offset` 2-byte aligned (else E_ALIGN). */
  read16(m: M, offset: number): number
  /** One volatile 32-bit load; `offset` 4-byte aligned. */
  read32(m: M, offset: number): number
  /** One volatile 64-bit load; `offset` 8-byte aligned. */
  read64(m: M, offset: number): bigint
  /** One volatile 8-bit store of `value` (integer 0..0xff). */
  write8(m: M, offset: number, value: number): void
  /** One volatile 16-bit store; `offset` 2-byte aligned, `value` 0..0xffff. */
  write16(m: M, offset: number, value: number): void
  /** One volatile 32-bit store; `offset` 4-byte aligned, `value` 0..0xffffffff. */
  write32(m: M, offset: number, value: number): void
  /** One volatile 64-bit store; `offset` 8-byte aligned; a BigInt (or a safe-integer Number). */
  write64(m: M, offset: number, value: bigint | number): void
}

/**
 * The accessors on a Mapping. Each is a one-line JS function passing
 * `m.slot` to the native one (an inline-cached property load: a few ns).
 */
export interface NativeAccess extends ScalarAccess<Mapping> {
  /** `count` volatile loads of `width` bytes from `offset`, into a new typed array (at most 1 GiB: ERANGE above). */
  readValues(m: Mapping, offset: number, width: 1, count: number): Uint8Array
  readValues(m: Mapping, offset: number, width: 2, count: number): Uint16Array
  readValues(m: Mapping, offset: number, width: 4, count: number): Uint32Array
  readValues(m: Mapping, offset: number, width: 8, count: number): BigUint64Array
  readValues(m: Mapping, offset: number, width: Width, count: number): Uint8Array | Uint16Array | Uint32Array | BigUint64Array
  /**
   * Volatile stores of `width` bytes each from `offset`: `values` is an
   * integer TypedArray of that element size (its bytes as they are; another
   * kind is E_ARG), or an Array of Numbers (BigInts or safe Numbers for
   * width 8), at most 1 GiB of values (ERANGE above). Returns the count.
   */
  writeValues(
    m: Mapping,
    offset: number,
    width: Width,
    values: ArrayLike<number | bigint>,
  ): number
  /** Copy all of `src` into the mapping at `offset`. Returns the strategy used. */
  copyTo(m: Mapping, offset: number, src: ArrayBufferView | ArrayBuffer, strategy?: CopyStrategy): UsedStrategy
  /** Fill all of `dst` from the mapping at `offset`. Returns the strategy used. */
  copyFrom(m: Mapping, offset: number, dst: ArrayBufferView | ArrayBuffer, strategy?: CopyStrategy): UsedStrategy
  /**
   * clwb (else clflushopt, else clflush) every cache line of
   * [offset, offset+length), then a fence: WB data reaches the device or
   * pmem before a peer or a crash sees it.
   */
  flush(m: Mapping, offset: number, length: number): FlushInstruction
  /** What cpuid says, and which loops the copies use. */
  cpuFeatures(): CpuFeatures
  /**
   * Cap the vector ISA of the copy loops (tests, benches, and working around
   * a device that mishandles wide accesses); `best` lifts the cap. Returns the
   * ISA in force (the request clamped to the CPU's).
   */
  setIsaLimit(isa: IsaName | 'best'): IsaName
  /** Unmap all live mappings of this thread's JS environment but those an `ioRun` uses. Returns how many. */
  unmapAll(): number
  /** The live mappings of this JS environment, in creation order. */
  liveMappings(): MappingInfo[]
  /** munmap `m`; false if already unmapped (never throws for that); throws E_BUSY while an `ioRun` uses it as its buffer. */
  unmap(m: Mapping): boolean
}


// ---- the I/O engine (native/src/io.cc) ------------------------------------------

/** Which submission path the I/O engine uses. `auto`: io_uring, else pread/pwrite (saying so). */
export type IoEngineName = 'auto' | 'io_uring' | 'psync'

/** Options of `ioRun()`: copy (or, without `dst`, read) `length` bytes in `bs` blocks. */
export interface IoRunOptions {
  /** Source file or block device (opened O_RDONLY, O_DIRECT unless `direct: false`). */
  src: string
  /** Destination (opened O_WRONLY, never created or truncated); absent: a read-only run. */
  dst?: string
  /** Byte offset in src (default 0). */
  srcOffset?: number
  /** Byte offset in dst (default 0). */
  dstOffset?: number
  /** Bytes to move; the last block may be shorter. */
  length: number
  /** Block size of one I/O. */
  bs: number
  /** I/Os in flight per job (io_uring); psync runs one at a time. Default 1. */
  qd?: number
  /** Threads, each with its own ring and its `qd * bs` slice of the buffer (default 1). */
  jobs?: number
  /** O_DIRECT (default true). */
  direct?: boolean
  /** Random blocks instead of in order (default false). */
  random?: boolean
  /** Keep going (wrapping around) until this many ms have passed; 0 (default): the range once. */
  durationMs?: number
  /** After the copy, read back both ranges and compare them (needs dst). */
  verify?: boolean
  /** Copy nothing: only read both ranges back and compare them (implies verify). */
  verifyOnly?: boolean
  /** fdatasync dst at the end (default true). */
  fsync?: boolean
  /** Register the buffer with io_uring (READ/WRITE_FIXED); default true, refused gracefully. */
  registerBuffers?: boolean
  /** Submission path (default `auto`). `IOPMEM_NO_IO_URING=1` makes io_uring look unavailable. */
  engine?: IoEngineName
  /** The buffer: a live Mapping of at least `qd * bs * jobs` bytes (a p2pmem chunk); default anonymous RAM. */
  buffer?: Mapping
  /** Seed of the random offsets. */
  seed?: number
}

/** Latency of one copy (read + write) or read, from submission to completion, in µs. */
export interface IoLatency {
  count: number
  meanUs: number
  p50Us: number
  p99Us: number
  p999Us: number
  maxUs: number
}

/** What `ioRun()` did. */
export interface IoRunResult {
  /** The path used: `io_uring`, `psync` (fallback or asked for), or `mixed`. */
  engine: 'io_uring' | 'psync' | 'mixed'
  /** Why io_uring was not used (present only on a fallback). */
  fallbackReason?: string
  /** The buffer was registered (READ/WRITE_FIXED). */
  registeredBuffers: boolean
  /** The fds were registered (IOSQE_FIXED_FILE). */
  registeredFiles: boolean
  /** Why the buffer was not registered (e.g. the kernel refuses p2pmem pages). */
  registerError?: string
  /** `anonymous` (engine-allocated RAM) or `caller` (the `buffer` mapping). */
  buffer: 'anonymous' | 'caller'
  bytes: number
  ops: number
  seconds: number
  /** True when a stop was requested through the control array. */
  stopped: boolean
  /** CPU seconds of the engine's threads, and of the whole process over the run. */
  cpu: {userS: number; sysS: number; processUserS: number; processSysS: number}
  latency: IoLatency
  /** With `verify`: the two ranges read back and compared. mismatchAt -1: equal. */
  verify?: {ok: boolean; srcHash: string; dstHash: string; mismatchAt: number; errno?: number; syscall?: string}
}

/**
 * Progress and a stop request of an `ioRun()` or `memProbe()`: a block of
 * atomics the addon owns (JS reads it, the engine's threads update it; no
 * thread writes into JS memory). `bytes` and `ops` are running totals over
 * every run that used it (they only grow: take a baseline before a run);
 * `stop()` asks every run using it to stop, and stays set.
 */
export interface IoControl {
  readonly bytes: number
  readonly ops: number
  readonly stopRequested: boolean
  stop(): void
}

/** Raw answer of the addon's ioRun (an `error` instead of a throw). */
export type RawIoRunResult = Partial<IoRunResult> & {
  error?: {errno: number; syscall: string; offset?: number; path?: string; bufferKept?: boolean}
}

/** The .node file's exports (see the module comment for the -errno rule); read8…write64 as NativeAccess's, with the mapping's slot. */
export interface RawBinding extends ScalarAccess<number> {
  /** Bumped when this surface changes incompatibly; the loader checks it. */
  abiVersion: number
  /** 16 hex digits of sha256 over native/src/* and binding.gyp at build time (native/source-hash.cjs). */
  sourceHash: string
  /** mmap constants and the page size. */
  constants: NativeConstants
  /** The Mapping class (for instanceof); `new` from JS throws. */
  Mapping: abstract new () => Mapping
  /** mmap(fd) MAP_SHARED (plus `flags`) → Mapping, or -errno. */
  mmap(fd: number, offset: number | bigint, length: number | bigint, writable: boolean, flags: number, mode: CachingMode, path: string): Mapping | number
  /** Private anonymous WB memory (MAP_HUGETLB / MADV_HUGEPAGE on request) → Mapping, or -errno. */
  mapAnonymous(length: number, hugetlb?: boolean, thp?: boolean): Mapping | number
  /** As NativeAccess.readValues, with the mapping's slot. */
  readValues(slot: number, offset: number, width: Width, count: number): Uint8Array | Uint16Array | Uint32Array | BigUint64Array
  /** As NativeAccess.writeValues, with the mapping's slot. */
  writeValues(slot: number, offset: number, width: Width, values: unknown): number
  /** As NativeAccess.copyTo, with the mapping's slot. */
  copyTo(slot: number, offset: number, src: ArrayBufferView | ArrayBuffer, strategy?: CopyStrategy): UsedStrategy
  /** As NativeAccess.copyFrom, with the mapping's slot. */
  copyFrom(slot: number, offset: number, dst: ArrayBufferView | ArrayBuffer, strategy?: CopyStrategy): UsedStrategy
  /** As NativeAccess.flush, with the mapping's slot. */
  flush(slot: number, offset: number, length: number): FlushInstruction
  /** As NativeAccess.unmap, with the mapping's slot. */
  unmap(slot: number): boolean
  /** As NativeAccess.unmapAll. */
  unmapAll(): number
  /** As NativeAccess.liveMappings. */
  liveMappings(): MappingInfo[]
  /** As NativeAccess.cpuFeatures. */
  cpuFeatures(): CpuFeatures
  /** As NativeAccess.setIsaLimit. */
  setIsaLimit(isa: IsaName | 'best'): IsaName
  /** open(2) with O_CLOEXEC added → fd, or -errno. */
  open(path: string, flags: number, mode?: number): number
  /** close(2) → 0, or -errno. */
  close(fd: number): number
  /** fstatfs(2) → {type (f_type magic), bsize, blocks}, or -errno. */
  fstatfs(fd: number): {type: number; bsize: number; blocks: number} | number
  /** statx(2) raw syscall → result (without `dax`), or -errno. dirfd -100 = AT_FDCWD. */
  statx(dirfd: number, path: string, flags: number, mask: number): Omit<StatxResult, 'dax'> | number
  /** FS_IOC_FIEMAP loop → flat arrays, or -errno. */
  fiemap(fd: number, start: number | bigint, length: number | bigint, flags: number, batch: number): FiemapResult | number
  /** memfd_create(2) (MFD_CLOEXEC, MFD_HUGETLB on request) → fd, or -errno. */
  memfdCreate(name: string, hugetlb?: boolean): number
  /** ftruncate(2) → 0, or -errno. */
  ftruncate(fd: number, size: number | bigint): number
  /** strerror_r(3) of an errno (either sign). */
  strerror(errno: number): string
  /**
   * Many small reads in one call (Host.readMany's bulk reader): per request a
   * kind (0 text, 1 bytes, 2 link, 3 dir, 4 exists), a path and a size (bytes
   * to read for 0 and 1). Answers in order: string, Buffer, string, string[]
   * (unsorted), boolean, or -errno (text that fills its size: -EOVERFLOW).
   */
  readMany(kinds: Uint8Array, paths: string[], sizes: Uint32Array): Array<string | Buffer | string[] | boolean | number>
  /**
   * readMany with the reads on libuv's thread pool: the JavaScript thread goes
   * on meanwhile. Bad input throws at once, as readMany's does; nothing is read.
   */
  readManyAsync(kinds: Uint8Array, paths: string[], sizes: Uint32Array): Promise<Array<string | Buffer | string[] | boolean | number>>
  /** The IoControl class: `new IoControl()`. */
  IoControl: new () => IoControl
  /** The I/O engine on a worker thread; `bufferSlot`: the buffer Mapping's slot (pinned until the run settles). */
  ioRun(options: Omit<IoRunOptions, 'buffer'> & {bufferSlot?: number}, control?: IoControl): Promise<RawIoRunResult>
  /** STREAM-like copy loop over 2 × `bytes` until control.stop() → {bytes, seconds}, or -errno. */
  memProbe(control: IoControl, bytes: number): Promise<{bytes: number; seconds: number} | number>
  /** io_uring_queue_init(4) → 0, or -errno (ENOSYS, EPERM when disabled). */
  ioUringProbe(): number
}

/** What `loadNative()` returns: the addon with errno failures thrown as errors. */
export interface Native extends NativeAccess {
  /** The .node file that was loaded. */
  readonly file: string
  /** mmap constants and the page size. */
  readonly constants: NativeConstants
  /** The untouched binding, for callers that want -errno returns. */
  readonly raw: RawBinding
  /**
   * Open `target` (a path: sysfs `resourceN`/`resourceN_wc`, `p2pmem/allocate`,
   * `/dev/daxX.Y`, a file on a DAX fs, any regular file; or an open fd, which
   * stays open) and mmap it MAP_SHARED. The descriptor the call opened is
   * closed again: the mapping keeps the file. Throws NativeErrnoError
   * (syscall `open`, `statx`, `fstatfs` or `mmap`); `ERANGE` for a range past
   * the end of a regular file; `E_LENGTH` when the length cannot be told.
   */
  map(target: string | number, options?: MapOptions): Mapping
  /** Private anonymous WB memory (benches, tests); `hugetlb` needs reserved hugepages. */
  mapAnonymous(length: number, options?: {hugetlb?: boolean; thp?: boolean}): Mapping
  /** memfd_create + ftruncate(size): an anonymous file to map (tests). Returns the fd; close it with closeFd. */
  memfd(name: string, size: number, options?: {hugetlb?: boolean}): number
  /** ftruncate(2) an fd. */
  truncate(fd: number, size: number): void
  /** close(2) an fd the addon opened. */
  closeFd(fd: number): void
  /**
   * FS_IOC_FIEMAP over `target` (path or fd), looping in batches past each
   * answer until FIEMAP_EXTENT_LAST. EOPNOTSUPP on filesystems without
   * FIEMAP (tmpfs).
   */
  fiemap(target: string | number, options?: FiemapOptions): FiemapResult
  /** statx(2) of a path, or of an fd (AT_EMPTY_PATH). */
  statx(target: string | number, options?: StatxOptions): StatxResult
  /** strerror of an errno. */
  strerror(errno: number): string
  /** A new IoControl for ioRun/memProbe. */
  ioControl(): IoControl
  /**
   * Run the I/O engine (a worker thread; the JS thread stays free). Pass an
   * `ioControl()` to watch progress (`bytes`, `ops`) and to stop early
   * (`stop()`). A `buffer` mapping is pinned until the promise settles:
   * unmapping it before throws E_BUSY. A failed system call throws NativeErrnoError
   * (syscall `open`, `io_uring read`, `pwrite`, …) with the partial
   * result in `partial`; an I/O engine that cannot start io_uring under
   * `engine: 'auto'` falls back to pread/pwrite and says why in `fallbackReason`.
   */
  ioRun(options: IoRunOptions, control?: IoControl): Promise<IoRunResult>
  /** Start the DRAM probe; resolves after control.stop(). Bandwidth = bytes / seconds. */
  memProbe(control: IoControl, bytes?: number): Promise<{bytes: number; seconds: number}>
  /** Whether io_uring can be set up here, and the error if not (`IOPMEM_NO_IO_URING` counts as not). */
  ioUring(): {available: boolean; reason?: string}
}
