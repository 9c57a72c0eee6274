import type {ChalkInstance} from 'chalk'

import type {MapFacts} from '../lib/map/index.js'
import {hexdump, valueRows} from '../lib/map/index.js'
import type {MapOpResult, MapResult} from '../lib/map/index.js'
import {formatBytes, formatRate} from '../lib/sys/index.js'

const MODE_NAME = {uc: 'uncached (UC-)', wc: 'write-combining', wb: 'write-back', wt: 'write-through'} as const

/** One line naming the mapping: for stderr ahead of an operation's output. */
export function mappingLine(f: MapFacts): string {
  const what = f.backend === 'bar' ? `${f.bdf} ${f.bar?.name}` : f.backend === 'p2pmem' ? `${f.bdf} p2pmem chunk` : f.path
  return `${what}: ${formatBytes(f.length)} ${f.mode}${f.physStart ? ` at ${f.physStart}` : ''} (${f.path})`
}

/** The facts block (no operation, or --hold). */
export function renderFacts(f: MapFacts, c: ChalkInstance): string {
  const rows: Array<[string, string]> = [
    ['target', f.target],
    ['backend', f.backend + (f.driver !== null && f.bdf ? `  (driver ${f.driver ?? 'none'})` : f.bdf ? '  (no driver)' : '')],
    ['path', f.path],
  ]
  if (f.bar) {
    rows.push([
      'BAR',
      `${f.bar.name}  ${formatBytes(f.bar.size)}  ${f.bar.start}-${f.bar.end}${f.bar.is64 ? '  64-bit' : ''}${f.bar.prefetchable ? '  prefetchable' : ''}`,
    ])
  }
  rows.push(['mode', `${c.bold(f.mode)} ${MODE_NAME[f.mode]}${f.modeAsked === f.mode ? '' : `  (asked ${f.modeAsked})`}`])
  rows.push(['why', f.why])
  rows.push(['length', `${formatBytes(f.length)} (${f.length} bytes)${f.offset ? ` from file offset 0x${f.offset.toString(16)}` : ''}`])
  rows.push(['CPU physical', f.physStart ?? c.dim('unknown (root shows it)')])
  if (f.busStart && (f.physStart === null || BigInt(f.busStart) !== BigInt(f.physStart))) rows.push(['PCI bus address', f.busStart])
  if (f.p2pmem) rows.push(['p2pmem pool', `${formatBytes(f.p2pmem.available)} available of ${formatBytes(f.p2pmem.size)}${f.p2pmem.published ? ', published' : ''}`])
  rows.push(['copy in', f.strategies.copyIn.join(', ')])
  rows.push(['copy out', f.strategies.copyOut.join(', ')])
  const w = Math.max(...rows.map(([k]) => k.length))
  const lines = rows.map(([k, v]) => `${c.dim(k.padEnd(w))}  ${v}`)
  for (const n of f.notes) lines.push(c.dim(`note: ${n}`))
  return lines.join('\n')
}

/** What an operation did, for stdout. */
export function renderOp(op: MapOpResult, c: ChalkInstance): string {
  if ('interrupted' in op) {
    const what = op.kind === 'fill' ? 'filled' : op.kind === 'verify' ? 'verified' : 'copied'
    return `${c.yellow('interrupted:')} ${what} ${formatBytes(op.done)} of ${formatBytes(op.size)} from 0x${op.offset.toString(16)} (${op.done} bytes), then stopped`
  }
  switch (op.kind) {
    case 'read':
      return valueRows(op.offset, (op.width / 8) as 1 | 2 | 4 | 8, op.values).join('\n')
    case 'write': {
      const lines = [`${c.green('✓')} wrote ${op.count} × ${op.width}-bit at 0x${op.offset.toString(16)}: ${op.values.join(' ')}`]
      if (op.readback) lines.push(...valueRows(op.offset, (op.width / 8) as 1 | 2 | 4 | 8, op.readback).map((r) => `readback ${r}`))
      if (op.flush) lines.push(c.dim(`flushed with ${op.flush}`))
      return lines.join('\n')
    }
    case 'dump':
      return hexdump(Buffer.from(op.hex, 'hex'), op.offset)
    case 'fill':
      return `${c.green('✓')} filled ${formatBytes(op.size)} at 0x${op.offset.toString(16)} with ${op.pattern} (${op.strategy}, ${formatRate(op.gbps)} GB/s${op.flush ? `, flushed with ${op.flush}` : ''})`
    case 'verify':
      return `${c.green('✓')} ${formatBytes(op.size)} at 0x${op.offset.toString(16)} match ${op.pattern} (${op.strategy}, ${formatRate(op.gbps)} GB/s)`
    case 'copy-in':
      return `${c.green('✓')} copied ${formatBytes(op.size)} from ${op.file} to 0x${op.offset.toString(16)} (${op.strategy}, ${formatRate(op.gbps)} GB/s${op.flush ? `, flushed with ${op.flush}` : ''})`
    case 'copy-out':
      return `${c.green('✓')} copied ${formatBytes(op.size)} from 0x${op.offset.toString(16)} to ${op.file} (${op.strategy}, ${formatRate(op.gbps)} GB/s)`
    case 'interactive':
      return c.dim(`session ended after ${op.steps} step${op.steps === 1 ? '' : 's'}; mapping released`)
  }
}

/** Warnings of a result, for stderr. */
export function renderWarnings(r: MapResult, c: ChalkInstance): string {
  return r.mapping.warnings.map((w) => c.yellow(`warning: ${w}`)).join('\n')
}
