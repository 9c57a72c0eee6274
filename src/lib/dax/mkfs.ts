/** `iopmem mkfs-dax`: checking, formatting and mounting a DAX-capable block device with ext4 or xfs. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {type BlockInfo, blockUsage, type BlockUsage, daxCapableDisks, type MemoryBacking, memoryBacking, resolveDeviceArg} from './blockdev.js'
import {type Effects, Exit, interruptedError, IopmemError, type LockOptions, realEffects, SignalGuard, usage, withLock} from '../sys/index.js'
import {type ExecResult, getRunner, outputTail, type ProgramArg, requireInstalled, type Runner, runProgram} from '../sys/index.js'
import {describeSignature, probeSignatures, type Signature} from './signatures.js'
import type {Host} from '../sys/index.js'
import {readMounts} from '../sys/index.js'
import {formatBytes, hex64} from '../sys/index.js'

/**
 * `iopmem mkfs-dax`: a DAX-friendly ext4 or xfs on a DAX-capable block
 * device (fsdax pmem, an iopmem disk, or a partition of one), optionally
 * mounted with -o dax and proven DAX with statx on a probe file.
 *
 *   plan (reads only):  the device, queue/dax, read-only, in use (mounts,
 *                       holders, swap, processes), signatures (wipefs -n),
 *                       the mount point, the tools
 *   execute (writes):   wipefs -a (only with --force, only when something
 *                       was found) → mkfs → blkid → mount -o dax → statx probe
 *
 * Filesystem parameters for DAX: block size = page size (a DAX fault maps
 * whole filesystem blocks), and a 2 MiB stripe so the allocator hands out
 * 2 MiB-aligned extents and PMD (huge page) faults are possible:
 *   ext4: -b PAGE -E stride=512,stripe_width=512  (in 4 KiB blocks: 2 MiB)
 *   xfs:  -b size=PAGE -d su=2m,sw=1 -m reflink=0  (DAX and reflink were exclusive
 *         before Linux 6.0; agcount=2 below 1 GiB, where the default geometry
 *         cannot fit the 64 MiB log xfsprogs ≥ 5.19 insists on with a 2 MiB stripe)
 *
 * Every failure after the first write says what state the device was left
 * in (IopmemError.details.state).
 */

export type FsType = 'ext4' | 'xfs'
export const FS_TYPES: readonly FsType[] = ['ext4', 'xfs']

/** mkfs.xfs refuses filesystems under 300 MiB. */
export const XFS_MIN_BYTES = 300 * 1024 * 1024
const STRIPE = 2 * 1024 * 1024

/** What mkfs-dax needs from the outside world; tests replace any part of it. */
export interface DaxDeps {
  runner: Runner
  /** statx STATX_ATTR_DAX of a file (the native addon's statx). */
  statxDax(file: string): Promise<boolean>
  /** The page size (the native addon's sysconf). */
  pageSize(): Promise<number>
  /** Whether a /dev node really is a block device (undefined: the default check). */
  checkNode?: (p: string) => boolean
}

let override: Partial<DaxDeps> = {}

/** Replace parts of the outside world (tests); {} restores the real one. */
export function setDaxDeps(deps: Partial<DaxDeps>): void {
  override = deps
}

export function daxDeps(): DaxDeps {
  return {
    runner: override.runner ?? getRunner(),
    statxDax:
      override.statxDax ??
      (async (file) => {
        const {loadNative} = await import('../../native/index.js')
        return loadNative().statx(file).dax
      }),
    pageSize:
      override.pageSize ??
      (async () => {
        try {
          const {loadNative} = await import('../../native/index.js')
          return loadNative().constants.pageSize
        } catch (error) {
          if (process.arch === 'x64') return 4096
          throw error
        }
      }),
    checkNode: override.checkNode,
  }
}

export interface MkfsDaxOptions {
  fs: FsType
  /** Mount it here with -o dax and prove DAX. */
  mount?: string
  /** Overwrite what is there (signatures, partition table). */
  force?: boolean
}

export interface MkfsPlan {
  target: BlockInfo
  fs: FsType
  force: boolean
  mountDir?: string
  pageSize: number
  /** What the device (and, for a whole disk, its partitions) holds now. */
  signatures: Signature[]
  backing?: MemoryBacking
  alignment: Alignment
  mkfsArgv: string[]
  warnings: string[]
  notes: string[]
}

export interface Alignment {
  /** The stripe the filesystem is made with: 2 MiB. */
  stripe: number
  /** Byte offset of the filesystem in its disk (the partition start). */
  deviceStart: number
  /** CPU physical address of the filesystem's first byte, when known. */
  physicalStart: string | null
  /** The filesystem starts on a 2 MiB boundary (of the disk, and of physical memory when known). */
  aligned: boolean
}

/**
 * `iopmem mkfs-dax --json`:
 *
 * ```jsonc
 * {
 *   "device": "/dev/pmem0",                 // what was formatted (a disk or a partition)
 *   "disk": "/dev/pmem0",
 *   "kind": "pmem" | "iopmem" | "block",    // what is behind the disk
 *   "size": 536870912,                      // bytes
 *   "filesystem": "ext4" | "xfs",
 *   "uuid": "6f1c…",                        // from blkid after mkfs
 *   "blockSize": 4096, "pageSize": 4096,
 *   "alignment": {"stripe": 2097152, "deviceStart": 0, "physicalStart": "0x60000000" | null, "aligned": true},
 *   "erased": [{"device": "/dev/pmem0", "offset": "0x438", "type": "ext4", "uuid": "…", "label": null}],
 *                                           // signatures wiped first (--force only)
 *   "mount": {"target": "/mnt/dax", "options": "dax", "daxConfirmed": true} | null,
 *   "commands": [{"argv": ["mkfs.ext4", "-b", "4096", …], "exit": 0}],
 *   "warnings": [], "notes": []
 * }
 * ```
 *
 * A failure after the first write is an error whose details.state is one of
 * "unchanged", "signatures-erased", "mkfs-failed" (contents undefined, not
 * mounted), "made" (filesystem present, not mounted), "mounted-not-dax"
 * (unmounted again), "mounted" (left mounted: umount failed).
 */
export interface MkfsResult {
  device: string
  disk: string
  kind: string
  size: number
  filesystem: FsType
  uuid: string | null
  blockSize: number
  pageSize: number
  alignment: Alignment
  erased: Signature[]
  mount: {target: string; options: string; daxConfirmed: boolean} | null
  commands: Array<{argv: string[]; exit: number}>
  warnings: string[]
  notes: string[]
}

function refuse(message: string, code: string, suggestions: string[] = [], details?: Record<string, unknown>): IopmemError {
  return new IopmemError(message, {code, exit: Exit.REFUSED, suggestions, details})
}

/** Parse `blkid -p -o export` (KEY=value lines). */
export function parseBlkidExport(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

/** The mkfs command line (program first) for a DAX filesystem; `device` a path as shown, or the host's ProgramPath for running it. */
export function mkfsArgv<D extends ProgramArg>(fsType: FsType, device: D, opts: {pageSize: number; size: number; force?: boolean}): [string, ...Array<string | D>] {
  const stride = STRIPE / opts.pageSize
  if (fsType === 'ext4') {
    return ['mkfs.ext4', ...(opts.force ? ['-F'] : []), '-b', String(opts.pageSize), '-E', `stride=${stride},stripe_width=${stride}`, device]
  }
  const d = opts.size < 1024 ** 3 ? 'su=2m,sw=1,agcount=2' : 'su=2m,sw=1'
  return ['mkfs.xfs', ...(opts.force ? ['-f'] : []), '-b', `size=${opts.pageSize}`, '-d', d, '-m', 'reflink=0', device]
}

/** The mount point: an existing, empty directory that is not already a mount point. */
function checkMountDir(host: Host, dir: string): string {
  if (dir === '' || dir.includes('\0') || dir.includes('\n')) throw usage(`Invalid mount point ${JSON.stringify(dir)}.`, 'E_MOUNT_SYNTAX')
  const abs = path.resolve(dir)
  let st: fs.Stats
  try {
    st = fs.statSync(abs)
  } catch {
    throw new IopmemError(`The mount point ${abs} does not exist.`, {code: 'E_NO_MOUNTPOINT', exit: Exit.NOT_FOUND, suggestions: [`Create it first: mkdir -p ${abs}`]})
  }
  if (!st.isDirectory()) throw usage(`The mount point ${abs} is not a directory.`, 'E_MOUNT_NOT_DIR')
  const real = fs.realpathSync(abs)
  const taken = readMounts(host).find((m) => m.target === real || m.target === abs)
  if (taken) {
    throw refuse(`${abs} is already a mount point (${taken.fstype} from ${taken.source}).`, 'E_MOUNTPOINT_BUSY', ['Choose an empty directory that nothing is mounted on.'])
  }
  const entries = fs.readdirSync(abs)
  if (entries.length > 0) {
    throw refuse(`${abs} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}): mounting over it would hide them.`, 'E_MOUNTPOINT_NOT_EMPTY', [
      'Choose an empty directory.',
    ])
  }
  return real
}

function alignmentOf(b: BlockInfo, backing: MemoryBacking | undefined): Alignment {
  const deviceStart = b.partition ? b.partition.start : 0
  const base = backing?.start
  const phys = base === undefined ? undefined : base + BigInt(deviceStart)
  const aligned = deviceStart % STRIPE === 0 && (phys === undefined || phys % BigInt(STRIPE) === 0n)
  return {stripe: STRIPE, deviceStart, physicalStart: phys === undefined ? null : hex64(phys), aligned}
}

/**
 * Everything that can be checked without writing: refuses (IopmemError)
 * when the device cannot or must not be formatted. Runs only `wipefs -n`.
 */
export async function planMkfsDax(host: Host, deviceArg: string, opts: MkfsDaxOptions, deps: DaxDeps = daxDeps()): Promise<MkfsPlan> {
  if (!FS_TYPES.includes(opts.fs)) throw usage(`Unknown filesystem ${JSON.stringify(opts.fs)}: choose ext4 or xfs.`, 'E_FS_TYPE')
  const b = resolveDeviceArg(host, deviceArg, {checkNode: deps.checkNode})
  const disk = b.disk
  const warnings: string[] = []
  const notes: string[] = []

  if (!disk.dax) {
    const capable = daxCapableDisks(host)
    throw new IopmemError(
      `${b.node} cannot do DAX (${host.display(host.sys('block', disk.name, 'queue/dax'))} is 0)${disk.kind === 'nvme' ? ': an NVMe namespace is a block device, not memory' : ''}.`,
      {
        code: 'E_NOT_DAX_CAPABLE',
        exit: Exit.UNSUPPORTED,
        suggestions: [
          capable.length ? `DAX-capable devices here: ${capable.join(', ')}.` : 'No DAX-capable block device is visible here.',
          'fsdax pmem (ndctl create-namespace -m fsdax) and the iopmem driver (`iopmem bind BDF --driver iopmem`) make DAX block devices.',
        ],
      },
    )
  }
  if (disk.kind === 'stacked') throw refuse(`${b.node} is a stacked device (device-mapper/md): make the filesystem on the memory device itself.`, 'E_STACKED')
  if (b.readOnly) throw new IopmemError(`${b.node} is read-only.`, {code: 'E_READ_ONLY', exit: Exit.UNSUPPORTED})
  if (opts.fs === 'xfs' && b.size < XFS_MIN_BYTES) {
    throw new IopmemError(`${b.node} is ${formatBytes(b.size)}: mkfs.xfs refuses filesystems under 300 MiB.`, {
      code: 'E_TOO_SMALL',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Use --fs ext4.'],
    })
  }
  if (!host.isRoot()) {
    throw new IopmemError('mkfs-dax needs root: it reads and writes the raw device and mounts it.', {
      code: 'E_NOT_ROOT',
      exit: Exit.PERMISSION,
      suggestions: ['Run it with sudo.'],
    })
  }
  const usageReport = blockUsage(host, b)
  if (usageReport.uses.length > 0) {
    throw refuse(
      `${b.node} is in use; refusing to make a filesystem on it:\n${usageReport.uses.map((u: BlockUsage) => `  - ${u.detail}`).join('\n')}`,
      'E_IN_USE',
      ['Unmount it, stop what holds it, then try again. --force does not override this.'],
      {uses: usageReport.uses},
    )
  }
  notes.push(...usageReport.unchecked)
  const mountDir = opts.mount === undefined ? undefined : checkMountDir(host, opts.mount)

  // Tools and page size before anything is probed or written.
  const pageSize = await deps.pageSize()
  if (!Number.isInteger(pageSize) || pageSize < 4096 || STRIPE % pageSize !== 0) {
    throw new IopmemError(`Unsupported page size ${pageSize}.`, {code: 'E_PAGE_SIZE', exit: Exit.UNSUPPORTED})
  }
  // The DAX proof needs statx: fail now, not after mkfs, if the addon is missing.
  if (mountDir) await deps.statxDax(mountDir)

  const nodes = [b.node, ...(b.partition ? [] : disk.partitions.map((p) => host.display(host.dev(p.name))))]
  const signatures = await probeSignatures(deps.runner, nodes, host)
  const partitionTable = !b.partition && disk.partitions.length > 0
  if ((signatures.length > 0 || partitionTable) && !opts.force) {
    const found = signatures.map((s) => `  - ${describeSignature(s)}`)
    if (partitionTable && !signatures.some((s) => s.device === b.node && /^(gpt|dos|PMBR)$/i.test(s.type))) {
      found.push(`  - partitions: ${disk.partitions.map((p) => p.name).join(', ')}`)
    }
    throw refuse(
      `${b.node} is not empty; refusing to overwrite what it holds:\n${found.join('\n')}`,
      'E_HAS_SIGNATURE',
      ['--force erases these signatures and makes the filesystem anyway (everything on the device is lost).'],
      {signatures},
    )
  }

  const {backing, notes: bnotes} = memoryBacking(host, disk)
  notes.push(...bnotes)
  const alignment = alignmentOf(b, backing)
  if (!alignment.aligned) {
    warnings.push(
      `the filesystem does not start on a 2 MiB boundary (${b.partition ? `partition start ${b.partition.start}` : 'device'}${alignment.physicalStart ? `, physical ${alignment.physicalStart}` : ''}): ` +
        'its 2 MiB stripes will not be 2 MiB aligned in memory, so huge (PMD) faults are impossible; align the partition to 2 MiB',
    )
  }
  if (disk.kind === 'block') notes.push(`${disk.name} is DAX-capable but neither fsdax pmem nor an iopmem disk: locate may not find its memory`)

  return {
    target: b,
    fs: opts.fs,
    force: Boolean(opts.force),
    mountDir,
    pageSize,
    signatures,
    backing,
    alignment,
    mkfsArgv: mkfsArgv(opts.fs, b.node, {pageSize, size: b.size, force: opts.force}),
    warnings,
    notes,
  }
}

type State = 'unchanged' | 'signatures-erased' | 'mkfs-failed' | 'made' | 'mounted-not-dax' | 'mounted'

function stateText(state: State, plan: MkfsPlan): string {
  const text: Record<State, string> = {
    unchanged: `${plan.target.node} is unchanged.`,
    'signatures-erased': `The old signatures on ${plan.target.node} were erased; it holds no filesystem now.`,
    'mkfs-failed': `${plan.target.node} may hold a partly written filesystem; nothing is mounted.`,
    made: `${plan.target.node} holds the new ${plan.fs} filesystem; it is not mounted.`,
    'mounted-not-dax': `${plan.target.node} holds the new ${plan.fs} filesystem and was unmounted again.`,
    mounted: `${plan.target.node} holds the new ${plan.fs} filesystem and is still mounted on ${plan.mountDir}.`,
  }
  return text[state]
}

function failAfter(message: string, code: string, state: State, plan: MkfsPlan, r?: ExecResult, extra: Record<string, unknown> = {}): IopmemError {
  const tail = r ? outputTail(r) : ''
  return new IopmemError(`${message}${tail ? `:\n${tail.replace(/^/gm, '  ')}` : '.'}\nState: ${stateText(state, plan)}`, {
    code,
    exit: Exit.KERNEL,
    suggestions: state === 'made' || state === 'mounted-not-dax' ? ['`dmesg | tail` shows the kernel\'s reason.'] : [],
    details: {state, device: plan.target.node, ...extra},
  })
}

/** Stopped by a signal between two steps: exit 130, details.interrupted and details.state. */
function stoppedAt(state: State, plan: MkfsPlan, guard: SignalGuard, commands: MkfsResult['commands']): IopmemError {
  return interruptedError(`Interrupted (${guard.signal}); stopped before the next step.\nState: ${stateText(state, plan)}`, guard.signal, {
    state,
    device: plan.target.node,
    commands,
  })
}

/**
 * Run `fn` holding the lock of the disk behind `deviceArg` (its partitions
 * included) and a SignalGuard, from before the in-use check to the last
 * step, so two mkfs-dax never both find the device empty.
 */
export async function withBlockLock<T>(host: Host, deviceArg: string, opts: LockOptions, fn: (guard: SignalGuard) => Promise<T>, deps: DaxDeps = daxDeps()): Promise<T> {
  const b = resolveDeviceArg(host, deviceArg, {checkNode: deps.checkNode})
  return withLock(host, `block-${b.disk.name}`, host.display(host.dev(b.disk.name)), opts, fn)
}

/**
 * Do it: wipe (with --force, when needed), mkfs, verify, mount and prove DAX.
 * A stop signal is passed on to the program running (mkfs is never left
 * behind) and ends the run after it with E_INTERRUPTED (exit 130) stating
 * the device's state; a mount made by this run is undone first.
 */
export async function executeMkfsDax(host: Host, plan: MkfsPlan, deps: DaxDeps = daxDeps(), guard?: SignalGuard, effects: Effects = realEffects()): Promise<MkfsResult> {
  const own = guard ?? new SignalGuard()
  try {
    return await mkfsSteps(host, plan, deps, own, effects)
  } finally {
    if (!guard) own.release()
  }
}

async function mkfsSteps(host: Host, plan: MkfsPlan, deps: DaxDeps, guard: SignalGuard, effects: Effects): Promise<MkfsResult> {
  const runner = deps.runner
  const node = plan.target.node
  const commands: MkfsResult['commands'] = []
  // Every program goes through the host's gate: paths are ProgramPaths it maps (under fixture roots
  // the fixture's files, never the live /dev), and the record keeps the kernel's names. A dry run
  // lists the argv and goes on as if the program succeeded; where what it printed decides, it says so.
  const run = async ([program, ...args]: [string, ...ProgramArg[]]) => {
    const argv = [program, ...host.argv(args, 'shown')]
    const r = (await effects.run(argv, () => runProgram(host, runner, program, args))) ?? {code: 0, stdout: '', stderr: '', argv}
    if (!effects.dryRun) commands.push({argv: r.argv, exit: r.code})
    return r
  }
  const at = (p: string) => host.programPath(p)
  let state: State = 'unchanged'
  const stopIf = async (now: State) => {
    if (await guard.checkpoint()) throw stoppedAt(now, plan, guard, commands)
  }
  const needsWipe = plan.force && (plan.signatures.length > 0 || (!plan.target.partition && plan.target.disk.partitions.length > 0))
  // Every program this run needs (umount too: it undoes a mount that is not DAX) is found before
  // the first change, as run() would find it: a missing one is refused now (E_PROGRAM_MISSING),
  // in a dry run as in the real one, never after wipefs or mkfs changed the device.
  if (runner.installed) requireInstalled([...(needsWipe ? ['wipefs'] : []), plan.mkfsArgv[0], 'blkid', ...(plan.mountDir ? ['mount', 'umount'] : [])], (p) => runner.installed!(p))
  await stopIf(state)
  const erased: Signature[] = []
  if (needsWipe) {
    // Partitions first (their signatures would survive a wipe of the table), then the device.
    const parts = [...new Set(plan.signatures.map((s) => s.device).filter((d) => d !== node))]
    for (const p of [...parts, node]) {
      const r = await run(['wipefs', '--all', at(p)])
      await stopIf(r.code === 0 || state !== 'unchanged' ? 'signatures-erased' : 'unchanged')
      if (r.code !== 0) throw failAfter(`wipefs --all ${p} failed (exit ${r.code})`, 'E_WIPE_FAILED', state, plan, r, {commands})
      state = 'signatures-erased'
    }
    erased.push(...plan.signatures)
  }

  const mk = await run(mkfsArgv(plan.fs, at(node), {pageSize: plan.pageSize, size: plan.target.size, force: plan.force}))
  await stopIf(mk.code === 0 ? 'made' : 'mkfs-failed')
  if (mk.code !== 0) throw failAfter(`${plan.mkfsArgv[0]} failed (exit ${mk.code})`, 'E_MKFS_FAILED', 'mkfs-failed', plan, mk, {commands})
  state = 'made'

  const id = await run(['blkid', '--probe', '--output', 'export', at(node)])
  const info = id.code === 0 ? parseBlkidExport(id.stdout) : {}
  effects.then(`reads blkid's TYPE and UUID: TYPE must be ${plan.fs}, or it fails (exit 6) with ${node} holding a partly written filesystem`)
  if (info.TYPE !== plan.fs && !effects.dryRun) {
    throw failAfter(`${plan.mkfsArgv[0]} succeeded but blkid finds ${info.TYPE ? `"${info.TYPE}"` : 'no filesystem'} on ${node}`, 'E_MKFS_FAILED', 'mkfs-failed', plan, id, {commands})
  }
  const warnings = [...plan.warnings]
  const notes = [...plan.notes]
  const blockSize = Number(info.BLOCK_SIZE ?? plan.pageSize)
  if (blockSize !== plan.pageSize) warnings.push(`blkid reports block size ${blockSize}, not the page size ${plan.pageSize}: DAX will not work`)

  let mount: MkfsResult['mount'] = null
  if (plan.mountDir) {
    const dir = plan.mountDir
    const m = await run(['mount', '-t', plan.fs, '-o', 'dax', at(node), at(dir)])
    if (m.code === 0 && (await guard.checkpoint())) {
      // Undo the one mount this run made, then stop.
      const u = await run(['umount', at(dir)])
      throw stoppedAt(u.code === 0 ? 'made' : 'mounted', plan, guard, commands)
    }
    await stopIf('made')
    if (m.code !== 0) throw failAfter(`mount -o dax ${node} ${dir} failed (exit ${m.code})`, 'E_MOUNT_FAILED', 'made', plan, m, {commands})
    const probe = path.join(dir, `.iopmem-dax-probe-${process.pid}`)
    if (effects.dryRun) {
      effects.then(`writes a probe file ${path.join(dir, '.iopmem-dax-probe-')}<its pid> on the new filesystem, checks statx STATX_ATTR_DAX on it and removes it; if DAX is not in force: umount ${dir}, and it fails (exit 6)`)
      return {...mkfsResult(host, plan, info, erased, commands, warnings, notes), mount: {target: dir, options: 'dax', daxConfirmed: false}}
    }
    let dax = false
    let probeError: unknown
    try {
      const fd = fs.openSync(probe, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600)
      try {
        fs.writeSync(fd, Buffer.alloc(plan.pageSize, 0x5a))
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      dax = await deps.statxDax(probe)
    } catch (error) {
      probeError = error
    } finally {
      fs.rmSync(probe, {force: true})
    }
    if (!dax) {
      const u = await run(['umount', at(dir)])
      const why = probeError ? `the probe file could not be written (${(probeError as Error).message})` : 'statx shows no STATX_ATTR_DAX on a probe file'
      if (u.code !== 0) throw failAfter(`Mounted ${node} on ${dir} with -o dax, but DAX is not in force: ${why}; and umount failed`, 'E_DAX_NOT_IN_FORCE', 'mounted', plan, u, {commands})
      throw failAfter(`Mounted ${node} on ${dir} with -o dax, but DAX is not in force: ${why}`, 'E_DAX_NOT_IN_FORCE', 'mounted-not-dax', plan, undefined, {commands})
    }
    mount = {target: dir, options: 'dax', daxConfirmed: true}
  }

  return {...mkfsResult(host, plan, info, erased, commands, warnings, notes), mount}
}

function mkfsResult(host: Host, plan: MkfsPlan, info: Record<string, string>, erased: Signature[], commands: MkfsResult['commands'], warnings: string[], notes: string[]): MkfsResult {
  return {
    device: plan.target.node,
    disk: host.display(host.dev(plan.target.disk.name)),
    kind: plan.target.disk.kind,
    size: plan.target.size,
    filesystem: plan.fs,
    uuid: info.UUID ?? null,
    blockSize: Number(info.BLOCK_SIZE ?? plan.pageSize),
    pageSize: plan.pageSize,
    alignment: plan.alignment,
    erased,
    mount: null,
    commands,
    warnings,
    notes,
  }
}

/** One line per thing that will be destroyed, for the confirmation. */
export function describeLoss(plan: MkfsPlan): string {
  const what = plan.signatures.length ? `; it holds ${plan.signatures.map(describeSignature).join(', ')}` : ''
  return `${plan.target.node} (${formatBytes(plan.target.size)}${what})`
}

/** After the confirmation: the fresh plan (the checks ran again), refused when what will be lost is not what the person was shown. */
export function recheckMkfs(asked: MkfsPlan, now: MkfsPlan): MkfsPlan {
  if (describeLoss(now) !== describeLoss(asked)) {
    throw new IopmemError(`${asked.target.node} changed while you were asked: it was ${describeLoss(asked)}, now ${describeLoss(now)}. Nothing was written.`, {
      code: 'E_CHANGED',
      exit: Exit.REFUSED,
      suggestions: ['Run the command again.'],
    })
  }
  return now
}
