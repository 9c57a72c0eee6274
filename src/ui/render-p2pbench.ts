/** Human output of `iopmem bench p2p`. */
import type {ChalkInstance} from 'chalk'

import type {BenchP2pResult} from '../lib/bench/index.js'
import {isBdfName} from '../lib/pci/index.js'
import {formatBytes, formatRate} from '../lib/sys/index.js'
import {wrap} from './width.js'

const fb = (n: number | undefined) => (n === undefined ? '?' : formatBytes(n))

/**
 * The buffer as a fitted screen names it: a p2pmem chunk by its function, since the
 * sysfs path of p2pmem/allocate (~100 characters behind a switch) is one word no
 * 80-column line can hold. --wide and --json give the whole path.
 */
export function bufferName(buffer: string, width: number): string {
  const bdf = buffer.split('/').at(-3) ?? ''
  if (width === Infinity || !buffer.endsWith('/p2pmem/allocate') || !isBdfName(bdf)) return buffer
  return `p2pmem of ${bdf} (its p2pmem/allocate; --wide for the path)`
}

/** The report, each line wrapped to `width` ($COLUMNS; Infinity with --wide). */
export function renderP2pBench(r: BenchP2pResult, c: ChalkInstance, width = Infinity): string {
  const out: string[] = []
  out.push(c.bold(`bench p2p: ${r.src.path} → ${r.dst.path}, ${formatBytes(r.size)} in ${formatBytes(r.bs)} blocks, qd ${r.qd} × ${r.jobs} job${r.jobs > 1 ? 's' : ''}, O_DIRECT`))
  const traced = r.results.filter((m) => m.dma)
  if (traced.length > 0) {
    // The sandbox's headline: where the bytes went, counted from QEMU's own DMA trace.
    out.push(c.bold('  where the data went (every NVMe data pointer, from QEMU\'s trace, counted on the host):'))
    const cells = traced.map((m) => [
      m.mode,
      `${formatBytes(m.dma!.ramBytes)} through guest RAM`,
      `${formatBytes(m.dma!.deviceBytes)} through device memory${m.dma!.ownCmbBytes > 0 ? ` (${formatBytes(m.dma!.ownCmbBytes)} of it a controller's own CMB)` : ''}`,
    ])
    const cw = cells[0].map((_, i) => Math.max(...cells.map((row) => row[i].length)))
    for (const row of cells) out.push('    ' + row.map((x, i) => x.padEnd(cw[i])).join('   ').trimEnd())
  }
  for (const line of r.choices) out.push(`  chose ${line}`)
  if (r.via) out.push(`  via ${r.via.target}${r.p2pmem ? `: p2pmem ${formatBytes(r.p2pmem.chunk)} chunk (pool available ${fb(r.p2pmem.availableBefore)} → ${fb(r.p2pmem.availableDuring)} while mapped → ${fb(r.p2pmem.availableAfter)} after)` : ''}`)
  if (r.dramIdleGbps !== undefined) out.push(`  DRAM probe idle: ${formatRate(r.dramIdleGbps)} GB/s`)
  const rows = r.results.map((m) => [
    m.mode,
    `${formatRate(m.gbps)} GB/s`,
    `${formatRate(m.iops)} IOPS`,
    `p50 ${formatRate(m.latency.p50Us)} µs  p99 ${formatRate(m.latency.p99Us)}  p99.9 ${formatRate(m.latency.p999Us)}`,
    `CPU ${formatRate(m.cpu.percentOfOneCore)}%`,
    m.dram ? `DRAM left ${formatRate(m.dram.gbps)} GB/s (${Math.round(m.dram.ofIdle * 100)}%)` : '',
    m.verify ? (m.verify.ok ? c.green('verified') : c.red(`MISMATCH at ${m.verify.mismatchAt}`)) : '',
  ])
  if (traced.length > 0) out.push(c.dim('  timings (QEMU TCG emulation: they say nothing about real hardware):'))
  const w = rows[0]?.map((_, i) => Math.max(...rows.map((row) => row[i].length))) ?? []
  for (const row of rows) out.push('  ' + row.map((s, i) => s.padEnd(w[i])).join('  ').trimEnd())
  for (const m of r.results) {
    const eng = m.engine === 'io_uring' ? `io_uring, ${m.registeredBuffers ? 'registered buffer' : `unregistered buffer (${m.registerError ?? 'not registered'})`}` : `pread/pwrite${m.fallbackReason ? ` — fallback: ${m.fallbackReason}` : ''}`
    out.push(c.dim(`  ${m.mode}: ${eng}; buffer ${bufferName(m.buffer, width)}; dst offset ${m.dstOffset}`))
  }
  if (r.sweep) {
    out.push(c.bold('sweep (GB/s by block size)'))
    const max = Math.max(...r.sweep.map((s) => s.gbps), 1e-9)
    for (const s of r.sweep) out.push(`  ${s.mode.padEnd(6)} ${formatBytes(s.bs).padStart(8)} ${'█'.repeat(Math.max(1, Math.round((s.gbps / max) * 40)))} ${formatRate(s.gbps)}`)
  }
  for (const n of r.notes) out.push(`  ${c.yellow(`note: ${n}`)}`)
  if (r.interrupted) out.push(c.yellow('  interrupted: partial results'))
  return out.map((l) => wrap(l, width, '      ')).join('\n')
}

/** Text for an XML text node or attribute value (file names may hold & and <). */
const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** The sweep as a standalone SVG line chart (GB/s against block size, one line per mode). */
export function sweepSvg(r: BenchP2pResult): string {
  const pts = r.sweep ?? []
  const W = 640, H = 360, L = 60, B = 40, T = 30, R = 20
  const sizes = [...new Set(pts.map((p) => p.bs))].sort((a, b) => a - b)
  const max = Math.max(...pts.map((p) => p.gbps), 1e-9) * 1.1
  const x = (bs: number) => L + (sizes.length <= 1 ? 0 : (sizes.indexOf(bs) * (W - L - R)) / (sizes.length - 1))
  const y = (g: number) => H - B - (g / max) * (H - B - T)
  const colors: Record<string, string> = {bounce: '#d62728', p2p: '#1f77b4'}
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<text x="${L}" y="18">iopmem bench p2p: ${xml(r.src.path)} → ${xml(r.dst.path)} (qd ${r.qd})</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#000"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#000"/>`]
  for (const s of sizes) parts.push(`<text x="${x(s)}" y="${H - B + 16}" text-anchor="middle">${formatBytes(s)}</text>`)
  for (let i = 0; i <= 4; i++) parts.push(`<text x="${L - 6}" y="${y((max * i) / 4) + 4}" text-anchor="end">${((max * i) / 4).toFixed(2)}</text>`)
  for (const mode of ['bounce', 'p2p']) {
    const m = pts.filter((p) => p.mode === mode)
    if (m.length === 0) continue
    parts.push(`<polyline fill="none" stroke="${colors[mode]}" stroke-width="2" points="${m.map((p) => `${x(p.bs)},${y(p.gbps)}`).join(' ')}"/>`)
    parts.push(`<text x="${W - R - 60}" y="${mode === 'bounce' ? 40 : 56}" fill="${colors[mode]}">${mode}</text>`)
  }
  parts.push(`<text x="12" y="${T + 10}">GB/s</text></svg>`)
  return parts.join('\n') + '\n'
}
