/** Where a namespace's p2pmem comes from: the port's P2PDMA client (the RDMA NIC, if any), and the provider picked or checked by the kernel's own distance rules (topo). */
import * as path from 'node:path'

import {type BlockInfo, nvmeNamespace} from '../dax/index.js'
import {analyzePair, isBdfName, nearestPciAncestor, type PairAnalysis, type PciScanner} from '../pci/index.js'
import {Exit, type Host, IopmemError, usage} from '../sys/index.js'
import type {P2pmemSpec, Transport} from './names.js'

/** The PCI function nvmet hands to P2PDMA as the port's client, or why there is none. */
export interface PortClient {
  transport: Transport
  /** The NIC's BDF: only a PCI RDMA device can be one. */
  nic: string | null
  /** The RDMA device (ib_device) behind the port, when one was found. */
  rdmaDevice: string | null
  /** Why there is no PCI client, when nic is null. */
  reason: string | null
}

/** The kernel reads p2pmem only through ctrl->p2p_client, which nvmet-rdma alone sets. */
const NO_CLIENT: Record<Exclude<Transport, 'rdma'>, string> = {
  loop: 'a loop port has no NIC: nvme-loop sets no P2PDMA client, so the kernel puts no data buffer in p2pmem for it (it only checks the provider against the namespace at enable)',
  tcp: 'a tcp port has no P2PDMA client: the kernel sets one only for RDMA (nvmet_rdma: ib_dma_pci_p2p_dma_supported()); tcp data passes through socket buffers in system RAM, so p2pmem is accepted but not used',
}

/**
 * The port's client. For rdma: the RDMA device named by --nic (an ib_device name or a PCI
 * BDF), else the only one there is; its PCI function is the first PCI device among its
 * parents, as find_parent_pci_dev() looks. Soft-RoCE (rxe) and soft-iWARP (siw) devices
 * have none: the kernel refuses them as P2PDMA clients ('not a PCI device').
 */
export function portClient(host: Host, scanner: PciScanner, transport: Transport, nicArg?: string): PortClient {
  if (transport !== 'rdma') {
    if (nicArg !== undefined) throw usage(`--nic is for rdma ports; a ${transport} port has no NIC the kernel uses for P2PDMA.`, 'E_NIC')
    return {transport, nic: null, rdmaDevice: null, reason: NO_CLIENT[transport]}
  }
  const ibRoot = host.sys('class', 'infiniband')
  const devices = host.list(ibRoot)
  if (nicArg !== undefined && isBdfName(nicArg.length === 7 ? '0000:' + nicArg : nicArg)) {
    const fn = scanner.get(nicArg)
    const ib = devices.find((d) => pciOf(host, path.join(ibRoot, d)) === fn.bdf) ?? null
    return {transport, nic: fn.bdf, rdmaDevice: ib, reason: null}
  }
  let name = nicArg
  if (name === undefined) {
    if (devices.length === 0) return {transport, nic: null, rdmaDevice: null, reason: 'no RDMA device is registered (/sys/class/infiniband is empty): the rdma port cannot be enabled until one is'}
    if (devices.length > 1) throw usage(`More than one RDMA device (${devices.join(', ')}): say which one serves the port with --nic.`, 'E_NIC')
    name = devices[0]
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || !devices.includes(name)) {
    throw new IopmemError(`No RDMA device ${JSON.stringify(name.slice(0, 64))}${devices.length > 0 ? ` (there are: ${devices.join(', ')})` : ' (none is registered)'}.`, {
      code: 'E_NO_NIC',
      exit: Exit.NOT_FOUND,
      suggestions: ['`ls /sys/class/infiniband` lists them; --nic also takes the NIC\'s PCI address.'],
    })
  }
  const bdf = pciOf(host, path.join(ibRoot, name))
  if (!bdf) {
    return {
      transport,
      nic: null,
      rdmaDevice: name,
      reason: `${name} is not a PCI device: it has no PCI function among its parents (soft-RoCE and soft-iWARP register with no DMA device), so the kernel's P2PDMA client check fails ('not a PCI device') and nvmet uses no p2pmem on this port`,
    }
  }
  return {transport, nic: bdf, rdmaDevice: name, reason: null}
}

function pciOf(host: Host, classLink: string): string | undefined {
  const real = host.realpath(classLink)
  const fn = real ? nearestPciAncestor(real) : undefined
  return fn ? path.basename(fn) : undefined
}

/** What iopmem decided for one namespace's p2pmem. */
export interface P2pDecision {
  spec: P2pmemSpec['mode']
  /** What is written to the namespace's p2pmem attribute (null: left at 0). */
  write: string | null
  provider: string | null
  /** The namespace's PCI function (the NVMe behind the block device). */
  namespaceFunction: string | null
  nic: string | null
  /** Sum of the kernel's distances from the provider to the clients. */
  distance: number | null
  /** Why this provider (or none), in words. */
  why: string
  /** The kernel's verdict per client, as topo computes it. */
  pairs: PairAnalysis[]
  warnings: string[]
}

function refuseP2p(message: string, pairs: PairAnalysis[], code = 'E_P2P_REFUSED'): IopmemError {
  return new IopmemError(message, {
    code,
    exit: Exit.REFUSED,
    suggestions: ['`iopmem topo` shows every pair and why; --p2pmem auto picks one the kernel accepts, --p2pmem off uses none.'],
    details: {pairs},
  })
}

function pairText(p: PairAnalysis, role: string): string {
  return `${role}: distance ${p.distance} (${p.pathClass}, ${p.mapType})`
}

/**
 * Decide a namespace's p2pmem. An explicit provider is checked against the namespace's NVMe
 * (the kernel checks it at enable and refuses) and the NIC (the kernel checks it at connect
 * and silently uses none): either 'no' is refused here, with topo's reasons. `auto` picks,
 * among published providers every client can reach, the one with the smallest summed
 * distance, as pci_p2pmem_find_many() does (ties: the lowest BDF, where the kernel draws
 * one at random), and writes that BDF so the kernel uses exactly it.
 */
export function decideP2pmem(host: Host, scanner: PciScanner, client: PortClient, block: BlockInfo, spec: P2pmemSpec): P2pDecision {
  const base = {spec: spec.mode, nic: client.nic, warnings: [] as string[]}
  if (spec.mode === 'off') return {...base, write: null, provider: null, namespaceFunction: null, distance: null, why: 'p2pmem off', pairs: []}
  const nsFn = nvmeNamespace(host, block.disk).bdf
  if (!nsFn) {
    throw refuseP2p(
      `${block.node} cannot use p2pmem: peer-to-peer DMA is not supported by the driver of ${block.node} (the kernel allows it only for a PCI NVMe namespace, and refuses enable with EINVAL).`,
      [],
      'E_P2P_UNSUPPORTED',
    )
  }
  const clients = client.nic && client.nic !== nsFn ? [nsFn, client.nic] : [nsFn]
  const roles = (c: string) => (c === nsFn ? `namespace ${block.name} on ${c}` : `NIC ${c}`)
  const warnings = client.reason ? [`p2pmem will not be used: ${client.reason}.`] : []
  if (spec.mode === 'bdf') {
    const fn = scanner.get(spec.bdf)
    if (!fn.p2pmem?.published) {
      throw refuseP2p(`${fn.bdf} has no ${fn.p2pmem ? 'published ' : ''}peer-to-peer memory, so the kernel refuses it as a provider (ENODEV).`, [], 'E_NO_P2PMEM')
    }
    const pairs = clients.map((c) => analyzePair(scanner, fn.bdf, c))
    const no = pairs.filter((p) => p.p2p === 'no')
    if (no.length > 0) {
      throw refuseP2p(
        `The kernel would refuse ${fn.bdf} as the p2pmem provider of ${block.node}:\n${no.map((p) => `  - ${roles(p.client)}: ${p.reasons.join('; ') || 'not supported'}`).join('\n')}`,
        pairs,
      )
    }
    for (const p of pairs) if (p.p2p === 'unknown') warnings.push(`${roles(p.client)}: the kernel's verdict is unknown here (${p.reasons.join('; ')}).`)
    const distance = pairs.reduce((s, p) => s + p.distance, 0)
    return {...base, write: fn.bdf, provider: fn.bdf, namespaceFunction: nsFn, distance, why: `given: ${pairs.map((p) => pairText(p, roles(p.client))).join('; ')}`, pairs, warnings}
  }
  const providers = scanner.scanAll().filter((f) => f.p2pmem?.published)
  const candidates: Array<{bdf: string; pairs: PairAnalysis[]; distance: number}> = []
  const rejected: string[] = []
  for (const f of providers) {
    const pairs = clients.map((c) => analyzePair(scanner, f.bdf, c))
    const bad = pairs.find((p) => p.p2p !== 'yes')
    if (bad) rejected.push(`${f.bdf}: ${roles(bad.client)} ${bad.p2p === 'no' ? 'refused' : 'unknown'} (${bad.reasons.join('; ') || bad.pathClass})`)
    else candidates.push({bdf: f.bdf, pairs, distance: pairs.reduce((s, p) => s + p.distance, 0)})
  }
  candidates.sort((a, b) => a.distance - b.distance || a.bdf.localeCompare(b.bdf))
  const best = candidates[0]
  if (!best) {
    throw refuseP2p(
      `No peer-to-peer memory is available that ${clients.map((c) => roles(c)).join(' and ')} can all use${providers.length === 0 ? ': no function publishes p2pmem' : `:\n${rejected.map((r) => `  - ${r}`).join('\n')}`}`,
      [],
      'E_NO_P2PMEM',
    )
  }
  const ties = candidates.filter((c) => c.distance === best.distance).length
  const why = `nearest of ${candidates.length} usable provider${candidates.length === 1 ? '' : 's'} (summed distance ${best.distance}${ties > 1 ? `, tied with ${ties - 1}: lowest BDF` : ''}): ${best.pairs.map((p) => pairText(p, roles(p.client))).join('; ')}${client.nic ? '' : ' (no NIC client: chosen for the namespace alone)'}`
  return {...base, write: best.bdf, provider: best.bdf, namespaceFunction: nsFn, distance: best.distance, why, pairs: best.pairs, warnings: [...warnings, ...rejected.map((r) => `not chosen: ${r}`)]}
}
