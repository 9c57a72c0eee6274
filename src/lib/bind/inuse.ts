/** What would break if a PCI function lost its driver: mounts and holders on its block devices, processes with its files or nodes open or mapped. */
import * as path from 'node:path'

import type {Host} from '../sys/index.js'
import {mountDaxMode, readMounts} from '../sys/index.js'
import {deniedNote, processesUsing} from '../sys/index.js'
import type {PciFunction} from '../pci/index.js'
import {formatBytes} from '../sys/index.js'

export type UsageKind = 'mount' | 'holder' | 'process'

export interface UsageReason {
  kind: UsageKind
  /** One sentence for a person. */
  detail: string
  /** Device node, mount point, pid… */
  subject: string
  pid?: number
}

export interface UsageReport {
  bdf: string
  inUse: boolean
  reasons: UsageReason[]
  /** Worth knowing, but no reason to refuse (e.g. p2pmem the kernel has allocated). */
  notes: string[]
  /** What could not be checked (e.g. other users' processes without root). */
  unchecked: string[]
}

/** The /dev names (relative to the dev root) and sysfs files that belong to a function. */
export function nodesOf(host: Host, fn: PciFunction): {dev: string[]; sysfsDir: string} {
  const dev: string[] = []
  for (const b of fn.blockDevices) dev.push(b.name, ...b.partitions.map((p) => p.name))
  dev.push(...fn.daxDevices)
  // device-dax on the dax bus (no /sys/class/dax since 5.x): daxX.Y children of the function (iopmem devdax)
  for (const d of host.list(fn.sysfsPath)) if (/^dax\d+\.\d+$/.test(d) && !dev.includes(d)) dev.push(d)
  for (const ctrl of host.list(path.join(fn.sysfsPath, 'nvme'))) {
    dev.push(ctrl)
    // The NVMe generic character devices (/dev/ngXnY, passthrough I/O) are children of the controller.
    for (const ng of host.list(path.join(fn.sysfsPath, 'nvme', ctrl))) if (/^ng\d+n\d+$/.test(ng)) dev.push(ng)
  }
  for (const uio of host.list(path.join(fn.sysfsPath, 'uio'))) dev.push(uio)
  if (fn.driver === 'vfio-pci' && fn.iommuGroup !== null) dev.push(`vfio/${fn.iommuGroup}`, `vfio/noiommu-${fn.iommuGroup}`)
  return {dev, sysfsDir: host.display(fn.sysfsPath)}
}

/**
 * Is anything using this function? Mounted filesystems (DAX or not) and
 * holders on its block devices, and processes that have its resource files,
 * p2pmem allocations or device nodes open or mapped.
 *
 * p2pmem that is allocated but mapped by no process is a note, not a
 * refusal: sysfs cannot say who holds it, and the usual holder is the bound
 * driver itself (nvme keeps its submission queues in the CMB), which lets go
 * on unbind.
 */
export function checkInUse(host: Host, fn: PciFunction): UsageReport {
  const reasons: UsageReason[] = []
  const notes: string[] = []
  const unchecked: string[] = []

  const devByNum = new Map<string, string>()
  for (const b of fn.blockDevices) {
    devByNum.set(b.dev, b.name)
    for (const p of b.partitions) devByNum.set(p.dev, p.name)
    for (const h of b.holders) {
      reasons.push({kind: 'holder', subject: h, detail: `${h} is stacked on ${b.name} (device-mapper, md or similar)`})
    }
  }
  for (const m of readMounts(host)) {
    const name = devByNum.get(m.dev)
    if (!name) continue
    const dax = mountDaxMode(m)
    reasons.push({
      kind: 'mount',
      subject: m.target,
      detail: `/dev/${name} is mounted on ${m.target} (${m.fstype}${dax === 'always' || dax === 'inode' ? `, dax=${dax}` : ''})`,
    })
  }

  if (fn.driver === 'iopmem' && fn.p2pmem && fn.p2pmem.available < fn.p2pmem.size) {
    // iopmem allocates none of its own p2pmem: every allocation is a user the unbind would wait for.
    reasons.push({
      kind: 'holder',
      subject: 'p2pmem',
      detail: `${formatBytes(fn.p2pmem.size - fn.p2pmem.available)} of its p2pmem is allocated (iopmem itself holds none): the unbind would wait until its users let go`,
    })
  } else if (fn.p2pmem && fn.p2pmem.available < fn.p2pmem.size) {
    const own = fn.driver === 'nvme' ? ': the nvme driver keeps its submission queues in the CMB (unless nvme.use_cmb_sqes=0)' : ''
    notes.push(
      `${formatBytes(fn.p2pmem.size - fn.p2pmem.available)} of its p2pmem (${formatBytes(fn.p2pmem.size)}) is allocated in the kernel${own}; ` +
        'a holder other than its driver (nvmet, an RDMA target) would make the unbind wait until it lets go',
    )
  }

  const {dev, sysfsDir} = nodesOf(host, fn)
  const devPaths = new Set(dev.map((d) => '/dev/' + d))
  const matches = (p: string) => devPaths.has(p) || p === sysfsDir || p.startsWith(sysfsDir + '/')
  const procs = processesUsing(host, matches)
  for (const u of procs.uses) reasons.push({kind: 'process', subject: `${u.comm}[${u.pid}]`, pid: u.pid, detail: `process ${u.comm} (pid ${u.pid}) ${u.what}`})
  unchecked.push(...deniedNote(procs.denied))

  return {bdf: fn.bdf, inUse: reasons.length > 0, reasons, notes, unchecked}
}
