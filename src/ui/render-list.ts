import type {ChalkInstance} from 'chalk'

import type {ListResult} from '../lib/pci/index.js'
import type {Bar, PciFunction} from '../lib/pci/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {table} from './table.js'

function barLine(b: Bar, c: ChalkInstance): string {
  const attrs = [b.is64 ? '64-bit' : b.type === 'mem' ? '32-bit' : '', b.prefetchable ? 'pref' : '', b.wc ? 'wc' : '']
  if (b.disabled) attrs.push(c.yellow('disabled'))
  if (b.unset) attrs.push(c.yellow('unassigned'))
  const size = c.bold(formatBytes(b.size))
  return `${b.name} ${size} ${c.dim(b.start.replace(/^0x0+(?=.)/, '0x'))} ${attrs.filter(Boolean).join(' ')}`.trimEnd()
}

function describe(f: PciFunction): string {
  const name = f.deviceName ?? `device ${f.deviceId.slice(2)}`
  const vendor = f.vendorName ? f.vendorName.replace(/,? (Inc\.|Corporation|Co\., Ltd\.|Ltd\.|Technology.*)$/, '') : `vendor ${f.vendorId.slice(2)}`
  return `${vendor} ${name}\n${f.className}`
}

export function renderList(r: ListResult, c: ChalkInstance): string {
  if (r.functions.length === 0) {
    return `No function among the ${r.total} visible has memory BARs, p2pmem or storage. \`iopmem list --all\` shows every function.`
  }
  const rows = r.functions.map((f) => {
    const bars = f.bars.filter((b) => (b.type === 'mem' && b.index < 6) || r.filter !== 'memory')
    const p2p = f.p2pmem
      ? `${formatBytes(f.p2pmem.available)} free\nof ${formatBytes(f.p2pmem.size)}${f.p2pmem.published ? '' : c.yellow(' unpublished')}`
      : c.dim('-')
    const storage = [
      ...f.blockDevices.map((b) => `${b.name} ${formatBytes(b.size)}${b.dax ? ' dax' : ''}${b.partitions.length ? ` (${b.partitions.length} part)` : ''}`),
      ...f.daxDevices.map((d) => `${d} devdax`),
    ]
    const link = f.link?.currentSpeed && !f.link.currentSpeed.startsWith('Unknown') ? `${f.link.currentSpeed.replace(/ PCIe$/, '')} x${f.link.currentWidth ?? '?'}` : ''
    return [
      c.bold(f.bdf),
      `${f.vendorId.slice(2)}:${f.deviceId.slice(2)}`,
      describe(f),
      f.driver ? (f.driverOverride ? `${f.driver}\n${c.dim('override ' + f.driverOverride)}` : f.driver) : c.dim('(none)'),
      bars.length ? bars.map((b) => barLine(b, c)).join('\n') : c.dim('-'),
      p2p,
      storage.length ? storage.join('\n') : c.dim('-'),
      link || c.dim('-'),
    ]
  })
  const head = ['BDF', 'ID', 'DEVICE', 'DRIVER', 'MEMORY', 'P2PMEM', 'STORAGE', 'LINK'].map((h) => c.dim(h))
  const footer =
    r.filter === 'memory' && r.total > r.functions.length
      ? `\n${c.dim(`${r.functions.length} of ${r.total} functions shown (those with memory BARs, p2pmem or storage); --all for every one.`)}`
      : ''
  return table(head, rows) + footer
}
