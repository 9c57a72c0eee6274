import type {ChalkInstance} from 'chalk'

import {cpuText, type PairAnalysis, PATH_CLASS_LEGEND, type PathClass, type Topology} from '../lib/pci/index.js'
import {table} from './table.js'
import {summarise, visibleWidth, wrap} from './width.js'

const MARK = {yes: '✓', no: '✗', unknown: '?'} as const

function mark(p: PairAnalysis, c: ChalkInstance): string {
  if (p.p2p === 'n/a') return c.dim('n/a')
  return p.p2p === 'yes' ? (p.mapType === 'thru-host-bridge' ? c.green('✓ᴴ') : c.green(MARK.yes)) : p.p2p === 'no' ? c.red(MARK.no) : c.yellow(MARK.unknown)
}

function cell(p: PairAnalysis, c: ChalkInstance): string {
  const text = `${p.pathClass} ${p.distance} ${mark(p, c)}`
  return p.p2p === 'n/a' ? c.dim(text) : text
}

/** Pairs listed in one line before "… and N more" (all with --wide). */
const PAIRS_SHOWN = 6

/**
 * The matrix when it fits the width, else one line per pair that has a
 * verdict (pairs without a provider are only counted); then the refused or
 * uncertain pairs grouped by reason, each group's pairs summarised.
 */
export function renderTopo(t: Topology, c: ChalkInstance, width = Infinity): string {
  const out: string[] = []
  const fns = t.functions
  const key = (a: string, b: string) => `${a}|${b}`
  const byPair = new Map<string, PairAnalysis>()
  for (const p of t.pairs) {
    byPair.set(key(p.provider, p.client), p)
    byPair.set(key(p.client, p.provider), p)
  }
  const short = (b: string) => (fns.every((f) => f.startsWith('0000:')) ? b.slice(5) : b)
  const rows = fns.map((row) => [
    c.bold(short(row)),
    ...fns.map((col) => {
      if (row === col) return c.dim('X')
      const p = byPair.get(key(row, col))
      return p ? cell(p, c) : c.dim('-')
    }),
  ])
  const matrix = table(['', ...fns.map((f) => c.bold(short(f)))], rows)
  const na = t.pairs.filter((p) => p.p2p === 'n/a')
  if (matrix.split('\n').every((l) => visibleWidth(l) <= width)) {
    out.push(matrix, '')
    out.push(c.dim('Cell: path class, kernel distance, verdict.'))
  } else {
    // Too wide for the terminal: the pairs with a verdict, one per line.
    const judged = t.pairs.filter((p) => p.p2p !== 'n/a')
    out.push(c.dim(wrap(`${fns.length} functions: the matrix is wider than ${width} columns (--wide shows it); the pairs with a provider:`, width, '')))
    out.push(
      judged.length
        ? table(
            ['PROVIDER', 'CLIENT', 'PATH', 'DIST', 'P2P'].map((h) => c.dim(h)),
            judged.map((p) => [short(p.provider), short(p.client), p.pathClass, String(p.distance), mark(p, c)]),
          )
        : c.dim('  (none: no function has p2pmem or is bound to iopmem)'),
      '',
    )
  }
  const legend = ['✓ P2PDMA allowed with PCI bus addresses', '✓ᴴ allowed through the host bridge', '✗ refused', '? cannot tell (see below)', 'n/a no provider (neither has p2pmem nor iopmem) or a bridge: no verdict']
  let line = ' '
  for (const l of legend) {
    if (visibleWidth(line) + 2 + l.length > width && line.trim()) {
      out.push(c.dim(wrap(line.trimEnd(), width, '      ')))
      line = ' '
    }
    line += ' ' + l + ' '
  }
  out.push(c.dim(wrap(line.trimEnd(), width, '      ')))
  if (na.length > 0) out.push(c.dim(`  ${na.length} pair${na.length === 1 ? '' : 's'} n/a (--json says why for each).`))
  for (const k of Object.keys(PATH_CLASS_LEGEND) as PathClass[]) {
    if (k === 'X' || t.pairs.some((p) => p.pathClass === k)) out.push(c.dim(wrap(`  ${k.padEnd(4)} ${PATH_CLASS_LEGEND[k]}`, width, '       ')))
  }
  // Pairs refused (or uncertain) for the same reasons are listed together,
  // the reasons once, with the pair's own addresses put as "provider"/"client".
  const bad = t.pairs.filter((p) => p.p2p !== 'n/a' && (p.p2p !== 'yes' || p.acsRedirect.length > 0))
  const groups = new Map<string, {reasons: string[]; hint?: string; verdict: string; pairs: PairAnalysis[]}>()
  for (const p of bad) {
    const generic = p.reasons
      .filter((r) => !r.startsWith('kernel: '))
      .map((r) => r.replaceAll(p.provider, 'the provider').replaceAll(p.client, 'the client'))
    const verdict = p.p2p === 'no' ? c.red('refused') : p.p2p === 'unknown' ? c.yellow('cannot tell') : c.green('allowed through the host bridge')
    const k = [verdict, p.mapType, ...generic, p.hint ?? ''].join('\n')
    const g = groups.get(k) ?? {reasons: generic, hint: p.hint, verdict, pairs: []}
    g.pairs.push(p)
    groups.set(k, g)
  }
  for (const g of groups.values()) {
    const list = g.pairs.map((p) => `${short(p.provider)}→${short(p.client)}`)
    out.push('', wrap(`${c.bold(g.verdict)} (${g.pairs[0].mapType}): ${width === Infinity ? list.join(', ') : summarise(list, PAIRS_SHOWN, ' (--wide lists all)')}`, width, '  '))
    for (const r of g.reasons) out.push(wrap(`  ${r.charAt(0).toUpperCase()}${r.slice(1)}`, width, '    '))
    if (g.hint) out.push(wrap(`  ${c.cyan('hint:')} ${g.hint}`, width, '    '))
  }
  if (bad.length > 0) out.push(c.dim(wrap('(provider→client; --json gives each pair with the exact lines the kernel would log.)', width, ' ')))
  const cpu = `${cpuText(t.cpu)}${t.cpu.p2pdmaCapable ? ' (AMD Zen or newer: P2PDMA through the host bridge allowed)' : ''}`
  out.push('', c.dim(wrap(`CPU: ${cpu}`, width, '  ')))
  for (const hb of t.hostBridges) {
    const id = hb.vendorId && hb.deviceId ? ` ${hb.vendorId.slice(2)}:${hb.deviceId.slice(2)}` : ''
    const wl = hb.unknown ? `whitelist: unknown (${hb.unknown})` : hb.whitelisted ? `on the P2PDMA whitelist${hb.requiresSameHostBridge ? ' (same host bridge only)' : ''}` : 'not on the P2PDMA whitelist'
    out.push(c.dim(wrap(`Host bridge ${hb.name}: ${hb.rootDevice ?? hb.firstDevice ?? 'no device'}${id}, ${wl}`, width, '  ')))
  }
  for (const n of t.notes) out.push(c.dim(wrap(`note: ${n}`, width, '  ')))
  return out.join('\n')
}
