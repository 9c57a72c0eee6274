/** `iopmem check`: will P2P work on this machine: the kernel, IOMMU, path, memory, providers and drivers, each item with a verdict and a fix. */
export * from './drivers.js'
export * from './iommu.js'
export * from './kernel.js'
export * from './memory.js'
export * from './path.js'
export * from './providers.js'
export * from './run.js'
export * from './types.js'
