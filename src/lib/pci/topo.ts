/**
 * P2P topology analysis: would Linux P2PDMA let two PCI functions talk, how
 * (bus addresses or through the host bridge), over what distance, and what
 * `nvidia-smi topo -m` would call the path.
 *
 * Ported from the kernel's drivers/pci/p2pdma.c, 6.12-era logic:
 * calc_map_type_and_dist(), pci_bridge_has_acs_redir(), cpu_supports_p2pdma(),
 * pci_p2pdma_whitelist[], pci_host_bridge_dev(), __host_bridge_whitelist(),
 * host_bridge_whitelist() and pci_p2pdma_distance_many(). Read in three trees
 * that bracket 6.12: gregkh/linux@30cc10a05b22 (5.15/5.16-era),
 * Kingxukai/linux@9b44fff655e2 (6.15+, page_pgmap()) and
 * NVIDIA/NV-Kernels@2f18f71dae62 (newer still, pcim_p2pdma_provider()). These
 * functions are the same in all three (bar the ACS capability being looked up
 * at every call in the older tree, pdev->acs_cap cached later), so they are
 * what 6.12 runs. Older kernels differ, and this file does NOT model them:
 *  - 4.20/5.0-era (torvalds/linux@02917e9f8676): upstream_bridge_distance()
 *    returned -1 whenever there was no common upstream bridge, and -2 on any
 *    ACS redirect: both refused, no whitelist, no CPU rule.
 *  - 5.2-era (torvalds/linux@3306e99edf70): root_complex_whitelist() allowed
 *    only AMD 1022:1450 at devfn 00.0 of both root buses, with distance
 *    0x1000 + dist; ACS redirect was still a hard refusal.
 *  - The first whitelist table looked only at devfn 00.0 (pci_get_slot());
 *    pci_host_bridge_dev() later also accepted a Root Port as the first device
 *    on the root bus (Skylake has no 00.0 host bridge device).
 *
 * Quirks kept on purpose (they are the kernel's):
 *  - The ACS check starts at the provider itself, not at the first bridge, and
 *    on the provider's side it includes the common upstream bridge; on the
 *    client's side it stops below it. Even provider == client is checked, so a
 *    function whose own ACS control has RR/CR/EC set is "thru-host-bridge"
 *    to itself. The disable_acs_redir list is in that order: provider side
 *    bottom-up (common bridge last), then client side bottom-up.
 *  - With no common upstream bridge the distance is still computed: the number
 *    of functions in each device's chain up to its root bus, added (a root-bus
 *    function alone counts 1). ACS is not consulted at all on that route.
 *  - Two functions directly on a root bus have no common upstream bridge
 *    (pci_upstream_bridge() is NULL for both), so they go through the host
 *    bridge even when they are functions of one device.
 *  - host_bridge_whitelist() is called with warn = acs_redirects: the
 *    "Host bridge not in P2PDMA whitelist" line is printed only on the ACS
 *    route, never when there is simply no common bridge.
 *  - cpu_supports_p2pdma() is x86-only and AMD-only (X86_VENDOR_AMD, family
 *    >= 0x17): Hygon (family 0x18, its own vendor) does not qualify.
 *  - The ACS list lives in a 128-byte buffer: past 9 entries the kernel's
 *    message is cut short (and "drop final semicolon" then writes one byte past
 *    the buffer, as seq_buf sets len = size + 1 on overflow).
 *  - pci_p2pdma_distance_many() refuses only PCI_P2PDMA_MAP_NOT_SUPPORTED;
 *    THRU_HOST_BRIDGE counts as compatible and adds its distance.
 *
 * What sysfs cannot tell us is said, not guessed: the ACS control register
 * lives in extended config space (root only), and whether a root bus's first
 * device is a Root Port needs the PCIe capability (beyond 64 bytes as well).
 */
import * as path from 'node:path'

import {isBdfName, normalizeBdf} from './bdf.js'
import type {Host} from '../sys/index.js'
import type {PciFunction, PciScanner} from './sysfs.js'
import {PCI_ACS_CR, PCI_ACS_EC, PCI_ACS_RR, PCIE_TYPE_NAMES, PcieType} from './config-space.js'

export type PathClass = 'X' | 'PIX' | 'PXB' | 'PHB' | 'NODE' | 'SYS'

/** PCI_P2PDMA_MAP_*; `n/a` in the matrix for a pair that is not a provider and a client (see analyzeTopology). */
export type MapType = 'bus-addr' | 'thru-host-bridge' | 'not-supported' | 'unknown' | 'n/a'

export interface PairAnalysis {
  /** BDF of the function whose memory is used (the kernel's provider). */
  provider: string
  /** BDF of the function doing the DMA (the kernel's client). */
  client: string
  pathClass: PathClass
  /** The kernel's dist from calc_map_type_and_dist(), also when the pair is refused. */
  distance: number
  /** PCI_P2PDMA_MAP_*; unknown when it hinges on what could not be read. */
  mapType: MapType
  /**
   * Would Linux P2PDMA allow the pair (pci_p2pdma_distance_many() >= 0).
   * `n/a` (matrix only): no verdict, as neither function has memory to offer
   * (no p2pmem, not bound to iopmem), or one is a bridge (it forwards the
   * traffic, it is not a peer).
   */
  p2p: 'yes' | 'no' | 'unknown' | 'n/a'
  /**
   * Where the two upward walks meet (the kernel's `a == bb`): a bridge, or one
   * of the two functions when it is upstream of the other (the function itself
   * for provider == client). Null when they meet only at the host bridge.
   */
  commonUpstream: string | null
  /** Functions on the checked path with RR/CR/EC set in ACS control, in the kernel's order. */
  acsRedirect: string[]
  /** Functions on the checked path whose ACS could not be read (config space beyond 64 bytes needs root). */
  acsUnknown: string[]
  /** Why not / why unknown / what the kernel would log (lines starting "kernel: "). */
  reasons: string[]
  /** How to take ACS redirect off this path, when it is on. */
  hint?: string
}

export interface CpuInfo {
  /** vendor_id of the first CPU (GenuineIntel, AuthenticAMD, …); "unknown" when absent (non-x86). */
  vendor: string
  /** `cpu family`, 0 when absent. */
  family: number
  /** cpu_supports_p2pdma(): AMD with family >= 0x17 (Zen or newer). */
  p2pdmaCapable: boolean
}

export interface HostBridgeInfo {
  /** The host bridge's sysfs name, e.g. pci0000:00. */
  name: string
  /** pci_host_bridge_dev(): the first device on the root bus when it is devfn 00.0 or a Root Port; else null. */
  rootDevice: string | null
  /** IDs of rootDevice (or of the first device, when whether it is a Root Port is unknown). */
  vendorId?: string
  deviceId?: string
  /** rootDevice matches an entry of pci_p2pdma_whitelist[]. */
  whitelisted: boolean
  /** That entry has REQ_SAME_HOST_BRIDGE: it helps only peers behind this same host bridge. */
  requiresSameHostBridge: boolean
  /** The first device on the root bus (lowest devfn), whatever it is. */
  firstDevice?: string
  /** Set when the whitelist verdict could not be reached (and why). */
  unknown?: string
  numaNode?: number | null
}

export interface Topology {
  functions: string[]
  cpu: CpuInfo
  hostBridges: HostBridgeInfo[]
  pairs: PairAnalysis[]
  notes: string[]
}

export const PATH_CLASS_LEGEND: Record<PathClass, string> = {
  X: 'Self: the same PCI function',
  PIX:
    'Connection traversing at most a single PCIe bridge: functions on one bus below the same bridge (e.g. two functions of one device), ' +
    'or endpoints below one PCIe switch (as in nvidia-smi, a switch, upstream port and downstream ports together, counts as one bridge)',
  PXB: 'Connection traversing multiple PCIe bridges or switches without traversing the PCIe Host Bridge (a common upstream bridge exists)',
  PHB:
    'Connection traversing a PCIe Host Bridge: no common upstream bridge, same host bridge (root complex); ' +
    'includes functions sitting directly on the same root bus',
  NODE: 'Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node',
  SYS: 'Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (QPI/UPI/Infinity Fabric)',
}

/** pci_p2pdma_whitelist[], drivers/pci/p2pdma.c (the comments are the kernel's). */
export const P2PDMA_WHITELIST: ReadonlyArray<{vendor: number; device: number; reqSameHostBridge: boolean; comment: string}> = [
  {vendor: 0x8086, device: 0x3c00, reqSameHostBridge: true, comment: 'Intel Xeon E5/Core i7'},
  {vendor: 0x8086, device: 0x3c01, reqSameHostBridge: true, comment: 'Intel Xeon E5/Core i7'},
  {vendor: 0x8086, device: 0x2f00, reqSameHostBridge: true, comment: 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'},
  {vendor: 0x8086, device: 0x2f01, reqSameHostBridge: true, comment: 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'},
  {vendor: 0x8086, device: 0x2030, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
  {vendor: 0x8086, device: 0x2031, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
  {vendor: 0x8086, device: 0x2032, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
  {vendor: 0x8086, device: 0x2033, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
  {vendor: 0x8086, device: 0x2020, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
  {vendor: 0x8086, device: 0x09a2, reqSameHostBridge: false, comment: 'Intel Skylake-E'},
]

const ACS_REDIR_BITS = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC
/** char buf[128] for the ACS list in calc_map_type_and_dist(). */
const ACS_LIST_BUF = 128

type Tri = 'yes' | 'no' | 'unknown'

/** /proc/cpuinfo, first processor: what cpu_supports_p2pdma() reads from cpu_data(0). */
/** The CPU for a person: "AuthenticAMD family 25 (0x19)", the number as /proc/cpuinfo and the JSON give it, and the hex AMD's documents use. */
export function cpuText(c: CpuInfo): string {
  return `${c.vendor}${c.family ? ` family ${c.family} (0x${c.family.toString(16)})` : ''}`
}

export function readCpuInfo(host: Host): CpuInfo {
  const text = host.read(host.proc('cpuinfo')) ?? ''
  const first = text.split(/\n\s*\n/)[0] ?? ''
  const field = (name: string) => {
    const m = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)
    return m ? m[1].trim() : undefined
  }
  const vendor = field('vendor_id') || 'unknown'
  const fam = Number.parseInt(field('cpu family') ?? '', 10)
  const family = Number.isNaN(fam) ? 0 : fam
  return {vendor, family, p2pdmaCapable: vendor === 'AuthenticAMD' && family >= 0x17}
}

interface HostBridgeState {
  info: HostBridgeInfo
  /** pci_host_bridge_dev(): found, none, or unknown (first device not 00.0 and its port type unreadable). */
  root: 'found' | 'none' | 'unknown'
  entry?: (typeof P2PDMA_WHITELIST)[number]
  rootFn?: PciFunction
}

const hex4 = (n: number) => n.toString(16).padStart(4, '0')
const idOf = (f: PciFunction) => `${f.vendorId.replace(/^0x/, '')}:${f.deviceId.replace(/^0x/, '')}`
/** dev_driver_string() + dev_name(), the prefix of pci_warn(). */
const devPrefix = (f: PciFunction) => `${f.driver ?? 'pci'} ${f.bdf}`

/** What the kernel prints for the ACS list: 128-byte seq_buf, final ';' dropped. */
export function kernelAcsList(bdfs: string[]): string {
  let s = ''
  for (const b of bdfs) {
    const e = b + ';'
    if (s.length + e.length < ACS_LIST_BUF) {
      s += e
      continue
    }
    // vsnprintf() filled the buffer and seq_buf overflowed: nothing more fits,
    // and buffer[len - 1] lies past the string (len = size + 1).
    return s + e.slice(0, ACS_LIST_BUF - s.length - 1)
  }
  return s.slice(0, -1)
}

class Analyzer {
  readonly cpu: CpuInfo
  private fns = new Map<string, PciFunction>()
  private acs = new Map<string, number | undefined>()
  private hbs = new Map<string, HostBridgeState>()
  private full = new Map<string, boolean>()
  readonly acsUnreadable = new Set<string>()

  constructor(readonly scanner: PciScanner) {
    this.cpu = readCpuInfo(scanner.host)
  }

  /** A function asked for by the user: validated (E_NO_DEVICE), memoised. */
  endpoint(bdfText: string): PciFunction {
    const known = this.fns.get(normalizeBdf(bdfText))
    if (known) return known
    const f = this.scanner.get(bdfText)
    this.fns.set(f.bdf, f)
    return f
  }

  fn(bdf: string): PciFunction {
    let f = this.fns.get(bdf)
    if (!f) {
      f = this.scanner.read(bdf)
      this.fns.set(bdf, f)
    }
    return f
  }

  /** pci_upstream_bridge(): the parent directory when it is a PCI function. */
  up(f: PciFunction): PciFunction | null {
    return f.upstream ? this.fn(f.upstream) : null
  }

  /** The function and its upstream bridges, bottom-up. */
  chain(f: PciFunction): PciFunction[] {
    const out: PciFunction[] = []
    const seen = new Set<string>()
    for (let cur: PciFunction | null = f; cur && !seen.has(cur.bdf); cur = this.up(cur)) {
      seen.add(cur.bdf)
      out.push(cur)
    }
    return out
  }

  /** The host bridge directory: the parent of the topmost function (works for VMD domains nested in another). */
  hostBridgeDir(f: PciFunction): string {
    const c = this.chain(f)
    return path.dirname(c[c.length - 1].sysfsPath)
  }

  /**
   * The ACS control register as the kernel reads it: 0 without an ACS
   * capability (also when there is no extended config space at all: a full
   * 256-byte read), undefined when we saw only the unprivileged 64 bytes.
   */
  acsCtrl(bdf: string): number | undefined {
    if (this.acs.has(bdf)) return this.acs.get(bdf)
    const cfg = this.scanner.config(bdf)
    let v: number | undefined
    if (cfg && cfg.length >= 256) v = cfg.acsControl ?? 0
    this.acs.set(bdf, v)
    if (v === undefined) this.acsUnreadable.add(bdf)
    return v
  }

  /** The PCIe capability (port type) could be looked for: config space beyond the unprivileged 64 bytes was read. */
  portTypeKnown(f: PciFunction): boolean {
    if (f.pcieType !== undefined) return true
    let full = this.full.get(f.bdf)
    if (full === undefined) {
      full = (this.scanner.config(f.bdf)?.length ?? 0) >= 256
      this.full.set(f.bdf, full)
    }
    return full
  }

  hostBridge(dir: string): HostBridgeState {
    const name = path.basename(dir)
    const known = this.hbs.get(name)
    if (known) return known
    const first = this.scanner.host.list(dir).find((n) => isBdfName(n))
    const info: HostBridgeInfo = {name, rootDevice: null, whitelisted: false, requiresSameHostBridge: false, firstDevice: first}
    const st: HostBridgeState = {info, root: 'none'}
    if (first) {
      const f = this.fn(first)
      info.numaNode = f.numaNode
      const isDevfn0 = f.device === 0 && f.function === 0
      const isRootPort = this.portTypeKnown(f) ? f.pcieType === PCIE_TYPE_NAMES[PcieType.ROOT_PORT] : undefined
      const entry = P2PDMA_WHITELIST.find((e) => `0x${hex4(e.vendor)}` === f.vendorId && `0x${hex4(e.device)}` === f.deviceId)
      if (isDevfn0 || isRootPort) {
        st.root = 'found'
        st.rootFn = f
        info.rootDevice = f.bdf
        info.vendorId = f.vendorId
        info.deviceId = f.deviceId
        st.entry = entry
        info.whitelisted = entry !== undefined
        info.requiresSameHostBridge = entry?.reqSameHostBridge ?? false
      } else if (isRootPort === undefined) {
        info.vendorId = f.vendorId
        info.deviceId = f.deviceId
        st.entry = entry
        info.requiresSameHostBridge = entry?.reqSameHostBridge ?? false
        if (entry) {
          st.root = 'unknown'
          info.unknown =
            `the first device on the root bus, ${f.bdf} (${idOf(f)}), is on the P2PDMA whitelist but not at devfn 00.0, ` +
            'and whether it is a PCIe Root Port could not be read (config space beyond 64 bytes needs root)'
        }
      }
    }
    this.hbs.set(name, st)
    return st
  }

  hostBridges(): HostBridgeInfo[] {
    return [...this.hbs.values()].map((s) => s.info)
  }

  /** __host_bridge_whitelist(), three-valued; warnings collected when warn. */
  private hbWhitelist(st: HostBridgeState, same: boolean, warn: boolean, log: string[]): Tri {
    if (st.root === 'none') return 'no'
    const e = st.entry
    if (e) {
      if (e.reqSameHostBridge && !same) return 'no'
      return st.root === 'unknown' ? 'unknown' : 'yes'
    }
    if (warn && st.root === 'found' && st.rootFn) {
      log.push(`kernel: ${devPrefix(st.rootFn)}: Host bridge not in P2PDMA whitelist: ${idOf(st.rootFn)}`)
    }
    return 'no'
  }

  /** host_bridge_whitelist(a, b, warn). */
  private hostBridgeWhitelist(a: HostBridgeState, b: HostBridgeState, warn: boolean, log: string[]): Tri {
    if (a === b) return this.hbWhitelist(a, true, warn, log)
    const ra = this.hbWhitelist(a, false, warn, log)
    if (ra === 'no') return 'no'
    const rb = this.hbWhitelist(b, false, warn && ra === 'yes', log)
    if (rb === 'no') return 'no'
    return ra === 'yes' && rb === 'yes' ? 'yes' : 'unknown'
  }

  /** One sentence on why a host bridge does not let the pair through. */
  private whyNot(a: HostBridgeState, b: HostBridgeState): string[] {
    const out: string[] = []
    const same = a === b
    for (const st of same ? [a] : [a, b]) {
      const i = st.info
      if (st.root === 'none') {
        out.push(
          `host bridge ${i.name} has neither a devfn 00.0 device nor a PCIe Root Port as the first device on its root bus` +
            (i.firstDevice ? ` (it is ${i.firstDevice})` : '') +
            ', so the kernel has nothing to match against its whitelist',
        )
      } else if (!st.entry) {
        if (st.rootFn) out.push(`host bridge ${i.name}'s ${i.rootDevice} (${idOf(st.rootFn)}) is not on the kernel's P2PDMA whitelist`)
      } else if (st.entry.reqSameHostBridge && !same) {
        out.push(
          `host bridge ${i.name} (${st.entry.comment}, ${hex4(st.entry.vendor)}:${hex4(st.entry.device)}) is whitelisted only for peers behind the same host bridge (REQ_SAME_HOST_BRIDGE)`,
        )
      } else if (st.root === 'unknown' && i.unknown) {
        out.push(`for host bridge ${i.name}, ${i.unknown}`)
      }
    }
    return out
  }

  private cpuSentence(): string {
    const c = this.cpu
    return c.p2pdmaCapable
      ? `the CPU is ${cpuText(c)}, AMD Zen or newer, which the kernel trusts to route peer-to-peer traffic through the host bridge (cpu_supports_p2pdma)`
      : `the CPU (${cpuText(c)}) is not an AMD Zen or newer, so traffic through the host bridge needs a whitelisted host bridge`
  }

  pair(providerText: string, clientText: string): PairAnalysis {
    const A = this.endpoint(providerText)
    const B = this.endpoint(clientText)
    const chainA = this.chain(A)
    const chainB = this.chain(B)

    // calc_map_type_and_dist(): walk up from the provider; for each step, walk up from the client.
    let common: PciFunction | null = null
    let distA = 0
    let distB = 0
    const aVisited: PciFunction[] = []
    outer: for (const a of chainA) {
      distB = 0
      aVisited.push(a)
      for (const bb of chainB) {
        if (a.bdf === bb.bdf) {
          common = a
          break outer
        }
        distB++
      }
      distA++
    }
    const distance = distA + distB
    const hbA = this.hostBridge(this.hostBridgeDir(A))
    const hbB = this.hostBridge(this.hostBridgeDir(B))

    const res: PairAnalysis = {
      provider: A.bdf,
      client: B.bdf,
      pathClass: 'PHB',
      distance,
      mapType: 'unknown',
      p2p: 'unknown',
      commonUpstream: common ? common.bdf : null,
      acsRedirect: [],
      acsUnknown: [],
      reasons: [],
    }
    const cp = devPrefix(B)
    const refuse = `kernel: ${cp}: cannot be used for peer-to-peer DMA as the client and provider (${A.bdf}) do not share an upstream bridge or whitelisted host bridge`

    if (common) {
      const c = common
      const bPart = chainB.slice(0, chainB.findIndex((f) => f.bdf === c.bdf))
      res.pathClass = A.bdf === B.bdf ? 'X' : this.bridgeUnits([...aVisited, ...bPart].filter((f) => f.bdf !== A.bdf && f.bdf !== B.bdf)) <= 1 ? 'PIX' : 'PXB'

      for (const f of [...aVisited, ...bPart]) {
        const v = this.acsCtrl(f.bdf)
        if (v === undefined) res.acsUnknown.push(f.bdf)
        else if (v & ACS_REDIR_BITS) res.acsRedirect.push(f.bdf)
      }

      if (res.acsRedirect.length === 0 && res.acsUnknown.length === 0) {
        res.mapType = 'bus-addr'
        res.p2p = 'yes'
        return res
      }

      if (res.acsRedirect.length > 0) {
        const list = res.acsRedirect.join(', ')
        res.reasons.push(
          `ACS redirect (RR/CR/EC in ACS control) is set on ${list}, so the kernel sends this pair's traffic up through the host bridge instead of turning at ${c.bdf}.`,
        )
        res.reasons.push(`kernel: ${cp}: ACS redirect is set between the client and provider (${A.bdf})`)
        res.reasons.push(`kernel: ${cp}: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=${kernelAcsList(res.acsRedirect)}`)
        if (res.acsUnknown.length > 0) {
          res.reasons.push(
            `ACS could not be read on ${res.acsUnknown.join(', ')} (config space beyond 64 bytes needs root): the list may be incomplete; run as root to check ACS.`,
          )
        }
        res.hint = `add the kernel parameter pci=disable_acs_redir=${res.acsRedirect.join(';')}`
        const log: string[] = []
        const t = this.cpu.p2pdmaCapable ? 'yes' : this.hostBridgeWhitelist(hbA, hbB, true, log)
        res.reasons.push(...log)
        this.thruVerdict(res, t, hbA, hbB, refuse)
        return res
      }

      // No redirect seen, but some ACS unreadable: bus-addr if none is set, else through the host bridge.
      const t: Tri = this.cpu.p2pdmaCapable ? 'yes' : this.hostBridgeWhitelist(hbA, hbB, false, [])
      res.mapType = 'unknown'
      const unread = `ACS could not be read on ${res.acsUnknown.join(', ')} (config space beyond 64 bytes needs root; run as root to check ACS)`
      if (t === 'yes') {
        res.p2p = 'yes'
        res.reasons.push(
          `${unread}: without ACS redirect the kernel maps with bus addresses through ${c.bdf}; with it, through the host bridge, which is allowed here as ${this.thruWhy(hbA)}.`,
        )
      } else {
        res.p2p = 'unknown'
        res.reasons.push(
          `${unread}: without ACS redirect the kernel maps with bus addresses through ${c.bdf}; with it, traffic would go through the host bridge, which ` +
            (t === 'no' ? `the kernel refuses here: ${[...this.whyNot(hbA, hbB), this.cpuSentence()].join('; ')}.` : `may or may not be allowed: ${this.whyNot(hbA, hbB).join('; ')}.`),
        )
      }
      return res
    }

    // No common upstream bridge: through the host bridge(s). ACS is not consulted.
    if (hbA === hbB) res.pathClass = 'PHB'
    else res.pathClass = A.numaNode !== null && B.numaNode !== null && A.numaNode !== B.numaNode ? 'SYS' : 'NODE'
    const where = hbA === hbB ? `host bridge ${hbA.info.name}` : `host bridges ${hbA.info.name} and ${hbB.info.name}`
    res.reasons.push(
      `${A.bdf} and ${B.bdf} share no upstream bridge` +
        (A.upstream === null && B.upstream === null ? ' (both sit directly on a root bus)' : '') +
        `, so their traffic goes through ${where}.`,
    )
    const t: Tri = this.cpu.p2pdmaCapable ? 'yes' : this.hostBridgeWhitelist(hbA, hbB, false, [])
    this.thruVerdict(res, t, hbA, hbB, refuse)
    return res
  }

  private thruWhy(hb: HostBridgeState): string {
    if (this.cpu.p2pdmaCapable) return this.cpuSentence()
    const e = hb.entry
    return `host bridge ${hb.info.name}'s ${hb.info.rootDevice} (${e ? `${e.comment}, ${hex4(e.vendor)}:${hex4(e.device)}` : '?'}) is on the kernel's P2PDMA whitelist`
  }

  private thruVerdict(res: PairAnalysis, t: Tri, hbA: HostBridgeState, hbB: HostBridgeState, refuse: string): void {
    if (t === 'yes') {
      res.mapType = 'thru-host-bridge'
      res.p2p = 'yes'
      const why = this.cpu.p2pdmaCapable ? this.cpuSentence() : hbA === hbB ? this.thruWhy(hbA) : `${this.thruWhy(hbA)}, and so is ${hbB.info.name}'s`
      res.reasons.push(`Allowed through the host bridge (PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, DMA mapped through the IOMMU if any): ${why}.`)
    } else if (t === 'no') {
      res.mapType = 'not-supported'
      res.p2p = 'no'
      res.reasons.push(`Refused (PCI_P2PDMA_MAP_NOT_SUPPORTED): ${[...this.whyNot(hbA, hbB), this.cpuSentence()].join('; ')}.`)
      res.reasons.push(refuse)
    } else {
      res.mapType = 'unknown'
      res.p2p = 'unknown'
      res.reasons.push(`Unknown whether the kernel allows the route through the host bridge: ${this.whyNot(hbA, hbB).join('; ')}.`)
    }
  }

  /**
   * How many bridges the path crosses, counting a PCIe switch (upstream port
   * plus its downstream ports) once, as nvidia-smi does. Port types come from
   * config space; without it (non-root) a bridge at an odd depth >= 3 below a
   * root-bus bridge is taken for a switch downstream port (RP, UP, DP, UP, DP…).
   */
  private bridgeUnits(between: PciFunction[]): number {
    const units = new Set<string>()
    for (const f of between) {
      const up = this.up(f)
      let unit = f.bdf
      if (up && f.isBridge && up.isBridge) {
        const dsp = PCIE_TYPE_NAMES[PcieType.DOWNSTREAM]
        const usp = PCIE_TYPE_NAMES[PcieType.UPSTREAM]
        if (f.pcieType === dsp && (up.pcieType === undefined || up.pcieType === usp)) unit = up.bdf
        else if (!this.portTypeKnown(f) && (up.pcieType === undefined || up.pcieType === usp)) {
          const depth = this.chain(f).length
          if (depth >= 3 && depth % 2 === 1) unit = up.bdf
        }
      }
      units.add(unit)
    }
    return units.size
  }
}

/** One provider/client pair, as calc_map_type_and_dist() would judge it. */
export function analyzePair(scanner: PciScanner, provider: string, client: string): PairAnalysis {
  return new Analyzer(scanner).pair(provider, client)
}

/**
 * A function with memory a peer can DMA to: a p2pmem pool (an NVMe CMB, a
 * driver's pci_p2pdma_add_resource(), iopmem in p2pmem mode), or bound to
 * iopmem (its BAR is device memory, as a block device or device-dax).
 */
export function offersMemory(f: PciFunction): boolean {
  return f.p2pmem !== null || f.driver === 'iopmem'
}

/** Why a pair of the matrix gets no verdict (provider is the first), or undefined when it gets one. */
function notApplicable(p: PciFunction, c: PciFunction, common: string | null): string | undefined {
  for (const [b, o] of [
    [p, c],
    [c, p],
  ]) {
    if (!b.isBridge) continue
    return common === b.bdf
      ? `${b.bdf} is a bridge upstream of ${o.bdf} (on its path to the host bridge): it forwards peer-to-peer traffic, it is not a peer.`
      : `${b.bdf} is a bridge: it forwards peer-to-peer traffic, it is neither provider nor client.`
  }
  if (!offersMemory(p)) return `Neither ${p.bdf} nor ${c.bdf} has memory to offer a peer (no p2pmem, not bound to iopmem): P2PDMA needs a provider.`
  return undefined
}

/**
 * Every unordered pair of the given functions. The provider is the one with
 * memory to offer (offersMemory; the first given when both have); pairs
 * with no provider, or with a bridge, get no verdict (`n/a`), only their
 * path class and distance.
 */
export function analyzeTopology(scanner: PciScanner, bdfs: string[]): Topology {
  const an = new Analyzer(scanner)
  const functions: string[] = []
  for (const b of bdfs) {
    const f = an.endpoint(b)
    if (!functions.includes(f.bdf)) functions.push(f.bdf)
  }
  const pairs: PairAnalysis[] = []
  for (let i = 0; i < functions.length; i++) {
    for (let j = i + 1; j < functions.length; j++) {
      let p = an.fn(functions[i])
      let c = an.fn(functions[j])
      if (!offersMemory(p) && offersMemory(c)) [p, c] = [c, p]
      const r = an.pair(p.bdf, c.bdf)
      const na = notApplicable(p, c, r.commonUpstream)
      if (na) {
        r.p2p = 'n/a'
        r.mapType = 'n/a'
        r.reasons = [na]
        r.acsRedirect = []
        r.acsUnknown = []
        delete r.hint
      }
      pairs.push(r)
    }
  }
  for (const f of functions) an.hostBridge(an.hostBridgeDir(an.fn(f)))

  const notes: string[] = []
  const cpu = an.cpu
  notes.push(
    cpu.p2pdmaCapable
      ? `CPU ${cpuText(cpu)} is AMD Zen or newer: Linux allows P2PDMA through the host bridge for any pair, whitelist or not (cpu_supports_p2pdma).`
      : `CPU ${cpuText(cpu)} is not AMD Zen or newer: a pair without a common upstream bridge (or with ACS redirect on its path) needs a host bridge on the kernel's P2PDMA whitelist.`,
  )
  const hostBridges = an.hostBridges()
  for (const hb of hostBridges) {
    const id = hb.vendorId && hb.deviceId ? `${hb.vendorId.replace(/^0x/, '')}:${hb.deviceId.replace(/^0x/, '')}` : undefined
    if (hb.unknown) notes.push(`Host bridge ${hb.name}: ${hb.unknown}.`)
    else if (!hb.rootDevice)
      notes.push(
        `Host bridge ${hb.name}: the first device on its root bus${hb.firstDevice ? ` (${hb.firstDevice})` : ''} is neither devfn 00.0 nor a Root Port, so it can never be whitelisted.`,
      )
    else if (hb.whitelisted)
      notes.push(
        `Host bridge ${hb.name}: ${hb.rootDevice} (${id}) is on the P2PDMA whitelist` +
          (hb.requiresSameHostBridge ? ', for peers behind this same host bridge only (REQ_SAME_HOST_BRIDGE).' : '.'),
      )
    else notes.push(`Host bridge ${hb.name}: ${hb.rootDevice} (${id}) is not on the P2PDMA whitelist.`)
  }
  const unknownAcs = new Set(pairs.flatMap((p) => p.acsUnknown))
  if (unknownAcs.size > 0) {
    notes.push(
      `ACS control could not be read for ${[...unknownAcs].sort().join(', ')}: config space is limited to 64 bytes for non-root users; run as root to check ACS.`,
    )
  }
  return {functions, cpu, hostBridges, pairs, notes}
}
