/** `topo --probe` for a person: the mismatches first (the headline), then each pair's read beside the kernel's verdict. */
import type {ChalkInstance} from 'chalk'

import type {ProbeRead, ProbeResult} from '../lib/check/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {outputWidth, visibleWidth, wrapLines as wrap} from './width.js'

const short = (b: string) => b.replace(/^0000:/, '')

function why(direction: string, x: ProbeRead): string {
  if (x.result === 'corrupt') return `the ${direction} succeeded but byte ${x.mismatchAt} differs: the data did not land`
  return `${direction} ${x.result}${x.errno ? ` (${x.errno})` : ''}`
}

export function renderProbe(r: ProbeResult, c: ChalkInstance, width = outputWidth()): string {
  const head = `probe: an O_DIRECT read of ${formatBytes(r.bytes)} from each client's disk into each provider's p2pmem, checked against a normal read` +
    (r.write ? `; and a write of ${formatBytes(r.bytes)} from p2pmem to each disk, in the ${formatBytes(r.write.bytes)} region named (saved, restored, read back)` : '')
  const lines: string[] = ['', ...wrap(head, width).map((l) => c.bold(l))]
  if (r.pairs.length === 0) {
    lines.push('  no pair to probe: it takes a function with published p2pmem and one with a block device')
    return lines.join('\n')
  }
  if (r.mismatches.length > 0) {
    lines.push(c.red.bold(`MISMATCH: ${r.mismatches.length} pair(s) where the data or the kernel's answer differ from its rules`))
    for (const p of r.mismatches) {
      const what = [why('read', p.read), ...(p.write ? [why('write', p.write)] : [])].join('; ') + (p.write?.restored === false ? `; THE REGION OF ${p.device} WAS NOT RESTORED` : '')
      const text = wrap(`${short(p.client)} → ${short(p.provider)}: kernel rules say ${p.kernel}, ${what}`, width - 4)
      lines.push(...text.map((l, i) => c.red((i === 0 ? '  ' : '    ') + l)))
    }
  } else lines.push(c.green('  every pair as the kernel\'s rules say'))
  const outcome = (x: ProbeRead) => x.result === 'ok' ? c.green('ok') : x.result === 'corrupt' ? c.red.bold('CORRUPT') : x.result === 'refused' ? c.yellow(`refused (${x.errno})`) : c.red(`error (${x.errno})`)
  for (const p of r.pairs) {
    const write = p.write ? `  write ${outcome(p.write)}${p.write.restored ? '' : c.red.bold(' NOT RESTORED')}` : ''
    const line = `  ${short(p.client)} ${p.device} → ${short(p.provider)}  kernel ${p.kernel.padEnd(7)} read ${outcome(p.read)}`
    if (write && visibleWidth(line + write) > width) lines.push(line, `${' '.repeat(Math.min(24, Math.max(4, width - visibleWidth(write))))}${write.trimStart()}`)
    else lines.push(line + write)
  }
  return lines.join('\n')
}
