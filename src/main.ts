/**
 * What bin/run.js loads: oclif's run path and our report for errors no command
 * caught. It is the bundle's entry (scripts/bundle.mjs), so that oclif, the
 * command and the library load as a few files rather than ~190 modules.
 */
export {flush} from '@oclif/core/flush'
export {handle} from '@oclif/core/handle'
export {run} from '@oclif/core/run'

/**
 * base-command's reportUncaught, loaded only when an error reaches bin/run.js:
 * `--version`, `help` and `autocomplete` do not load the command base and the
 * library (which brings child_process) just to have it at hand.
 */
export async function reportUncaught(error: unknown, argv: string[], root: string): Promise<number | undefined> {
  const base = await import('./base-command.js')
  return base.reportUncaught(error, argv, root)
}
