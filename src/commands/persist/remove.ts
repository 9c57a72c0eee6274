import * as Args from '@oclif/core/args'

import {BaseCommand, examples} from '../../base-command.js'
import {type PersistChange, removePersist} from '../../lib/persist/index.js'
import {Exit, IopmemError} from '../../lib/sys/index.js'

export default class PersistRemove extends BaseCommand {
  static summary = 'Forget a recorded binding without touching the function (also for a function that is gone).'
  static description = `Removes /etc/iopmem/bind.d/BDF.conf, and the udev rule with the last record. The function keeps its driver until the next boot, when nothing binds it any more; \`iopmem unbind BDF --persist\` unbinds it now as well. Needs root on the live system.`

  static examples = examples(`
    0000:03:00.0 # The function was moved to another slot
  `)

  static args = {
    bdf: Args.string({description: 'PCI function, [domain:]bus:device.function', required: true, ignoreStdin: true}),
  }

  async run(): Promise<PersistChange> {
    const {args} = await this.parse(PersistRemove)
    if (this.host.isLive && !this.host.isRoot()) {
      throw new IopmemError('Removing a recorded binding needs root: it writes to /etc.', {code: 'E_NOT_ROOT', exit: Exit.PERMISSION, suggestions: ['Run it with sudo.']})
    }
    const r = await removePersist(this.host, args.bdf)
    if (!r.changed) throw new IopmemError(`No binding is recorded for ${args.bdf} (${r.file}).`, {code: 'E_NO_RECORD', exit: Exit.NOT_FOUND, suggestions: ['`iopmem persist list` shows the recorded ones.']})
    if (!this.jsonEnabled()) this.log(`Removed ${r.file}${r.ruleAction === 'removed' ? `, and the udev rule ${r.rule} (it was the last record)` : ''}.`)
    return r
  }
}
