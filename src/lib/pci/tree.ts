/** `iopmem list --tree`: the PCIe hierarchy (host bridges, root ports, switches, functions) with P2P providers and P2P groups marked. */
import {PCI_ACS_CR, PCI_ACS_EC, PCI_ACS_RR} from './config-space.js'
import type {PciFunction, PciScanner} from './sysfs.js'
import {offersMemory} from './topo.js'

export type TreeRole = 'root-port' | 'switch-upstream' | 'switch-downstream' | 'bridge' | 'function'

export interface TreeNode {
  bdf: string
  role: TreeRole
  /** Buses behind a bridge: [secondary, subordinate]. */
  buses?: [number, number]
  /** A P2P provider: p2pmem, or bound to iopmem. */
  provider: boolean
  /** The P2P group (A, B, …) a function belongs to. */
  group?: string
  children: TreeNode[]
}

export interface TreeHostBridge {
  /** pci0000:00 */
  name: string
  children: TreeNode[]
}

/**
 * Functions under one PCIe switch whose paths to it pass no port with ACS
 * redirect: the kernel lets them do P2P DMA through the switch, without the
 * root complex (`topo`'s PIX/PXB).
 */
export interface P2pGroup {
  name: string
  /** The switch's upstream port. */
  switch: string
  members: string[]
  /** false: some port's ACS control could not be read (needs root), so a redirect there is possible. */
  acsKnown: boolean
}

export interface PciTree {
  hostBridges: TreeHostBridge[]
  groups: P2pGroup[]
}

const ACS_REDIRECT = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC

/** The role of a function: the PCIe port type when config space says it, else guessed from where a bridge sits. */
function roleOf(f: PciFunction, byBdf: Map<string, PciFunction>, childBridges: boolean): TreeRole {
  if (!f.isBridge) return 'function'
  switch (f.pcieType) {
    case 'root-port':
      return 'root-port'
    case 'switch-upstream':
      return 'switch-upstream'
    case 'switch-downstream':
      return 'switch-downstream'
  }
  if (f.pcieType !== undefined) return 'bridge'
  const up = f.upstream ? byBdf.get(f.upstream) : undefined
  if (!up) return 'root-port'
  if (up.isBridge && childBridges && roleOf(up, byBdf, true) !== 'switch-upstream') return 'switch-upstream'
  return roleOf(up, byBdf, true) === 'switch-upstream' ? 'switch-downstream' : 'bridge'
}

export function buildTree(scanner: PciScanner, functions: PciFunction[]): PciTree {
  const byBdf = new Map(functions.map((f) => [f.bdf, f]))
  const kids = new Map<string, PciFunction[]>()
  for (const f of functions) {
    const key = f.upstream && byBdf.has(f.upstream) ? f.upstream : `hb:${f.hostBridge}`
    kids.set(key, [...(kids.get(key) ?? []), f])
  }
  const node = (f: PciFunction): TreeNode => {
    const children = (kids.get(f.bdf) ?? []).map((c) => node(c))
    const n: TreeNode = {bdf: f.bdf, role: roleOf(f, byBdf, children.some((c) => c.role !== 'function')), provider: offersMemory(f), children}
    if (f.isBridge) {
      const cfg = scanner.config(f.bdf)?.busNumbers
      const below = descendants(n).map((d) => byBdf.get(d.bdf)!.bus)
      const sec = cfg?.secondary ?? (below.length ? Math.min(...below) : f.bus)
      n.buses = [sec, Math.max(sec, cfg?.subordinate ?? sec, ...below)]
    }
    return n
  }
  const hbNames = [...new Set(functions.map((f) => f.hostBridge))]
  const hostBridges = hbNames.map((name) => ({name, children: (kids.get(`hb:${name}`) ?? []).map((f) => node(f))}))
  const groups = p2pGroups(scanner, hostBridges)
  return {hostBridges, groups}
}

function descendants(n: TreeNode): TreeNode[] {
  return n.children.flatMap((c) => [c, ...descendants(c)])
}

/** Each switch's functions reachable from its upstream port through ports without ACS redirect, when there are two or more. */
function p2pGroups(scanner: PciScanner, hostBridges: TreeHostBridge[]): P2pGroup[] {
  const groups: P2pGroup[] = []
  const acs = (bdf: string) => {
    const cfg = scanner.config(bdf)
    return cfg && cfg.length >= 256 ? cfg.acsControl ?? 0 : undefined
  }
  const visit = (n: TreeNode) => {
    if (n.role === 'switch-upstream') {
      const members: string[] = []
      let acsKnown = true
      const walk = (m: TreeNode) => {
        for (const c of m.children) {
          if (c.role === 'function') members.push(c.bdf)
          else {
            const ctrl = acs(c.bdf)
            if (ctrl === undefined) acsKnown = false
            if (ctrl === undefined || (ctrl & ACS_REDIRECT) === 0) walk(c)
          }
        }
      }
      walk(n)
      if (members.length >= 2) {
        const name = String.fromCodePoint(65 + (groups.length % 26)) + (groups.length >= 26 ? String(Math.floor(groups.length / 26)) : '')
        groups.push({name, switch: n.bdf, members, acsKnown})
        for (const d of descendants(n)) if (members.includes(d.bdf)) d.group = name
      }
    }
    for (const c of n.children) visit(c)
  }
  for (const hb of hostBridges) for (const c of hb.children) visit(c)
  return groups
}
