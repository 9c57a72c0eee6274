/**
 * CPU ↔ device-memory bandwidth and latency of a mapping, in the manner of
 * gdrcopy's copybw/copylat: for each size of a sweep, copies into the
 * mapping (CPU → device) and out of it (device → CPU) with every strategy
 * the mode allows; then single accesses of each width. Each cell runs for
 * at least `seconds` (and 3 copies), timed in batches so the clock is not
 * the bottleneck. Latency includes the addon call (~80 ns): the same loop
 * on anonymous write-back RAM is reported beside it as the overhead.
 */
import type {CachingMode, Mapping, Native, UsedStrategy, Width} from '../../native/types.js'
import {usage} from '../sys/index.js'
import {STRATEGIES} from '../map/index.js'
import {formatBytes, roundRate} from '../sys/index.js'

/** One bandwidth cell. */
export interface BandwidthCell {
  /** Bytes per copy. */
  size: number
  /** `in`: CPU → device (copyTo); `out`: device → CPU (copyFrom). */
  direction: 'in' | 'out'
  /** The strategy asked (and used). */
  strategy: UsedStrategy
  /** Copies made. */
  iterations: number
  /** Seconds they took. */
  seconds: number
  /** 10^9 bytes per second. */
  gbps: number
  /** Microseconds per copy. */
  usPerCopy: number
}

/** One latency row: a single volatile access of `width` bits. */
export interface LatencyCell {
  /** Bits: 8, 16, 32, 64. */
  width: number
  op: 'read' | 'write'
  iterations: number
  /** Nanoseconds per access on the mapping (addon call included). */
  ns: number
  /** The same loop on anonymous write-back RAM: the addon's share. */
  overheadNs: number
}

export interface MmioBenchOptions {
  /** Copy sizes, each ≤ the room from `offset` to the end of the mapping. */
  sizes: number[]
  /** Where in the mapping the copies start. */
  offset: number
  /** Minimum seconds per cell. */
  seconds: number
  /** Strategies to run (default: all the mode allows). */
  strategies?: UsedStrategy[]
  /** Skip everything that writes (copy-in, write latency). */
  readOnly: boolean
  /** Called before each cell (for progress). */
  onCell?: (done: number, total: number, label: string) => void
}

export interface MmioBenchRun {
  bandwidth: BandwidthCell[]
  latency: LatencyCell[]
}

/** The default sweep: ×4 from 64 B up to min(room, 4 MiB). */
export function defaultSizes(room: number): number[] {
  const out: number[] = []
  for (let s = 64; s <= Math.min(room, 4 << 20); s *= 4) out.push(s)
  if (out.length === 0) out.push(room)
  return out
}

/** The strategies to run per direction: those the mode allows, narrowed by `only`. */
export function benchStrategies(mode: CachingMode, only?: UsedStrategy[]): {in: UsedStrategy[]; out: UsedStrategy[]} {
  const s = STRATEGIES[mode]
  if (!only || only.length === 0) return {in: [...s.copyIn], out: [...s.copyOut]}
  for (const x of only) {
    if (!s.copyIn.includes(x) && !s.copyOut.includes(x)) {
      throw usage(`--strategy ${x} is not allowed on a ${mode} mapping: in ${s.copyIn.join(', ')}; out ${s.copyOut.join(', ')}.`, 'E_STRATEGY')
    }
  }
  return {in: s.copyIn.filter((x) => only.includes(x)), out: s.copyOut.filter((x) => only.includes(x))}
}

const clock = () => Number(process.hrtime.bigint())

/** Run `fn` in doubling batches until `seconds` and 3 iterations have passed; returns [iterations, seconds]. */
function timeLoop(fn: () => void, seconds: number, minIter = 3): [number, number] {
  fn() // warm up: fault pages in, pick the loop
  let iters = 0
  let batch = 1
  const t0 = clock()
  let elapsed = 0
  while (elapsed < seconds * 1e9 || iters < minIter) {
    for (let i = 0; i < batch; i++) fn()
    iters += batch
    elapsed = clock() - t0
    if (elapsed < 10e6) batch *= 2
  }
  return [iters, elapsed / 1e9]
}

export function runMmioBench(n: Native, m: Mapping, opts: MmioBenchOptions): MmioBenchRun {
  const strat = benchStrategies(m.mode, opts.strategies)
  const dirs: Array<['in' | 'out', UsedStrategy[]]> = opts.readOnly ? [['out', strat.out]] : [['in', strat.in], ['out', strat.out]]
  const widths: Width[] = [1, 2, 4, 8]
  const total = opts.sizes.length * dirs.reduce((a, [, s]) => a + s.length, 0) + widths.length * (opts.readOnly ? 1 : 2)
  let done = 0
  const bandwidth: BandwidthCell[] = []
  const maxSize = Math.max(...opts.sizes)
  const buf = Buffer.alloc(maxSize, 0x5a)
  for (const size of opts.sizes) {
    const view = buf.subarray(0, size)
    for (const [direction, list] of dirs) {
      for (const strategy of list) {
        opts.onCell?.(done++, total, `${direction} ${strategy} ${formatBytes(size)}`)
        const fn = direction === 'in' ? () => n.copyTo(m, opts.offset, view, strategy) : () => n.copyFrom(m, opts.offset, view, strategy)
        const [iterations, seconds] = timeLoop(fn, opts.seconds)
        const gbps = (size * iterations) / seconds / 1e9
        bandwidth.push({size, direction, strategy, iterations, seconds: round(seconds, 4), gbps: roundRate(gbps), usPerCopy: round((seconds / iterations) * 1e6, 4)})
      }
    }
  }

  // Latency: one access at a time, on the mapping and on anonymous RAM.
  const ram = n.mapAnonymous(4096)
  // Latency at the first 8-byte aligned offset from `offset` (all widths aligned there).
  const up = Math.ceil(opts.offset / 8) * 8
  const latOff = up + 8 <= m.length ? up : 0
  const latency: LatencyCell[] = []
  try {
    const ops: Array<'read' | 'write'> = opts.readOnly ? ['read'] : ['read', 'write']
    for (const op of ops) {
      for (const w of widths) {
        opts.onCell?.(done++, total, `${op} ${w * 8}-bit`)
        const access = accessor(n, op, w)
        const perNs = (target: Mapping, off: number) => {
          const [iters, secs] = timeLoop(() => access(target, off), Math.min(opts.seconds, 0.2), 1000)
          return [iters, (secs * 1e9) / iters] as const
        }
        const [iterations, ns] = perNs(m, latOff)
        const [, overheadNs] = perNs(ram, 0)
        latency.push({width: w * 8, op, iterations, ns: Math.round(ns * 10) / 10, overheadNs: Math.round(overheadNs * 10) / 10})
      }
    }
  } finally {
    ram.unmap()
  }
  opts.onCell?.(done, total, 'done')
  return {bandwidth, latency}
}

/** A one-access function for the width (a loop of 1 so the timing sees one call per access). */
function accessor(n: Native, op: 'read' | 'write', w: Width): (m: Mapping, off: number) => void {
  if (op === 'read') {
    switch (w) {
      case 1:
        return (m, o) => void n.read8(m, o)
      case 2:
        return (m, o) => void n.read16(m, o)
      case 4:
        return (m, o) => void n.read32(m, o)
      case 8:
        return (m, o) => void n.read64(m, o)
    }
  }
  switch (w) {
    case 1:
      return (m, o) => n.write8(m, o, 0xa5)
    case 2:
      return (m, o) => n.write16(m, o, 0xa5a5)
    case 4:
      return (m, o) => n.write32(m, o, 0xa5a5a5a5)
    case 8:
      return (m, o) => n.write64(m, o, 0xa5a5a5a5a5a5a5a5n)
  }
}

function round(x: number, sig: number): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(sig))
}
