/**
 * `iopmem bench p2p`: plan (endpoints, buffer provider, refusals) and run (the
 * native I/O engine per mode, the DRAM probe beside it).
 *
 * A copy reads `size` bytes of `src` into a buffer and writes them to `dst`,
 * `bs` bytes per I/O, `qd` I/Os in flight per job, O_DIRECT through io_uring
 * (registered buffers where the kernel takes them) or pread/pwrite. The buffer
 * is page-aligned system RAM (`bounce`) or device memory (`p2p`): a chunk of
 * the `--via` function's p2pmem pool (mmap of `p2pmem/allocate`), or a file on
 * a DAX filesystem. With `--buffer both`, bounce writes dst at `dstOffset` and
 * p2p at `dstOffset + size`, so both copies can be checked afterwards.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {classifyPath, isBdfName, normalizeBdf, tryParseBdf} from '../pci/index.js'
import {Exit, getRunner, IopmemError, type Runner, usage} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {blockDirByDevNum, blockUsage, holdsSignature, readBlock} from '../dax/index.js'
import {nearestPciAncestor, type PciFunction, PciScanner} from '../pci/index.js'
import {deniedNote, processesUsing} from '../sys/index.js'
import {analyzePair, type PairAnalysis} from '../pci/index.js'
import {formatBytes, parseSize, roundRate} from '../sys/index.js'
import {dmaCheckpoint, type DmaTotals, subtractTotals} from '../vm/index.js'
import type {IoControl, IoRunResult, Mapping, Native} from '../../native/types.js'

export type P2pMode = 'bounce' | 'p2p' | 'both'

export interface Endpoint {
  /** The path as given (or chosen). */
  path: string
  kind: 'block' | 'file'
  /** Bytes (a block device's capacity, a file's size). */
  size: number
  /** The PCI function behind a block device. */
  bdf?: string
  /** O_DIRECT offset/length alignment (statx DIOALIGN, else the queue's logical block size, else 512). */
  align: number
  /** O_DIRECT buffer alignment. */
  memAlign: number
  /** major:minor of a block device. */
  dev?: string
  /** A file's identity (st_dev:st_ino), whatever name or link reached it. */
  inode?: string
}

export interface ViaInfo {
  kind: 'p2pmem' | 'dax-file'
  /** The BDF (p2pmem) or the file. */
  target: string
  /** What gets mapped. */
  path: string
  /** p2pmem pool facts, from sysfs. */
  poolSize?: number
  available?: number
  /** dax-file: the block device under its filesystem (e.g. /dev/iopmem0). */
  device?: string
  /** dax-file: the PCI function whose memory backs that device, when there is one. */
  provider?: string
  /** topo verdicts for the pair with each endpoint behind a PCI function. */
  pairs: PairAnalysis[]
}

export interface P2pPlan {
  src: Endpoint
  dst: Endpoint
  via?: ViaInfo
  modes: Array<'bounce' | 'p2p'>
  size: number
  bs: number
  qd: number
  jobs: number
  srcOffset: number
  dstOffset: number
  verify: boolean
  engine: 'auto' | 'io_uring' | 'psync'
  /** One line per choice made for the user. */
  choices: string[]
  notes: string[]
}

export interface P2pInput {
  src?: string
  dst?: string
  via?: string
  mode: P2pMode
  size?: string
  bs?: string
  qd?: string
  jobs?: string
  srcOffset?: string
  dstOffset?: string
  verify: boolean
  force: boolean
  engine: 'auto' | 'io_uring' | 'psync'
  sweep?: string | boolean
}

export const DEFAULT_BS = 128 * 1024
export const DEFAULT_QD = 8
export const DEFAULT_SIZE = 64 * 1024 * 1024
export const SWEEP_BS = [4096, 16384, 65536, 131072, 262144, 1048576]

function parseCount(text: string | undefined, what: string, dflt: number, max: number): number {
  if (text === undefined) return dflt
  if (!/^\d+$/.test(text.trim())) throw usage(`Invalid ${what} ${JSON.stringify(text)}: expected a whole number from 1 to ${max}.`, 'E_COUNT')
  const n = Number(text.trim())
  if (n < 1 || n > max) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be from 1 to ${max}.`, 'E_COUNT')
  return n
}

/** The sizes of --sweep: `true` → the defaults, else a comma list. */
export function parseSweep(sweep: string | boolean | undefined): number[] | undefined {
  if (sweep === undefined || sweep === false) return undefined
  if (sweep === true || sweep === '') return SWEEP_BS
  const list = String(sweep).split(',').map((s) => parseSize(s, '--sweep block size', {min: 512, max: 64 * 1024 * 1024}))
  return [...new Set(list)].sort((a, b) => a - b)
}

function blockInfo(host: Host, dev: string): {size: number; lbs: number; bdf?: string; name?: string} {
  const dir = host.sys('dev/block', dev)
  const real = host.resolveLink(dir) ?? host.realpath(dir)
  const sectors = host.readInt(path.join(dir, 'size')) ?? 0
  let lbs = host.readInt(path.join(dir, 'queue/logical_block_size'))
  if (lbs === undefined && real) lbs = host.readInt(path.join(path.dirname(real), 'queue/logical_block_size'))
  const pci = real ? nearestPciAncestor(real) : undefined
  return {size: sectors * 512, lbs: lbs ?? 512, bdf: pci ? path.basename(pci) : undefined, name: real ? path.basename(real) : undefined}
}

/** Stat a source/destination path: a block device or a regular file. */
export function resolveEndpoint(host: Host, native: () => Native, p: string, what: '--src' | '--dst'): Endpoint {
  let st: fs.Stats
  try {
    st = fs.statSync(p)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new IopmemError(`${what} ${p}: no such file or device.`, {
        code: 'E_NO_FILE',
        exit: Exit.NOT_FOUND,
        suggestions: ['Give an NVMe namespace such as /dev/nvme0n1, or an existing file; run `iopmem list` to see the namespaces.'],
      })
    throw new IopmemError(`${what} ${p}: ${(err as Error).message}`, {code: code ?? 'E_STAT', exit: code === 'EACCES' ? Exit.PERMISSION : Exit.FAILURE})
  }
  if (st.isDirectory()) throw usage(`${what} ${p} is a directory: give a block device or a regular file.`, 'E_NOT_REGULAR')
  // sysfs files look regular: a BAR's resourceN (however reached) is device memory, not a file to copy through.
  const c = classifyPath(host, p)
  if (c.kind !== 'other') {
    throw usage(
      `${what} ${p} is ${c.kind === 'bar' ? `BAR${c.index} of ${c.bdf} (its sysfs resource file)` : `a sysfs file (${host.display(c.file)})`}, not a block device or a file.`,
      'E_NOT_REGULAR',
      c.kind === 'bar' ? ['Use --via BDF to copy through its p2pmem, or `iopmem bench mmio` to measure the BAR.'] : [],
    )
  }
  if (!st.isBlockDevice() && !st.isFile())
    throw usage(`${what} ${p} is neither a block device nor a regular file (a character device, FIFO or socket cannot do O_DIRECT I/O).`, 'E_NOT_REGULAR')
  let align = 512
  let memAlign = 512
  try {
    const sx = native().statx(p)
    if (sx.dioOffsetAlign > 0) align = sx.dioOffsetAlign
    if (sx.dioMemAlign > 0) memAlign = sx.dioMemAlign
  } catch {
    /* statx failing leaves the defaults */
  }
  if (st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256) & 0xfff
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)
    const dev = `${major}:${minor}`
    const b = blockInfo(host, dev)
    if (align === 512 && b.lbs > 512) align = b.lbs
    return {path: p, kind: 'block', size: b.size, bdf: b.bdf, align, memAlign, dev}
  }
  if (align === 512 && st.blksize && st.blksize < 512) align = 512
  return {path: p, kind: 'file', size: st.size, align, memAlign, inode: `${st.dev}:${st.ino}`}
}

/** NVMe whole-disk namespaces, with their function. */
function namespaces(fns: PciFunction[], host: Host): Array<{path: string; fn: PciFunction; size: number}> {
  const out: Array<{path: string; fn: PciFunction; size: number}> = []
  for (const f of fns)
    for (const b of f.blockDevices) if (b.kind === 'nvme' && b.size > 0) out.push({path: host.dev(b.name), fn: f, size: b.size})
  return out
}

function noDefaults(missing: string): IopmemError {
  return new IopmemError(`Cannot choose defaults for bench p2p: ${missing}.`, {
    code: 'E_NO_CANDIDATES',
    exit: Exit.UNSUPPORTED,
    suggestions: [
      'Name them: --src /dev/nvmeXn1 --dst /dev/nvmeYn1 --via BDF (a function with p2pmem, see `iopmem list`).',
      'Or run `iopmem sandbox` (or the guest suite) for two NVMe behind a switch, one with a CMB.',
      '--buffer bounce needs no p2pmem: --src FILE --dst FILE works anywhere.',
    ],
  })
}

/** Pick source, destination and provider when they are not given; every choice explained. */
function chooseDefaults(host: Host, scanner: PciScanner, input: P2pInput, choices: string[]): {src?: string; dst?: string; via?: string} {
  let {src, dst, via} = input
  if (src && dst && (via || input.mode === 'bounce')) return {src, dst, via}
  if (!scanner.pciVisible()) throw noDefaults('no PCI devices are visible here')
  const fns = scanner.scanAll()
  const ns = namespaces(fns, host)
  const providers = fns.filter((f) => f.p2pmem?.published)
  const wantVia = input.mode !== 'bounce' && !via
  if ((!src || !dst) && ns.length < (src || dst ? 1 : 2))
    throw noDefaults(`${ns.length === 0 ? 'no NVMe namespace' : 'only one NVMe namespace'} is visible (two are needed: a source and a destination)`)
  if (wantVia && providers.length === 0) throw noDefaults('no PCI function publishes p2pmem (an NVMe CMB, a p2pmem-capable BAR)')
  type Cand = {s: string; d: string; v?: string; score: number; why: string}
  const srcs = src ? [{path: src, bdf: undefined as string | undefined}] : ns.map((n) => ({path: n.path, bdf: n.fn.bdf}))
  const dsts = dst ? [{path: dst, bdf: undefined as string | undefined}] : ns.map((n) => ({path: n.path, bdf: n.fn.bdf}))
  const vias = wantVia ? providers.map((p) => p.bdf) : [via]
  const bdfOf = (p: string, known?: string) => known ?? (fs.existsSync(p) && fs.statSync(p).isBlockDevice() ? blockInfo(host, devOf(p)).bdf : undefined)
  let best: Cand | undefined
  for (const s of srcs)
    for (const d of dsts) {
      if (s.path === d.path) continue
      const sb = bdfOf(s.path, s.bdf)
      const db = bdfOf(d.path, d.bdf)
      for (const v of vias) {
        let score = 0
        let ok = true
        if (v && isBdfName(v)) {
          for (const c of [sb, db]) {
            if (!c) continue
            const a = analyzePair(scanner, v, c)
            if (a.p2p !== 'yes') ok = false
            score += a.distance
          }
        }
        if (!ok) continue
        if (!best || score < best.score) best = {s: s.path, d: d.path, v, score, why: `topo distance ${score}`}
      }
    }
  if (!best) throw noDefaults('no source/destination pair can do P2P DMA with any p2pmem provider (topo says the kernel would refuse every one)')
  if (!src) choices.push(`source ${best.s}: an NVMe namespace${wantVia ? ` nearest the provider (${best.why})` : ''}`)
  if (!dst) choices.push(`destination ${best.d}: another NVMe namespace, not the source`)
  if (wantVia && best.v) choices.push(`--via ${best.v}: the p2pmem provider with the shortest topo distance to both (${best.score})`)
  return {src: src ?? best.s, dst: dst ?? best.d, via: via ?? best.v}
}

function devOf(p: string): string {
  const st = fs.statSync(p)
  return `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`
}

/** Validate the flags, resolve every endpoint, and refuse what must be refused. */
export function planP2p(host: Host, native: () => Native, input: P2pInput): P2pPlan {
  const notes: string[] = []
  const choices: string[] = []
  // Numbers first: bad syntax fails before anything is looked at.
  const bs = input.bs === undefined ? DEFAULT_BS : parseSize(input.bs, '--bs', {min: 512, max: 64 * 1024 * 1024})
  const qd = parseCount(input.qd, '--qd', DEFAULT_QD, 1024)
  const jobs = parseCount(input.jobs, '--jobs', 1, 64)
  const sizeReq = input.size === undefined ? undefined : parseSize(input.size, '--size', {min: 512})
  const srcOffset = input.srcOffset === undefined ? 0 : parseSize(input.srcOffset, '--src-offset')
  const dstOffset = input.dstOffset === undefined ? 0 : parseSize(input.dstOffset, '--dst-offset')
  if (input.via === undefined && input.mode === 'p2p' && input.src && input.dst)
    throw usage('--buffer p2p needs --via: a PCI function with p2pmem (BDF) or a file on a DAX filesystem.', 'E_NO_VIA', ['Run `iopmem list` to see which functions publish p2pmem.'])
  if (input.via !== undefined && input.via.trim() === '') throw usage('--via is empty: give a BDF or a file on a DAX filesystem.', 'E_NO_VIA')
  if (input.via !== undefined && !input.via.includes('/') && !tryParseBdf(input.via))
    throw usage(`Invalid --via ${JSON.stringify(input.via)}: expected a PCI function ([domain:]bus:device.function) or a path to a file on a DAX filesystem.`, 'E_BDF_SYNTAX')
  if (input.src !== undefined && input.dst !== undefined && path.resolve(input.src) === path.resolve(input.dst))
    throw usage(`--src and --dst are the same (${input.src}): the copy would read what it writes.`, 'E_SAME')

  const scanner = new PciScanner(host, {names: false})
  const picked = chooseDefaults(host, scanner, input, choices)
  const src = resolveEndpoint(host, native, picked.src!, '--src')
  const dst = resolveEndpoint(host, native, picked.dst!, '--dst')
  // Same device number or same inode: the same bytes, however they were named (symlinks, hard links, /dev/disk/by-*).
  if (src.kind === 'block' && dst.kind === 'block' && src.dev === dst.dev) throw usage(`--src and --dst are the same device (${src.dev}).`, 'E_SAME')
  if (src.kind === 'file' && dst.kind === 'file' && src.inode === dst.inode)
    throw usage(`--src ${src.path} and --dst ${dst.path} are the same file (one inode): the copy would read what it writes.`, 'E_SAME')
  const align = Math.max(src.align, dst.align)
  for (const [name, v] of [['--bs', bs], ['--src-offset', srcOffset], ['--dst-offset', dstOffset]] as const)
    if (v % align !== 0)
      throw usage(`${name} ${v} is not a multiple of ${align} bytes, the O_DIRECT alignment of ${src.align >= dst.align ? src.path : dst.path}.`, 'E_ALIGN')
  if (bs % 4096 !== 0 && bs < 4096) notes.push(`--bs ${bs} is below a page: expect poor figures.`)
  const modes: Array<'bounce' | 'p2p'> = input.mode === 'both' ? ['bounce', 'p2p'] : [input.mode]
  if (srcOffset >= src.size && src.size > 0) throw usage(`--src-offset ${srcOffset} is past the end of ${src.path} (${src.size} bytes).`, 'E_RANGE')
  if (src.size === 0) throw usage(`--src ${src.path} is empty: nothing to copy.`, 'E_RANGE')
  const srcRoom = src.size - srcOffset
  let size: number
  if (sizeReq === undefined) {
    size = Math.min(DEFAULT_SIZE, srcRoom)
    if (dst.kind === 'block') size = Math.min(size, Math.floor((dst.size - dstOffset) / modes.length))
    size -= size % align
    choices.push(`--size ${formatBytes(size)}: ${size === DEFAULT_SIZE ? 'the default' : 'what the source and destination hold'}`)
  } else {
    size = sizeReq
    if (size % align !== 0) throw usage(`--size ${size} is not a multiple of ${align} bytes (O_DIRECT alignment).`, 'E_ALIGN')
    if (size > srcRoom) throw usage(`--size ${formatBytes(size)} runs past the end of ${src.path} (${formatBytes(srcRoom)} from --src-offset).`, 'E_RANGE')
  }
  if (size <= 0) throw usage('Nothing to copy: the size left is 0.', 'E_RANGE')
  if (dst.kind === 'block' && dstOffset + size * modes.length > dst.size)
    throw usage(
      `${modes.length > 1 ? 'Both copies' : 'The copy'} (${formatBytes(size * modes.length)} from --dst-offset ${dstOffset}) would run past the end of ${dst.path} (${formatBytes(dst.size)}).`,
      'E_RANGE',
    )

  // The destination must not hold a mounted filesystem or a stacked device, nor be open in another process.
  if (!input.force) refuseBusyDestination(host, dst, notes)

  let via: ViaInfo | undefined
  if (modes.includes('p2p')) {
    via = resolveVia(host, scanner, native, picked.via, {src, dst, need: bs * qd * jobs})
    if (via.kind === 'dax-file') notes.push(...daxViaNotes(via))
  } else if (picked.via) notes.push('--via is not used by --buffer bounce.')
  return {src, dst, via, modes, size, bs, qd, jobs, srcOffset, dstOffset, verify: input.verify, engine: input.engine, choices, notes}
}

/**
 * Refuse a destination something else uses. A block device: what mkfs-dax
 * checks (blockUsage: it or a partition of it mounted, stacked devices, swap,
 * processes holding a node open or mapped); its signatures are
 * refuseSignedDestination's. A file:
 * processes holding it open or mapped. This process is skipped by the scan.
 */
function refuseBusyDestination(host: Host, dst: Endpoint, notes: string[]): void {
  const reasons: string[] = []
  let processes: Array<{pid: number; comm: string; what: string}> = []
  const [major, minor] = (dst.dev ?? '').split(':').map(Number)
  const dir = dst.kind === 'block' && dst.dev ? blockDirByDevNum(host, major, minor) : undefined
  if (dir) {
    const {uses, unchecked} = blockUsage(host, readBlock(host, dir))
    for (const u of uses) reasons.push(u.detail)
    processes = uses.filter((u) => u.kind === 'process').map((u) => ({pid: u.pid!, comm: u.comm!, what: u.what!}))
    notes.push(...unchecked)
  } else {
    const names = fileNames(host, dst.path)
    const scan = processesUsing(host, (f) => names.has(f))
    processes = scan.uses
    for (const u of processes) reasons.push(`process ${u.comm} (pid ${u.pid}) ${u.what}`)
    notes.push(...deniedNote(scan.denied))
  }
  if (reasons.length > 0)
    throw new IopmemError(`Refusing to overwrite ${dst.path}: ${reasons.join('; ')}.`, {
      code: 'E_IN_USE',
      exit: Exit.REFUSED,
      suggestions: [`Pick another --dst${processes.length > 0 ? ' or stop the process using it' : ''}, or pass --force if its contents may be destroyed.`],
      details: {dst: dst.path, reasons, processes},
    })
}

/**
 * The paths under which /proc/PID/fd links and maps name a file: as given,
 * resolved through symlinks, and as the kernel names paths under the host's
 * roots (a fixture's /dev/…).
 */
function fileNames(host: Host, p: string): Set<string> {
  const abs = path.resolve(p)
  let real = abs
  try {
    real = fs.realpathSync(abs)
  } catch {
    /* keep the path as given */
  }
  return new Set([abs, real, host.display(abs), host.display(real)])
}

/**
 * Refuse a destination (a block device, or a file such as a disk image) that
 * holds a signature: a filesystem, swap, a partition table (MBR or GPT),
 * LUKS, LVM, an md member — whatever wipefs (libblkid) knows, the detector
 * mkfs-dax uses. Unmounted ones too: their contents would be destroyed. An
 * unreadable destination counts as blank.
 */
export async function refuseSignedDestination(host: Host, dst: Endpoint, runner: Runner = getRunner()): Promise<void> {
  let sig: string | undefined
  try {
    sig = await holdsSignature(runner, dst.path, host)
  } catch (error) {
    if ((error as {code?: string}).code !== 'E_PROBE_FAILED') throw error
  }
  if (!sig) return
  const reasons = [`${dst.path} holds ${sig}`]
  throw new IopmemError(`Refusing to overwrite ${dst.path}: ${reasons.join('; ')}.`, {
    code: 'E_IN_USE',
    exit: Exit.REFUSED,
    suggestions: ['Pick another --dst, or pass --force if its contents may be destroyed.'],
    details: {dst: dst.path, reasons, processes: []},
  })
}

function resolveVia(host: Host, scanner: PciScanner, native: () => Native, via: string | undefined, ctx: {src: Endpoint; dst: Endpoint; need: number}): ViaInfo {
  if (!via) throw usage('--buffer p2p/both needs --via: a PCI function with p2pmem (BDF) or a file on a DAX filesystem.', 'E_NO_VIA', ['Run `iopmem list` to see which functions publish p2pmem.'])
  if (via.includes('/')) {
    let sx
    try {
      sx = native().statx(via)
    } catch (err) {
      throw new IopmemError(`--via ${via}: ${(err as Error).message}`, {code: 'E_NO_FILE', exit: Exit.NOT_FOUND})
    }
    if ((sx.mode & 0o170000) !== 0o100000) throw usage(`--via ${via} is not a regular file: give a BDF with p2pmem or a file on a DAX filesystem.`, 'E_NOT_REGULAR')
    if (!sx.dax)
      throw new IopmemError(`--via ${via} is not on a DAX filesystem (statx shows no STATX_ATTR_DAX): its pages would be system RAM, which is the bounce mode.`, {
        code: 'E_NOT_DAX',
        exit: Exit.UNSUPPORTED,
        suggestions: ['Use a file on a filesystem mounted -o dax=always over device memory (`iopmem mkfs-dax`), or a BDF with p2pmem.'],
      })
    if (sx.size < ctx.need) throw usage(`--via ${via} holds ${formatBytes(sx.size)}; the buffer needs ${formatBytes(ctx.need)} (bs × qd × jobs).`, 'E_RANGE')
    // The device under the filesystem, and the PCI function behind it (an iopmem BAR): topo's word on the
    // peers. FS-DAX pages are not P2PDMA pages, so the kernel runs no distance check of its own for them.
    const disk = blockInfo(host, `${sx.devMajor}:${sx.devMinor}`)
    const pairs: PairAnalysis[] = []
    if (disk.bdf) for (const ep of [ctx.src, ctx.dst]) if (ep.bdf && ep.bdf !== disk.bdf) pairs.push(analyzePair(scanner, disk.bdf, ep.bdf))
    return {kind: 'dax-file', target: via, path: via, device: disk.name ? `/dev/${disk.name}` : undefined, provider: disk.bdf, pairs}
  }
  const fn = scanner.get(via)
  const bdf = normalizeBdf(via)
  if (!fn.p2pmem || !fn.p2pmem.published)
    throw new IopmemError(`${bdf} publishes no p2pmem: it cannot be the --via buffer.`, {
      code: 'E_NO_P2PMEM',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Run `iopmem list` to see which functions publish p2pmem (an NVMe CMB, a p2pmem-capable BAR).'],
      details: {bdf},
    })
  if (fn.p2pmem.available < ctx.need)
    throw new IopmemError(`${bdf} has ${formatBytes(fn.p2pmem.available)} of p2pmem free; the buffer needs ${formatBytes(ctx.need)} (bs × qd × jobs).`, {
      code: 'E_P2PMEM_SHORT',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Lower --bs, --qd or --jobs.'],
    })
  const pairs: PairAnalysis[] = []
  for (const ep of [ctx.src, ctx.dst]) {
    if (!ep.bdf) continue
    pairs.push(analyzePair(scanner, bdf, ep.bdf))
  }
  return {
    kind: 'p2pmem',
    target: bdf,
    path: path.join(fn.sysfsPath, 'p2pmem', 'allocate'),
    poolSize: fn.p2pmem.size,
    available: fn.p2pmem.available,
    pairs,
  }
}

/**
 * What to know about a DAX file as the buffer: FS-DAX pages are not P2PDMA
 * pages, so the kernel maps them for the peers as it maps RAM, with no
 * distance check (no EREMOTEIO); where topo says P2PDMA would refuse the pair,
 * the host bridge has to route the traffic, and only --verify shows it did.
 */
export function daxViaNotes(via: ViaInfo): string[] {
  if (!via.provider) return [`--via ${via.target} is on ${via.device ?? 'a device'} with no PCI function behind it: the p2p buffer is not device memory of a peer.`]
  const out = [`--via ${via.target}: on ${via.device}, memory of ${via.provider}; FS-DAX pages get no P2PDMA distance check, so the kernel will not refuse a peer.`]
  for (const p of via.pairs)
    if (p.p2p !== 'yes')
      out.push(
        `topo: P2PDMA would ${p.p2p === 'no' ? 'refuse' : 'maybe refuse'} ${p.provider} ↔ ${p.client} (${(p.reasons[0] ?? p.p2p).replace(/\.+$/, '')}); the host bridge must route this traffic — use --verify.`,
      )
  return out
}

/** Map the p2p buffer: `need` bytes (rounded up to a page) of the provider. */
export function mapVia(native: Native, via: ViaInfo, need: number): Mapping {
  const page = native.constants.pageSize
  const length = Math.ceil(need / page) * page
  return native.map(via.path, {length, mode: 'wb', populate: via.kind === 'dax-file'})
}

/** What the kernel says when the refused device DMAs into the provider's memory: one O_DIRECT read. */
export async function kernelProbe(native: Native, buffer: Mapping, device: string, align: number): Promise<{errno: string; message: string} | {ok: true}> {
  try {
    await native.ioRun({src: device, length: Math.max(align, 4096), bs: Math.max(align, 4096), qd: 1, buffer, registerBuffers: false})
    return {ok: true}
  } catch (err) {
    const e = err as IopmemError
    return {errno: e.code, message: e.message}
  }
}

export function readAvailable(host: Host, via: ViaInfo | undefined): number | undefined {
  if (!via || via.kind !== 'p2pmem') return undefined
  return host.readInt(path.join(path.dirname(via.path), 'available'))
}

export interface ModeResult {
  mode: 'bounce' | 'p2p'
  buffer: string
  dstOffset: number
  bytes: number
  seconds: number
  gbps: number
  iops: number
  latency: IoRunResult['latency']
  cpu: IoRunResult['cpu'] & {percentOfOneCore: number}
  engine: IoRunResult['engine']
  fallbackReason?: string
  registeredBuffers: boolean
  registerError?: string
  /** The DRAM probe while this copy ran (GB/s, read+write), and the share of the idle figure. */
  dram?: {gbps: number; ofIdle: number}
  verify?: IoRunResult['verify']
  /**
   * Inside `iopmem sandbox`: the bytes the NVMe controllers moved during the copy (not the
   * verify), by where the data pointers lay, from QEMU's trace counted on the host.
   */
  dma?: DmaTotals
  stopped: boolean
}

/** One copy of the plan through `buffer` (undefined: bounce), with the DRAM probe beside it. */
export async function runMode(
  native: Native,
  plan: P2pPlan,
  mode: 'bounce' | 'p2p',
  opts: {buffer?: Mapping; dstOffset: number; bs?: number; probe: boolean; idleGbps?: number; control: IoControl; verify: boolean},
): Promise<ModeResult> {
  const bs = opts.bs ?? plan.bs
  // In the sandbox the copy is bracketed by two DMA checkpoints, and the read-back of --verify
  // (which goes through RAM) runs after the second, so it is not counted as the copy's path.
  const dmaBefore = await dmaCheckpoint()
  const io = {
    src: plan.src.path,
    dst: plan.dst.path,
    srcOffset: plan.srcOffset,
    dstOffset: opts.dstOffset,
    length: plan.size,
    bs,
    qd: plan.qd,
    jobs: plan.jobs,
    engine: plan.engine,
  }
  const probeCtl = native.ioControl()
  const probe = opts.probe ? native.memProbe(probeCtl) : undefined
  let r: IoRunResult
  let dma: DmaTotals | undefined
  try {
    r = await native.ioRun({...io, verify: opts.verify && !dmaBefore, buffer: opts.buffer}, opts.control)
    if (dmaBefore) {
      const after = await dmaCheckpoint()
      dma = after && subtractTotals(after, dmaBefore)
      if (opts.verify && !r.stopped) r.verify = (await native.ioRun({...io, verifyOnly: true}, opts.control)).verify
    }
  } catch (err) {
    throw copyError(err, mode, opts.buffer)
  } finally {
    probeCtl.stop()
  }
  const p = probe ? await probe : undefined
  const cpuS = r.cpu.processUserS + r.cpu.processSysS
  const out: ModeResult = {
    mode,
    buffer: mode === 'bounce' ? 'system RAM (anonymous, page-aligned)' : opts.buffer!.path,
    dstOffset: opts.dstOffset,
    bytes: r.bytes,
    seconds: r.seconds,
    gbps: r.seconds > 0 ? roundRate(r.bytes / r.seconds / 1e9) : 0,
    iops: r.seconds > 0 ? roundRate(r.ops / r.seconds) : 0,
    latency: r.latency,
    cpu: {...r.cpu, percentOfOneCore: r.seconds > 0 ? (100 * cpuS) / r.seconds : 0},
    engine: r.engine,
    registeredBuffers: r.registeredBuffers,
    stopped: r.stopped,
  }
  if (r.fallbackReason) out.fallbackReason = r.fallbackReason
  if (r.registerError && r.registerError !== 'not asked for') out.registerError = r.registerError
  if (r.verify) out.verify = r.verify
  if (dma) out.dma = dma
  if (p && p.seconds > 0) {
    const gbps = p.bytes / p.seconds / 1e9
    out.dram = {gbps: roundRate(gbps), ofIdle: opts.idleGbps ? gbps / opts.idleGbps : 1}
  }
  return out
}

/**
 * NVMe status 0x12 on a p2p copy. Linux describes an I/O of several large
 * segments (a merged request) with an SGL whose descriptor list lies in RAM;
 * a controller reading into or writing from its own CMB may refuse to mix the
 * two (QEMU's NVMe does, so the guest suite boots with nvme.sgl_threshold=0).
 */
export const CMB_SGL_HINT =
  'If dmesg shows NVMe status sc 0x12 (Invalid Use of Controller Memory Buffer), the controller refused a command that mixes its own CMB with host memory: ' +
  'Linux describes multi-segment I/O with an SGL list in RAM. Boot with nvme.sgl_threshold=0 so that it uses PRPs, or use a --via that is neither the source nor the destination controller.'

/**
 * An I/O that failed mid-copy, said with what a person needs to look further:
 * which copy, the byte offset of the failed I/O, how far the copy had got, and
 * that the device's own account is in the kernel log. Same code and exit.
 */
export function copyError(err: unknown, mode: 'bounce' | 'p2p', buffer: Mapping | undefined): unknown {
  if (!(err instanceof IopmemError) || err.syscall === undefined) return err
  const e = err as IopmemError & {offset?: number; partial?: IoRunResult}
  const at = e.offset === undefined ? '' : ` at byte ${e.offset}`
  const done = e.partial ? `, after ${formatBytes(e.partial.bytes)} had been copied` : ''
  return new IopmemError(`The ${mode} copy failed: ${e.message}${at}${done}.`, {
    code: e.code,
    exit: e.exit,
    errno: e.errno,
    syscall: e.syscall,
    path: e.path,
    suggestions: [
      `The kernel log (dmesg) has the device's own report of the failed I/O${mode === 'p2p' ? ` (the buffer was ${buffer?.path ?? 'device memory'})` : ''}.`,
      ...(mode === 'p2p' && e.code === 'EIO' ? [CMB_SGL_HINT] : []),
    ],
    details: {mode, offset: e.offset ?? null, partial: e.partial ?? null},
  })
}

/** The idle DRAM figure: the probe alone for `ms`. */
export async function idleDram(native: Native, ms = 300): Promise<number> {
  const ctl = native.ioControl()
  const p = native.memProbe(ctl)
  await new Promise((r) => setTimeout(r, ms))
  ctl.stop()
  const r = await p
  return r.seconds > 0 ? roundRate(r.bytes / r.seconds / 1e9) : 0
}
