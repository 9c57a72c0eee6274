/** bin/run.js's head start: for `iopmem list`, the sysfs scan starts before oclif loads (lib/pci/prefetch.ts). */
import {abandonPrefetch, prefetchScan} from './lib/pci/prefetch.js'
import {getHost, setBulkReader} from './lib/sys/index.js'
import {bulkReader} from './native/index.js'

/**
 * Start `list`'s scan if argv is a listing: its reads then run on the addon's
 * threads while this thread loads oclif and the command. Only a read of the
 * host the command will use (getHost(): the same environment, the same object)
 * is started, and list takes it only if it asks for exactly those functions;
 * otherwise it reads as it always does.
 */
export function headStart(argv: readonly string[]): void {
  if (argv[0] !== 'list' || argv.some((a) => a === '--help' || a === '-h' || a === '--version')) return
  setBulkReader(bulkReader)
  prefetchScan(getHost())
}

/** The command is done: a head start it did not take reads no further (abandonPrefetch). */
export function headStartEnd(): void {
  abandonPrefetch()
}
