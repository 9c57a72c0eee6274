/** The host underneath everything: where /sys, /dev and /proc live, running programs, errors and exit codes, units, mounts and process scans. */
export * from './errors.js'
export * from './exec.js'
export * from './host.js'
export * from './mounts.js'
export * from './procscan.js'
export * from './units.js'
export * from './lock.js'
export * from './signals.js'
