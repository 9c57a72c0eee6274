/** `check`'s path items: the CPU rule and host-bridge whitelist, ACS on every bridge above the chosen functions, and the kernel's verdict per pair. */
import {cpuText, PCI_EXT_CAP_ID_ACS, type PciFunction, type PciScanner, type Topology} from '../pci/index.js'
import type {CheckItem, Verdict} from './types.js'

/** ACS capability/control bits (include/uapi/linux/pci_regs.h). */
export const ACS_BITS: ReadonlyArray<[number, string]> = [
  [0x0001, 'SV'],
  [0x0002, 'TB'],
  [0x0004, 'RR'],
  [0x0008, 'CR'],
  [0x0010, 'UF'],
  [0x0020, 'EC'],
  [0x0040, 'DT'],
]

export function decodeAcs(v: number): string[] {
  return ACS_BITS.filter(([bit]) => v & bit).map(([, n]) => n)
}

export interface BridgeAcs {
  bdf: string
  /** No ACS capability (null), the capability and control registers, or unreadable (config space beyond 64 bytes needs root). */
  state: 'absent' | 'present' | 'unreadable'
  cap: string[]
  ctrl: string[]
  /** RR, CR or EC set in control: the kernel routes P2P through this port's upstream (pci_bridge_has_acs_redir). */
  redirect: boolean
}

/** ACS of one function, decoded from its config space. */
export function bridgeAcs(scanner: PciScanner, bdf: string): BridgeAcs {
  const cfg = scanner.config(bdf)
  if (!cfg || cfg.length < 256) return {bdf, state: 'unreadable', cap: [], ctrl: [], redirect: false}
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_ACS)
  if (!pos) return {bdf, state: 'absent', cap: [], ctrl: [], redirect: false}
  const cap = (cfg.u32(pos + 4) ?? 0) & 0xffff
  const ctrl = ((cfg.u32(pos + 4) ?? 0) >>> 16) & 0xffff
  return {bdf, state: 'present', cap: decodeAcs(cap), ctrl: decodeAcs(ctrl), redirect: (ctrl & (0x4 | 0x8 | 0x20)) !== 0}
}

/** Every bridge above the chosen functions, each once, top-down. */
export function bridgesAbove(scanner: PciScanner, fns: PciFunction[]): string[] {
  const out: string[] = []
  for (const f of fns) {
    const chain: string[] = []
    for (let up = f.upstream; up; up = scanner.read(up).upstream) chain.unshift(up)
    for (const b of chain) if (!out.includes(b)) out.push(b)
  }
  return out
}

export function hostBridgeItem(topo: Topology): CheckItem {
  const base = {id: 'path.host-bridge', area: 'path' as const, title: 'CPU, host bridge'}
  const c = topo.cpu
  const cpu = `CPU ${cpuText(c)}`
  const hbs = topo.hostBridges.map((h) => {
    const id = h.vendorId && h.deviceId ? `${h.vendorId.slice(2)}:${h.deviceId.slice(2)}` : '?'
    if (h.unknown) return `${h.name} unknown`
    if (!h.rootDevice) return `${h.name} has no 00.0 or Root Port device`
    return `${h.name} ${id} ${h.whitelisted ? `whitelisted${h.requiresSameHostBridge ? ' (same host bridge only)' : ''}` : 'not whitelisted'}`
  })
  const details = {cpu: topo.cpu, hostBridges: topo.hostBridges}
  if (c.p2pdmaCapable) return {...base, verdict: 'pass', found: `${cpu} (AMD Zen+): the kernel allows P2P through the host bridge for any pair`, fix: null, details}
  if (topo.hostBridges.some((h) => h.unknown)) {
    return {...base, verdict: 'unknown', found: `${cpu}, not AMD Zen+; ${hbs.join('; ')}`, fix: 'Run as root to read whether the root bus\'s first device is a Root Port.', details}
  }
  if (topo.hostBridges.length > 0 && topo.hostBridges.every((h) => h.whitelisted)) {
    return {...base, verdict: 'pass', found: `${cpu}, not AMD Zen+; ${hbs.join('; ')}: the route through the host bridge is allowed`, fix: null, details}
  }
  return {
    ...base,
    verdict: 'warn',
    found: `${cpu}, not AMD Zen+; ${hbs.join('; ') || 'no host bridge'}: only peers below a common PCIe switch (without ACS redirect) can do P2P`,
    fix: 'Put provider and client below one PCIe switch, or use an AMD Zen / whitelisted Intel host.',
    details,
  }
}

export function acsItem(scanner: PciScanner, fns: PciFunction[], topo: Topology, cmdline: Record<string, string>): CheckItem {
  const base = {id: 'path.acs', area: 'path' as const, title: 'ACS on bridges'}
  const bridges = bridgesAbove(scanner, fns).map((b) => bridgeAcs(scanner, b))
  const unreadable = bridges.filter((b) => b.state === 'unreadable')
  // What the kernel consults: each pair's path up to (provider side: including) the common
  // bridge, the two functions themselves included. Redirect above a common bridge is not on it.
  const onPath = [...new Set(topo.pairs.flatMap((p) => p.acsRedirect))]
  const offPath = bridges.filter((b) => b.redirect && !onPath.includes(b.bdf)).map((b) => b.bdf)
  const details = {bridges, redirect: onPath, redirectOffPath: offPath, cmdline: cmdline['pci=disable_acs_redir'] ?? null}
  const short = (b: string) => b.replace(/^0000:/, '')
  if (bridges.length === 0 && onPath.length === 0) return {...base, verdict: 'pass', found: 'no bridge above the chosen functions (all on root buses)', fix: null, details}
  if (onPath.length > 0) {
    const refused = topo.pairs.some((p) => p.acsRedirect.length > 0 && p.p2p === 'no')
    const list = onPath.join(';')
    const given = cmdline['pci=disable_acs_redir']
    return {
      ...base,
      verdict: refused ? 'fail' : 'warn',
      found:
        `ACS redirect (RR/CR/EC) set on ${onPath.map(short).join(', ')}: P2P below them goes up through the host bridge` +
        (refused ? ', which the kernel refuses here' : '') +
        (given ? `; pci=disable_acs_redir=${given} is on the command line but does not cover them` : ''),
      fix: `Boot with pci=disable_acs_redir=${list}`,
      details,
    }
  }
  const above = offPath.length > 0 ? `; redirect on ${offPath.map(short).join(', ')}, above the pairs' common bridges (not consulted)` : ''
  if (unreadable.length > 0) {
    return {
      ...base,
      verdict: 'unknown',
      found: `ACS not readable on ${unreadable.length} of ${bridges.length} bridges (${unreadable.map((b) => short(b.bdf)).join(', ')}): config space beyond 64 bytes needs root`,
      fix: 'Run as root (sudo iopmem check) to read ACS.',
      details,
    }
  }
  const withCap = bridges.filter((b) => b.state === 'present')
  return {
    ...base,
    verdict: 'pass',
    found:
      `no redirect on the pairs' paths; ${bridges.length} bridge(s)` +
      (withCap.length > 0 ? `, ACS control ${withCap.map((b) => `${short(b.bdf)} ${b.ctrl.join('+') || '0'}`).join(', ')}` : '') +
      above,
    fix: null,
    details,
  }
}

/** The kernel's verdict on each provider × client pair among the chosen functions (providers: functions with p2pmem). */
export function pairsItem(topo: Topology, providers: string[]): CheckItem {
  const base = {id: 'path.pairs', area: 'path' as const, title: 'pairs (kernel)'}
  const pairs = providers.length > 0 ? topo.pairs.filter((p) => providers.includes(p.provider) || providers.includes(p.client)) : []
  const count = (v: 'yes' | 'no' | 'unknown') => pairs.filter((p) => p.p2p === v).length
  const [yes, no, unk] = [count('yes'), count('no'), count('unknown')]
  const details = {
    pairs: pairs.map((p) => {
      const prov = providers.includes(p.provider) ? p.provider : p.client
      return {provider: prov, client: prov === p.provider ? p.client : p.provider, p2p: p.p2p, mapType: p.mapType, distance: p.distance, pathClass: p.pathClass}
    }),
  }
  if (providers.length === 0) return {...base, verdict: 'warn', found: 'no p2pmem provider among the chosen functions, so no pair to judge', fix: 'Make a provider first (see PROVIDERS below).', details}
  if (pairs.length === 0) return {...base, verdict: 'warn', found: 'a provider but no other function to pair it with', fix: 'Name a client: iopmem check PROVIDER CLIENT', details}
  let verdict: Verdict = 'pass'
  if (yes === 0 && no > 0) verdict = 'fail'
  else if (no > 0) verdict = 'warn'
  else if (unk > 0) verdict = 'unknown'
  const refused = pairs.filter((p) => p.p2p === 'no').map((p) => `${p.provider.replace(/^0000:/, '')}↔${p.client.replace(/^0000:/, '')}`)
  return {
    ...base,
    verdict,
    found: `${yes} of ${pairs.length} pair(s) allowed, ${no} refused, ${unk} unknown` + (refused.length > 0 ? ` (refused: ${refused.slice(0, 3).join(', ')}${refused.length > 3 ? ', …' : ''})` : ''),
    fix: verdict === 'pass' ? null : verdict === 'unknown' ? 'Run as root to read ACS and port types.' : 'See `iopmem topo` for why each pair is refused.',
    details,
  }
}

