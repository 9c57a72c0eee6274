/** `iopmem nvmet`: NVMe-oF targets in the kernel's nvmet configfs tree, with namespaces' p2pmem chosen by topology. */
export * from './configfs.js'
export * from './names.js'
export * from './p2p.js'
export * from './saved.js'
export * from './target.js'
