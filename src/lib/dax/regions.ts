/** Persistent memory and device-dax that is not (only) a PCI function: libnvdimm regions and namespaces (/sys/bus/nd, /dev/pmemN) and device-dax instances (/sys/bus/dax, /dev/daxX.Y), for `iopmem list`. */
import * as path from 'node:path'

import {isBdfName} from '../pci/index.js'
import type {Host} from '../sys/index.js'

export interface PmemNamespace {
  /** namespace0.0 */
  name: string
  /** raw, fsdax, devdax, sector (libnvdimm's `mode`). */
  mode: string
  size: number
  /** CPU physical address (`resource`, readable by root only on recent kernels), else null. */
  start: string | null
  /** The block device on it (pmem0), directly or through a pfn/btt device. */
  blockDevice: string | null
  /** The /dev node of blockDevice, when present. */
  devNode: string | null
}

export interface PmemRegion {
  /** region0 */
  name: string
  size: number
  start: string | null
  numaNode: number | null
  /** Namespaces with a size (the empty "seed" namespace is left out). */
  namespaces: PmemNamespace[]
}

export interface DaxInstance {
  /** dax0.0 */
  name: string
  size: number
  start: string | null
  /** The NUMA node its memory would be onlined to (`target_node`). */
  numaNode: number | null
  /** What it sits on: a pmem region (region0) or a PCI function (0000:03:00.0, iopmem's devdax). */
  on: string | null
  devNode: string | null
}

export interface MemoryRegions {
  pmem: PmemRegion[]
  dax: DaxInstance[]
}

const addr = (n: bigint) => '0x' + n.toString(16).padStart(16, '0')

function readAddr(host: Host, file: string): string | null {
  const t = host.readTrim(file)
  return t && /^(0x)?[0-9a-f]+$/i.test(t) ? addr(BigInt(t.startsWith('0x') ? t : '0x' + t)) : null
}

const numa = (host: Host, file: string) => {
  const n = host.readInt(file)
  return n === undefined || n < 0 ? null : n
}

/** The nearest ancestor directory whose name matches (a region, a PCI function). */
function ancestor(p: string, test: (name: string) => boolean): string | undefined {
  for (let cur = p; cur !== path.dirname(cur); cur = path.dirname(cur)) if (test(path.basename(cur))) return cur
  return undefined
}

const isRegion = (n: string) => /^region\d+$/.test(n)

/** Every pmem region and device-dax instance visible in sysfs (none on most machines: empty lists). */
export function readMemoryRegions(host: Host): MemoryRegions {
  const regionDirs = new Set<string>()
  for (const n of host.list(host.sys('bus/nd/devices'))) {
    if (!isRegion(n)) continue
    const real = host.resolveLink(host.sys('bus/nd/devices', n))
    if (real) regionDirs.add(real)
  }
  // Without the nd bus in view (older trees), a pmem disk still leads to its region.
  for (const n of host.list(host.sys('class/block'))) {
    if (!/^pmem\d+[a-z.\d]*$/.test(n) || /p\d+$/.test(n)) continue
    const real = host.resolveLink(host.sys('class/block', n))
    const region = real && ancestor(real, isRegion)
    if (region) regionDirs.add(region)
  }
  const pmem = [...regionDirs].map((dir) => readRegion(host, dir)).sort((a, b) => Number(a.name.slice(6)) - Number(b.name.slice(6)))

  const daxDirs = new Map<string, string>()
  for (const cls of ['bus/dax/devices', 'class/dax']) {
    for (const n of host.list(host.sys(cls))) {
      const real = host.resolveLink(host.sys(cls, n))
      if (real && /^dax\d+\.\d+$/.test(n) && !daxDirs.has(n)) daxDirs.set(n, real)
    }
  }
  const dax = [...daxDirs].map(([name, dir]) => {
    const owner = ancestor(path.dirname(dir), (n) => isRegion(n) || isBdfName(n))
    return {
      name,
      size: host.readInt(path.join(dir, 'size')) ?? 0,
      start: readAddr(host, path.join(dir, 'resource')),
      numaNode: numa(host, path.join(dir, 'target_node')) ?? numa(host, path.join(dir, 'numa_node')),
      on: owner ? path.basename(owner) : null,
      devNode: host.exists(host.dev(name)) ? host.display(host.dev(name)) : null,
    }
  })
  dax.sort((a, b) => a.name.localeCompare(b.name, 'en', {numeric: true}))
  return {pmem, dax}
}

function readRegion(host: Host, dir: string): PmemRegion {
  const entries = host.list(dir)
  const blockUnder = (d: string) => host.list(path.join(d, 'block'))[0]
  const namespaces: PmemNamespace[] = []
  for (const n of entries.filter((e) => /^namespace\d+\.\d+$/.test(e))) {
    const ns = path.join(dir, n)
    const size = host.readInt(path.join(ns, 'size')) ?? 0
    if (size === 0) continue
    // fsdax/sector: the disk hangs off the pfn/btt device that claims this namespace.
    const claimer = entries.find((e) => /^(pfn|btt|dax)\d+\.\d+$/.test(e) && host.resolveLink(path.join(dir, e, 'namespace')) === ns)
    const disk = blockUnder(ns) ?? (claimer ? blockUnder(path.join(dir, claimer)) : undefined) ?? null
    namespaces.push({
      name: n,
      mode: host.readTrim(path.join(ns, 'mode')) ?? 'unknown',
      size,
      start: readAddr(host, path.join(ns, 'resource')),
      blockDevice: disk,
      devNode: disk && host.exists(host.dev(disk)) ? host.display(host.dev(disk)) : null,
    })
  }
  return {
    name: path.basename(dir),
    size: host.readInt(path.join(dir, 'size')) ?? namespaces.reduce((s, n) => s + n.size, 0),
    start: readAddr(host, path.join(dir, 'resource')),
    numaNode: numa(host, path.join(dir, 'numa_node')),
    namespaces,
  }
}
