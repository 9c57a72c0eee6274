/** `iopmem list` for a person: one line per function fitted to the terminal, or (--wide) every detail. */
import type {ChalkInstance} from 'chalk'

import type {MemoryRegions} from '../lib/dax/index.js'
import type {ListResult} from '../lib/pci/index.js'
import type {Bar, LinkInfo, PciFunction} from '../lib/pci/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {table} from './table.js'
import {renderTree} from './render-tree.js'
import {truncate, wrap} from './width.js'

function barLine(b: Bar, c: ChalkInstance): string {
  const attrs = [b.type === 'io' ? c.yellow('I/O ports') : b.is64 ? '64-bit' : '32-bit', b.prefetchable ? 'pref' : '', b.wc ? 'wc' : '']
  if (b.disabled) attrs.push(c.yellow('disabled'))
  if (b.unset) attrs.push(c.yellow('unassigned'))
  const size = c.bold(formatBytes(b.size))
  return `${b.name} ${size} ${c.dim(b.start.replace(/^0x0+(?=.)/, '0x'))} ${attrs.filter(Boolean).join(' ')}`.trimEnd()
}

function describe(f: PciFunction): string {
  const name = f.deviceName ?? `device ${f.deviceId.slice(2)}`
  const vendor = f.vendorName ? f.vendorName.replace(/,? (Inc\.|Corporation|Co\., Ltd\.|Ltd\.|Technology.*)$/, '') : `vendor ${f.vendorId.slice(2)}`
  return `${vendor} ${name}`
}

/** "8.0 GT/s PCIe" → "8"; "2.5 GT/s PCIe" → "2.5". */
const gts = (s: string | undefined) => (s && !s.startsWith('Unknown') ? s.replace(/ GT\/s.*$/, '').replace(/\.0$/, '') : undefined)

/** The link, with current/max and "↓" when it runs below its maximum speed or width (as lspci's "(downgraded)"). */
export function linkText(l: LinkInfo | null): string {
  const cur = gts(l?.currentSpeed)
  if (!l || !cur) return ''
  const max = gts(l.maxSpeed)
  const slow = max !== undefined && Number(max) > Number(cur)
  const narrow = l.maxWidth !== undefined && l.currentWidth !== undefined && l.maxWidth > l.currentWidth
  const speed = slow ? `${cur}/${max} GT/s` : `${cur} GT/s`
  const width = narrow ? `x${l.currentWidth}/x${l.maxWidth}` : `x${l.currentWidth ?? '?'}`
  return `${speed} ${width}${slow || narrow ? ' ↓' : ''}`
}

/** 67108864 → "64M", 65470464 → "62.4M". */
const compact = (n: number) => formatBytes(n).replace(/ ([KMGTPE])iB$/, '$1').replace(/ B$/, 'B')

/** Memory BARs only: an I/O BAR is port space, not memory, and has a column of its own. */
function memoryCell(f: PciFunction): string {
  const mem = f.bars.filter((b) => b.type === 'mem' && b.index < 6 && b.size > 0)
  if (mem.length === 0) return '-'
  const big = [...mem].sort((a, b) => b.size - a.size)[0]
  return `${compact(big.size)}${big.prefetchable ? ' pref' : ''}${mem.length > 1 ? ` +${mem.length - 1}` : ''}`
}

/** The I/O BARs (port ranges): their count and total size, e.g. "32B" or "2: 64B". */
function ioCell(f: PciFunction): string {
  const io = f.bars.filter((b) => b.type === 'io' && b.index < 6)
  if (io.length === 0) return '-'
  const total = compact(io.reduce((sum, b) => sum + b.size, 0))
  return io.length > 1 ? `${io.length}: ${total}` : total
}

/** One line per function, columns fitted to `width`: DEVICE, then STORAGE and DRIVER are cut first. */
function renderCompact(r: ListResult, c: ChalkInstance, width: number): string {
  const short = r.functions.every((f) => f.bdf.startsWith('0000:'))
  const head = ['BDF', 'ID', 'DEVICE', 'DRIVER', 'MEMORY', 'P2PMEM', 'STORAGE', 'LINK', 'I/O']
  const rows = r.functions.map((f) => {
    const storage = [...f.blockDevices.map((b) => b.name), ...f.daxDevices]
    return [
      short ? f.bdf.slice(5) : f.bdf,
      `${f.vendorId.slice(2)}:${f.deviceId.slice(2)}`,
      describe(f),
      f.driver ?? '-',
      memoryCell(f),
      f.p2pmem ? `${f.p2pmem.available < f.p2pmem.size ? `${compact(f.p2pmem.available)}/` : ''}${compact(f.p2pmem.size)}${f.p2pmem.published ? '' : ' unpub'}` : '-',
      storage.length ? storage[0] + (storage.length > 1 ? ` +${storage.length - 1}` : '') : '-',
      linkText(f.link).replace(' GT/s', 'GT').replace(' ↓', '↓') || '-',
      ioCell(f),
    ]
  })
  // Columns that say nothing on this machine go; then, until DEVICE has at least 16 columns: ID, I/O, LINK, STORAGE.
  const shown = head.map((_, i) => i).filter((i) => i < 5 || rows.some((row) => row[i] !== '-'))
  const natural = (i: number) => Math.max(head[i].length, ...rows.map((row) => [...row[i]].length))
  const widths = new Map(shown.map((i) => [i, natural(i)]))
  let cols = shown
  for (const drop of [-1, 1, 8, 7, 6]) {
    cols = cols.filter((i) => i !== drop)
    const fixed = cols.filter((i) => i !== 2).reduce((sum, i) => sum + widths.get(i)!, 0) + 2 * (cols.length - 1)
    if (width - fixed >= 16) break
  }
  const fixed = cols.filter((i) => i !== 2).reduce((sum, i) => sum + widths.get(i)!, 0) + 2 * (cols.length - 1)
  widths.set(2, Math.max(12, Math.min(natural(2), width - fixed)))
  // Still too wide (a very narrow terminal): cut DRIVER and MEMORY too.
  for (const [i, min] of [
    [3, 6],
    [4, 8],
  ]) {
    const over = cols.reduce((sum, j) => sum + widths.get(j)!, 0) + 2 * (cols.length - 1) - width
    if (over > 0) widths.set(i, Math.max(min, widths.get(i)! - over))
  }
  const cell = (i: number, s: string) => {
    const t = truncate(s, widths.get(i)!)
    const padded = t.padEnd(widths.get(i)!)
    return i === 0 ? c.bold(padded) : s === '-' ? c.dim(padded) : t.endsWith('↓') ? padded.replace('↓', c.yellow('↓')) : padded
  }
  const lines = [c.dim(cols.map((i) => head[i].padEnd(widths.get(i)!)).join('  ').trimEnd())]
  for (const row of rows) lines.push(cols.map((i) => cell(i, row[i])).join('  ').trimEnd())
  return lines.join('\n')
}

/** Every detail, several lines per function (--wide). */
function renderWide(r: ListResult, c: ChalkInstance): string {
  const rows = r.functions.map((f) => {
    const bars = f.bars.filter((b) => (b.index < 6 && (b.type === 'mem' || b.type === 'io')) || r.filter !== 'memory')
    const p2p = f.p2pmem
      ? `${formatBytes(f.p2pmem.available)} free\nof ${formatBytes(f.p2pmem.size)}${f.p2pmem.published ? '' : c.yellow(' unpublished')}`
      : c.dim('-')
    const storage = [
      ...f.blockDevices.map((b) => `${b.name} ${formatBytes(b.size)}${b.dax ? ' dax' : ''}${b.partitions.length ? ` (${b.partitions.length} part)` : ''}`),
      ...f.daxDevices.map((d) => `${d} devdax`),
    ]
    const link = linkText(f.link)
    return [
      c.bold(f.bdf),
      `${f.vendorId.slice(2)}:${f.deviceId.slice(2)}`,
      `${describe(f)}\n${f.className}`,
      f.driver ? (f.driverOverride ? `${f.driver}\n${c.dim('override ' + f.driverOverride)}` : f.driver) : c.dim('(none)'),
      bars.length ? bars.map((b) => barLine(b, c)).join('\n') : c.dim('-'),
      p2p,
      storage.length ? storage.join('\n') : c.dim('-'),
      link ? link.replace('↓', c.yellow('↓')) : c.dim('-'),
    ]
  })
  const head = ['BDF', 'ID', 'DEVICE', 'DRIVER', 'BARS', 'P2PMEM', 'STORAGE', 'LINK'].map((h) => c.dim(h))
  return table(head, rows)
}

/** pmem regions and device-dax, not PCI: a section of their own, one line per namespace or instance. */
export function renderRegions(m: MemoryRegions, c: ChalkInstance, width = Infinity): string {
  const rows: string[][] = []
  for (const r of m.pmem) {
    for (const n of r.namespaces) rows.push([r.name, n.name, n.mode, compact(n.size), n.devNode ?? n.blockDevice ?? '-', n.start ?? '-', r.numaNode === null ? '-' : String(r.numaNode)])
    if (r.namespaces.length === 0) rows.push([r.name, '-', '-', compact(r.size), '-', r.start ?? '-', r.numaNode === null ? '-' : String(r.numaNode)])
  }
  for (const d of m.dax) rows.push([d.on ?? '-', d.name, 'devdax', compact(d.size), d.devNode ?? '-', d.start ?? '-', d.numaNode === null ? '-' : String(d.numaNode)])
  if (rows.length === 0) return ''
  const head = ['ON', 'NAME', 'MODE', 'SIZE', 'DEVICE', 'START', 'NODE']
  // START goes first when the width is short (a 0x + 16-digit address), then NODE.
  let cols = head.map((_, i) => i)
  const w = (i: number) => Math.max(head[i].length, ...rows.map((row) => row[i].length))
  const total = (cs: number[]) => cs.reduce((s, i) => s + w(i), 0) + 2 * (cs.length - 1)
  for (const drop of [5, 6]) if (total(cols) > width) cols = cols.filter((i) => i !== drop)
  const line = (row: string[]) => truncate(cols.map((i) => row[i].padEnd(w(i))).join('  ').trimEnd(), width)
  return [c.bold('pmem and device-dax (not PCI functions)'), c.dim(line(head)), ...rows.map((row) => line(row))].join('\n')
}

export function renderList(r: ListResult & {regions?: MemoryRegions}, c: ChalkInstance, width = Infinity): string {
  const regions = r.regions ? renderRegions(r.regions, c, width) : ''
  if (r.tree) return [renderTree(r, c, width), regions].filter(Boolean).join('\n\n')
  if (r.functions.length === 0) {
    const none =
      r.filter === 'selected'
        ? 'No PCI function matches.'
        : `No function among the ${r.total} visible has memory BARs, p2pmem or storage. \`iopmem list --all\` shows every function.`
    return [none, regions].filter(Boolean).join('\n\n')
  }
  const body = width === Infinity ? renderWide(r, c) : renderCompact(r, c, width)
  const notes: string[] = []
  if (r.filter === 'memory' && r.total > r.functions.length) notes.push(`${r.functions.length} of ${r.total} functions shown (those with memory BARs, p2pmem or storage); --all for every one.`)
  if (width !== Infinity) {
    const io = /\bI\/O\b/.test(body.split('\n')[0]) ? ' I/O: I/O port BARs (not memory).' : ''
    notes.push(`MEMORY: the largest memory BAR (+ the others).${io}${body.includes('↓') ? ' ↓ link below its maximum.' : ''} --wide: every BAR, address and name.`)
  }
  return [[body, ...notes.map((n) => c.dim(wrap(n, width)))].join('\n'), regions].filter(Boolean).join('\n\n')
}
