/** `iopmem list`: the PCI functions worth showing (memory BARs, p2pmem, storage) or one function by BDF. */
import {normalizeBdf} from './bdf.js'
import {Exit, IopmemError, SCHEMA_VERSION} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import type {MemoryRegions} from '../dax/index.js'
import {type Selectors, selectorTest} from './select.js'
import {hasDeviceMemory, type PciFunction, PciScanner} from './sysfs.js'
import {abandonPrefetch, takePrefetched} from './prefetch.js'
import {buildTree, type PciTree} from './tree.js'

/** Bumped when a field of `list --json` changes meaning or goes; new fields do not bump it. */

export interface ListResult {
  schemaVersion: typeof SCHEMA_VERSION
  /** What was asked: functions with device memory (default), every function, or the ones named or selected (-s, -d, --class, --driver, --p2pmem). */
  filter: 'memory' | 'all' | 'selected'
  /** The selectors given, as given. */
  selectors?: Selectors
  /** Functions visible in sysfs in total. */
  total: number
  functions: PciFunction[]
  /** With --tree: the whole hierarchy, providers and P2P groups marked. */
  tree?: PciTree
}

/** `list --json`: the PCI view and, on its own, pmem regions and device-dax (not PCI). */
export interface ListDocument extends ListResult {
  regions: MemoryRegions
}

export interface ListOptions {
  bdfs?: string[]
  all?: boolean
  selectors?: Selectors
  tree?: boolean
}

export async function listFunctions(host: Host, opts: ListOptions = {}): Promise<ListResult> {
  const named = (opts.bdfs ?? []).map((b) => normalizeBdf(b))
  const sel = Object.fromEntries(Object.entries(opts.selectors ?? {}).filter(([, v]) => v !== undefined && v !== false)) as Selectors
  const test = selectorTest(sel)
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
  const base = {schemaVersion: SCHEMA_VERSION, total: bdfs.length} as const
  // Every function: read already if bin/run.js started the scan (prefetch.ts), else now.
  const readAll = async () => (await takePrefetched(host, bdfs)) ?? scanner.readAll(bdfs)
  if (named.length > 0 || test) {
    // lspci: a selector picks among every function, bridges included; named ones must exist.
    if (named.length > 0) abandonPrefetch()
    const picked = named.length > 0 ? [...new Set(named)].map((b) => scanner.get(b)) : await readAll()
    const functions = test ? picked.filter((f) => test(f)) : picked
    return {...base, filter: 'selected', ...(test ? {selectors: sel} : {}), functions: functions.map((f) => shown(f))}
  }
  const all = await readAll()
  const functions = opts.all || opts.tree ? all : all.filter((f) => hasDeviceMemory(f) && !f.isBridge)
  return {
    ...base,
    filter: opts.all || opts.tree ? 'all' : 'memory',
    functions: functions.map((f) => shown(f)),
    ...(opts.tree ? {tree: buildTree(scanner, all)} : {}),
  }
}
