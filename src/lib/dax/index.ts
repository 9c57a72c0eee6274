/** DAX over device memory: block devices and what uses them, filesystem signatures, mkfs-dax, and locate (file extents to device and physical addresses). */
export * from './blockdev.js'
export * from './bytesink.js'
export * from './locate.js'
export * from './mkfs.js'
export * from './regions.js'
export * from './signatures.js'
