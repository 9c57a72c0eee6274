/** Checking what a user names for an NVMe-oF target (NQNs, transports, addresses, ports, namespace ids, p2pmem) before configfs is touched. */
import {isIPv4, isIPv6} from 'node:net'

import {normalizeBdf} from '../pci/index.js'
import {usage} from '../sys/index.js'

export const TRANSPORTS = ['tcp', 'rdma', 'loop'] as const
export type Transport = (typeof TRANSPORTS)[number]

/** NVMF_NQN_SIZE: the kernel refuses longer subsystem and host NQNs. */
export const NQN_MAX = 223
/** NVME_DISC_SUBSYS_NAME: the discovery subsystem, which only the kernel makes. */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery'
/** The NVMe over Fabrics default service id (IANA port 4420). */
export const DEFAULT_SERVICE = '4420'

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
/**
 * NVMe base spec 4.5 "NVMe Qualified Names": nqn.yyyy-mm.<reverse domain>, then optionally
 * ':' and a string the owner of the domain picks. The string is printable ASCII without
 * whitespace, and without '/' here, since the NQN is a configfs directory name.
 */
const NQN_RE = new RegExp(`^nqn\\.(\\d{4})-(0[1-9]|1[0-2])\\.${LABEL}(?:\\.${LABEL})*(?::[\\x21-\\x2e\\x30-\\x7e]+)?$`, 'i')

function shown(s: string): string {
  return JSON.stringify(s.length > 80 ? s.slice(0, 80) + '…' : s)
}

/** A subsystem or host NQN, as the spec and the kernel accept it. */
export function validateNqn(nqn: string, what = 'subsystem NQN'): string {
  if (Buffer.byteLength(nqn) > NQN_MAX) throw usage(`Invalid ${what} ${shown(nqn)}: at most ${NQN_MAX} bytes (NVMF_NQN_SIZE).`, 'E_NQN_SYNTAX')
  if (!NQN_RE.test(nqn)) {
    throw usage(`Invalid ${what} ${shown(nqn)}: an NQN is nqn.YYYY-MM.reverse.domain[:name] (printable, no spaces or '/').`, 'E_NQN_SYNTAX', [
      'e.g. nqn.2026-11.io.example:target1, or nqn.2014-08.org.nvmexpress:uuid:<uuid>',
    ])
  }
  if (nqn.toLowerCase() === DISCOVERY_NQN) throw usage(`${DISCOVERY_NQN} is the discovery subsystem; the kernel makes it, and it cannot be a target.`, 'E_NQN_SYNTAX')
  return nqn
}

export function validateTransport(t: string): Transport {
  if (!(TRANSPORTS as readonly string[]).includes(t)) throw usage(`Unknown transport ${shown(t)}: one of ${TRANSPORTS.join(', ')}.`, 'E_TRANSPORT')
  return t as Transport
}

export interface PortAddress {
  adrfam: 'ipv4' | 'ipv6' | 'loop'
  traddr: string
  trsvcid: string
}

/**
 * A port's address: for tcp and rdma only 127.0.0.0/8 or IPv6 link-local (fe80::/10, with
 * an optional %interface) — iopmem sets targets up for one machine or a sandbox, never on a
 * network; for loop none at all.
 */
export function validateAddress(transport: Transport, address: string | undefined, service: string | undefined): PortAddress {
  if (transport === 'loop') {
    if (address !== undefined || service !== undefined) throw usage('A loop port has no address or service id; leave out --address and --service.', 'E_ADDRESS')
    return {adrfam: 'loop', traddr: '', trsvcid: ''}
  }
  if (address === undefined) throw usage(`A ${transport} port needs --address (127.0.0.0/8 or an IPv6 link-local address).`, 'E_ADDRESS', ['e.g. --address 127.0.0.1'])
  const trsvcid = validateService(service ?? DEFAULT_SERVICE)
  if (isIPv4(address)) {
    if (!address.startsWith('127.')) throw outOfRange(address)
    return {adrfam: 'ipv4', traddr: address, trsvcid}
  }
  const m = /^([^%]+)(?:%([A-Za-z0-9_.-]{1,15}))?$/.exec(address)
  if (m && isIPv6(m[1])) {
    if (!linkLocal6(m[1])) throw outOfRange(address)
    return {adrfam: 'ipv6', traddr: address, trsvcid}
  }
  throw usage(`Invalid address ${shown(address)}: give an IPv4 address in 127.0.0.0/8 or an IPv6 link-local one (fe80::/10).`, 'E_ADDRESS')
}

function outOfRange(address: string) {
  return usage(`Refusing address ${shown(address)}: iopmem only sets up targets on 127.0.0.0/8 or IPv6 link-local (fe80::/10) addresses.`, 'E_ADDRESS_RANGE', [
    'Use 127.0.0.1 (tcp), or a link-local address with its interface, e.g. fe80::1%eth0 (rdma).',
  ])
}

/** The first 10 bits are 1111 1110 10: fe80::/10. */
function linkLocal6(a: string): boolean {
  const first = a.split(':')[0]
  if (first === '') return false
  const v = Number.parseInt(first, 16)
  return (v & 0xffc0) === 0xfe80
}

export function validateService(s: string): string {
  if (!/^[1-9]\d{0,4}$/.test(s) || Number(s) > 65535) throw usage(`Invalid service id ${shown(s)}: a TCP/RDMA port number 1-65535.`, 'E_SERVICE')
  return s
}

export function validatePortId(s: string): number {
  if (!/^[1-9]\d{0,4}$/.test(s) || Number(s) > 65535) throw usage(`Invalid port id ${shown(s)}: a number 1-65535.`, 'E_PORT_ID')
  return Number(s)
}

export function validateNsid(s: string | number): number {
  const t = String(s)
  if (!/^[1-9]\d{0,9}$/.test(t) || Number(t) > 0xfffffffe) throw usage(`Invalid namespace id ${shown(t)}: 1-4294967294.`, 'E_NSID')
  return Number(t)
}

/** --p2pmem: `auto` (iopmem picks the provider), `off`, or a provider's BDF. */
export type P2pmemSpec = {mode: 'off'} | {mode: 'auto'} | {mode: 'bdf'; bdf: string}

export function parseP2pmem(s: string): P2pmemSpec {
  if (s === 'off' || s === '0') return {mode: 'off'}
  if (s === 'auto' || s === '1') return {mode: 'auto'}
  try {
    return {mode: 'bdf', bdf: normalizeBdf(s)}
  } catch {
    throw usage(`Invalid --p2pmem ${shown(s)}: auto, off, or a provider's PCI address (BDF).`, 'E_P2PMEM_SYNTAX', ['`iopmem list` shows the p2pmem providers.'])
  }
}
