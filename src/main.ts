/**
 * What bin/run.js loads: oclif's run path and our report for errors no command
 * caught. It is the bundle's entry (scripts/bundle.mjs), so that oclif, the
 * command and the library load as a few files rather than ~190 modules.
 */
export {flush} from '@oclif/core/flush'
export {handle} from '@oclif/core/handle'
export {run} from '@oclif/core/run'
export {reportUncaught} from './base-command.js'
