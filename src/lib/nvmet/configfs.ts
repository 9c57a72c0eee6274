/** The kernel's nvmet configfs tree (/sys/kernel/config/nvmet): reading what is configured, and the mkdir, rmdir, symlink and attribute writes that change it. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {type ConfigfsOps, Exit, type Host, IopmemError, isSystemError} from '../sys/index.js'

/**
 * configfs is mounted on /sys/kernel/config, so the nvmet tree sits under the host's sysfs
 * root: under a fixture's IOPMEM_SYSFS_ROOT it is the fixture's, never the live one.
 */
export function nvmetRoot(host: Host): string {
  return host.sys('kernel', 'config', 'nvmet')
}

export interface NvmetNamespace {
  nsid: number
  /** device_path: the block device or file behind the namespace ('' when unset). */
  devicePath: string
  enabled: boolean
  /** p2pmem as the kernel shows it: a provider's BDF, '1' (any provider), '0' (off); null without CONFIG_PCI_P2PDMA. */
  p2pmem: string | null
  uuid: string | null
  nguid: string | null
}

export interface NvmetSubsystem {
  nqn: string
  allowAnyHost: boolean
  allowedHosts: string[]
  namespaces: NvmetNamespace[]
  /** Ids of the ports that export it. */
  ports: number[]
}

export interface NvmetPort {
  id: number
  trtype: string
  adrfam: string
  traddr: string
  trsvcid: string
  /** NQNs of the subsystems linked into the port. */
  subsystems: string[]
  referrals: string[]
}

export interface NvmetState {
  /** The nvmet tree as the kernel names it (/sys/kernel/config/nvmet). */
  root: string
  /** The nvmet module is loaded (its configfs tree exists). */
  loaded: boolean
  subsystems: NvmetSubsystem[]
  ports: NvmetPort[]
  /** hosts/: host NQNs subsystems may allow. */
  hosts: string[]
}

/** Everything nvmet has configured now. */
export function readState(host: Host): NvmetState {
  const root = nvmetRoot(host)
  const loaded = host.exists(path.join(root, 'subsystems'))
  const state: NvmetState = {root: host.display(root), loaded, subsystems: [], ports: [], hosts: []}
  if (!loaded) return state
  const rd = (...p: string[]) => host.readTrim(path.join(root, ...p))
  state.hosts = host.list(path.join(root, 'hosts'))
  for (const id of host.list(path.join(root, 'ports'))) {
    const n = Number.parseInt(id, 10)
    if (!Number.isInteger(n)) continue
    state.ports.push({
      id: n,
      trtype: rd('ports', id, 'addr_trtype') ?? '',
      adrfam: rd('ports', id, 'addr_adrfam') ?? '',
      traddr: rd('ports', id, 'addr_traddr') ?? '',
      trsvcid: rd('ports', id, 'addr_trsvcid') ?? '',
      subsystems: host.list(path.join(root, 'ports', id, 'subsystems')),
      referrals: host.list(path.join(root, 'ports', id, 'referrals')),
    })
  }
  state.ports.sort((a, b) => a.id - b.id)
  for (const nqn of host.list(path.join(root, 'subsystems'))) {
    const namespaces: NvmetNamespace[] = []
    for (const ns of host.list(path.join(root, 'subsystems', nqn, 'namespaces'))) {
      const nsid = Number.parseInt(ns, 10)
      if (!Number.isInteger(nsid)) continue
      const nrd = (f: string) => rd('subsystems', nqn, 'namespaces', ns, f)
      namespaces.push({
        nsid,
        devicePath: nrd('device_path') ?? '',
        enabled: nrd('enable') === '1',
        p2pmem: nrd('p2pmem') ?? null,
        uuid: nrd('device_uuid') ?? null,
        nguid: nrd('device_nguid') ?? null,
      })
    }
    namespaces.sort((a, b) => a.nsid - b.nsid)
    state.subsystems.push({
      nqn,
      allowAnyHost: rd('subsystems', nqn, 'attr_allow_any_host') === '1',
      allowedHosts: host.list(path.join(root, 'subsystems', nqn, 'allowed_hosts')),
      namespaces,
      ports: state.ports.filter((p) => p.subsystems.includes(nqn)).map((p) => p.id),
    })
  }
  return state
}

/** The plain system calls: what the kernel's configfs is driven with. */
const systemOps: ConfigfsOps = {
  mkdir: (dir) => fs.mkdirSync(dir),
  rmdir: (dir) => fs.rmdirSync(dir),
  symlink: (target, link) => fs.symlinkSync(target, link),
  unlink: (link) => fs.unlinkSync(link),
}

/** One change to configfs, as the result lists it. */
export interface ConfigfsStep {
  op: 'mkdir' | 'rmdir' | 'symlink' | 'unlink' | 'write'
  path: string
  value?: string
  ok: boolean
  error?: string
}

/**
 * The changes made to nvmet's tree, each recorded: only paths under the nvmet root, only
 * mkdir/rmdir/symlink/unlink and writes to attributes that exist (Host.write: no O_CREAT).
 */
export class Configfs {
  readonly root: string
  readonly steps: ConfigfsStep[] = []
  private readonly ops: ConfigfsOps

  constructor(private readonly host: Host) {
    this.root = nvmetRoot(host)
    this.ops = host.writer.configfs ?? systemOps
  }

  path(...parts: string[]): string {
    const p = path.join(this.root, ...parts)
    if (!p.startsWith(this.root + '/')) throw new Error(`configfs: ${p} is outside ${this.root}`)
    return p
  }

  mkdir(p: string): void {
    this.run('mkdir', p, undefined, () => this.ops.mkdir(this.inside(p)))
  }

  rmdir(p: string): void {
    this.run('rmdir', p, undefined, () => this.ops.rmdir(this.inside(p)))
  }

  symlink(target: string, link: string): void {
    this.run('symlink', link, this.host.display(target), () => this.ops.symlink(this.inside(target), this.inside(link)))
  }

  unlink(link: string): void {
    this.run('unlink', link, undefined, () => this.ops.unlink(this.inside(link)))
  }

  write(file: string, value: string): void {
    this.run('write', file, value, () => this.host.write(this.inside(file), value))
  }

  private inside(p: string): string {
    if (!p.startsWith(this.root + '/')) throw new Error(`configfs: ${p} is outside ${this.root}`)
    return p
  }

  private run(op: ConfigfsStep['op'], p: string, value: string | undefined, f: () => void): void {
    const step: ConfigfsStep = {op, path: this.host.display(p), ...(value === undefined ? {} : {value}), ok: true}
    this.steps.push(step)
    try {
      f()
    } catch (error) {
      step.ok = false
      const e = error instanceof IopmemError ? error : kernelError(this.host, op, p, value, error)
      step.error = e instanceof IopmemError ? e.code : String(e)
      throw e
    }
  }
}

function kernelError(host: Host, op: string, p: string, value: string | undefined, error: unknown): IopmemError | Error {
  if (!isSystemError(error)) return error as Error
  const perm = error.code === 'EACCES' || error.code === 'EPERM'
  return new IopmemError(`${op} ${host.display(p)}${value === undefined ? '' : ` (${JSON.stringify(value)})`} failed: ${error.code ?? error.message}`, {
    code: error.code ?? 'EIO',
    errno: error.errno,
    syscall: op,
    path: host.display(p),
    exit: perm ? Exit.PERMISSION : Exit.KERNEL,
    suggestions: perm ? ['Run as root (sudo).'] : ['dmesg shows the kernel\'s reason (nvmet logs it).'],
  })
}
