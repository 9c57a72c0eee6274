/** One `iopmem bench mmio` from start to end: resolve and map the target, check the sweep, measure, unmap; and its --json result type. */
import {loadNative, releaseOnExit} from '../../native/index.js'
import type {CpuFeatures, IsaName, Native, UsedStrategy} from '../../native/types.js'
import {type MapFacts, type ModeRequest, openMapping, resolveTarget} from '../map/index.js'
import {type Host, parseSize, usage} from '../sys/index.js'
import {type BandwidthCell, benchStrategies, defaultSizes, type LatencyCell, runMmioBench} from './mmio.js'

export const ISAS = ['best', 'sse2', 'sse4.1', 'avx', 'avx2', 'avx512f'] as const
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

export interface BenchMmioRequest {
  target: string
  bar?: string
  p2pmem?: string
  mode: ModeRequest
  sizes?: string
  offset?: string
  time?: string
  strategy?: string
  readOnly: boolean
  isa: (typeof ISAS)[number]
}

/** What the command supplies: asking before writes, and progress per cell. */
export interface BenchMmioHooks {
  confirm(question: string, refusal: string): Promise<void>
  progress(): Promise<{update: (done: number, total: number, label: string) => void; stop: () => void}>
}

export async function runBenchMmio(host: Host, req: BenchMmioRequest, hooks: BenchMmioHooks): Promise<BenchMmioResult> {
  let native: Native | undefined
  const getNative = (): Native => (native ??= loadNative())
  const r = resolveTarget(host, {target: req.target, bar: req.bar, p2pmem: req.p2pmem, mode: req.mode, allowPageCache: true}, () => getNative())
  const offset = req.offset === undefined ? 0 : parseSize(req.offset, '--offset')
  if (offset >= r.length) throw usage(`--offset 0x${offset.toString(16)} is past the end of the mapping (${r.length} bytes).`, 'E_RANGE')
  const room = r.length - offset
  const sizes = req.sizes === undefined ? defaultSizes(room) : parseSizes(req.sizes, room)
  const seconds = req.time === undefined ? 0.2 : parseSeconds(req.time)
  const only = req.strategy === undefined ? undefined : parseStrategies(req.strategy)
  const strat = benchStrategies(r.mode, only)
  const readOnly = req.readOnly
  if (strat.out.length === 0 && (readOnly || strat.in.length === 0)) {
    throw usage(`--strategy ${req.strategy} leaves nothing to measure${readOnly ? ' with --read-only (reads use stream-load, exact64 or memcpy)' : ''}.`, 'E_STRATEGY')
  }
  if (!readOnly) {
    await hooks.confirm(
      `The bench overwrites ${sizes.length > 0 ? Math.max(...sizes) : 0} bytes of ${r.path} from offset 0x${offset.toString(16)}. Go on?`,
      `write to ${r.path} (bench)`,
    )
  }

  const n = getNative()
  releaseOnExit({signals: true})
  const isa = n.setIsaLimit(req.isa as IsaName | 'best')
  const {mapping, facts} = openMapping(host, n, r, {writable: !readOnly})
  const notes: string[] = []
  if (req.isa !== 'best' && isa !== req.isa) notes.push(`--isa ${req.isa} is beyond this CPU: ${isa} is used.`)
  if (r.backend === 'file') notes.push('A page-cache file: these are RAM figures, a baseline for the copy engine, not device memory.')
  let run
  const progress = await hooks.progress()
  try {
    run = runMmioBench(n, mapping, {sizes, offset, seconds, strategies: only, readOnly, onCell: progress.update})
  } finally {
    progress.stop()
    mapping.unmap()
    n.setIsaLimit('best')
  }
  const cpu = n.cpuFeatures()
  return {
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
