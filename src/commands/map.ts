import {Args, Flags} from '@oclif/core'
import * as fs from 'node:fs'

import {BaseCommand} from '../base-command.js'
import {Exit, IopmemError, usage} from '../lib/sys/index.js'
import {holdFor} from '../lib/map/index.js'
import {explainMapError, type MapFacts, MODE_REQUESTS, type ModeRequest, openMapping, resolveTarget, type ResolvedTarget} from '../lib/map/index.js'
import {
  checkRange,
  checkStrategy,
  copyInOp,
  copyOutOp,
  dumpOp,
  fillOp,
  parseCount,
  parseOffset,
  parsePattern,
  parseValues,
  parseWidth,
  type Pattern,
  readOp,
  verifyOp,
  writeOp,
} from '../lib/map/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {loadNative, releaseOnExit} from '../native/index.js'
import type {CopyStrategy, FlushInstruction, Mapping, Native, UsedStrategy} from '../native/types.js'

const STRATEGY_FLAGS: readonly CopyStrategy[] = ['auto', 'memcpy', 'stream-store', 'stream-load', 'exact64']

/**
 * What an operation did (`op` in the --json result). Offsets and sizes are
 * bytes; widths are bits; values are 0x hex strings zero-padded to the width
 * (exact for 64-bit); `gbps` is 10^9 bytes/s of the copies alone; `strategy`
 * is the copy loop used; `flush` the cache-line instruction that pushed WB
 * writes to the device (null when none was needed).
 */
export type MapOpResult =
  | {kind: 'read'; offset: number; width: number; count: number; values: string[]}
  | {kind: 'write'; offset: number; width: number; count: number; values: string[]; readback: string[] | null; flush: FlushInstruction | null}
  | {kind: 'dump'; offset: number; size: number; width: number; hex: string}
  | {kind: 'fill'; offset: number; size: number; pattern: string; strategy: UsedStrategy; seconds: number; gbps: number; flush: FlushInstruction | null}
  | {kind: 'verify'; offset: number; size: number; pattern: string; strategy: UsedStrategy; seconds: number; gbps: number; mismatches: 0}
  | {kind: 'copy-in'; file: string; offset: number; size: number; strategy: UsedStrategy; seconds: number; gbps: number; flush: FlushInstruction | null}
  | {kind: 'copy-out'; file: string; offset: number; size: number; strategy: UsedStrategy; seconds: number; gbps: number}
  | {kind: 'interactive'; steps: number}

/**
 * `iopmem map --json`:
 * `{mapping: MapFacts, op: MapOpResult | null, held: seconds | null}`.
 * `op` is null when no operation was given (the facts alone); `held` is
 * how long --hold kept the mapping. A verify mismatch is not a result but
 * the error envelope (code E_VERIFY_MISMATCH, exit 8, details.first lists
 * up to 16 differing bytes).
 */
export interface MapResult {
  mapping: MapFacts
  op: MapOpResult | null
  held: number | null
}

/** The operation asked for, parsed and range-checked before anything is mapped. */
type Plan =
  | {kind: 'none'}
  | {kind: 'read'; offset: number; width: 1 | 2 | 4 | 8; count: number}
  | {kind: 'write'; offset: number; width: 1 | 2 | 4 | 8; values: bigint[]; readback: boolean}
  | {kind: 'dump'; offset: number; size: number; width: 1 | 2 | 4 | 8}
  | {kind: 'fill' | 'verify'; offset: number; size: number; pattern: Pattern; strategy: CopyStrategy}
  | {kind: 'copy-in'; file: string; offset: number; size: number; strategy: CopyStrategy}
  | {kind: 'copy-out'; file: string; offset: number; size: number; strategy: CopyStrategy}

const OPERATIONS = ['read', 'write', 'dump', 'fill', 'verify', 'copy-in', 'copy-out'] as const

export default class MapCmd extends BaseCommand {
  static summary = 'Map device memory (a PCI BAR, a p2pmem chunk, device-dax or a DAX file) and read, write, dump, fill, verify or copy it.'
  static description = `TARGET is a PCI function (BDF) — its largest memory BAR, or --bar N; with --p2pmem SIZE a fresh chunk of its P2PDMA pool — or a path: /dev/daxX.Y, or a file on a DAX filesystem. A sysfs resourceN[_wc] path is taken as the BDF and BAR it names.

Caching (--mode): a BAR maps uc (resourceN) or wc (resourceN_wc, prefetchable BARs only); p2pmem is uc, DAX is wb, both chosen by the kernel. auto (the default) takes the best the backend gives; the mode obtained and why are always reported, and a mode the backend cannot give is an error that says what would give it. Nothing falls back silently: where the x86 PAT table is readable (root, debugfs), a mapping that got another memory type than asked is refused (auto: remapped uc and said so).

Operations (one at a time; --hold may follow one):
  --read OFF [--width 8|16|32|64] [--count N]    one volatile access of exactly that width per value
  --write OFF --value V[,V…] [--width W] [--readback]
  --dump OFF [--size N] [--width W]              hexdump (exact-width reads, default 32-bit, 256 bytes)
  --fill PATTERN [--offset OFF] [--size N]       bulk copy in (stream-store for wc, exact64 for uc, memcpy+flush for wb)
  --verify PATTERN [--offset OFF] [--size N]     bulk copy out and compare; exit 8 on a mismatch
  --copy-in FILE [--offset OFF] [--size N]       FILE's bytes into the mapping
  --copy-out FILE [--offset OFF] [--size N]      the mapping's bytes into FILE
  --hold SECONDS                                 keep the mapping alive (0: until Ctrl-C or SIGTERM)
Patterns: zero, ones, 0xNN, u8:V, u16:V, u32:V, u64:V (little-endian at every aligned offset), bytes:HEX, inc, addr (each 8-byte word holds its offset), random[:SEED]. Offsets and sizes take 0x hex and K/M/G units.

With no operation: on a terminal, an interactive session (peek, poke, dump, fill); otherwise the mapping's facts (path, backend, mode and why, length, CPU physical and PCI bus address). Writes change device memory in place: they ask first on a terminal and need --yes without one. Mappings are released on exit, Ctrl-C and SIGTERM (a p2pmem chunk goes back to the pool).

Needs root for sysfs resource files and p2pmem; failures say why in words (not root, Secure Boot lockdown, a driver's claim under strict devmem, a PAT conflict, a disabled BAR, p2pmem exhausted).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> 0000:03:00.0 --bar 0 --read 0x1c --width 32', description: 'Read a 32-bit register (NVMe CSTS), as pcimem would'},
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --bar 2 --mode wc --fill u32:0xdeadbeef --size 1M --yes', description: 'Fill 1 MiB of a prefetchable BAR through a write-combining mapping'},
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --bar 2 --verify u32:0xdeadbeef --size 1M', description: 'Check it (exit 8 on a mismatch)'},
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --dump 0x1000 --size 128 --width 8', description: 'Hexdump 128 bytes with byte reads'},
    {command: '<%= config.bin %> <%= command.id %> 0000:03:00.0 --p2pmem 2M --hold 60', description: "Hold a 2 MiB chunk of an NVMe CMB's p2pmem for a minute"},
    {command: '<%= config.bin %> <%= command.id %> /dev/dax0.0 --copy-in image.bin --offset 2M --yes', description: 'Copy a file into device-dax (write-back, flushed)'},
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --json', description: 'The mapping facts (mode obtained, why, physical address) for a script'},
  ]

  static args = {
    target: Args.string({description: 'A PCI function ([domain:]bus:device.function), /dev/daxX.Y, or a file on a DAX filesystem', required: true, ignoreStdin: true}),
  }

  static flags = {
    bar: Flags.string({char: 'b', description: 'BAR to map, 0-5 (default: the largest memory BAR).', helpGroup: 'TARGET'}),
    p2pmem: Flags.string({description: "Map a chunk of this size from the function's p2pmem pool (page-granular).", helpGroup: 'TARGET'}),
    mode: Flags.string({char: 'm', description: 'Caching mode.', options: [...MODE_REQUESTS], default: 'auto', helpGroup: 'TARGET'}),
    strategy: Flags.string({description: 'Copy loop for --fill/--verify/--copy-in/--copy-out (auto: by mode).', options: [...STRATEGY_FLAGS], helpGroup: 'OPERATION'}),
    read: Flags.string({char: 'r', description: 'Read value(s) at this offset.', helpGroup: 'OPERATION'}),
    write: Flags.string({char: 'w', description: 'Write --value(s) at this offset.', helpGroup: 'OPERATION'}),
    value: Flags.string({description: 'Value(s) for --write: decimal or 0x hex, comma separated.', helpGroup: 'OPERATION'}),
    width: Flags.string({description: 'Access width in bits for --read/--write/--dump: 8, 16, 32, 64 (default 32).', helpGroup: 'OPERATION'}),
    count: Flags.string({char: 'n', description: 'Values to --read (default 1).', helpGroup: 'OPERATION'}),
    readback: Flags.boolean({description: 'After --write, read the values back.', helpGroup: 'OPERATION'}),
    dump: Flags.string({char: 'd', description: 'Hexdump from this offset.', helpGroup: 'OPERATION'}),
    size: Flags.string({char: 's', description: 'Bytes for --dump (default 256), --fill/--verify/--copy-out (default: to the end), --copy-in (default: the file).', helpGroup: 'OPERATION'}),
    offset: Flags.string({char: 'o', description: 'Start offset for --fill/--verify/--copy-in/--copy-out (default 0).', helpGroup: 'OPERATION'}),
    fill: Flags.string({description: 'Fill with a PATTERN.', helpGroup: 'OPERATION'}),
    verify: Flags.string({description: 'Compare with a PATTERN (exit 8 on a mismatch).', helpGroup: 'OPERATION'}),
    'copy-in': Flags.string({description: "Copy FILE's bytes into the mapping.", helpGroup: 'OPERATION'}),
    'copy-out': Flags.string({description: "Copy the mapping's bytes into FILE (created or truncated).", helpGroup: 'OPERATION'}),
    hold: Flags.string({description: 'Keep the mapping for SECONDS (after the operation, if any); 0 holds until Ctrl-C or SIGTERM.', helpGroup: 'OPERATION'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<MapResult> {
    const {args, flags} = await this.parse(MapCmd)
    // The addon is loaded only here, when something is mapped: `list` and `--help` work without it.
    let native: Native | undefined
    const getNative = (): Native => (native ??= loadNative())
    const resolved = resolveTarget(
      this.host,
      {target: args.target, bar: flags.bar, p2pmem: flags.p2pmem, mode: flags.mode as ModeRequest},
      () => getNative(),
    )
    const plan = this.plan(flags, resolved)
    const hold = flags.hold === undefined ? undefined : parseHold(flags.hold)
    const session = plan.kind === 'none' && hold === undefined && this.interactive()
    const destructive = plan.kind === 'write' || plan.kind === 'fill' || plan.kind === 'copy-in'
    if (destructive) {
      const bytes = plan.kind === 'write' ? plan.values.length * plan.width : plan.size
      await this.confirmOrRefuse(
        `Write ${formatBytes(bytes)} to ${describe(resolved)} at 0x${plan.offset.toString(16)}? Device memory is changed in place.`,
        flags.yes,
        `write to ${describe(resolved)}`,
      )
    }

    const n = getNative()
    releaseOnExit({signals: true})
    const opened = openMapping(this.host, n, resolved, {writable: destructive || session})
    const {mapping, facts} = opened
    const flush = resolved.backend === 'devdax' || resolved.backend === 'fsdax'
    let op: MapOpResult | null = null
    let held: number | null = null
    try {
      op = session ? await this.session(n, opened.mapping, facts) : runPlan(n, mapping, plan, flush)
      if (!this.jsonEnabled()) {
        const {mappingLine, renderFacts, renderOp} = await import('../ui/render-map.js')
        const c = await this.colors()
        for (const w of facts.warnings) process.stderr.write((await this.colors(process.stderr)).yellow(`warning: ${w}`) + '\n')
        if (op === null) this.log(renderFacts(facts, c))
        else {
          if (!session) this.note(mappingLine(facts))
          this.log(renderOp(op, c))
        }
      }
      if (hold !== undefined) {
        this.note(hold === 0 ? 'holding the mapping until Ctrl-C or SIGTERM…' : `holding the mapping for ${hold} s (Ctrl-C releases it)…`)
        const t0 = Date.now()
        await holdFor(hold, mapping)
        held = (Date.now() - t0) / 1000
      }
    } catch (error) {
      if (error instanceof IopmemError) throw error
      const e = error as {code?: string}
      if (e.code === 'E_SIGBUS') throw explainMapError(this.host, resolved, error)
      throw error
    } finally {
      mapping.unmap()
    }
    return {mapping: facts, op, held}
  }

  /** Parse and range-check the operation flags against the resolved target. */
  private plan(flags: Record<string, unknown>, r: ResolvedTarget): Plan {
    const f = flags as {[k: string]: string | boolean | undefined}
    const given = OPERATIONS.filter((o) => f[o] !== undefined)
    if (given.length > 1) {
      throw usage(`Give one operation at a time: ${given.map((g) => `--${g}`).join(' and ')} were both given.`, 'E_OPERATIONS', [
        '--hold may follow any one of them.',
      ])
    }
    const kind = (given.length === 0 ? 'none' : given[0]) as (typeof OPERATIONS)[number] | 'none'
    const allowed: Record<string, readonly string[]> = {
      value: ['write'],
      readback: ['write'],
      width: ['read', 'write', 'dump'],
      count: ['read'],
      size: ['dump', 'fill', 'verify', 'copy-in', 'copy-out'],
      offset: ['fill', 'verify', 'copy-in', 'copy-out'],
      strategy: ['fill', 'verify', 'copy-in', 'copy-out'],
    }
    for (const [flag, ops] of Object.entries(allowed)) {
      if (f[flag] !== undefined && f[flag] !== false && !ops.includes(kind)) {
        throw usage(
          `--${flag} goes with ${ops.map((o) => `--${o}`).join(', ')}${kind === 'none' ? ', and no operation was given' : `, not --${kind}`}.`,
          'E_FLAG_COMBO',
        )
      }
    }
    const len = r.length
    const str = (k: string) => f[k] as string
    const strategy = (f.strategy as CopyStrategy | undefined) ?? 'auto'
    switch (kind) {
      case 'none':
        return {kind}
      case 'read': {
        const width = parseWidth(f.width as string | undefined)
        const offset = parseOffset(str('read'), '--read offset')
        const count = f.count === undefined ? 1 : parseCount(str('count'))
        checkRange(len, offset, count * width, width, '--read')
        return {kind, offset, width, count}
      }
      case 'write': {
        const width = parseWidth(f.width as string | undefined)
        const offset = parseOffset(str('write'), '--write offset')
        if (f.value === undefined) throw usage('--write needs --value V[,V…].', 'E_FLAG_COMBO')
        const values = parseValues(str('value'), width)
        checkRange(len, offset, values.length * width, width, '--write')
        return {kind, offset, width, values, readback: f.readback === true}
      }
      case 'dump': {
        const width = parseWidth(f.width as string | undefined)
        const offset = parseOffset(str('dump'), '--dump offset')
        let size: number
        if (f.size === undefined) {
          if (offset >= len) checkRange(len, offset, width, width, '--dump')
          size = Math.min(256, len - offset)
          size -= size % width
        } else size = parseOffset(str('size'), '--size')
        if (size === 0) throw usage('--size must be at least one access.', 'E_SIZE_RANGE')
        checkRange(len, offset, size, width, '--dump')
        return {kind, offset, size, width}
      }
      case 'fill':
      case 'verify': {
        const pattern = parsePattern(str(kind))
        const offset = f.offset === undefined ? 0 : parseOffset(str('offset'), '--offset')
        checkRange(len, offset, 1, 1, `--${kind}`)
        const size = f.size === undefined ? len - offset : parseOffset(str('size'), '--size')
        if (size === 0) throw usage('--size must be at least 1 byte.', 'E_SIZE_RANGE')
        checkRange(len, offset, size, 1, `--${kind}`)
        checkStrategy(r.mode, strategy, kind === 'fill' ? 'in' : 'out')
        return {kind, offset, size, pattern, strategy}
      }
      case 'copy-in': {
        const file = str('copy-in')
        let st: fs.Stats
        try {
          st = fs.statSync(file)
        } catch {
          throw new IopmemError(`--copy-in ${file}: no such file.`, {code: 'E_NO_FILE', exit: Exit.NOT_FOUND, path: file})
        }
        if (!st.isFile()) throw usage(`--copy-in ${file} is not a regular file.`, 'E_NO_FILE')
        const offset = f.offset === undefined ? 0 : parseOffset(str('offset'), '--offset')
        const size = f.size === undefined ? st.size : parseOffset(str('size'), '--size')
        if (size > st.size) throw usage(`--size ${formatBytes(size)} is more than ${file} holds (${st.size} bytes).`, 'E_SIZE_RANGE')
        if (size === 0) throw usage(`--copy-in ${file} is empty: nothing to copy.`, 'E_SIZE_RANGE')
        checkRange(len, offset, size, 1, '--copy-in')
        checkStrategy(r.mode, strategy, 'in')
        return {kind, file, offset, size, strategy}
      }
      case 'copy-out': {
        const file = str('copy-out')
        if (file === '') throw usage('--copy-out needs a file name.', 'E_NO_FILE')
        if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw usage(`--copy-out ${file} is a directory.`, 'E_NO_FILE')
        const offset = f.offset === undefined ? 0 : parseOffset(str('offset'), '--offset')
        checkRange(len, offset, 1, 1, '--copy-out')
        const size = f.size === undefined ? len - offset : parseOffset(str('size'), '--size')
        if (size === 0) throw usage('--size must be at least 1 byte.', 'E_SIZE_RANGE')
        checkRange(len, offset, size, 1, '--copy-out')
        checkStrategy(r.mode, strategy, 'out')
        return {kind, file, offset, size, strategy}
      }
    }
  }

  private async session(n: Native, mapping: Mapping, facts: MapFacts): Promise<MapOpResult> {
    const {mapSession} = await import('../ui/map-session.js')
    const prompts = await import('@inquirer/prompts')
    const c = await this.colors()
    const steps = await mapSession({native: n, mapping, facts, prompts, log: (s) => this.log(s), colors: c})
    return {kind: 'interactive', steps}
  }
}

function describe(r: ResolvedTarget): string {
  if (r.backend === 'bar') return `${r.bar!.name} of ${r.bdf}`
  if (r.backend === 'p2pmem') return `a p2pmem chunk of ${r.bdf}`
  return r.path
}

function parseHold(text: string): number {
  const t = text.trim()
  const n = Number(t)
  if (!/^\d+(\.\d+)?$/.test(t) || !Number.isFinite(n) || n > 7 * 24 * 3600) {
    throw usage(`Invalid --hold ${JSON.stringify(text)}: seconds, e.g. 20 or 0.5 (0 holds until Ctrl-C or SIGTERM).`, 'E_HOLD')
  }
  return n
}

function runPlan(n: Native, m: Mapping, p: Plan, flush: boolean): MapOpResult | null {
  switch (p.kind) {
    case 'none':
      return null
    case 'read':
      return {kind: 'read', offset: p.offset, width: p.width * 8, count: p.count, values: readOp(n, m, p.offset, p.width, p.count)}
    case 'write': {
      writeOp(n, m, p.offset, p.width, p.values)
      const f = flush ? n.flush(m, p.offset, p.values.length * p.width) : null
      return {
        kind: 'write',
        offset: p.offset,
        width: p.width * 8,
        count: p.values.length,
        values: p.values.map((v) => '0x' + v.toString(16).padStart(p.width * 2, '0')),
        readback: p.readback ? readOp(n, m, p.offset, p.width, p.values.length) : null,
        flush: f,
      }
    }
    case 'dump':
      return {kind: 'dump', offset: p.offset, size: p.size, width: p.width * 8, hex: dumpOp(n, m, p.offset, p.size, p.width).toString('hex')}
    case 'fill': {
      const s = fillOp(n, m, p.offset, p.size, p.pattern, p.strategy, flush)
      return {kind: 'fill', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...s}
    }
    case 'verify': {
      const s = verifyOp(n, m, p.offset, p.size, p.pattern, p.strategy)
      return {kind: 'verify', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...s}
    }
    case 'copy-in': {
      const s = copyInOp(n, m, p.file, p.offset, p.size, p.strategy, flush)
      return {kind: 'copy-in', file: p.file, offset: p.offset, size: p.size, ...s}
    }
    case 'copy-out': {
      const s = copyOutOp(n, m, p.file, p.offset, p.size, p.strategy)
      return {kind: 'copy-out', file: p.file, offset: p.offset, size: p.size, ...s}
    }
  }
}
