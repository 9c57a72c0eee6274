/** PCI as sysfs shows it: addresses (BDF), functions and BARs, config space, device names, the PCIe topology and the list/topo views of it. */
export * from './bdf.js'
export * from './config-space.js'
export * from './ids.js'
export * from './list.js'
export * from './paths.js'
export * from './sysfs.js'
export * from './topo.js'
export * from './topo-select.js'
