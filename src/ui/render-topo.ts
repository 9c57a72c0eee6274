import type {ChalkInstance} from 'chalk'

import {type PairAnalysis, PATH_CLASS_LEGEND, type PathClass, type Topology} from '../lib/pci/index.js'
import {table} from './table.js'

const MARK = {yes: '✓', no: '✗', unknown: '?'} as const

function cell(p: PairAnalysis, c: ChalkInstance): string {
  const mark = p.p2p === 'yes' ? (p.mapType === 'thru-host-bridge' ? c.green('✓ᴴ') : c.green(MARK.yes)) : p.p2p === 'no' ? c.red(MARK.no) : c.yellow(MARK.unknown)
  return `${p.pathClass} ${p.distance} ${mark}`
}

export function renderTopo(t: Topology, c: ChalkInstance): string {
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
  out.push(table(['', ...fns.map((f) => c.bold(short(f)))], rows))
  out.push('')
  out.push(c.dim('Cell: path class, kernel distance, verdict.  ✓ P2PDMA allowed with PCI bus addresses  ✓ᴴ allowed through the host bridge  ✗ refused  ? cannot tell (see below)'))
  for (const k of Object.keys(PATH_CLASS_LEGEND) as PathClass[]) {
    if (k === 'X' || t.pairs.some((p) => p.pathClass === k)) out.push(c.dim(`  ${k.padEnd(4)} ${PATH_CLASS_LEGEND[k]}`))
  }
  // Pairs refused (or uncertain) for the same reasons are listed together,
  // the reasons once, with the pair's own addresses put as "provider"/"client".
  const bad = t.pairs.filter((p) => p.p2p !== 'yes' || p.acsRedirect.length > 0)
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
    out.push('', `${c.bold(g.verdict)} (${g.pairs[0].mapType}): ${g.pairs.map((p) => `${short(p.provider)}↔${short(p.client)}`).join(', ')}`)
    for (const r of g.reasons) out.push(`  ${r.charAt(0).toUpperCase()}${r.slice(1)}`)
    if (g.hint) out.push(`  ${c.cyan('hint:')} ${g.hint}`)
  }
  if (bad.length > 0) out.push(c.dim('(--json gives each pair with the exact lines the kernel would log.)'))
  const cpu = `${t.cpu.vendor} family 0x${t.cpu.family.toString(16)}${t.cpu.p2pdmaCapable ? ' (AMD Zen or newer: P2PDMA through the host bridge allowed)' : ''}`
  out.push('', c.dim(`CPU: ${cpu}`))
  for (const hb of t.hostBridges) {
    const id = hb.vendorId && hb.deviceId ? ` ${hb.vendorId.slice(2)}:${hb.deviceId.slice(2)}` : ''
    const wl = hb.unknown ? `whitelist: unknown (${hb.unknown})` : hb.whitelisted ? `on the P2PDMA whitelist${hb.requiresSameHostBridge ? ' (same host bridge only)' : ''}` : 'not on the P2PDMA whitelist'
    out.push(c.dim(`Host bridge ${hb.name}: ${hb.rootDevice ?? hb.firstDevice ?? 'no device'}${id}, ${wl}`))
  }
  for (const n of t.notes) out.push(c.dim(`note: ${n}`))
  return out.join('\n')
}
