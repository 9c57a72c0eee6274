import * as Args from '@oclif/core/args'

import {BaseCommand, examples} from '../../base-command.js'
import {driverEnv, interruptedMessage, withFunctionLock} from '../../lib/bind/index.js'
import {type ApplyResult, applyPersistent} from '../../lib/persist/index.js'

export default class PersistApply extends BaseCommand {
  static summary = 'Bind a function as its record in /etc/iopmem/bind.d says (what the udev rule runs at boot).'
  static description = `The entry point of /etc/udev/rules.d/89-iopmem.rules, which runs it when udev adds a PCI function that has a record; it can be run by hand too. Idempotent: a function already bound as recorded is left alone ("already"). Otherwise it binds as \`iopmem bind\` does (same checks, same rollback, the iopmem module loaded when needed), without asking: the record is the confirmation. A function in use is still refused. If driverctl has an override for the function, apply leaves it to driverctl ("deferred", exit 0). A missing record, function or driver is an error that says which. It waits for another iopmem working on the same function instead of refusing.`

  static examples = examples(`
    0000:03:00.0 # Apply one record now
    0000:03:00.0 --json # For scripts
  `)

  static args = {
    bdf: Args.string({description: 'PCI function, [domain:]bus:device.function', required: true, ignoreStdin: true}),
  }

  async run(): Promise<ApplyResult> {
    const {args} = await this.parse(PersistApply)
    return withFunctionLock(this.host, args.bdf, {wait: true}, async (guard) => {
      const r = await applyPersistent(this.host, driverEnv(this.host), args.bdf, guard)
      if (r.moduleLoaded) this.note(`loaded the iopmem module (${r.moduleLoaded.how}${r.moduleLoaded.ko ? ` ${r.moduleLoaded.ko}` : ''})`)
      if (!this.jsonEnabled()) {
        if (r.bind) {
          const {renderBindResult} = await import('../../ui/render-bind.js')
          this.log(renderBindResult(r.bind, 'bind', await this.colors()))
        } else this.log(`${r.bdf}: ${r.detail}.`)
      }
      if (r.bind?.interrupted) this.stopInterrupted(r, interruptedMessage(r.bind))
      return r
    })
  }
}
