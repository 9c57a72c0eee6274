/** Bindings that survive a reboot: records under /etc/iopmem, the udev rule that re-applies them, listing and applying them. */
export * from './persist.js'
export * from './record.js'
