/** Planning, applying (with rollback) and removing nvmet targets, and the nvmetcli-readable save/restore format with iopmem's p2pmem settings. */
import * as path from 'node:path'

import {type BlockInfo, blockUsage, resolveDeviceArg} from '../dax/index.js'
import {PciScanner} from '../pci/index.js'
import {acquireLocks, Exit, type Host, IopmemError, type LockOptions, type SignalGuard, usage, withLock} from '../sys/index.js'
import {Configfs, type ConfigfsStep, type NvmetState, nvmetRoot, readState} from './configfs.js'
import {type PortAddress, type P2pmemSpec, type Transport, validateAddress, validateNqn, validatePortId, validateTransport} from './names.js'
import {decideP2pmem, type P2pDecision, portClient, type PortClient} from './p2p.js'

export interface NamespacePlan {
  nsid: number
  /** The block device as the kernel names it (/dev/nvme0n1): what device_path gets. */
  device: string
  uuid?: string
  nguid?: string
  enable: boolean
  p2pmem: P2pDecision
}

export interface SubsystemPlan {
  nqn: string
  allowAnyHost: boolean
  allowedHosts: string[]
  namespaces: NamespacePlan[]
}

export interface PortPlan extends PortAddress {
  id: number
  trtype: Transport
  /** The port is there already, with this address: only the subsystems are linked in. */
  exists: boolean
  subsystems: string[]
  client: PortClient
}

export interface TargetPlan {
  /** Host NQNs to make under hosts/ (those not there yet). */
  hosts: string[]
  subsystems: SubsystemPlan[]
  ports: PortPlan[]
  warnings: string[]
  /** Disks whose locks are held while the target is made. */
  disks: string[]
}

export interface TargetResult {
  action: 'create' | 'restore' | 'remove'
  subsystems: string[]
  ports: number[]
  namespaces: Array<{nqn: string; nsid: number; device: string; p2pmem: P2pDecision | null}>
  steps: ConfigfsStep[]
  warnings: string[]
  changed: boolean
  /** A step failed or a stop signal came: what this run made was removed again (rolledBack), or this is what is left. */
  rolledBack?: boolean
  left?: string[]
  interrupted?: boolean
  signal?: string
}

function requireLoaded(state: NvmetState): void {
  if (!state.loaded) {
    throw new IopmemError(`nvmet is not loaded: ${state.root} does not exist.`, {
      code: 'E_NVMET_MISSING',
      exit: Exit.UNSUPPORTED,
      suggestions: [
        'Load it: sudo modprobe nvmet (and nvmet-tcp, nvmet-rdma or nvme-loop for the port).',
        'configfs must be mounted: sudo mount -t configfs none /sys/kernel/config',
      ],
    })
  }
}

function requireRoot(host: Host): void {
  if (!host.isRoot()) throw new IopmemError('nvmet needs root: it changes the kernel\'s configfs tree.', {code: 'E_NOT_ROOT', exit: Exit.PERMISSION, suggestions: ['Run it with sudo.']})
}

function refused(message: string, code: string, suggestions: string[] = [], details?: Record<string, unknown>): IopmemError {
  return new IopmemError(message, {code, exit: Exit.REFUSED, suggestions, details})
}

/** A namespace's block device, checked: it exists, is a block device, nothing uses it, and no nvmet namespace has it already. */
function checkDevice(host: Host, state: NvmetState, arg: string, taken: Map<string, string>): BlockInfo {
  const b = resolveDeviceArg(host, arg)
  const {uses} = blockUsage(host, b)
  if (uses.length > 0) {
    throw refused(`${b.node} is in use; refusing to export it:\n${uses.map((u) => `  - ${u.detail}`).join('\n')}`, 'E_IN_USE', ['Unmount it and stop what holds it first.'], {uses})
  }
  for (const s of state.subsystems) {
    for (const ns of s.namespaces) {
      if (ns.devicePath === b.node || ns.devicePath === `/dev/${b.disk.name}` || (b.partition === null && b.disk.partitions.some((p) => ns.devicePath === `/dev/${p.name}`))) {
        throw refused(`${b.node} is already exported by nvmet: ${s.nqn} namespace ${ns.nsid} has ${ns.devicePath}.`, 'E_IN_USE', [`iopmem nvmet remove ${s.nqn}`])
      }
    }
  }
  const other = taken.get(b.disk.name)
  if (other !== undefined) throw usage(`${b.node} is given twice (also as ${other}).`, 'E_DUPLICATE')
  taken.set(b.disk.name, b.node)
  return b
}

/** The port a plan uses: a free id (or the given one, when free or the same address), and an address no other port listens on. */
function checkPort(state: NvmetState, trtype: Transport, addr: PortAddress, id: number | undefined, client: PortClient): PortPlan {
  const same = (p: NvmetState['ports'][number]) => p.trtype === trtype && p.traddr === addr.traddr && p.trsvcid === addr.trsvcid && (trtype === 'loop' || p.adrfam === addr.adrfam)
  if (id !== undefined) {
    const p = state.ports.find((x) => x.id === id)
    if (p) {
      if (!same(p)) {
        throw refused(`Port ${id} is in use with another address (${p.trtype} ${p.traddr}${p.trsvcid ? ':' + p.trsvcid : ''}).`, 'E_PORT_IN_USE', [
          'Leave out --port-id for a free one, or give the same transport and address to add the subsystem to it.',
        ])
      }
      return {id, trtype, ...addr, exists: true, subsystems: [], client}
    }
  }
  const clash = state.ports.find((p) => same(p) && trtype !== 'loop')
  if (clash && clash.id !== id) {
    throw refused(`${trtype} ${addr.traddr}:${addr.trsvcid} is in use by port ${clash.id}.`, 'E_ADDRESS_IN_USE', [`Add the subsystem to that port with --port-id ${clash.id}, or pick another --service.`])
  }
  let free = id
  if (free === undefined) {
    free = 1
    while (state.ports.some((p) => p.id === free)) free++
  }
  return {id: free, trtype, ...addr, exists: false, subsystems: [], client}
}

export interface CreateOptions {
  nqn: string
  devices: string[]
  transport: string
  address?: string
  service?: string
  portId?: string
  hosts?: string[]
  p2pmem?: P2pmemSpec[]
  nic?: string
}

/** Syntax only: everything checkable without looking at the machine. */
export function validateCreate(o: CreateOptions): void {
  validateNqn(o.nqn)
  const t = validateTransport(o.transport)
  validateAddress(t, o.address, o.service)
  if (o.portId !== undefined) validatePortId(o.portId)
  for (const h of o.hosts ?? []) validateNqn(h, 'host NQN')
  if (o.devices.length === 0) throw usage('A target needs at least one namespace: give --device.', 'E_NO_NAMESPACE')
  const n = o.p2pmem?.length ?? 0
  if (n > 1 && n !== o.devices.length) throw usage(`--p2pmem is given ${n} times for ${o.devices.length} devices: give it once (for all) or once per --device.`, 'E_P2PMEM_COUNT')
}

/** The plan of `nvmet create`: one subsystem with its namespaces, on one port. */
export function planCreate(host: Host, o: CreateOptions): TargetPlan {
  validateCreate(o)
  const state = readState(host)
  requireLoaded(state)
  const trtype = validateTransport(o.transport)
  const addr = validateAddress(trtype, o.address, o.service)
  if (state.subsystems.some((s) => s.nqn === o.nqn)) throw refused(`Subsystem ${o.nqn} exists already.`, 'E_EXISTS', [`iopmem nvmet remove ${o.nqn}, or pick another NQN.`])
  const scanner = new PciScanner(host)
  const client = portClient(host, scanner, trtype, o.nic)
  const port = checkPort(state, trtype, addr, o.portId === undefined ? undefined : validatePortId(o.portId), client)
  port.subsystems = [o.nqn]
  const taken = new Map<string, string>()
  const blocks = o.devices.map((d) => checkDevice(host, state, d, taken))
  const specs = blocks.map((_, i) => o.p2pmem?.[o.p2pmem.length === 1 ? 0 : i] ?? {mode: 'off' as const})
  const namespaces = blocks.map((b, i) => ({nsid: i + 1, device: b.node, enable: true, p2pmem: decideP2pmem(host, scanner, client, b, specs[i])}))
  const hosts = [...new Set(o.hosts ?? [])]
  requireRoot(host)
  return {
    hosts: hosts.filter((h) => !state.hosts.includes(h)),
    subsystems: [{nqn: o.nqn, allowAnyHost: hosts.length === 0, allowedHosts: hosts, namespaces}],
    ports: [port],
    warnings: [...new Set(namespaces.flatMap((n) => n.p2pmem.warnings))],
    disks: blocks.map((b) => b.disk.name),
  }
}

/** What a rollback undoes, newest last. */
type Made = {kind: 'dir' | 'link'; path: string} | {kind: 'enabled'; path: string}

/** Run a plan under the guard; a failure or a stop signal removes everything this run made. */
export async function applyPlan(host: Host, plan: TargetPlan, action: 'create' | 'restore', guard: SignalGuard): Promise<TargetResult> {
  const cfs = new Configfs(host)
  const made: Made[] = []
  const result: TargetResult = {
    action,
    subsystems: plan.subsystems.map((s) => s.nqn),
    ports: plan.ports.map((p) => p.id),
    namespaces: plan.subsystems.flatMap((s) => s.namespaces.map((n) => ({nqn: s.nqn, nsid: n.nsid, device: n.device, p2pmem: n.p2pmem.spec === 'off' ? null : n.p2pmem}))),
    steps: cfs.steps,
    warnings: plan.warnings,
    changed: false,
  }
  const mkdir = (p: string) => {
    cfs.mkdir(p)
    made.push({kind: 'dir', path: p})
  }
  const link = (target: string, at: string) => {
    cfs.symlink(target, at)
    made.push({kind: 'link', path: at})
  }
  const steps: Array<() => void> = []
  for (const h of plan.hosts) steps.push(() => mkdir(cfs.path('hosts', h)))
  for (const s of plan.subsystems) {
    const dir = cfs.path('subsystems', s.nqn)
    steps.push(() => mkdir(dir), () => cfs.write(path.join(dir, 'attr_allow_any_host'), s.allowAnyHost ? '1' : '0'))
    for (const h of s.allowedHosts) steps.push(() => link(cfs.path('hosts', h), path.join(dir, 'allowed_hosts', h)))
    for (const n of s.namespaces) {
      const nd = path.join(dir, 'namespaces', String(n.nsid))
      steps.push(() => mkdir(nd), () => cfs.write(path.join(nd, 'device_path'), n.device))
      if (n.uuid) steps.push(() => cfs.write(path.join(nd, 'device_uuid'), n.uuid!))
      if (n.nguid) steps.push(() => cfs.write(path.join(nd, 'device_nguid'), n.nguid!))
      if (n.p2pmem.write !== null) steps.push(() => cfs.write(path.join(nd, 'p2pmem'), n.p2pmem.write!))
      if (n.enable) {
        steps.push(() => {
          made.push({kind: 'enabled', path: path.join(nd, 'enable')})
          cfs.write(path.join(nd, 'enable'), '1')
        })
      }
    }
  }
  for (const p of plan.ports) {
    const dir = cfs.path('ports', String(p.id))
    if (!p.exists) {
      steps.push(() => mkdir(dir), () => cfs.write(path.join(dir, 'addr_trtype'), p.trtype))
      if (p.trtype !== 'loop') {
        steps.push(
          () => cfs.write(path.join(dir, 'addr_adrfam'), p.adrfam),
          () => cfs.write(path.join(dir, 'addr_traddr'), p.traddr),
          () => cfs.write(path.join(dir, 'addr_trsvcid'), p.trsvcid),
        )
      }
    }
    for (const nqn of p.subsystems) steps.push(() => link(cfs.path('subsystems', nqn), path.join(dir, 'subsystems', nqn)))
  }
  try {
    for (const step of steps) {
      step()
      result.changed = true
      if (await guard.checkpoint()) {
        result.interrupted = true
        result.signal = guard.signal
        break
      }
    }
  } catch (error) {
    const left = rollback(cfs, made)
    result.rolledBack = left.length === 0
    result.left = left
    throw new IopmemError(`${(error as Error).message}\n${left.length === 0 ? 'Everything this run made was removed again; nvmet is as it was.' : `Could not remove again: ${left.join(', ')}.`}`, {
      code: error instanceof IopmemError ? error.code : 'EIO',
      exit: error instanceof IopmemError ? error.exit : Exit.KERNEL,
      suggestions: error instanceof IopmemError ? error.suggestions : [],
      details: {result},
    })
  }
  if (result.interrupted) {
    const left = rollback(cfs, made)
    result.rolledBack = left.length === 0
    result.left = left
    result.changed = left.length > 0
  }
  return result
}

/** Undo in reverse order: disable what was enabled, unlink what was linked, rmdir what was made. Returns what could not be undone. */
function rollback(cfs: Configfs, made: Made[]): string[] {
  const left: string[] = []
  for (const m of [...made].reverse()) {
    try {
      if (m.kind === 'enabled') cfs.write(m.path, '0')
      else if (m.kind === 'link') cfs.unlink(m.path)
      else cfs.rmdir(m.path)
    } catch {
      if (m.kind !== 'enabled') left.push(m.path)
    }
  }
  return left.map((p) => p.slice(cfs.root.length + 1))
}

/** The lock on nvmet's tree, and the locks of the disks a plan exports, from the check to the last write. */
export async function withNvmetLock<T>(host: Host, opts: LockOptions, fn: (guard: SignalGuard) => Promise<T>): Promise<T> {
  return withLock(host, 'nvmet', 'the nvmet configuration', opts, fn)
}

export async function withDiskLocks<T>(host: Host, disks: string[], opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const held = await acquireLocks(host, disks.map((d) => ({name: `block-${d}`, what: host.display(host.dev(d))})), opts)
  try {
    return await fn()
  } finally {
    for (const h of held) h.release()
  }
}

export interface RemovePlan {
  nqn: string
  /** Ports to unlink it from, and of those, the ones left empty (removed too). */
  ports: number[]
  emptyPorts: number[]
  namespaces: Array<{nsid: number; device: string; enabled: boolean}>
  allowedHosts: string[]
  /** hosts/ entries no other subsystem allows: removed too. */
  hosts: string[]
  /** Connected controllers (debugfs), which the removal disconnects. */
  controllers: string[]
}

export function planRemove(host: Host, nqnText: string, opts: {force?: boolean} = {}): RemovePlan {
  const nqn = validateNqn(nqnText)
  const state = readState(host)
  requireLoaded(state)
  const s = state.subsystems.find((x) => x.nqn === nqn)
  if (!s) {
    throw new IopmemError(`No nvmet subsystem ${nqn}.`, {code: 'E_NO_SUBSYSTEM', exit: Exit.NOT_FOUND, suggestions: ['`iopmem nvmet list` shows them.']})
  }
  const controllers = host.list(host.sys('kernel', 'debug', 'nvmet', nqn)).filter((c) => /^ctrl\d+$/.test(c))
  if (controllers.length > 0 && !opts.force) {
    throw refused(`${nqn} has ${controllers.length} connected host controller(s) (${controllers.join(', ')}); removing it cuts them off.`, 'E_IN_USE', [
      'Disconnect them first (nvme disconnect -n NQN on the host), or pass --force.',
    ])
  }
  const ports = state.ports.filter((p) => p.subsystems.includes(nqn))
  const others = state.subsystems.filter((x) => x.nqn !== nqn)
  requireRoot(host)
  return {
    nqn,
    ports: ports.map((p) => p.id),
    emptyPorts: ports.filter((p) => p.subsystems.length === 1 && p.referrals.length === 0).map((p) => p.id),
    namespaces: s.namespaces.map((n) => ({nsid: n.nsid, device: n.devicePath, enabled: n.enabled})),
    allowedHosts: s.allowedHosts,
    hosts: s.allowedHosts.filter((h) => !others.some((o) => o.allowedHosts.includes(h))),
    controllers,
  }
}

/** Tear a subsystem down: unlink it from its ports (removing ports left empty), disable and remove its namespaces, its host links, itself. A stop signal ends it between steps, with the state said. */
export async function executeRemove(host: Host, plan: RemovePlan, guard: SignalGuard): Promise<TargetResult> {
  const cfs = new Configfs(host)
  const dir = cfs.path('subsystems', plan.nqn)
  const steps: Array<() => void> = []
  for (const id of plan.ports) {
    steps.push(() => cfs.unlink(cfs.path('ports', String(id), 'subsystems', plan.nqn)))
    if (plan.emptyPorts.includes(id)) steps.push(() => cfs.rmdir(cfs.path('ports', String(id))))
  }
  for (const n of plan.namespaces) {
    const nd = path.join(dir, 'namespaces', String(n.nsid))
    if (n.enabled) steps.push(() => cfs.write(path.join(nd, 'enable'), '0'))
    steps.push(() => cfs.rmdir(nd))
  }
  for (const h of plan.allowedHosts) steps.push(() => cfs.unlink(path.join(dir, 'allowed_hosts', h)))
  steps.push(() => cfs.rmdir(dir))
  for (const h of plan.hosts) steps.push(() => cfs.rmdir(cfs.path('hosts', h)))
  const result: TargetResult = {
    action: 'remove',
    subsystems: [plan.nqn],
    ports: plan.ports,
    namespaces: plan.namespaces.map((n) => ({nqn: plan.nqn, nsid: n.nsid, device: n.device, p2pmem: null})),
    steps: cfs.steps,
    warnings: plan.controllers.length > 0 ? [`disconnected ${plan.controllers.length} host controller(s)`] : [],
    changed: false,
  }
  for (const step of steps) {
    try {
      step()
    } catch (error) {
      throw new IopmemError(`${(error as Error).message}\nThe removal stopped there; \`iopmem nvmet list\` shows what is left, and running remove again finishes it.`, {
        code: error instanceof IopmemError ? error.code : 'EIO',
        exit: error instanceof IopmemError ? error.exit : Exit.KERNEL,
        details: {result},
      })
    }
    result.changed = true
    if (await guard.checkpoint()) {
      result.interrupted = true
      result.signal = guard.signal
      result.left = host.exists(dir) ? [path.relative(nvmetRoot(host), dir)] : []
      break
    }
  }
  return result
}

/** The machine side of a restore: what is there already, the devices, the ports' clients and the p2pmem decisions. */
export function machinePlan(
  host: Host,
  hosts: string[],
  wanted: Array<{nqn: string; allowAnyHost: boolean; allowed: string[]; namespaces: Array<{nsid: number; path: string; enable: boolean; uuid?: string; nguid?: string}>}>,
  ports: Array<{id: number; trtype: Transport; addr: PortAddress; subsystems: string[]}>,
  p2pOf: Map<string, P2pmemSpec>,
): TargetPlan {
  const state = readState(host)
  requireLoaded(state)
  const exists = wanted.filter((w) => state.subsystems.some((s) => s.nqn === w.nqn)).map((w) => w.nqn)
  if (exists.length > 0) throw refused(`Subsystem ${exists.join(', ')} exists already; restore only adds.`, 'E_EXISTS', [`iopmem nvmet remove ${exists[0]} first.`])
  const scanner = new PciScanner(host)
  const warnings: string[] = []
  const portPlans: PortPlan[] = []
  for (const p of ports) {
    let client: PortClient
    try {
      client = portClient(host, scanner, p.trtype)
    } catch (error) {
      client = {transport: p.trtype, nic: null, rdmaDevice: null, reason: (error as Error).message}
    }
    const plan = checkPort({...state, ports: [...state.ports, ...portPlans.map((x) => ({...x, referrals: []}))]}, p.trtype, p.addr, p.id, client)
    plan.subsystems = p.subsystems
    portPlans.push(plan)
  }
  const taken = new Map<string, string>()
  const disks: string[] = []
  const subsystems: SubsystemPlan[] = wanted.map((w) => {
    const port = portPlans.find((p) => p.subsystems.includes(w.nqn) && p.trtype === 'rdma') ?? portPlans.find((p) => p.subsystems.includes(w.nqn))
    const client: PortClient = port?.client ?? {transport: 'loop', nic: null, rdmaDevice: null, reason: 'no port exports it'}
    const namespaces = w.namespaces.map((n) => {
      const b = checkDevice(host, state, n.path, taken)
      disks.push(b.disk.name)
      const p2pmem = decideP2pmem(host, scanner, client, b, p2pOf.get(`${w.nqn}/${n.nsid}`) ?? {mode: 'off'})
      warnings.push(...p2pmem.warnings)
      return {nsid: n.nsid, device: b.node, enable: n.enable, uuid: n.uuid, nguid: n.nguid, p2pmem}
    })
    return {nqn: w.nqn, allowAnyHost: w.allowAnyHost, allowedHosts: w.allowed, namespaces}
  })
  requireRoot(host)
  return {hosts: hosts.filter((h) => !state.hosts.includes(h)), subsystems, ports: portPlans, warnings: [...new Set(warnings)], disks}
}

export {nvmetRoot}
