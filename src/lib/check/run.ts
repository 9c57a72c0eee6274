/** `iopmem check`: gather every item for the chosen functions into one report. It only reads. */
import * as path from 'node:path'

import {defaultOutDir} from '../bind/index.js'
import {analyzeTopology, hasDeviceMemory, normalizeBdf, PciScanner, type PciFunction} from '../pci/index.js'
import {type Host, SCHEMA_VERSION} from '../sys/index.js'
import {readIommu, iommuParams, presenceItem, groupsItem, vfioItem, readCmdline} from './iommu.js'
import {configItems, lockdownItem, moduleItem, readKernelConfig, readKernelRelease, releaseItem} from './kernel.js'
import {barsItem, patItem, rebarItem} from './memory.js'
import {acsItem, hostBridgeItem, pairsItem} from './path.js'
import {cmbItem, isNvme, p2pmemItem, readNvmeRegisters, type RegisterReader} from './providers.js'
import {driverItem, hugepagesItem} from './drivers.js'
import {type CheckItem, type CheckReport, summarize} from './types.js'

export interface CheckOptions {
  /** How NVMe registers are read (tests replace it). */
  readRegisters?: RegisterReader
  env?: NodeJS.ProcessEnv
}

/** The functions to report on: those named (each must exist), else every non-bridge one with device memory. */
export function chooseFunctions(scanner: PciScanner, named: string[]): PciFunction[] {
  const bdfs = [...new Set(named.map((b) => normalizeBdf(b)))]
  if (bdfs.length > 0) return bdfs.map((b) => scanner.get(b))
  return scanner
    .listBdfs()
    .map((b) => scanner.read(b))
    .filter((f) => !f.isBridge && hasDeviceMemory(f))
}

export function runCheck(host: Host, named: string[], opts: CheckOptions = {}): CheckReport {
  const scanner = new PciScanner(host, {names: false})
  const fns = chooseFunctions(scanner, named)
  const release = readKernelRelease(host)
  const cfg = readKernelConfig(host, release)
  const cmdline = readCmdline(host) ?? []
  const params = iommuParams(cmdline)
  const iommu = readIommu(host)
  const cache = host.isLive && release ? path.join(defaultOutDir(release, opts.env ?? process.env), 'iopmem.ko') : null

  const items: CheckItem[] = [releaseItem(release), ...configItems(cfg, cmdline), lockdownItem(host, cfg), moduleItem(host, release, cfg, cache)]
  items.push(presenceItem(iommu, params), groupsItem(host, iommu, fns), vfioItem(host, iommu, fns))

  if (fns.length > 0) {
    const topo = analyzeTopology(scanner, fns.map((f) => f.bdf))
    const providers = fns.filter((f) => f.p2pmem?.published).map((f) => f.bdf)
    items.push(hostBridgeItem(topo), acsItem(scanner, fns, topo, params), pairsItem(topo, providers))
  } else {
    items.push({
      id: 'path.functions',
      area: 'path',
      title: 'PCI functions',
      verdict: scanner.pciVisible() ? 'warn' : 'unknown',
      found: scanner.pciVisible() ? 'no function with device memory to check a path between' : 'no PCI bus visible (a container without /sys/bus/pci?)',
      fix: scanner.pciVisible() ? 'Name the functions: iopmem check BDF BDF' : 'Mount the host /sys, or run on the machine itself.',
    })
  }

  items.push(barsItem(host, fns), rebarItem(host, fns), patItem(host, cmdline))
  items.push(p2pmemItem(fns))
  const read = opts.readRegisters ?? readNvmeRegisters
  for (const f of fns.filter((x) => isNvme(x))) items.push(cmbItem(host, f, read))
  items.push(driverItem(host, release, 'uio_pci_generic'), driverItem(host, release, 'vfio-pci'), hugepagesItem(host))

  const summary = summarize(items)
  return {
    schemaVersion: SCHEMA_VERSION,
    machine: {kernelRelease: release, root: host.isRoot(), live: host.isLive},
    functions: fns.map((f) => f.bdf),
    items,
    summary,
    ok: summary.fail === 0,
  }
}
