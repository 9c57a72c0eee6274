import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {type BandwidthCell, benchStrategies, defaultSizes, type LatencyCell, runMmioBench} from '../../lib/bench/index.js'
import {usage} from '../../lib/sys/index.js'
import {type MapFacts, MODE_REQUESTS, type ModeRequest, openMapping, resolveTarget} from '../../lib/map/index.js'
import {parseSize} from '../../lib/sys/index.js'
import {loadNative, releaseOnExit} from '../../native/index.js'
import type {CpuFeatures, IsaName, Native, UsedStrategy} from '../../native/types.js'

const ISAS = ['best', 'sse2', 'sse4.1', 'avx', 'avx2', 'avx512f'] as const
const STRATS: readonly UsedStrategy[] = ['memcpy', 'stream-store', 'stream-load', 'exact64']

/**
 * `iopmem bench mmio --json`. Bandwidth is 10^9 bytes/s of the copies alone
 * (`in`: CPU → device, copyTo; `out`: device → CPU, copyFrom), one cell per
 * size × direction × strategy; latency is ns per single volatile access,
 * with `overheadNs` the same loop on anonymous RAM (the addon's share).
 */
export interface BenchMmioResult {
  mapping: MapFacts
  /** The copy loops in use (cpuid and --isa). */
  cpu: Pick<CpuFeatures, 'isa' | 'streamStore' | 'streamLoad' | 'flush'>
  /** Minimum seconds per bandwidth cell (--time). */
  secondsPerCell: number
  /** Where the copies start in the mapping. */
  offset: number
  sizes: number[]
  /** Only reads were measured (--read-only). */
  readOnly: boolean
  bandwidth: BandwidthCell[]
  latency: LatencyCell[]
  notes: string[]
}

export default class BenchMmio extends BaseCommand {
  static summary = 'CPU ↔ device-memory bandwidth and latency of a mapping, per mode and copy strategy (gdrcopy copybw/copylat for any BAR).'
  static description = `Maps TARGET as \`iopmem map\` does (a BAR with --bar/--mode, a p2pmem chunk with --p2pmem, /dev/daxX.Y, a DAX file — or any regular file, to measure the copy engine on RAM) and measures:

  bandwidth  copies into the mapping (CPU → device) and out of it (device → CPU) with every strategy the mode allows (wc: stream-store / exact64 in, stream-load / exact64 out; uc: exact64 / stream-store in; wb: memcpy too), over a size sweep (default ×4 from 64 B to 4 MiB);
  latency    single volatile reads and writes of 8, 16, 32 and 64 bits, beside the same loop on anonymous RAM (the addon's share of each access).

GB/s are 10^9 bytes per second. The bench writes into the mapping: it asks first on a terminal and needs --yes without one; --read-only measures reads alone and changes nothing. Progress goes to stderr when a run takes over a second on a terminal.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --bar 2 --mode wc --yes', description: 'A prefetchable BAR, write-combining'},
    {command: '<%= config.bin %> <%= command.id %> 00:04.0 --bar 2 --mode uc --read-only', description: 'Reads only, uncached (nothing written)'},
    {command: '<%= config.bin %> <%= command.id %> 0000:03:00.0 --p2pmem 4M --sizes 4K,64K,1M --yes --json', description: 'A p2pmem chunk of an NVMe CMB, for a script'},
    {command: '<%= config.bin %> <%= command.id %> /dev/shm/scratch --yes --isa sse2', description: 'The copy engine on RAM, SSE2 loops only'},
  ]

  static args = {
    target: Args.string({description: 'A PCI function ([domain:]bus:device.function), /dev/daxX.Y, or a file', required: true, ignoreStdin: true}),
  }

  static flags = {
    bar: Flags.string({char: 'b', description: 'BAR to map, 0-5 (default: the largest memory BAR).'}),
    p2pmem: Flags.string({description: "Bench a chunk of this size from the function's p2pmem pool."}),
    mode: Flags.string({char: 'm', description: 'Caching mode.', options: [...MODE_REQUESTS], default: 'auto'}),
    sizes: Flags.string({description: 'Copy sizes, comma separated (units K/M/G, 0x hex); default ×4 from 64 B to 4 MiB.'}),
    offset: Flags.string({char: 'o', description: 'Offset in the mapping where copies start (default 0).'}),
    time: Flags.string({char: 't', description: 'Minimum seconds per bandwidth cell (default 0.2).'}),
    strategy: Flags.string({description: 'Only these strategies, comma separated (memcpy, stream-store, stream-load, exact64).'}),
    'read-only': Flags.boolean({description: 'Measure reads only: copy-out and read latency; nothing is written.'}),
    isa: Flags.string({description: 'Cap the vector ISA of the copy loops.', options: [...ISAS], default: 'best'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<BenchMmioResult> {
    const {args, flags} = await this.parse(BenchMmio)
    let native: Native | undefined
    const getNative = (): Native => (native ??= loadNative())
    const r = resolveTarget(
      this.host,
      {target: args.target, bar: flags.bar, p2pmem: flags.p2pmem, mode: flags.mode as ModeRequest, allowPageCache: true},
      () => getNative(),
    )
    const offset = flags.offset === undefined ? 0 : parseSize(flags.offset, '--offset')
    if (offset >= r.length) throw usage(`--offset 0x${offset.toString(16)} is past the end of the mapping (${r.length} bytes).`, 'E_RANGE')
    const room = r.length - offset
    const sizes = flags.sizes === undefined ? defaultSizes(room) : parseSizes(flags.sizes, room)
    const seconds = flags.time === undefined ? 0.2 : parseSeconds(flags.time)
    const only = flags.strategy === undefined ? undefined : parseStrategies(flags.strategy)
    const strat = benchStrategies(r.mode, only)
    const readOnly = flags['read-only'] === true
    if (strat.out.length === 0 && (readOnly || strat.in.length === 0)) {
      throw usage(`--strategy ${flags.strategy} leaves nothing to measure${readOnly ? ' with --read-only (reads use stream-load, exact64 or memcpy)' : ''}.`, 'E_STRATEGY')
    }
    if (!readOnly) {
      await this.confirmOrRefuse(
        `The bench overwrites ${sizes.length > 0 ? Math.max(...sizes) : 0} bytes of ${r.path} from offset 0x${offset.toString(16)}. Go on?`,
        flags.yes,
        `write to ${r.path} (bench)`,
      )
    }

    const n = getNative()
    releaseOnExit({signals: true})
    const isa = n.setIsaLimit(flags.isa as IsaName | 'best')
    const {mapping, facts} = openMapping(this.host, n, r, {writable: !readOnly})
    const notes: string[] = []
    if (flags.isa !== 'best' && isa !== flags.isa) notes.push(`--isa ${flags.isa} is beyond this CPU: ${isa} is used.`)
    if (r.backend === 'file') notes.push('A page-cache file: these are RAM figures, a baseline for the copy engine, not device memory.')
    let run
    const progress = await this.progress()
    try {
      run = runMmioBench(n, mapping, {sizes, offset, seconds, strategies: only, readOnly, onCell: progress.update})
    } finally {
      progress.stop()
      mapping.unmap()
      n.setIsaLimit('best')
    }
    const cpu = n.cpuFeatures()
    const result: BenchMmioResult = {
      mapping: facts,
      cpu: {isa: cpu.isa === isa ? cpu.isa : isa, streamStore: cpu.streamStore, streamLoad: cpu.streamLoad, flush: cpu.flush},
      secondsPerCell: seconds,
      offset,
      sizes,
      readOnly,
      bandwidth: run.bandwidth,
      latency: run.latency,
      notes,
    }
    if (!this.jsonEnabled()) {
      const {renderBenchMmio} = await import('../../ui/render-bench-mmio.js')
      const c = await this.colors()
      for (const w of facts.warnings) process.stderr.write((await this.colors(process.stderr)).yellow(`warning: ${w}`) + '\n')
      this.log(renderBenchMmio(result, c))
    }
    return result
  }

  /** A progress bar on stderr, started only once a run has taken a second, on a terminal, without --json. */
  private async progress(): Promise<{update: (done: number, total: number, label: string) => void; stop: () => void}> {
    if (this.jsonEnabled() || !process.stdout.isTTY || !process.stderr.isTTY || process.env.CI) return {update: () => {}, stop: () => {}}
    const {SingleBar, Presets} = (await import('cli-progress')).default
    const t0 = Date.now()
    let bar: InstanceType<typeof SingleBar> | undefined
    return {
      update(done, total, label) {
        if (!bar && Date.now() - t0 > 1000) {
          bar = new SingleBar({stream: process.stderr, format: 'bench mmio [{bar}] {value}/{total} {label}', hideCursor: true, clearOnComplete: true}, Presets.shades_classic)
          bar.start(total, done, {label})
        }
        bar?.update(done, {label})
      },
      stop() {
        bar?.stop()
      },
    }
  }
}

function parseSizes(text: string, room: number): number[] {
  const parts = text.split(',').map((p) => p.trim())
  if (parts.some((p) => p === '')) throw usage(`Invalid --sizes ${JSON.stringify(text)}: comma-separated sizes, e.g. 4K,64K,1M.`, 'E_SIZE_SYNTAX')
  return parts.map((p) => {
    const s = parseSize(p, '--sizes entry', {min: 1})
    if (s > room) throw usage(`--sizes ${p} does not fit the mapping from the offset (${room} bytes there).`, 'E_RANGE')
    return s
  })
}

function parseSeconds(text: string): number {
  const n = Number(text)
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(n > 0) || n > 60) throw usage(`Invalid --time ${JSON.stringify(text)}: seconds per cell, more than 0 and at most 60.`, 'E_TIME')
  return n
}

function parseStrategies(text: string): UsedStrategy[] {
  const out = text.split(',').map((s) => s.trim())
  for (const s of out) {
    if (!STRATS.includes(s as UsedStrategy)) throw usage(`Invalid --strategy ${JSON.stringify(s)}: one of ${STRATS.join(', ')}.`, 'E_STRATEGY')
  }
  return out as UsedStrategy[]
}
