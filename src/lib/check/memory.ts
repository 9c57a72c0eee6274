/** `check`'s memory items: where the chosen BARs sit (64-bit, prefetchable, above 4 GiB, the MTRR over them), Resizable BAR sizes, and PAT. */
import * as path from 'node:path'

import {largestMemBar, type Bar, type PciFunction} from '../pci/index.js'
import {formatBytes, hex64, type Host} from '../sys/index.js'
import type {CheckItem, Verdict} from './types.js'
import {worst} from './types.js'

const GiB4 = 0x1_0000_0000n

export interface Mtrr {
  reg: number
  base: bigint
  size: bigint
  type: string
}

/** /proc/mtrr: `reg00: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable`. */
export function parseMtrr(text: string): Mtrr[] {
  const out: Mtrr[] = []
  for (const line of text.split('\n')) {
    const m = /^reg(\d+): base=(0x[0-9a-f]+)\s*\([^)]*\),\s*size=\s*(\d+)([KMG])B?,\s*count=\d+:\s*(\S.*)$/i.exec(line.trim())
    if (!m) continue
    const unit = {K: 1024n, M: 1024n ** 2n, G: 1024n ** 3n}[m[4].toUpperCase() as 'K' | 'M' | 'G']
    out.push({reg: Number(m[1]), base: BigInt(m[2]), size: BigInt(m[3]) * unit, type: m[5].trim()})
  }
  return out
}

/** The variable MTRR covering [start, end], if one does. */
function mtrrOver(mtrrs: Mtrr[], start: bigint, end: bigint): Mtrr | undefined {
  return mtrrs.find((r) => start >= r.base && end < r.base + r.size)
}

/** Below this a BAR holds registers, not memory: iopmem refuses it, and the kernel's CMB needs 2 MiB alignment. */
const MEMORY_BAR_MIN = 2 * 1024 * 1024

/**
 * The BAR of a function that could serve as device memory: with p2pmem, its
 * largest prefetchable (else largest) memory BAR; otherwise the largest
 * memory BAR when it is at least 2 MiB. Register BARs are not judged.
 */
function barOf(f: PciFunction): Bar | undefined {
  const pref = f.bars.filter((b) => b.type === 'mem' && b.index < 6 && b.prefetchable && b.size > 0).sort((a, b) => b.size - a.size)[0]
  const bar = pref ?? largestMemBar(f)
  if (!bar) return undefined
  return f.p2pmem || bar.size >= MEMORY_BAR_MIN ? bar : undefined
}

export function barsItem(host: Host, fns: PciFunction[]): CheckItem {
  const base = {id: 'memory.bars', area: 'memory' as const, title: 'BAR placement'}
  const mtrrText = host.read(host.proc('mtrr'))
  const mtrrs = mtrrText === undefined ? null : parseMtrr(mtrrText)
  const rows: Array<Record<string, unknown>> = []
  const verdicts: Verdict[] = []
  const notes: string[] = []
  const short = (b: string) => b.replace(/^0000:/, '')
  for (const f of fns) {
    const bar = barOf(f)
    if (!bar) continue
    const start = BigInt(bar.start)
    const end = BigInt(bar.end)
    const high = start >= GiB4
    const problems: string[] = []
    if (!bar.is64) problems.push('32-bit')
    if (!bar.prefetchable) problems.push('not prefetchable (no WC)')
    if (!high) problems.push('below 4 GiB')
    let mtrr: string | null = null
    if (!high && mtrrs) {
      const r = mtrrOver(mtrrs, start, end)
      mtrr = r ? r.type : 'default type (no variable MTRR)'
      if (!r || /uncach/i.test(r.type)) problems.push(`MTRR ${r ? `reg${String(r.reg).padStart(2, '0')} uncachable` : 'default'}: a WB mapping there is UC`)
    }
    verdicts.push(problems.length === 0 ? 'pass' : 'warn')
    if (problems.length > 0) notes.push(`${short(f.bdf)} ${bar.name} ${formatBytes(bar.size)} ${problems.join(', ')}`)
    rows.push({bdf: f.bdf, bar: bar.index, start: hex64(start), size: bar.size, is64: bar.is64, prefetchable: bar.prefetchable, above4G: high, mtrr})
  }
  const details = {bars: rows, mtrr: mtrrs === null ? null : mtrrs.map((r) => ({...r, base: hex64(r.base), size: Number(r.size)}))}
  if (rows.length === 0) return {...base, verdict: 'pass', found: 'no chosen function has a BAR of 2 MiB or more (only register BARs)', fix: null, details}
  const verdict = worst(verdicts)
  const ok = rows.length - notes.length
  const found =
    (ok > 0 ? `${ok} of ${rows.length} 64-bit prefetchable above 4 GiB` : '') +
    (notes.length > 0 ? `${ok > 0 ? '; ' : ''}${notes.join('; ')}` : '') +
    (mtrrs === null && verdict !== 'pass' ? ' (no /proc/mtrr)' : '')
  return {
    ...base,
    verdict,
    found,
    fix: verdict === 'pass' ? null : 'Enable "Above 4G decoding" in the firmware (and Resizable BAR); map low BARs with --cache wc, not wb.',
    details,
  }
}

/** `resourceN_resize`: a hex bitmask of the sizes the BAR supports, bit n = 1 MiB << n (drivers/pci/pci-sysfs.c). */
export function parseResizeMask(text: string): number[] {
  const t = text.trim().replace(/^0x/i, '')
  if (!/^[0-9a-f]+$/i.test(t)) return []
  const mask = BigInt('0x' + t)
  const sizes: number[] = []
  for (let n = 0; n < 64; n++) if (mask & (1n << BigInt(n))) sizes.push(n)
  return sizes
}

export function rebarItem(host: Host, fns: PciFunction[]): CheckItem {
  const base = {id: 'memory.rebar', area: 'memory' as const, title: 'Resizable BAR'}
  const rows: Array<{bdf: string; bar: number; size: number; sizes: number[]; max: number}> = []
  for (const f of fns) {
    for (const name of host.list(f.sysfsPath)) {
      const m = /^resource(\d)_resize$/.exec(name)
      if (!m) continue
      const text = host.read(path.join(f.sysfsPath, name))
      if (text === undefined) continue
      const bits = parseResizeMask(text)
      if (bits.length === 0) continue
      const idx = Number(m[1])
      const cur = f.bars.find((b) => b.index === idx)?.size ?? 0
      const sizes = bits.map((n) => 2 ** (20 + n))
      rows.push({bdf: f.bdf, bar: idx, size: cur, sizes, max: Math.max(...sizes)})
    }
  }
  if (rows.length === 0) return {...base, verdict: 'pass', found: 'no chosen function offers Resizable BAR', fix: null, details: {bars: rows}}
  const grow = rows.filter((r) => r.max > r.size)
  const short = (b: string) => b.replace(/^0000:/, '')
  if (grow.length === 0) {
    return {...base, verdict: 'pass', found: rows.map((r) => `${short(r.bdf)} BAR${r.bar} at its largest, ${formatBytes(r.size)}`).join('; '), fix: null, details: {bars: rows}}
  }
  const g = grow[0]
  const n = Math.log2(g.max) - 20
  return {
    ...base,
    verdict: 'warn',
    found: grow.map((r) => `${short(r.bdf)} BAR${r.bar} ${formatBytes(r.size)}, can grow to ${formatBytes(r.max)}`).join('; '),
    fix: `With the driver unbound: echo ${n} > /sys/bus/pci/devices/${g.bdf}/resource${g.bar}_resize`,
    details: {bars: rows},
  }
}

export function patItem(host: Host, cmdline: string[]): CheckItem {
  const base = {id: 'memory.pat', area: 'memory' as const, title: 'PAT'}
  if (cmdline.includes('nopat')) return {...base, verdict: 'fail', found: 'nopat on the command line: write-combining mappings fall back to UC-', fix: 'Remove nopat from the kernel command line.', details: {enabled: false}}
  if (host.exists(host.sys('kernel/debug/x86/pat_memtype_list'))) return {...base, verdict: 'pass', found: 'enabled (pat_memtype_list present)', fix: null, details: {enabled: true}}
  const cpuinfo = host.read(host.proc('cpuinfo'))
  const flags = cpuinfo ? /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1].split(/\s+/) : undefined
  if (flags?.includes('pat')) return {...base, verdict: 'pass', found: 'CPU has PAT and nopat is not given (debugfs not readable to confirm)', fix: null, details: {enabled: true}}
  if (flags) return {...base, verdict: 'fail', found: 'the CPU flags lack pat: no write-combining mappings', fix: null, details: {enabled: false}}
  return {...base, verdict: 'unknown', found: 'no CPU flags in /proc/cpuinfo', fix: null, details: {enabled: null}}
}
