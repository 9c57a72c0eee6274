import type {ChalkInstance} from 'chalk'

import type {MkfsResult} from '../lib/dax/index.js'
import {formatBytes, shortHex} from '../lib/sys/index.js'

export function renderMkfsResult(r: MkfsResult, c: ChalkInstance): string {
  const lines: string[] = []
  const kind = r.kind === 'pmem' ? 'fsdax pmem' : r.kind === 'iopmem' ? 'iopmem (PCI BAR)' : r.kind
  lines.push(`${c.green('✓')} ${c.bold(r.filesystem)} on ${c.bold(r.device)} (${formatBytes(r.size)}, ${kind}${r.device !== r.disk ? ` on ${r.disk}` : ''})`)
  if (r.erased.length) lines.push(`  erased first: ${r.erased.map((s) => `${s.type} on ${s.device}`).join(', ')}`)
  lines.push(`  block size  ${r.blockSize} (page size ${r.pageSize})`)
  const a = r.alignment
  const where = a.physicalStart ? `starts at physical ${shortHex(a.physicalStart)}` : `starts at byte ${a.deviceStart} of ${r.disk}`
  lines.push(`  alignment   ${formatBytes(a.stripe)} stripe; ${where}${a.aligned ? ', 2 MiB aligned: huge (PMD) faults possible' : c.yellow(', NOT 2 MiB aligned')}`)
  if (r.uuid) lines.push(`  UUID        ${r.uuid}`)
  if (r.mount) lines.push(`  mounted     on ${r.mount.target} with -o ${r.mount.options}; DAX ${r.mount.daxConfirmed ? c.green('confirmed') : c.yellow('not confirmed')} (statx STATX_ATTR_DAX on a probe file)`)
  else lines.push(`  mounted     no (mount -o dax ${r.device} DIR, or --mount DIR)`)
  for (const w of r.warnings) lines.push(c.yellow(`warning: ${w}`))
  for (const n of r.notes) lines.push(c.dim(`note: ${n}`))
  return lines.join('\n')
}
