import type {ChalkInstance} from 'chalk'

import type {BenchMmioResult} from '../lib/bench/index.js'
import {formatBytes, formatRate} from '../lib/sys/index.js'
import {mappingLine} from './render-map.js'
import {table} from './table.js'

/** Latency in ns (not a rate): the digits a timer of this resolution can give. */
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3))

export function renderBenchMmio(r: BenchMmioResult, c: ChalkInstance): string {
  const out: string[] = []
  out.push(c.bold(mappingLine(r.mapping)))
  out.push(c.dim(`mode ${r.mapping.mode}: ${r.mapping.why}`))
  out.push(c.dim(`copy loops: ${r.cpu.isa} cap; stream-store ${r.cpu.streamStore}, stream-load ${r.cpu.streamLoad}; ≥ ${r.secondsPerCell} s per cell`))
  out.push('')
  const cols = [...new Set(r.bandwidth.map((b) => `${b.direction} ${b.strategy}`))]
  const head = ['SIZE', ...cols.map((k) => (k.startsWith('in ') ? `IN ${k.slice(3)}` : `OUT ${k.slice(4)}`))]
  const rows = r.sizes.map((size) => [
    formatBytes(size),
    ...cols.map((k) => {
      const cell = r.bandwidth.find((b) => b.size === size && `${b.direction} ${b.strategy}` === k)
      return cell ? formatRate(cell.gbps) : '-'
    }),
  ])
  out.push(c.bold('Bandwidth, GB/s') + c.dim('  (IN: CPU → device memory, OUT: device memory → CPU)'))
  out.push(table(head, rows, {align: ['left', ...cols.map(() => 'right' as const)]}))
  out.push('')
  out.push(c.bold('Latency, ns per access') + c.dim('  (one volatile access; RAM: the same loop on anonymous memory, the addon call)'))
  const ops = [...new Set(r.latency.map((l) => l.op))]
  const lhead = ['WIDTH', ...ops.flatMap((o) => [o.toUpperCase(), `${o.toUpperCase()} RAM`])]
  const lrows = [8, 16, 32, 64].map((w) => [
    `${w}-bit`,
    ...ops.flatMap((o) => {
      const l = r.latency.find((x) => x.width === w && x.op === o)
      return l ? [fmt(l.ns), fmt(l.overheadNs)] : ['-', '-']
    }),
  ])
  out.push(table(lhead, lrows, {align: ['left', ...lhead.slice(1).map(() => 'right' as const)]}))
  if (ops.includes('write')) out.push(c.dim('Writes are posted: a write returns before the device has it.'))
  for (const n of r.notes) out.push(c.dim(`note: ${n}`))
  return out.join('\n')
}
