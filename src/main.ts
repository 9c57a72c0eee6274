/**
 * What bin/run.js loads: oclif's run path and our report for errors no command
 * caught. It is the bundle's entry (scripts/bundle.mjs), so that oclif, the
 * command and the library load as a few files rather than ~190 modules. It
 * also gives the host the addon's bulk reader, so a scan of many devices
 * reads sysfs in a few native calls (Host.readMany).
 */
import {bulkReader} from './native/index.js'
import {setBulkReader} from './lib/sys/index.js'

setBulkReader(bulkReader)

export {flush} from '@oclif/core/flush'
export {handle} from '@oclif/core/handle'
export {run} from '@oclif/core/run'
export {reportUncaught} from './base-command.js'
