/** `topo --probe` for a person: the mismatches first (the headline), then each pair's read beside the kernel's verdict. */
import type {ChalkInstance} from 'chalk'

import type {ProbeResult} from '../lib/check/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {outputWidth, wrap} from './render-check.js'

const short = (b: string) => b.replace(/^0000:/, '')

export function renderProbe(r: ProbeResult, c: ChalkInstance, width = outputWidth()): string {
  const head = `probe: an O_DIRECT read of ${formatBytes(r.bytes)} from each client's disk into each provider's p2pmem, checked against a normal read`
  const lines: string[] = ['', ...wrap(head, width).map((l) => c.bold(l))]
  if (r.pairs.length === 0) {
    lines.push('  no pair to probe: it takes a function with published p2pmem and one with a block device')
    return lines.join('\n')
  }
  if (r.mismatches.length > 0) {
    lines.push(c.red.bold(`MISMATCH: ${r.mismatches.length} pair(s) where the data or the kernel's answer differ from its rules`))
    for (const p of r.mismatches) {
      const what = p.read.result === 'corrupt' ? `the read succeeded but byte ${p.read.mismatchAt} differs: the data did not land` : `probe ${p.read.result}${p.read.errno ? ` (${p.read.errno})` : ''}`
      const text = wrap(`${short(p.client)} → ${short(p.provider)}: kernel rules say ${p.kernel}, ${what}`, width - 4)
      lines.push(...text.map((l, i) => c.red((i === 0 ? '  ' : '    ') + l)))
    }
  } else lines.push(c.green('  every pair as the kernel\'s rules say'))
  for (const p of r.pairs) {
    const res = p.read.result === 'ok' ? c.green('ok') : p.read.result === 'corrupt' ? c.red.bold('CORRUPT') : p.read.result === 'refused' ? c.yellow(`refused (${p.read.errno})`) : c.red(`error (${p.read.errno})`)
    lines.push(`  ${short(p.client)} ${p.device} → ${short(p.provider)}  kernel ${p.kernel.padEnd(7)} read ${res}`)
  }
  return lines.join('\n')
}
