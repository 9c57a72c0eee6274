/** `iopmem list`: the PCI functions worth showing (memory BARs, p2pmem, storage) or one function by BDF. */
import {normalizeBdf} from './bdf.js'
import {Exit, IopmemError} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {hasDeviceMemory, type PciFunction, PciScanner} from './sysfs.js'

export interface ListResult {
  /** What was asked: functions with device memory (default), every function, or the ones named. */
  filter: 'memory' | 'all' | 'selected'
  /** Functions visible in sysfs in total. */
  total: number
  functions: PciFunction[]
}

export function listFunctions(host: Host, opts: {bdfs?: string[]; all?: boolean} = {}): ListResult {
  const named = (opts.bdfs ?? []).map((b) => normalizeBdf(b))
  const scanner = new PciScanner(host)
  const bdfs = scanner.listBdfs()
  if (bdfs.length === 0) {
    throw new IopmemError(
      scanner.pciVisible()
        ? `No PCI devices are visible: ${host.display(host.sys('bus/pci/devices'))} is empty.`
        : `No PCI bus is visible: ${host.display(host.sys('bus/pci/devices'))} does not exist.`,
      {
        code: 'E_NO_PCI',
        exit: Exit.UNSUPPORTED,
        suggestions: [
          'In a container, PCI devices are hidden unless /sys is mounted from the host (docker run --privileged or -v /sys:/sys:ro).',
          'To try iopmem without hardware: `iopmem sandbox` (a QEMU guest with emulated NVMe CMBs and a PCIe switch).',
        ],
      },
    )
  }
  // Paths in the result are the kernel's (/sys/…), whatever root we read.
  const shown = (f: PciFunction) => ({...f, sysfsPath: host.display(f.sysfsPath)})
  if (named.length > 0) return {filter: 'selected', total: bdfs.length, functions: [...new Set(named)].map((b) => shown(scanner.get(b)))}
  const all = bdfs.map((b) => scanner.read(b))
  const functions = opts.all ? all : all.filter((f) => hasDeviceMemory(f) && !f.isBridge)
  return {filter: opts.all ? 'all' : 'memory', total: bdfs.length, functions: functions.map((f) => shown(f))}
}
