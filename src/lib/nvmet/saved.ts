/** nvmetcli's JSON save format (hosts, ports, subsystems) plus an `iopmem` key with the namespaces' p2pmem, which nvmetcli ignores on restore and drops on save. */
import * as fs from 'node:fs'

import {checkOutputPath, Exit, type Host, IopmemError, usage} from '../sys/index.js'
import {type NvmetState, readState} from './configfs.js'
import {type P2pmemSpec, type PortAddress, type Transport, parseP2pmem, validateAddress, validateNqn, validateNsid, validatePortId, validateTransport} from './names.js'
import {machinePlan, type TargetPlan} from './target.js'

export interface SavedConfig {
  hosts: Array<{nqn: string}>
  ports: Array<{addr: Record<string, string>; portid: number; referrals: unknown[]; subsystems: string[]}>
  subsystems: Array<{
    allowed_hosts: string[]
    attr: Record<string, string>
    namespaces: Array<{device: {path: string; uuid?: string; nguid?: string}; enable: number; nsid: number}>
    nqn: string
  }>
  /** What nvmetcli does not keep: each namespace's p2pmem ('off', 'auto' or a provider BDF). */
  iopmem: {version: 1; p2pmem: Array<{subsystem: string; nsid: number; p2pmem: string}>}
}

/** The state as nvmetcli's `save` writes it, plus the iopmem key. */
export function toSaved(state: NvmetState): SavedConfig {
  const p2pmem: SavedConfig['iopmem']['p2pmem'] = []
  for (const s of state.subsystems) {
    for (const n of s.namespaces) {
      if (n.p2pmem !== null && n.p2pmem !== '0') p2pmem.push({subsystem: s.nqn, nsid: n.nsid, p2pmem: n.p2pmem === '1' ? 'auto' : n.p2pmem})
    }
  }
  const nonEmpty = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== ''))
  return {
    hosts: state.hosts.map((nqn) => ({nqn})),
    ports: state.ports.map((p) => ({
      addr: nonEmpty({adrfam: p.trtype === 'loop' ? '' : p.adrfam, traddr: p.traddr, trsvcid: p.trsvcid, trtype: p.trtype}),
      portid: p.id,
      referrals: [],
      subsystems: p.subsystems,
    })),
    subsystems: state.subsystems.map((s) => ({
      allowed_hosts: s.allowedHosts,
      attr: {allow_any_host: s.allowAnyHost ? '1' : '0'},
      namespaces: s.namespaces.map((n) => ({
        device: {path: n.devicePath, ...(n.uuid ? {uuid: n.uuid} : {}), ...(n.nguid ? {nguid: n.nguid} : {})},
        enable: n.enabled ? 1 : 0,
        nsid: n.nsid,
      })),
      nqn: s.nqn,
    })),
    iopmem: {version: 1, p2pmem},
  }
}

export function saveConfig(host: Host, file: string): {file: string; saved: SavedConfig} {
  const out = checkOutputPath(file, 'save')
  const state = readState(host)
  if (!state.loaded) throw new IopmemError(`nvmet is not loaded: ${state.root} does not exist; nothing to save.`, {code: 'E_NVMET_MISSING', exit: Exit.UNSUPPORTED})
  const saved = toSaved(state)
  fs.writeFileSync(out + '.tmp', JSON.stringify(saved, null, 2) + '\n', {mode: 0o600})
  fs.renameSync(out + '.tmp', out)
  return {file: out, saved}
}

function bad(file: string, what: string): IopmemError {
  return usage(`${file}: ${what}`, 'E_SAVED_FORMAT', ['The file must be what `iopmem nvmet save` or `nvmetcli save` wrote.'])
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const isObj = (x: unknown): x is Record<string, any> => typeof x === 'object' && x !== null && !Array.isArray(x)
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : [])

/** Read and check a saved file's shape (not the machine): a bad file is refused before anything else. */
export function readSaved(file: string): SavedConfig {
  let text: string
  try {
    const st = fs.statSync(file)
    if (!st.isFile()) throw bad(file, 'not a regular file')
    if (st.size > 4 << 20) throw bad(file, 'larger than 4 MiB')
    text = fs.readFileSync(file, 'utf8')
  } catch (error) {
    if (error instanceof IopmemError) throw error
    throw new IopmemError(`Cannot read ${file}: ${(error as Error).message}`, {code: 'E_NO_FILE', exit: Exit.NOT_FOUND})
  }
  let j: unknown
  try {
    j = JSON.parse(text)
  } catch (error) {
    throw bad(file, `not JSON (${(error as Error).message})`)
  }
  if (!isObj(j)) throw bad(file, 'not a JSON object')
  for (const k of ['hosts', 'ports', 'subsystems']) if (j[k] !== undefined && !Array.isArray(j[k])) throw bad(file, `"${k}" is not a list`)
  for (const s of arr(j.subsystems)) {
    if (!isObj(s) || typeof s.nqn !== 'string') throw bad(file, 'a subsystem without "nqn"')
    for (const n of arr(s.namespaces)) {
      if (!isObj(n) || !isObj(n.device) || typeof n.device.path !== 'string') throw bad(file, `a namespace of ${s.nqn} without "device": {"path"}`)
      for (const k of ['uuid', 'nguid']) if (n.device[k] !== undefined && !(typeof n.device[k] === 'string' && UUID_RE.test(n.device[k]))) throw bad(file, `${s.nqn}: device.${k} is not a UUID`)
    }
  }
  for (const p of arr(j.ports)) if (!isObj(p) || !isObj(p.addr)) throw bad(file, 'a port without "addr"')
  if (j.iopmem !== undefined && (!isObj(j.iopmem) || !Array.isArray(j.iopmem.p2pmem))) throw bad(file, '"iopmem" is not {"p2pmem": [...]}')
  return j as SavedConfig
}

/**
 * The plan that recreates a saved configuration. It only adds: a subsystem or host that
 * exists already is refused (as nvmetcli refuses to restore over subsystems), a port that
 * exists is reused only with the same address. Every address, NQN, device and p2pmem
 * setting is checked as `create` checks it.
 */
export function planRestore(host: Host, file: string, saved: SavedConfig): TargetPlan {
  const hosts = arr(saved.hosts).map((h) => validateNqn(String((h as any)?.nqn ?? ''), 'host NQN'))
  const p2pOf = new Map<string, P2pmemSpec>()
  for (const e of arr(saved.iopmem?.p2pmem)) {
    if (!isObj(e) || typeof e.subsystem !== 'string' || typeof e.p2pmem !== 'string') throw bad(file, 'an iopmem.p2pmem entry without subsystem, nsid and p2pmem')
    p2pOf.set(`${e.subsystem}/${validateNsid(e.nsid)}`, parseP2pmem(e.p2pmem))
  }
  type Ns = {nsid: number; path: string; enable: boolean; uuid?: string; nguid?: string}
  const wanted: Array<{nqn: string; allowAnyHost: boolean; allowed: string[]; namespaces: Ns[]}> = []
  const seen = new Set<string>()
  for (const s of saved.subsystems ?? []) {
    const nqn = validateNqn(s.nqn)
    if (seen.has(nqn)) throw bad(file, `subsystem ${nqn} twice`)
    seen.add(nqn)
    const allowed = arr(s.allowed_hosts).map((h) => validateNqn(String(h), 'host NQN'))
    for (const h of allowed) if (!hosts.includes(h)) throw bad(file, `${nqn} allows host ${h}, which is not in "hosts"`)
    const namespaces: Ns[] = []
    for (const n of s.namespaces ?? []) {
      const nsid = validateNsid(n.nsid)
      if (namespaces.some((x) => x.nsid === nsid)) throw bad(file, `${nqn}: namespace ${nsid} twice`)
      namespaces.push({nsid, path: n.device.path, enable: n.enable !== 0, uuid: n.device.uuid, nguid: n.device.nguid})
    }
    const any = s.attr?.allow_any_host as unknown
    wanted.push({nqn, allowAnyHost: any === '1' || any === 1, allowed, namespaces})
  }
  for (const k of p2pOf.keys()) if (!wanted.some((w) => w.namespaces.some((n) => `${w.nqn}/${n.nsid}` === k))) throw bad(file, `iopmem.p2pmem names ${k}, a namespace the file does not have`)
  const ports: Array<{id: number; trtype: Transport; addr: PortAddress; subsystems: string[]}> = []
  for (const p of saved.ports ?? []) {
    const id = validatePortId(String(p.portid))
    if (ports.some((x) => x.id === id)) throw bad(file, `port ${id} twice`)
    const trtype = validateTransport(String(p.addr.trtype ?? ''))
    const addr = validateAddress(trtype, trtype === 'loop' ? undefined : String(p.addr.traddr ?? ''), trtype === 'loop' ? undefined : String(p.addr.trsvcid ?? ''))
    const subs = arr(p.subsystems).map(String)
    for (const nqn of subs) if (!seen.has(nqn)) throw bad(file, `port ${id} links ${nqn}, a subsystem the file does not have`)
    ports.push({id, trtype, addr, subsystems: subs})
  }
  return machinePlan(host, hosts, wanted, ports, p2pOf)
}
