/**
 * Mapping device memory into this process: what TARGET means, which file is
 * mapped with which caching mode (and why), and what a failure means in
 * words. No oclif here; the addon is reached through a narrow interface so
 * unit tests can hand in a fake.
 *
 * Targets:
 *  - a BDF (`--bar N`, default the largest memory BAR): `resourceN` (uc) or
 *    `resourceN_wc` (wc); a sysfs `…/BDF/resourceN[_wc]` path means the same;
 *  - a BDF with `--p2pmem SIZE`: an mmap of `p2pmem/allocate` (MAP_SHARED,
 *    offset 0, length rounded up to pages): a fresh chunk of the provider's
 *    P2PDMA pool, freed on munmap or exit;
 *  - `/dev/daxX.Y` (device-dax) or a file on a DAX filesystem (statx DAX):
 *    write-back. A file that is not DAX is refused (its bytes live in the
 *    page cache), except where the caller allows it (benches, tests).
 *
 * Modes: the kernel decides the caching of each backend; user space only
 * picks the file. `auto` takes the best the backend gives; an explicit mode
 * the backend cannot give is an error that says what would give it. The
 * result always carries the mode obtained and why. After mapping a BAR, the
 * x86 PAT table (debugfs, root) is read when it can be: the kernel silently
 * gives a mapping the memory type another mapping of the range already holds,
 * and that is reported, never passed off as the mode asked.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import type {CachingMode, Mapping, MapOptions, StatxResult, UsedStrategy} from '../../native/types.js'
import {classifyPath, normalizeBdf, tryParseBdf} from '../pci/index.js'
import {Exit, type ExitCode, IopmemError, usage} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {type Bar, type PciFunction, PciScanner} from '../pci/index.js'
import {formatBytes, hex64, parseSize} from '../sys/index.js'

/** A mode as asked on the command line. */
export type ModeRequest = CachingMode | 'auto'
export const MODE_REQUESTS: readonly ModeRequest[] = ['auto', 'uc', 'wc', 'wb', 'wt']

/**
 * Where the mapped memory comes from:
 *  - `bar`: a PCI BAR through sysfs `resourceN` / `resourceN_wc`;
 *  - `p2pmem`: a chunk of a P2PDMA provider's pool (`p2pmem/allocate`);
 *  - `devdax`: a device-dax node (`/dev/daxX.Y`);
 *  - `fsdax`: a file on a DAX filesystem (statx STATX_ATTR_DAX);
 *  - `file`: a regular file in the page cache (benches and tests only).
 */
export type Backend = 'bar' | 'p2pmem' | 'devdax' | 'fsdax' | 'file'

/** Copy strategies allowed per mode, `auto`'s choice first (the addon's own rule). */
export const STRATEGIES: Record<CachingMode, {copyIn: UsedStrategy[]; copyOut: UsedStrategy[]}> = {
  uc: {copyIn: ['exact64', 'stream-store'], copyOut: ['stream-load', 'exact64']},
  wc: {copyIn: ['stream-store', 'exact64'], copyOut: ['stream-load', 'exact64']},
  wb: {copyIn: ['memcpy', 'stream-store', 'exact64'], copyOut: ['memcpy', 'stream-load', 'exact64']},
  wt: {copyIn: ['memcpy', 'stream-store', 'exact64'], copyOut: ['memcpy', 'stream-load', 'exact64']},
}

/** What to map. */
export interface TargetSpec {
  /** TARGET as given: a BDF or a path. */
  target: string
  /** `--bar` as given (0-5, `BAR2`). */
  bar?: string
  /** `--p2pmem` as given (a size). */
  p2pmem?: string
  /** `--cache` (default auto). */
  mode?: ModeRequest
  /** Accept a regular file that is not DAX (backend `file`): benches and tests. */
  allowPageCache?: boolean
}

/** The BAR a mapping comes from (BDF targets). */
export interface BarFacts {
  index: number
  name: string
  size: number
  /** CPU physical start, 0x… (as sysfs `resource` shows it). */
  start: string
  end: string
  prefetchable: boolean
  is64: boolean
  /** PCI bus address of the BAR (what a peer must DMA to), from config space; null when unreadable. */
  busStart: string | null
}

/**
 * What `iopmem map` says about a mapping (the facts block; `mapping` in
 * every `--json` result of `map` and `bench mmio`).
 */
export interface MapFacts {
  /** TARGET as given. */
  target: string
  backend: Backend
  /** The file mapped, as the kernel names it (`/sys/bus/pci/devices/…/resource2_wc`, `/dev/dax0.0`, a path). */
  path: string
  /** The PCI function, for BAR and p2pmem targets. */
  bdf: string | null
  /** The function's driver (null: none), for BAR and p2pmem targets. */
  driver: string | null
  /** The BAR mapped (`bar`), or the BAR holding the p2pmem chunk when that can be told. */
  bar: BarFacts | null
  /** File offset of byte 0 of the mapping. */
  offset: number
  /** Bytes mapped. */
  length: number
  /** The caching mode obtained. */
  mode: CachingMode
  /** The mode asked (`auto` unless --cache). */
  modeAsked: ModeRequest
  /** Why this mode (and this file): one sentence. */
  why: string
  /** CPU physical address of byte 0 (0x…), when known (BAR: from sysfs; p2pmem and device-dax: as root). */
  physStart: string | null
  /** PCI bus address of byte 0 (0x…), when known: the address a peer device uses. */
  busStart: string | null
  /** The provider's pool, for p2pmem: size, and `available` read after this chunk was taken. */
  p2pmem: {size: number; available: number; published: boolean} | null
  /** Copy strategies this mode allows per direction; the first is what `auto` uses. */
  strategies: {copyIn: UsedStrategy[]; copyOut: UsedStrategy[]}
  /** Mapped read-write (false: read-only, for reads). */
  writable: boolean
  /** Things that may make the results wrong or dangerous (driver bound, decoding off, page cache). */
  warnings: string[]
  /** Facts worth knowing (PAT confirmed the mode, EREMOTEIO for buffered I/O on p2pmem, …). */
  notes: string[]
}

/** A resolved target: the facts known before mapping, plus what the mapping needs. */
export interface ResolvedTarget extends Omit<MapFacts, 'writable'> {
  /** The file to open, under the host's roots. */
  file: string
  /** The BAR (bar backend) as the PCI model read it. */
  barInfo?: Bar
  /** The function (bar and p2pmem backends). */
  fn?: PciFunction
  /** For `auto` on a BAR with WC: the uc file to fall back to when PAT says the range is uncached. */
  ucFile?: string
}

const isPathLike = (t: string) => t.includes('/') || t.startsWith('.') || t.startsWith('~')

const DAX_NAME_RE = /^dax\d+\.\d+$/

const hex = (n: bigint | number) => '0x' + n.toString(16)

/** The narrow slice of the addon that resolution and mapping use. */
export interface MapNative {
  map(target: string, options?: MapOptions): Mapping
  statx(target: string): StatxResult
  constants: {pageSize: number}
}

/** Parse `--bar`: 0-5, optionally spelt BAR2 / bar2. */
export function parseBarIndex(text: string): number {
  const m = /^(?:bar)?([0-9]+)$/i.exec(text.trim())
  const n = m ? Number(m[1]) : Number.NaN
  if (!Number.isInteger(n) || n < 0 || n > 5) {
    throw usage(`Invalid --bar ${JSON.stringify(text)}: a BAR index is 0-5.`, 'E_BAR_SYNTAX', [
      '`iopmem list BDF` shows the BARs of a function.',
    ])
  }
  return n
}

function describeFn(f: PciFunction): string {
  return f.driver ? `${f.bdf} (driver ${f.driver})` : `${f.bdf} (no driver)`
}

function barsList(f: PciFunction): string {
  const mem = f.bars.filter((b) => b.index < 6)
  if (mem.length === 0) return `${f.bdf} has no BARs.`
  return `${f.bdf} has ${mem.map((b) => `${b.name} (${b.type === 'io' ? 'I/O ports' : formatBytes(b.size)}${b.prefetchable ? ', prefetchable' : ''})`).join(', ')}.`
}

/** The `resourceN` path of a BAR under the host's sysfs. */
function resourceFile(f: PciFunction, index: number, wc: boolean): string {
  return path.join(f.sysfsPath, `resource${index}${wc ? '_wc' : ''}`)
}

/**
 * Turn TARGET and its flags into what to map and with which mode. Nothing is
 * opened for writing and nothing is mapped: every input error is raised here.
 */
export function resolveTarget(host: Host, spec: TargetSpec, native: () => MapNative): ResolvedTarget {
  const mode = spec.mode ?? 'auto'
  if (!MODE_REQUESTS.includes(mode)) throw usage(`Invalid --cache ${JSON.stringify(mode)}: use one of ${MODE_REQUESTS.join(', ')}.`, 'E_MODE_SYNTAX')
  const target = spec.target
  if (target === '') throw usage('Missing TARGET: give a PCI address (BDF) or a path.', 'E_TARGET_SYNTAX')

  if (isPathLike(target)) return resolveNamedPath(host, spec, target, native)

  if (tryParseBdf(target) || target.includes(':')) {
    const bdf = normalizeBdf(target) // E_BDF_SYNTAX for anything malformed
    if (spec.p2pmem !== undefined) {
      if (spec.bar !== undefined)
        throw usage('--bar and --p2pmem do not go together: p2pmem is allocated from whichever BAR the driver registered.', 'E_FLAG_COMBO')
      return resolveP2pmem(host, spec, bdf)
    }
    return resolveBar(host, spec, bdf)
  }
  // A bare word: a file in the current directory, if there is one (resource0 in a function's directory is its BAR).
  if (fs.existsSync(target)) return resolveNamedPath(host, spec, target, native)
  throw new IopmemError(`${JSON.stringify(target)} is neither a PCI address ([domain:]bus:device.function) nor an existing file.`, {
    code: 'E_NO_TARGET',
    exit: Exit.USAGE,
    suggestions: ['`iopmem list` shows the PCI functions with device memory.'],
  })
}

/**
 * A path, classified by what it really is after realpath: a BAR's resource
 * file however reached (a /sys/class/… link, a relative path, a symlink of
 * one's own) is the BDF form with every BAR check; p2pmem/allocate is the
 * p2pmem form; any other sysfs file is refused; the rest is a file or node.
 */
function resolveNamedPath(host: Host, spec: TargetSpec, target: string, native: () => MapNative): ResolvedTarget {
  const mode = spec.mode ?? 'auto'
  const c = classifyPath(host, target)
  if (c.kind === 'bar') {
    if (spec.p2pmem !== undefined) throw usage(`--p2pmem takes a BDF, not a resource file (${target}).`, 'E_FLAG_COMBO')
    if (spec.bar !== undefined && parseBarIndex(spec.bar) !== c.index) throw usage(`--bar ${spec.bar} contradicts ${target}, which is BAR${c.index}.`, 'E_FLAG_COMBO')
    const fileMode: CachingMode = c.wc ? 'wc' : 'uc'
    if (mode !== 'auto' && mode !== fileMode) throw usage(`--cache ${mode} contradicts ${target}, which maps ${fileMode}; name the BDF and --cache instead.`, 'E_FLAG_COMBO')
    return resolveBar(host, spec, normalizeBdf(c.bdf), String(c.index), fileMode)
  }
  if (c.kind === 'p2pmem') {
    if (spec.p2pmem === undefined) throw usage(`Mapping ${target} needs --p2pmem SIZE (how much to allocate).`, 'E_FLAG_COMBO')
    return resolveP2pmem(host, spec, normalizeBdf(c.bdf))
  }
  if (c.kind === 'sysfs') {
    throw targetKind(host.display(c.file), 'a sysfs attribute, not device memory', 'Map a BAR by its BDF (`iopmem map BDF --bar N`) or its resourceN file.')
  }
  return resolvePath(host, spec, c.file, native)
}

function baseFacts(target: string, modeAsked: ModeRequest): Pick<MapFacts, 'target' | 'modeAsked' | 'warnings' | 'notes' | 'bar' | 'bdf' | 'driver' | 'p2pmem' | 'physStart' | 'busStart' | 'offset'> {
  return {target, modeAsked, warnings: [], notes: [], bar: null, bdf: null, driver: null, p2pmem: null, physStart: null, busStart: null, offset: 0}
}

/** Warnings common to BAR and p2pmem targets: memory decoding, driver ownership. */
function functionWarnings(scanner: PciScanner, f: PciFunction, warnings: string[], backend: Backend): void {
  if (f.enabled === false) {
    const cmd = scanner.config(f.bdf)?.u32(0x04)
    const decodeOff = cmd !== undefined && (cmd & 0x2) === 0
    warnings.push(
      decodeOff
        ? `${f.bdf} is not enabled and its COMMAND register has Memory Space off: reads return all ones and writes are dropped. Bind a driver or \`echo 1 > /sys/bus/pci/devices/${f.bdf}/enable\` first.`
        : `${f.bdf} is not enabled (enable = 0): memory decoding may be off, so reads could return all ones and writes vanish. Bind a driver or \`echo 1 > /sys/bus/pci/devices/${f.bdf}/enable\` first.`,
    )
  }
  if (backend === 'bar' && f.driver) {
    warnings.push(
      `${f.bdf} is bound to ${f.driver}, which owns this memory${f.driver === 'nvme' ? ' (nvme keeps its queues in the CMB)' : ''}: writes can corrupt its state${f.p2pmem ? '; --p2pmem takes a chunk the kernel hands out safely' : ''}.`,
    )
  }
}

function busAddress(scanner: PciScanner, f: PciFunction, bar: Bar): string | null {
  const bus = scanner.config(f.bdf)?.barBusAddress(bar.index)
  return bus === undefined || bus === 0n ? null : hex64(bus)
}

function barFacts(scanner: PciScanner, f: PciFunction, b: Bar): BarFacts {
  return {
    index: b.index,
    name: b.name,
    size: b.size,
    start: b.start,
    end: b.end,
    prefetchable: b.prefetchable,
    is64: b.is64,
    busStart: busAddress(scanner, f, b),
  }
}

function resolveBar(host: Host, spec: TargetSpec, bdf: string, barText = spec.bar, fileMode?: CachingMode): ResolvedTarget {
  const scanner = new PciScanner(host, {names: false, storage: false})
  const f = scanner.get(bdf) // E_NO_DEVICE (exit 3)
  const asked = spec.mode ?? 'auto'
  let bar: Bar | undefined
  if (barText !== undefined) {
    const index = parseBarIndex(barText)
    bar = f.bars.find((b) => b.index === index)
    if (!bar) {
      throw new IopmemError(`${bdf} has no BAR${index}. ${barsList(f)}`, {
        code: 'E_NO_BAR',
        exit: Exit.NOT_FOUND,
        suggestions: [`\`iopmem list ${bdf}\` shows its BARs.`],
        details: {bdf, bar: index},
      })
    }
  } else {
    const mem = f.bars.filter((b) => b.type === 'mem' && b.index < 6 && b.size > 0)
    const usable = mem.filter((b) => !b.disabled && !b.unset)
    const pool = usable.length > 0 ? usable : mem
    bar = pool.reduce<Bar | undefined>((best, b) => (best === undefined || b.size > best.size ? b : best), undefined)
    if (!bar) {
      throw new IopmemError(`${bdf} has no memory BAR to map. ${barsList(f)}`, {
        code: 'E_NO_MEM_BAR',
        exit: Exit.NOT_FOUND,
        suggestions: ['`iopmem list` shows the functions with memory BARs.'],
        details: {bdf},
      })
    }
  }
  const name = bar.name
  if (bar.type === 'io') {
    throw new IopmemError(`${name} of ${bdf} is an I/O port BAR: it has no memory to map (I/O ports are reached with in/out instructions, not mmap). ${barsList(f)}`, {
      code: 'E_BAR_IO',
      exit: Exit.UNSUPPORTED,
      details: {bdf, bar: bar.index},
    })
  }
  if (bar.unset) {
    throw new IopmemError(`${name} of ${bdf} has no address: the kernel could not assign it one (IORESOURCE_UNSET), so there is nothing behind it to map.`, {
      code: 'E_BAR_UNASSIGNED',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Look for "BAR N: no space" / "failed to assign" in dmesg; `pci=realloc` or a larger bridge window (BIOS: "Above 4G decoding") may fix it.'],
      details: {bdf, bar: bar.index},
    })
  }
  if (bar.disabled) {
    throw new IopmemError(`${name} of ${bdf} is disabled (IORESOURCE_DISABLED): the device does not decode it, so a mapping would read all ones.`, {
      code: 'E_BAR_DISABLED',
      exit: Exit.UNSUPPORTED,
      suggestions: ['A driver enables the BAR when it binds: `iopmem bind` it to its driver (or uio_pci_generic), or check dmesg for why it was disabled.'],
      details: {bdf, bar: bar.index},
    })
  }
  if (!bar.mappable) {
    throw new IopmemError(`${name} of ${bdf} has no resource${bar.index} file: this kernel does not let user space map it.`, {
      code: 'E_BAR_NOT_MAPPABLE',
      exit: Exit.UNSUPPORTED,
      details: {bdf, bar: bar.index},
    })
  }

  let mode: CachingMode
  let why: string
  const wcFile = `resource${bar.index}_wc`
  const wantWc = asked === 'wc' || (asked === 'auto' && fileMode === 'wc')
  if (asked === 'wb' || asked === 'wt') {
    throw new IopmemError(
      `${asked.toUpperCase()} (${asked === 'wb' ? 'write-back' : 'write-through'}) cannot be had for a raw BAR from user space: sysfs maps ${name} uncached (resource${bar.index}) or write-combining (${wcFile}) only, because a cached mapping needs a kernel driver that owns the memory and keeps the CPU cache and the device coherent.`,
      {
        code: 'E_MODE_NEEDS_DRIVER',
        exit: Exit.UNSUPPORTED,
        suggestions: [
          `Bind ${bdf} to the iopmem driver (\`iopmem bind ${bdf}\`) in blockdax mode with --cache wb, \`iopmem mkfs-dax\`, and map a file on it: that gives WB.`,
          `Or map ${name} with --cache uc${bar.wc ? ' or --cache wc' : ''}.`,
        ],
        details: {bdf, bar: bar.index, mode: asked},
      },
    )
  }
  if (wantWc) {
    if (!bar.prefetchable) {
      throw new IopmemError(
        `${name} of ${bdf} is not prefetchable, so write-combining is impossible: the kernel offers no ${wcFile} for it, because WC lets the CPU merge, reorder and repeat accesses, which registers with side effects do not survive.`,
        {
          code: 'E_WC_NOT_PREFETCHABLE',
          exit: Exit.UNSUPPORTED,
          suggestions: [`Map it uncached: --cache uc (or --cache auto).`, barsList(f).replace(/\.$/, '') + ': a prefetchable BAR can be mapped WC.'],
          details: {bdf, bar: bar.index, prefetchable: false},
        },
      )
    }
    if (!bar.wc) {
      throw new IopmemError(
        `${name} of ${bdf} is prefetchable, but this kernel/architecture offers no ${wcFile}: there is no write-combining mapping for it here (the kernel creates _wc files only where the CPU can map WC, on x86 with PAT).`,
        {
          code: 'E_WC_UNAVAILABLE',
          exit: Exit.UNSUPPORTED,
          suggestions: ['Map it uncached: --cache uc (or --cache auto).', 'Check that PAT is on (`grep -w pat /proc/cpuinfo`, no `nopat` on the kernel command line).'],
          details: {bdf, bar: bar.index, prefetchable: true},
        },
      )
    }
    mode = 'wc'
    why =
      asked === 'wc'
        ? `asked; ${name} is prefetchable and ${wcFile} maps it write-combining`
        : fileMode === 'wc'
          ? `${wcFile} maps write-combining`
          : `${name} is prefetchable and the kernel offers ${wcFile}: write-combining (stores merge into bursts, reads uncached)`
  } else if (asked === 'uc' || fileMode === 'uc') {
    mode = 'uc'
    why = asked === 'uc' ? `asked; resource${bar.index} maps uncached (UC-): every access reaches the device, in order, at its own width` : `resource${bar.index} maps uncached (UC-)`
  } else if (bar.wc) {
    mode = 'wc'
    why = `${name} is prefetchable and the kernel offers ${wcFile}: write-combining (stores merge into bursts, reads uncached)`
  } else {
    mode = 'uc'
    why = bar.prefetchable
      ? `${name} is prefetchable but this kernel/architecture offers no ${wcFile}: uncached (UC-)`
      : `${name} is not prefetchable (registers): uncached (UC-), every access reaches the device in order at its own width`
  }
  const facts = baseFacts(spec.target, asked)
  functionWarnings(scanner, f, facts.warnings, 'bar')
  const bf = barFacts(scanner, f, bar)
  const file = resourceFile(f, bar.index, mode === 'wc')
  return {
    ...facts,
    backend: 'bar',
    file,
    path: host.display(file),
    bdf: f.bdf,
    driver: f.driver,
    bar: bf,
    length: bar.size,
    mode,
    why,
    physStart: bar.start,
    busStart: bf.busStart,
    strategies: STRATEGIES[mode],
    barInfo: bar,
    fn: f,
    ucFile: mode === 'wc' && asked === 'auto' && fileMode === undefined ? resourceFile(f, bar.index, false) : undefined,
  }
}

function resolveP2pmem(host: Host, spec: TargetSpec, bdf: string): ResolvedTarget {
  const scanner = new PciScanner(host, {names: false, storage: false})
  const f = scanner.get(bdf)
  const asked = spec.mode ?? 'auto'
  if (!f.p2pmem) {
    const hint = f.bars.some((b) => b.type === 'mem' && b.index < 6) ? [`Map a BAR instead: \`iopmem map ${bdf} --bar N\`.`] : []
    throw new IopmemError(
      `${describeFn(f)} has no p2pmem: no driver registered its memory as a P2PDMA provider (kernels ≥ 6.2 show p2pmem/ for providers; nvme publishes a CMB that supports both WDS and RDS).`,
      {code: 'E_NO_P2PMEM', exit: Exit.UNSUPPORTED, suggestions: ['`iopmem list` marks the functions with p2pmem.', ...hint], details: {bdf}},
    )
  }
  const pageSize = 4096
  const asked_ = parseSize(spec.p2pmem!, '--p2pmem size', {min: 1})
  const length = Math.ceil(asked_ / pageSize) * pageSize
  const pool = f.p2pmem
  if (length > pool.size) {
    throw usage(`--p2pmem ${spec.p2pmem} is larger than ${bdf}'s whole p2pmem pool (${formatBytes(pool.size)}).`, 'E_P2PMEM_SIZE')
  }
  if (length > pool.available) throw p2pmemExhausted(f, length)
  if (asked !== 'auto' && asked !== 'uc') {
    throw new IopmemError(
      `p2pmem is mapped by the kernel, which chooses the caching (uncached): ${asked} cannot be asked for a p2pmem chunk.`,
      {
        code: 'E_MODE_UNAVAILABLE',
        exit: Exit.UNSUPPORTED,
        suggestions: [
          'Drop --cache (or use --cache uc).',
          asked === 'wc' ? `For write-combining, map the BAR itself: \`iopmem map ${bdf} --bar N --cache wc\` (not safe while a driver uses it).` : `For WB, bind the device to iopmem in devdax or blockdax mode and map the DAX device or a file.`,
        ],
        details: {bdf, mode: asked, backend: 'p2pmem'},
      },
    )
  }
  const facts = baseFacts(spec.target, asked)
  functionWarnings(scanner, f, facts.warnings, 'p2pmem')
  if (length !== asked_) facts.notes.push(`${formatBytes(asked_)} rounded up to ${formatBytes(length)}: p2pmem is allocated in whole pages.`)
  if (!pool.published) facts.notes.push(`${bdf}'s p2pmem is not published: other drivers will not pick it, but it can be allocated here.`)
  facts.notes.push(
    'Buffered read(2)/write(2) with this memory as the buffer fail with EREMOTEIO (the page cache cannot copy to PCI memory); use O_DIRECT or io_uring to an NVMe queue.',
  )
  const file = path.join(f.sysfsPath, 'p2pmem', 'allocate')
  return {
    ...facts,
    backend: 'p2pmem',
    file,
    path: host.display(file),
    bdf: f.bdf,
    driver: f.driver,
    length,
    mode: 'uc',
    why: asked === 'uc' ? 'asked; the kernel maps p2pmem pages uncached' : 'the kernel maps p2pmem pages itself (uncached); user space cannot choose',
    p2pmem: {...pool},
    strategies: STRATEGIES.uc,
    fn: f,
  }
}

function p2pmemExhausted(f: PciFunction, length: number, available = f.p2pmem?.available ?? 0): IopmemError {
  return new IopmemError(
    `${f.bdf}'s p2pmem cannot give ${formatBytes(length)}: ${formatBytes(available)} (${available} bytes) of ${formatBytes(f.p2pmem?.size ?? 0)} available${available >= length ? ' (but no contiguous run that large: the pool is fragmented)' : ''}.`,
    {
      code: 'E_P2PMEM_EXHAUSTED',
      exit: Exit.KERNEL,
      suggestions: ['Ask for less, or free what holds it: `iopmem unbind` shows processes that map p2pmem/allocate; the driver keeps what it allocated itself.'],
      details: {bdf: f.bdf, asked: length, available, size: f.p2pmem?.size},
    },
  )
}

const S_IFMT = 0o170000
const S_IFREG = 0o100000
const S_IFCHR = 0o020000
const S_IFBLK = 0o060000
const S_IFDIR = 0o040000

function resolvePath(host: Host, spec: TargetSpec, file: string, native: () => MapNative): ResolvedTarget {
  const shown = host.display(file)
  const asked = spec.mode ?? 'auto'
  if (spec.bar !== undefined) throw usage(`--bar applies to a PCI address, not to a path (${spec.target}).`, 'E_FLAG_COMBO')
  if (spec.p2pmem !== undefined) throw usage(`--p2pmem applies to a PCI address, not to a path (${spec.target}).`, 'E_FLAG_COMBO')
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new IopmemError(`${shown}: ${code === 'ENOENT' ? 'no such file or device' : (error as Error).message}.`, {
      code: code === 'ENOENT' ? 'E_NO_TARGET' : code ?? 'EIO',
      exit: code === 'ENOENT' ? Exit.NOT_FOUND : code === 'EACCES' ? Exit.PERMISSION : Exit.FAILURE,
      path: shown,
    })
  }
  const type = Number(st.mode) & S_IFMT
  const base = path.basename(file)
  const daxClass = DAX_NAME_RE.test(base) ? host.sys('class/dax', base) : undefined
  const isDevdax =
    (type === S_IFCHR && host.linkName(host.sys('dev/char', `${major(st.rdev)}:${minor(st.rdev)}`, 'subsystem')) === 'dax') ||
    (daxClass !== undefined && host.exists(daxClass) && file.startsWith(host.roots.dev + '/'))
  if (isDevdax) return resolveDevdax(host, spec, file, daxClass && host.exists(daxClass) ? daxClass : charSysDir(host, st))
  if (type === S_IFDIR) throw targetKind(shown, 'a directory', 'Map a file in it, or name a device-dax node.')
  if (type === S_IFBLK) {
    throw targetKind(
      shown,
      'a block device',
      'A block device is reached through the page cache, not mapped: make a DAX filesystem on it (`iopmem mkfs-dax`) and map a file there, or use its device-dax node.',
    )
  }
  if (type === S_IFCHR) throw targetKind(shown, 'a character device that is not device-dax', 'iopmem maps PCI BARs (by BDF), p2pmem, /dev/daxX.Y and files on DAX filesystems.')
  if (type !== S_IFREG) throw targetKind(shown, 'not a regular file', 'Name a regular file on a DAX filesystem.')

  const sx = native().statx(file)
  const length = sx.size
  const facts = baseFacts(spec.target, asked)
  if (!sx.dax && !spec.allowPageCache) {
    throw new IopmemError(
      `${shown} is not a DAX file (statx STATX_ATTR_DAX is clear): its bytes live in the page cache in RAM, so a mapping would show RAM, not device memory.`,
      {
        code: 'E_NOT_DAX',
        exit: Exit.UNSUPPORTED,
        suggestions: [
          'Put it on a filesystem mounted with -o dax (dax=always) on device memory: `iopmem mkfs-dax` makes one.',
          'Or map the memory itself: a BAR (`iopmem map BDF`), p2pmem (`--p2pmem SIZE`) or /dev/daxX.Y.',
        ],
        path: shown,
      },
    )
  }
  if (length === 0) {
    throw new IopmemError(`${shown} is empty: there is nothing to map (write or fallocate it first).`, {code: 'E_EMPTY', exit: Exit.USAGE, path: shown})
  }
  if (asked !== 'auto' && asked !== 'wb') throw modeUnavailable(shown, asked, sx.dax ? 'fsdax' : 'file')
  if (!sx.dax) facts.warnings.push(`${shown} is not DAX: this maps page-cache RAM, not device memory.`)
  else facts.notes.push(`\`iopmem locate ${shown}\` gives the physical and bus addresses of its blocks.`)
  return {
    ...facts,
    backend: sx.dax ? 'fsdax' : 'file',
    file,
    path: shown,
    length,
    mode: 'wb',
    why: sx.dax
      ? `${asked === 'wb' ? 'asked; ' : ''}a DAX file maps the device memory write-back; writes are flushed to it with clwb/clflush`
      : `${asked === 'wb' ? 'asked; ' : ''}a page-cache file is ordinary write-back RAM`,
    strategies: STRATEGIES.wb,
  }
}

function resolveDevdax(host: Host, spec: TargetSpec, file: string, sysDir: string | undefined): ResolvedTarget {
  const shown = host.display(file)
  const asked = spec.mode ?? 'auto'
  const size = sysDir ? host.readInt(path.join(sysDir, 'size')) : undefined
  if (size === undefined) {
    throw new IopmemError(`${shown} looks like device-dax, but its size cannot be read from sysfs.`, {code: 'E_DAX_SIZE', exit: Exit.UNSUPPORTED, path: shown})
  }
  if (size === 0) throw new IopmemError(`${shown} has size 0: the device-dax instance has no memory assigned (\`daxctl reconfigure-device\`).`, {code: 'E_EMPTY', exit: Exit.UNSUPPORTED, path: shown})
  if (asked !== 'auto' && asked !== 'wb') throw modeUnavailable(shown, asked, 'devdax')
  const align = (sysDir && host.readInt(path.join(sysDir, 'align'))) || undefined
  const facts = baseFacts(spec.target, asked)
  const res = sysDir ? host.readTrim(path.join(sysDir, 'resource')) : undefined
  if (res && /^0x[0-9a-f]+$/i.test(res)) facts.physStart = hex64(BigInt(res))
  if (align) facts.notes.push(`device-dax maps in units of its align (${formatBytes(align)}); the whole ${formatBytes(size)} is mapped.`)
  return {
    ...facts,
    backend: 'devdax',
    file,
    path: shown,
    length: align ? Math.floor(size / align) * align : size,
    mode: 'wb',
    why: `${asked === 'wb' ? 'asked; ' : ''}device-dax maps its memory write-back; writes are flushed to it with clwb/clflush`,
    strategies: STRATEGIES.wb,
  }
}

function charSysDir(host: Host, st: fs.Stats): string | undefined {
  return host.resolveLink(host.sys('dev/char', `${major(st.rdev)}:${minor(st.rdev)}`))
}

const major = (dev: number) => ((dev >>> 8) & 0xfff) | ((Math.floor(dev / 2 ** 32) & 0xfffff000) >>> 0)
const minor = (dev: number) => (dev & 0xff) | ((dev >>> 12) & 0xfff00)

function targetKind(shown: string, what: string, hint: string): IopmemError {
  return new IopmemError(`${shown} is ${what}: iopmem cannot map it.`, {code: 'E_TARGET_KIND', exit: Exit.USAGE, suggestions: [hint], path: shown})
}

function modeUnavailable(shown: string, asked: ModeRequest, backend: Backend): IopmemError {
  const what = backend === 'devdax' ? 'device-dax' : backend === 'fsdax' ? 'a DAX file' : 'a regular file'
  return new IopmemError(
    `${what} (${shown}) is mapped write-back by the kernel; ${asked} cannot be asked from user space (the driver that created the DAX device chose its caching).`,
    {
      code: 'E_MODE_UNAVAILABLE',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Drop --cache (or use --cache wb).', 'For uc/wc, map the BAR itself: `iopmem map BDF --bar N --cache uc|wc`.'],
      details: {backend, mode: asked},
      path: shown,
    },
  )
}

// ---- x86 PAT ----------------------------------------------------------------------

/** One line of /sys/kernel/debug/x86/pat_memtype_list: [start, end) and its type. */
export interface PatEntry {
  start: bigint
  /** Exclusive. */
  end: bigint
  /** `uncached-minus`, `write-combining`, `write-back`, `uncached`, `write-through`, `write-protect`. */
  type: string
}

/** Parse pat_memtype_list (`PAT: [mem 0x…-0x…] type`). */
export function parsePatMemtypes(text: string): PatEntry[] {
  const out: PatEntry[] = []
  for (const m of text.matchAll(/\[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]\s+([a-z-]+)/gi)) {
    out.push({start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), type: m[3].toLowerCase()})
  }
  return out
}

/** The PAT entries over [start, end), or undefined when the list cannot be read (not root, no debugfs, not x86). */
export function patEntriesOver(host: Host, start: bigint, end: bigint): PatEntry[] | undefined {
  const text = host.read(host.sys('kernel/debug/x86/pat_memtype_list'))
  if (text === undefined) return undefined
  return parsePatMemtypes(text).filter((e) => e.start < end && e.end > start)
}

const PAT_MODE: Record<string, CachingMode> = {
  'uncached-minus': 'uc',
  uncached: 'uc',
  'write-combining': 'wc',
  'write-back': 'wb',
  'write-through': 'wt',
}

function barRange(r: ResolvedTarget): {start: bigint; end: bigint} | undefined {
  if (!r.bar) return undefined
  const start = BigInt(r.bar.start) + BigInt(r.offset)
  return {start, end: start + BigInt(r.length)}
}

// ---- lockdown ---------------------------------------------------------------------

/** The active kernel lockdown mode (`none`, `integrity`, `confidentiality`), undefined when unknown. */
export function lockdownMode(host: Host): string | undefined {
  const t = host.readTrim(host.sys('kernel/security/lockdown'))
  const m = t ? /\[(\w+)\]/.exec(t) : null
  return m ? m[1] : undefined
}

// ---- explaining failures ------------------------------------------------------------

interface ErrnoLike {
  code?: string
  errno?: number
  syscall?: string
  message: string
}

/**
 * Turn a failed open/mmap of a resolved target into an error that says what
 * happened and what to do: not root, lockdown, a driver's claim under strict
 * devmem, a PAT conflict, p2pmem exhausted, …. Errors that are already
 * explained (IopmemError without an errno) pass through.
 */
export function explainMapError(host: Host, r: ResolvedTarget, err: unknown): IopmemError {
  const e = err as ErrnoLike
  if (err instanceof IopmemError && err.errno === undefined) return err
  const code = e.code ?? 'EIO'
  const what = r.backend === 'bar' ? `${r.bar!.name} of ${r.bdf}` : r.backend === 'p2pmem' ? `p2pmem of ${r.bdf}` : r.path
  const make = (message: string, errCode: string, exit: ExitCode, suggestions: string[] = [], details?: Record<string, unknown>) =>
    new IopmemError(message, {code: errCode, exit, suggestions, errno: e.errno, syscall: e.syscall, path: r.path, details, cause: err})
  const kernelSaid = `${code}${e.syscall ? ` from ${e.syscall}` : ''}`

  if (code === 'EPERM' || code === 'EACCES') {
    const lock = lockdownMode(host)
    if (code === 'EPERM' && (lock === 'integrity' || lock === 'confidentiality') && (r.backend === 'bar' || r.backend === 'devdax')) {
      return make(
        `The kernel is locked down (${lock}, usually because Secure Boot is on): it refuses user-space access to PCI BARs (LOCKDOWN_PCI_ACCESS), even for root (${kernelSaid}).`,
        'E_LOCKDOWN',
        Exit.PERMISSION,
        [
          'Lockdown cannot be lowered at run time: turn off Secure Boot (or boot with lockdown=none where the kernel allows it).',
          `Or let a kernel driver own the memory: \`iopmem bind ${r.bdf ?? 'BDF'}\` (iopmem driver), then map a file on a DAX filesystem on its /dev/iopmemN.`,
        ],
        {lockdown: lock},
      )
    }
    if (!host.isRoot()) {
      return make(`Mapping ${what} needs root: ${r.path} is ${r.backend === 'bar' ? 'readable and writable by root only' : 'not accessible to this user'} (${kernelSaid}).`, 'E_NOT_ROOT', Exit.PERMISSION, [
        'Run as root (sudo).',
      ])
    }
    return make(
      `The kernel refused to map ${what} (${kernelSaid}) although this runs as root: a security module (SELinux, AppArmor), a container without CAP_SYS_ADMIN/CAP_SYS_RAWIO, or a read-only sysfs is in the way.`,
      'E_PERMISSION',
      Exit.PERMISSION,
      ['Check `dmesg` and the audit log; run on the host, not in a restricted container.'],
    )
  }

  if (code === 'EINVAL' && r.backend === 'bar') {
    const range = barRange(r)
    const entries = range ? patEntriesOver(host, range.start, range.end) : undefined
    const other = entries?.find((x) => PAT_MODE[x.type] !== r.mode)
    if (other && r.mode !== 'uc') return patConflict(r, other, e, err)
    if (r.driver) {
      return make(
        `${what} is claimed by its driver (${r.driver}), exclusively (IORESOURCE_EXCLUSIVE, as iopmem does) or under CONFIG_IO_STRICT_DEVMEM: user space may not map memory a driver has requested (${kernelSaid}).`,
        'E_DEVMEM_STRICT',
        Exit.KERNEL,
        [`Unbind the driver first (\`iopmem unbind ${r.bdf}\`), or boot with iomem=relaxed.`, ...(r.fn?.p2pmem ? [`Or take a chunk the driver shares: \`iopmem map ${r.bdf} --p2pmem SIZE\`.`] : [])],
        {driver: r.driver},
      )
    }
    return make(
      `The kernel refused to map ${what} (${kernelSaid}): the BAR is reserved exclusively (iomem_is_exclusive) or the range does not fit the resource.`,
      'E_MAP_REFUSED',
      Exit.KERNEL,
      ['`dmesg | tail` shows the kernel\'s reason; `grep -i exclusive /proc/iomem`.'],
    )
  }
  if (r.backend === 'p2pmem') {
    if (code === 'ENOMEM') {
      const f = r.fn!
      const available = host.readInt(path.join(f.sysfsPath, 'p2pmem', 'available')) ?? f.p2pmem?.available ?? 0
      const ex = p2pmemExhausted(f, r.length, available)
      return new IopmemError(ex.message, {code: ex.code, exit: ex.exit, suggestions: ex.suggestions, details: ex.details, errno: e.errno, syscall: e.syscall, path: r.path, cause: err})
    }
    if (code === 'ENODEV' || code === 'ENOENT') {
      return make(`${r.bdf} is no longer a P2PDMA provider (${kernelSaid}): its driver let go of the memory (unbound?).`, 'E_NO_P2PMEM', Exit.UNSUPPORTED, [
        '`iopmem list` shows which functions have p2pmem now.',
      ])
    }
    if (code === 'EINVAL') {
      return make(`The kernel refused the p2pmem mapping (${kernelSaid}): p2pmem/allocate must be mapped shared, at offset 0.`, 'E_MAP_REFUSED', Exit.KERNEL)
    }
  }
  if (code === 'EREMOTEIO') {
    return make(
      `${kernelSaid}: the kernel will not move these bytes with buffered I/O: the page cache cannot copy to or from PCI device memory (or the two devices cannot reach each other).`,
      'EREMOTEIO',
      Exit.KERNEL,
      ['Use O_DIRECT or io_uring to an NVMe queue; check the pair with `iopmem topo`.'],
    )
  }
  if (code === 'EINVAL' && r.backend === 'devdax') {
    return make(`The kernel refused to map ${r.path} (${kernelSaid}): device-dax mappings must be a multiple of its align and shared.`, 'E_MAP_REFUSED', Exit.KERNEL)
  }
  if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') {
    return make(`${r.path} is gone (${kernelSaid}): the device was removed or its driver unbound.`, 'E_NO_TARGET', Exit.NOT_FOUND)
  }
  if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') {
    return make(`${r.path} cannot be mapped this way (${kernelSaid}).`, 'EOPNOTSUPP', Exit.UNSUPPORTED)
  }
  if (code === 'E_SIGBUS') {
    return make(
      `Touching ${what} raised SIGBUS: the device stopped answering (surprise removal, a reset, memory decoding turned off) or the file shrank under the mapping.`,
      'E_SIGBUS',
      Exit.KERNEL,
      ['`lspci -s BDF -vv` and dmesg show whether the device is still there.'],
    )
  }
  return make(`Mapping ${what} failed: ${e.message}`, code, err instanceof IopmemError ? err.exit : Exit.KERNEL)
}

function patConflict(r: ResolvedTarget, entry: PatEntry, e: ErrnoLike | undefined, cause?: unknown): IopmemError {
  const range = `[${hex(entry.start)}-${hex(entry.end)})`
  const got = PAT_MODE[entry.type] ?? entry.type
  return new IopmemError(
    `PAT conflict: ${r.bar!.name} of ${r.bdf} is already mapped ${entry.type} ${range} (by a driver or another process), and on x86 the first mapping's memory type wins, so this ${r.mode === 'wc' ? 'write-combining' : r.mode} mapping ${e ? 'was refused' : `would silently be ${got}`}.`,
    {
      code: 'E_PAT_CONFLICT',
      exit: Exit.KERNEL,
      suggestions: [
        `Close the other mapping (\`iopmem unbind ${r.bdf}\` shows processes holding ${r.bar!.name}) or unbind the driver that ioremapped it, then map again.`,
        `Or map with --cache ${got === 'wc' || got === 'uc' ? got : 'auto'}.`,
      ],
      errno: e?.errno,
      syscall: e?.syscall,
      path: r.path,
      details: {asked: r.mode, existing: entry.type, start: hex64(entry.start), end: hex64(entry.end)},
      cause,
    },
  )
}

// ---- mapping ------------------------------------------------------------------------

/** A live mapping and what is known about it. */
export interface OpenedMapping {
  mapping: Mapping
  facts: MapFacts
  resolved: ResolvedTarget
}

/**
 * Map a resolved target. Errors are explained (explainMapError). For a BAR,
 * the PAT table is checked afterwards where it is readable: a mapping that
 * got another memory type than its file promises is unmapped and reported
 * (an explicit mode) or remapped uncached (auto). For p2pmem, the chunk's
 * physical address comes from /proc/self/pagemap (root).
 */
export function openMapping(host: Host, native: MapNative, r: ResolvedTarget, opts: {writable: boolean}): OpenedMapping {
  const doMap = (file: string, mode: CachingMode): Mapping => {
    try {
      return native.map(file, {offset: r.offset, length: r.length, mode, readOnly: !opts.writable})
    } catch (error) {
      throw explainMapError(host, {...r, mode}, error)
    }
  }
  let mapping = doMap(r.file, r.mode)
  const facts: MapFacts = {...publicFacts(r), writable: opts.writable}
  const notes = facts.notes
  if (r.backend === 'bar') {
    const range = barRange(r)!
    const entries = patEntriesOver(host, range.start, range.end)
    if (entries && entries.length > 0) {
      const types = [...new Set(entries.map((x) => x.type))]
      const wrong = entries.find((x) => PAT_MODE[x.type] !== r.mode)
      if (!wrong) {
        notes.push(`PAT confirms ${types.join(', ')} over ${hex(range.start)}-${hex(range.end)}.`)
      } else if (r.modeAsked === 'auto' && r.mode === 'wc' && r.ucFile && PAT_MODE[wrong.type] === 'uc') {
        mapping.unmap()
        mapping = doMap(r.ucFile, 'uc')
        facts.mode = 'uc'
        facts.path = host.display(r.ucFile)
        facts.strategies = STRATEGIES.uc
        facts.why = `the range is already ${wrong.type} in the PAT table (another mapping or a driver's ioremap), and the first memory type wins: uncached, through resource${r.bar!.index}`
      } else {
        mapping.unmap()
        throw patConflict({...r, mode: r.mode}, wrong, undefined)
      }
    }
  }
  if (r.backend === 'p2pmem') {
    const phys = physicalOf(host, mapping, native.constants.pageSize)
    if (phys !== undefined) {
      facts.physStart = hex64(phys)
      const f = r.fn!
      const bar = f.bars.find((b) => b.type === 'mem' && BigInt(b.start) <= phys && phys <= BigInt(b.end))
      if (bar) {
        const scanner = new PciScanner(host, {names: false, storage: false})
        facts.bar = barFacts(scanner, f, bar)
        const off = phys - BigInt(bar.start)
        if (facts.bar.busStart) facts.busStart = hex64(BigInt(facts.bar.busStart) + off)
        notes.push(`The chunk is at offset ${hex(off)} of ${bar.name}.`)
      }
    }
    const avail = host.readInt(path.join(r.fn!.sysfsPath, 'p2pmem', 'available'))
    if (facts.p2pmem && avail !== undefined) facts.p2pmem.available = avail
  }
  return {mapping, facts, resolved: r}
}

function publicFacts(r: ResolvedTarget): Omit<MapFacts, 'writable'> {
  return {
    target: r.target,
    backend: r.backend,
    path: r.path,
    bdf: r.bdf,
    driver: r.driver,
    bar: r.bar ? {...r.bar} : null,
    offset: r.offset,
    length: r.length,
    mode: r.mode,
    modeAsked: r.modeAsked,
    why: r.why,
    physStart: r.physStart,
    busStart: r.busStart,
    p2pmem: r.p2pmem ? {...r.p2pmem} : null,
    strategies: {copyIn: [...r.strategies.copyIn], copyOut: [...r.strategies.copyOut]},
    warnings: [...r.warnings],
    notes: [...r.notes],
  }
}

/** CPU physical address of byte 0 of a mapping from /proc/self/pagemap (needs CAP_SYS_ADMIN; undefined otherwise). */
export function physicalOf(host: Host, m: Mapping, pageSize: number): bigint | undefined {
  let fd: number | undefined
  try {
    fd = fs.openSync(host.proc('self/pagemap'), 'r')
    const buf = Buffer.alloc(8)
    const vpage = m.base / BigInt(pageSize)
    if (fs.readSync(fd, buf, 0, 8, vpage * 8n) !== 8) return undefined
    const entry = buf.readBigUInt64LE(0)
    const present = (entry >> 63n) & 1n
    const pfn = entry & ((1n << 55n) - 1n)
    if (!present || pfn === 0n) return undefined
    return pfn * BigInt(pageSize) + (m.base % BigInt(pageSize))
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
