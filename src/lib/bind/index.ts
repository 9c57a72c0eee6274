/** Handing a PCI function to a driver and back (bind, unbind, what would break), and building, loading and configuring the iopmem kernel module. */
export * from './bind.js'
export * from './dkms.js'
export * from './driver.js'
export * from './modsig.js'
export * from './inuse.js'
