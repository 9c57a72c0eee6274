/** One `iopmem bench p2p` from start to end: plan, map the p2p buffer, refuse what the kernel refuses, run each mode (and the sweep), unmap. */
import * as fs from 'node:fs'

import {loadNative} from '../../native/index.js'
import type {Mapping, Native} from '../../native/types.js'
import type {PairAnalysis} from '../pci/index.js'
import {checkOutputPath, Exit, formatBytes, type Host, IopmemError, usage} from '../sys/index.js'
import {type Endpoint, idleDram, kernelProbe, mapVia, type ModeResult, type P2pInput, parseSweep, planP2p, readAvailable, refuseSignedDestination, runMode, type ViaInfo} from './p2p.js'

/** `iopmem bench p2p --json`. */
export interface BenchP2pResult {
  src: Endpoint
  dst: Endpoint
  via?: ViaInfo
  size: number
  bs: number
  qd: number
  jobs: number
  /** One line per default chosen. */
  choices: string[]
  /** p2pmem pool `available` (bytes) before mapping the chunk, while mapped, after unmapping. */
  p2pmem?: {bdf: string; chunk: number; availableBefore?: number; availableDuring?: number; availableAfter?: number}
  /** The DRAM probe alone (GB/s, read+write counted). */
  dramIdleGbps?: number
  results: ModeResult[]
  sweep?: Array<{mode: 'bounce' | 'p2p'; bs: number; gbps: number; iops: number; p99Us: number}>
  notes: string[]
  interrupted: boolean
}

export interface BenchP2pRequest extends P2pInput {
  /** --sweep: a comma list, "default", or undefined. */
  sweep?: string
  /** --plot FILE (with --sweep). */
  plot?: string
  /** Run the DRAM probe beside the copies. */
  probe: boolean
}

/** What the command supplies: asking, progress on a terminal, the chart's text. */
export interface BenchP2pHooks {
  confirm(question: string, refusal: string): Promise<void>
  /** Called every 200 ms while a copy runs (absent: no progress shown). */
  progress?: (label: string, done: number, total: number) => void
  /** After the last copy, when progress was shown. */
  progressEnd?: () => void
  /** The sweep chart (SVG) of a result, for --plot. */
  chart(result: BenchP2pResult): Promise<string>
}

type Plan = ReturnType<typeof planP2p>

export async function runBenchP2p(host: Host, req: BenchP2pRequest, hooks: BenchP2pHooks): Promise<BenchP2pResult> {
  if (req.plot !== undefined && req.sweep === undefined) throw usage('--plot needs --sweep.', 'E_USAGE')
  if (req.plot !== undefined && !/\.(svg|html?)$/i.test(req.plot)) throw usage(`--plot ${req.plot}: the file name must end in .svg or .html.`, 'E_USAGE')
  if (req.plot !== undefined) checkOutputPath(req.plot, '--plot') // before the run, not after it
  const sweepSizes = parseSweep(req.sweep === 'default' ? true : req.sweep)
  let native: Native | undefined
  const getNative = (): Native => (native ??= loadNative())
  const plan = planP2p(host, getNative, req)
  if (!req.force) await refuseSignedDestination(host, plan.dst)
  const n = getNative()
  const need = Math.max(plan.bs, ...(sweepSizes ?? [])) * plan.qd * plan.jobs
  let buffer: Mapping | undefined
  const p2pmem: BenchP2pResult['p2pmem'] = plan.via?.kind === 'p2pmem' ? {bdf: plan.via.target, chunk: 0} : undefined
  // Only p2pmem pages meet the kernel's P2PDMA check; a DAX file's pairs are notes (daxViaNotes).
  const refused = plan.via?.kind === 'p2pmem' ? plan.via.pairs.filter((p) => p.p2p === 'no') : []
  try {
    if (plan.via) {
      if (p2pmem) p2pmem.availableBefore = readAvailable(host, plan.via)
      buffer = mapVia(n, plan.via, need)
      if (p2pmem) {
        p2pmem.chunk = buffer.length
        p2pmem.availableDuring = readAvailable(host, plan.via)
      }
    }
    if (refused.length > 0) await refusePair(n, buffer!, plan.via!, refused, plan)
    await hooks.confirm(`bench p2p overwrites ${formatBytes(plan.size * plan.modes.length)} of ${plan.dst.path} from offset ${plan.dstOffset}. Go on?`, `overwrite ${plan.dst.path}`)
    return await measure(n, plan, buffer, p2pmem, sweepSizes, req, hooks)
  } finally {
    buffer?.unmap()
    if (p2pmem && plan.via) p2pmem.availableAfter = readAvailable(host, plan.via)
  }
}

/** The copies of every mode, then the sweep; Ctrl-C stops them between blocks (interrupted: true). */
async function measure(
  n: Native,
  plan: Plan,
  buffer: Mapping | undefined,
  p2pmem: BenchP2pResult['p2pmem'],
  sweepSizes: number[] | undefined,
  req: BenchP2pRequest,
  hooks: BenchP2pHooks,
): Promise<BenchP2pResult> {
  const {probe, plot} = req
  // Its counters are running totals over the runs: `base` is where the current one started.
  const control = n.ioControl()
  let base = 0
  let interrupted = false
  const onSigint = () => {
    interrupted = true
    control.stop()
  }
  process.on('SIGINT', onSigint)
  let label = ''
  const total = plan.size
  const progress = hooks.progress
  const timer = progress ? setInterval(() => progress(label, control.bytes - base, total), 200) : undefined
  const notes = [...plan.notes]
  const results: ModeResult[] = []
  let sweep: BenchP2pResult['sweep']
  let dramIdleGbps: number | undefined
  try {
    if (probe) dramIdleGbps = await idleDram(n)
    for (const [i, mode] of plan.modes.entries()) {
      if (interrupted) break
      label = mode
      base = control.bytes
      const dstOffset = plan.dstOffset + i * plan.size
      results.push(await runMode(n, plan, mode, {buffer: mode === 'p2p' ? buffer : undefined, dstOffset, probe, idleGbps: dramIdleGbps, control, verify: plan.verify}))
    }
    if (sweepSizes && !interrupted) {
      sweep = []
      for (const bs of sweepSizes)
        for (const [i, mode] of plan.modes.entries()) {
          if (interrupted) break
          if (plan.size % bs !== 0 && plan.size < bs) continue
          label = `sweep ${mode} ${formatBytes(bs)}`
          base = control.bytes
          const r = await runMode(n, plan, mode, {buffer: mode === 'p2p' ? buffer : undefined, dstOffset: plan.dstOffset + i * plan.size, bs, probe: false, control, verify: false})
          sweep.push({mode, bs, gbps: r.gbps, iops: r.iops, p99Us: r.latency.p99Us})
        }
    }
  } finally {
    if (timer) {
      clearInterval(timer)
      hooks.progressEnd?.()
    }
    process.off('SIGINT', onSigint)
  }
  for (const r of results) if (r.fallbackReason) notes.push(`${r.mode}: io_uring unavailable (${r.fallbackReason}); pread/pwrite used, one I/O at a time per job.`)
  if (plan.engine === 'psync' && results.length > 0)
    notes.push(`--engine psync: pread/pwrite used, one I/O at a time per job${plan.qd > 1 ? ` (--qd ${plan.qd} does not apply)` : ''}.`)
  const result: BenchP2pResult = {
    src: plan.src,
    dst: plan.dst,
    via: plan.via,
    size: plan.size,
    bs: plan.bs,
    qd: plan.qd,
    jobs: plan.jobs,
    choices: plan.choices,
    p2pmem,
    dramIdleGbps,
    results,
    sweep,
    notes,
    interrupted,
  }
  if (plot && sweep) {
    const svg = await hooks.chart(result)
    fs.writeFileSync(plot, /\.html?$/i.test(plot) ? `<!doctype html><meta charset="utf-8"><title>iopmem bench p2p</title>\n${svg}` : svg)
    notes.push(`chart written to ${plot}`)
  }
  return result
}

/** topo says the kernel refuses: show it does (EREMOTEIO), then refuse. */
async function refusePair(n: Native, buffer: Mapping, via: ViaInfo, refused: PairAnalysis[], plan: Plan): Promise<never> {
  const bad = refused[0]
  const ep = [plan.src, plan.dst].find((e) => e.bdf === bad.client)!
  const probe = await kernelProbe(n, buffer, ep.path, ep.align)
  const kernel =
    'errno' in probe
      ? probe.errno === 'EREMOTEIO'
        ? `The kernel agrees: an O_DIRECT read of ${ep.path} into ${via.target}'s p2pmem failed with EREMOTEIO (Remote I/O error) — pci_p2pdma_map_type() found no P2P path, so the block layer refused the p2pmem pages.`
        : `The kernel's answer to an O_DIRECT read of ${ep.path} into the p2pmem: ${probe.errno} (${probe.message}).`
      : `Yet the kernel accepted an O_DIRECT read of ${ep.path} into the p2pmem: topo's verdict may be stale (ACS, whitelist).`
  throw new IopmemError(
    `P2P DMA between ${bad.provider} (--via) and ${bad.client} (${ep.path}) is refused: topo says ${(bad.reasons[0] ?? 'no').replace(/\.+$/, '')}. ${kernel}`,
    {
      code: 'E_P2P_REFUSED',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Use --buffer bounce for this pair, or a --via provider under the same PCIe switch (see `iopmem topo`).'],
      details: {pair: bad, kernel: probe},
    },
  )
}

/** A failed --verify as the error to exit with (the result in its details), or undefined when every copy matched. */
export function verifyFailure(result: BenchP2pResult): IopmemError | undefined {
  const bad = result.results.find((r) => r.verify && !r.verify.ok)
  if (!bad) return undefined
  const v = bad.verify!
  return new IopmemError(
    v.errno
      ? `--verify could not read back the ${bad.mode} copy (${v.syscall}: errno ${v.errno}).`
      : `--verify: the ${bad.mode} copy differs from the source at byte ${v.mismatchAt} (hash ${v.dstHash} vs ${v.srcHash}).`,
    {code: 'E_MISMATCH', exit: Exit.MISMATCH, details: {result}},
  )
}
