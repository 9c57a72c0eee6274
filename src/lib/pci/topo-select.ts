/** `iopmem topo`: which functions to analyse (those given, or every one with device memory) and the topology between them. */
import {normalizeBdf} from './bdf.js'
import {Exit, IopmemError} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {hasDeviceMemory, PciScanner} from './sysfs.js'
import {analyzeTopology, PATH_CLASS_LEGEND, type Topology} from './topo.js'

export interface TopoResult extends Topology {
  legend: typeof PATH_CLASS_LEGEND
}

/** The P2P matrix for the named functions, or by default every non-bridge function with memory BARs, p2pmem or storage. */
export function topoFor(host: Host, named: string[]): TopoResult {
  const scanner = new PciScanner(host, {names: false})
  let bdfs = [...new Set(named.map((b) => normalizeBdf(b)))]
  if (bdfs.length === 0) {
    const all = scanner.listBdfs()
    if (all.length === 0) {
      throw new IopmemError('No PCI devices are visible, so there is no topology to show.', {
        code: 'E_NO_PCI',
        exit: Exit.UNSUPPORTED,
        suggestions: ['In a container, mount the host /sys; or try `iopmem sandbox`.'],
      })
    }
    bdfs = all.map((b) => scanner.read(b)).filter((f) => hasDeviceMemory(f) && !f.isBridge).map((f) => f.bdf)
  } else {
    for (const b of bdfs) scanner.get(b) // E_NO_DEVICE for a missing one
  }
  if (bdfs.length < 2) {
    // Exit 7 (not possible here) whether the functions were named or found: docs/json-and-exit-codes.md.
    const withMemory = named.length > 0 ? scanner.listBdfs().map((b) => scanner.read(b)).filter((f) => hasDeviceMemory(f) && !f.isBridge && f.bdf !== bdfs[0]).length : 0
    const message =
      named.length > 0
        ? `A P2P matrix needs at least two functions; only ${bdfs[0]} was named.`
        : `A P2P matrix needs at least two functions; ${bdfs.length === 0 ? 'no function has' : `only ${bdfs[0]} has`} device memory (memory BARs, p2pmem or a block device) here.`
    throw new IopmemError(message, {
      code: 'E_TOO_FEW',
      exit: Exit.UNSUPPORTED,
      suggestions:
        named.length > 0
          ? [`Name a second function: \`iopmem topo ${bdfs[0]} BDF\` (\`iopmem list\` shows ${withMemory} other function${withMemory === 1 ? '' : 's'} with device memory here).`]
          : ['Name the functions: `iopmem topo 0000:03:00.0 0000:04:00.0` (`iopmem list --all` shows them).'],
    })
  }
  return {...analyzeTopology(scanner, bdfs), legend: PATH_CLASS_LEGEND}
}
