import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {driverEnv, interruptedMessage, withFunctionLock} from '../../lib/bind/index.js'
import {type ApplyResult, applyPersistent, kmsg, SYSTEM_PATH} from '../../lib/persist/index.js'

export default class PersistApply extends BaseCommand {
  static summary = 'Bind a function as its record in /etc/iopmem/bind.d says (what the udev rule runs at boot).'
  static description = `The entry point of /etc/udev/rules.d/89-iopmem.rules, which runs it when udev adds a PCI function that has a record; it can be run by hand too. Idempotent: a function already bound as recorded is left alone ("already"). Otherwise it binds as \`iopmem bind\` does (same checks, same rollback, the iopmem module loaded when needed), without asking: the record is the confirmation. A function in use is still refused. If driverctl has an override for the function, apply leaves it to driverctl ("deferred", exit 0). A missing record, function or driver is an error that says which. It waits for another iopmem working on the same function instead of refusing.

--kmsg (the rule passes it) also writes the outcome, or the error, as one line to the kernel log, where \`dmesg\` and the journal show it after boot: udev keeps what its programs print only in its debug log.`

  static examples = examples(`
    0000:03:00.0 # Apply one record now
    0000:03:00.0 --json # For scripts
  `)

  static args = {
    bdf: Args.string({description: 'PCI function, [domain:]bus:device.function', required: true, ignoreStdin: true}),
  }

  static flags = {
    kmsg: Flags.boolean({description: 'Also write the outcome or the error to the kernel log (/dev/kmsg), as the udev rule asks.'}),
  }

  async run(): Promise<ApplyResult> {
    const {args, flags} = await this.parse(PersistApply)
    // udev runs its programs without a PATH: modprobe and flock are looked up where the system keeps them.
    process.env.PATH ||= SYSTEM_PATH
    let logged = false
    try {
      const r = await withFunctionLock(this.host, args.bdf, {wait: true}, (guard) => applyPersistent(this.host, driverEnv(this.host), args.bdf, guard))
      if (flags.kmsg) kmsg(this.host, r.bind?.interrupted ? 3 : 5, `persist apply ${r.bdf}: ${r.bind?.interrupted ? interruptedMessage(r.bind) : `${r.outcome}, ${r.detail}`}`)
      logged = true
      if (r.moduleLoaded) this.note(`loaded the iopmem module (${r.moduleLoaded.how}${r.moduleLoaded.ko ? ` ${r.moduleLoaded.ko}` : ''})`)
      if (!this.jsonEnabled()) {
        if (r.bind) {
          const {renderBindResult} = await import('../../ui/render-bind.js')
          this.log(renderBindResult(r.bind, 'bind', await this.colors()))
        } else this.log(`${r.bdf}: ${r.detail}.`)
      }
      if (r.bind?.interrupted) this.stopInterrupted(r, interruptedMessage(r.bind))
      return r
    } catch (error) {
      if (flags.kmsg && !logged) kmsg(this.host, 3, `persist apply ${args.bdf} failed: ${this.toIopmemError(error).message}`)
      throw error
    }
  }
}
