import type {ChalkInstance} from 'chalk'

import {ByteSink, decWidth, hexWidth} from '../lib/dax/index.js'
import {flagNames, type LocateResult} from '../lib/dax/index.js'
import {formatBytes, shortHex} from '../lib/sys/index.js'

const KIND: Record<string, string> = {pmem: 'fsdax pmem', iopmem: 'iopmem (PCI BAR)', nvme: 'NVMe namespace', block: 'block device'}

/** A length in bytes, exact: "2 MiB" when it is a whole number of a unit, else bytes. */
export function exactBytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`
  }
  return `${n} B`
}

/**
 * The table for a person: a header with the device chain, one line per
 * extent (written byte by byte: a million lines take a fraction of a
 * second), then totals, warnings and notes.
 */
export function renderLocate(r: LocateResult, c: ChalkInstance, out: (chunk: Buffer) => void): void {
  const h = r.head
  const d = h.device
  const sink = new ByteSink(out)
  const line = (s = '') => sink.ascii(s + '\n')

  const daxWord = h.dax ? c.green('DAX') : c.yellow('not DAX')
  line(`${c.bold(h.file)}  ${exactBytes(h.size)}${h.size >= 1024 ? ` (${h.size} bytes)` : ''}, ${daxWord}`)
  const fs = h.filesystem ? `${h.filesystem.type}, mounted on ${h.filesystem.mountPoint}${h.filesystem.daxMode ? `, dax=${h.filesystem.daxMode}` : ''}` : 'filesystem not in mountinfo'
  const part = d.node !== d.disk ? `, at ${exactBytes(d.partitionStart)} into ${d.disk}` : ''
  line(`  on ${d.node} (${fs})${part}`)
  let where = `  ${d.disk}: ${KIND[d.kind] ?? d.kind}, ${exactBytes(d.diskSize)}`
  if (d.base) where += `, byte 0 at physical ${shortHex(d.base)}`
  if (d.busBase) where += `, bus ${shortHex(d.busBase)}`
  if (d.pci) where += ` (${d.pci.bdf} BAR${d.pci.bar}${d.pci.barOffset ? ` + ${d.pci.barOffset}` : ''})`
  else if (d.source) where += ` (${d.source})`
  if (d.nvme) where += ` (${d.nvme.controller ?? '?'} nsid ${d.nvme.nsid ?? '?'}${d.nvme.bdf ? ` at ${d.nvme.bdf}` : ''}), LBA ${d.logicalBlockSize} B`
  line(where)
  if (h.window.clipped) line(`  window: file offset 0x${h.window.offset.toString(16)}, ${h.window.length} bytes`)
  line()

  const n = r.count
  const t = h.totals
  if (n === 0) {
    line(h.size === 0 ? 'No extents: the file is empty.' : 'No extents: the range holds no blocks (a hole).')
  } else {
    let maxFo = 0
    let maxLen = 0
    let maxDev = 0
    for (let i = 0; i < n; i++) {
      if (r.fileOffset[i] > maxFo) maxFo = r.fileOffset[i]
      if (r.length[i] > maxLen) maxLen = r.length[i]
      if (r.deviceOffset[i] > maxDev) maxDev = r.deviceOffset[i]
    }
    const memory = h.addressing === 'memory'
    const lba = h.addressing === 'lba'
    const base = r.base === undefined ? undefined : Number(r.base)
    const bus = r.busBase === undefined ? undefined : Number(r.busBase)
    const exact = (v: number | undefined) => v === undefined || v + maxDev < Number.MAX_SAFE_INTEGER
    const fast = exact(base) && exact(bus)
    const lbs = r.lbaSize
    const cols: Array<[string, number]> = [
      ['#', Math.max(1, decWidth(n - 1))],
      ['FILE OFFSET', Math.max(11, hexWidth(maxFo))],
      ['LENGTH', Math.max(6, decWidth(maxLen))],
      ['DEVICE OFFSET', Math.max(13, hexWidth(maxDev))],
    ]
    if (memory) cols.push(['PHYSICAL', Math.max(8, hexWidth((base ?? 0) + maxDev))])
    if (memory && bus !== undefined) cols.push(['BUS ADDRESS', Math.max(11, hexWidth(bus + maxDev))])
    if (lba) cols.push(['LBA', Math.max(3, decWidth(Math.floor(maxDev / lbs)))], ['BLOCKS', Math.max(6, decWidth(Math.ceil(maxLen / lbs) + 1))])
    line(c.dim(cols.map(([name, w], i) => (i === 0 ? name.padStart(w) : name.padStart(w))).join('  ') + '  FLAGS'))
    const flagCache = new Map<number, string>()
    for (let i = 0; i < n; i++) {
      const dv = r.deviceOffset[i]
      const len = r.length[i]
      sink.uint(i, cols[0][1])
      sink.spaces(2)
      sink.hex(r.fileOffset[i], cols[1][1])
      sink.spaces(2)
      sink.uint(len, cols[2][1])
      sink.spaces(2)
      sink.hex(dv, cols[3][1])
      let col = 4
      if (memory) {
        sink.spaces(2)
        if (fast) sink.hex(base! + dv, cols[col][1])
        else sink.ascii(shortHex(r.physical(i)!).padStart(cols[col][1]))
        col++
        if (bus !== undefined) {
          sink.spaces(2)
          if (fast) sink.hex(bus + dv, cols[col][1])
          else sink.ascii(shortHex(r.busAddress(i)!).padStart(cols[col][1]))
          col++
        }
      }
      if (lba) {
        const first = Math.floor(dv / lbs)
        sink.spaces(2)
        sink.uint(first, cols[col][1])
        sink.spaces(2)
        sink.uint(Math.ceil((dv + len) / lbs) - first, cols[col + 1][1])
      }
      const f = r.flags[i]
      let fs = flagCache.get(f)
      if (fs === undefined) {
        const names = flagNames(f)
        fs = names.length ? '  ' + names.join(',') + '\n' : '\n'
        flagCache.set(f, fs)
      }
      sink.ascii(fs)
    }
    line()
    let summary = `${t.extents} extent${t.extents === 1 ? '' : 's'}, ${formatBytes(t.bytes)}`
    if (t.holeBytes > 0) summary += ` (${formatBytes(t.holeBytes)} in holes)`
    summary += `; ${t.segments} contiguous segment${t.segments === 1 ? '' : 's'}`
    if (t.largestRun) {
      summary += `; largest contiguous run ${exactBytes(t.largestRun.length)} at file offset 0x${t.largestRun.fileOffset.toString(16)}`
      summary += t.largestRun.physical ? ` (physical ${shortHex(t.largestRun.physical)})` : ` (device offset 0x${t.largestRun.deviceOffset.toString(16)})`
    }
    line(c.bold(summary))
  }
  for (const w of h.warnings) line(c.yellow(`warning: ${w}`))
  for (const note of h.notes) line(c.dim(`note: ${note}`))
  sink.flush()
}
