import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../base-command.js'
import {driverEnv, type LoadResult, loadModule} from '../../lib/bind/index.js'
import {dryRunResult, type DryRunResult, Effects, heldBack} from '../../lib/sys/index.js'

export default class DriverLoad extends BaseCommand {
  static summary = 'Load the iopmem kernel module.'
  static description = `Loads the module \`iopmem driver build\` made for the running kernel (or --ko FILE) with insmod; without one, \`modprobe iopmem\` (an installed module). A module built for another kernel is refused, and so is a file that is not a regular file of at most 64 MiB (a device, a FIFO, a symlink), or one that anyone but root can write (owned by another user, group/other-writable, or in a directory that is): the file is opened once, checked on that descriptor and handed to insmod as /proc/self/fd/3, so what was checked is what loads. Parameters set the defaults for devices bound without settings: mode=blockdax|p2pmem, bar=0-5 (or -1: the largest memory BAR), cache=wb|wc|uc|wt. The driver claims no device: bind one with \`iopmem bind BDF --driver iopmem\`.

--dry-run (-n) prints the insmod or modprobe command the load would run and runs nothing: the module file is opened and checked as for a load (a refusal is the same error), and root is not needed (the output says the load needs it).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Load the module built for this kernel'},
    {command: '<%= config.bin %> <%= command.id %> mode=p2pmem --ko ./iopmem.ko', description: 'A given file, p2pmem by default'},
    {command: '<%= config.bin %> <%= command.id %> --dry-run', description: 'The command a load would run, nothing loaded'},
  ]

  static strict = false
  static args = {
    params: Args.string({description: 'Module parameters: mode=M, bar=N, cache=C', required: false}),
  }

  static flags = {
    ko: Flags.string({description: 'The module file to load (default: the one `driver build` made).'}),
    ...BaseCommand.dryRunFlag(),
  }

  async run(): Promise<LoadResult | DryRunResult> {
    const {argv, flags} = await this.parse(DriverLoad)
    if (flags['dry-run']) {
      const effects = new Effects(true)
      const r = loadModule(driverEnv(this.host), {ko: flags.ko, params: argv as string[], effects})
      const out = dryRunResult('driver load', effects, {loaded: r.loaded && !r.changed, how: r.how, ko: r.ko ?? null, params: r.params})
      const {renderDryRun} = await import('../../ui/render-dryrun.js')
      if (!this.jsonEnabled()) this.log(renderDryRun(out, r.changed ? `load the iopmem module (${r.how})` : 'load the iopmem module: it is already loaded', await this.colors()))
      return out
    }
    // A stop signal during insmod does not kill iopmem mid-way: the load finishes or fails, then the state is said.
    const {result: r, signal} = await heldBack(() => loadModule(driverEnv(this.host), {ko: flags.ko, params: argv as string[]}))
    if (signal) {
      const state = r.changed ? 'the iopmem module was loaded before it stopped, and stays loaded (`iopmem driver unload` removes it)' : 'the iopmem module was already loaded'
      this.stopInterrupted({...r, interrupted: true, signal}, `${signal}: ${state}.`)
    }
    if (!this.jsonEnabled()) this.log(r.changed ? `iopmem loaded (${r.how}${r.ko ? ` ${r.ko}` : ''})` : 'iopmem is already loaded')
    return r
  }
}
