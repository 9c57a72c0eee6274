import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {executeUnbind, interruptedMessage, withFunctionLock, planUnbind, recheckUnbind} from '../lib/bind/index.js'
import {hasRecord, type PersistedBindResult, planRemove, removePersist} from '../lib/persist/index.js'
import {dryRunResult, type DryRunResult, Effects, Exit, IopmemError} from '../lib/sys/index.js'
import {pickFunction} from '../ui/pick.js'

export default class Unbind extends BaseCommand {
  static summary = 'Release a PCI function from its driver and clear its driver_override.'
  static description = `Unbinds the function from its driver, then clears driver_override. Clearing it matters: an override left behind (say vfio-pci) would silently hand the device back to that driver at the next rescan or drivers_probe. After unbind the function stays without a driver until something probes it again, and then the driver that matches its IDs takes it.

--persist also removes the binding recorded by \`bind --persist\` (and the udev rule with the last one), so the next boot leaves the function alone; without it, unbinding a function that has a record warns that the next boot binds it again.

Refuses while the function is in use (mounted filesystems or holders on its block devices, processes with its resource files, p2pmem or device nodes open or mapped) unless --force. On a terminal it asks first; without one, pass --yes.

--dry-run (-n) prints the writes the unbind would make, in order, and changes nothing: every check runs and refuses as the real unbind would, nothing is asked, and root is not needed (the output says the real unbind needs it). With --persist it also lists the files it would remove under /etc.`

  static examples = examples(`
    sudo 0000:03:00.0              # Release a function (asks first)
    sudo 0000:03:00.0 --yes --json # From a script
    0000:03:00.0 --dry-run         # The sysfs writes an unbind would make, nothing changed
  `)

  static args = {
    bdf: Args.string({description: 'PCI function, [domain:]bus:device.function (picked interactively on a TTY when omitted)', ignoreStdin: true}),
  }

  static flags = {
    force: Flags.boolean({char: 'f', description: 'Unbind even if the function is in use (or is a bridge); also skips the confirmation.'}),
    wait: Flags.boolean({description: 'If another iopmem is changing this function, wait for it instead of refusing.'}),
    persist: Flags.boolean({description: 'Also remove the binding recorded in /etc/iopmem/bind.d (bind --persist), so the next boot does not bind it again.'}),
    ...BaseCommand.confirmFlags,
    ...BaseCommand.dryRunFlag(),
  }

  async run(): Promise<PersistedBindResult | DryRunResult> {
    const {args, flags} = await this.parse(Unbind)
    let bdf = args.bdf
    if (bdf === undefined) {
      if (!this.interactive()) {
        throw new IopmemError('Missing the PCI function to unbind (BDF).', {
          code: 'E_MISSING_BDF',
          exit: Exit.USAGE,
          suggestions: ['Give one, e.g. `iopmem unbind 0000:03:00.0`; `iopmem list` shows the candidates.'],
        })
      }
      bdf = await pickFunction(this.host, 'Which function should be unbound?')
    }
    const effects = new Effects(flags['dry-run'])
    return withFunctionLock(this.host, bdf, {wait: flags.wait, effects}, async (guard) => {
      let plan = planUnbind(this.host, bdf, {force: flags.force, effects})
      if (flags.persist) planRemove(this.host, plan.fn.bdf)
      if (effects.dryRun) {
        const r = await executeUnbind(this.host, plan, guard, effects)
        const persist = flags.persist ? await removePersist(this.host, plan.fn.bdf, effects) : undefined
        const out = dryRunResult('unbind', effects, {bdf: r.bdf, previousDriver: r.previousDriver, previousOverride: r.previousOverride, usage: plan.usage, ...(persist ? {persist} : {})})
        const {renderDryRun, usageNotes} = await import('../ui/render-dryrun.js')
        if (!this.jsonEnabled()) this.log(renderDryRun(out, `unbind ${r.bdf} (now ${r.previousDriver ?? 'no driver'}, driver_override ${r.previousOverride ?? '(null)'})`, await this.colors(), usageNotes(plan.usage)))
        return out
      }
      if (!plan.noop && plan.fn.driver !== null) {
        await this.confirmOrRefuse(
          `Unbind ${plan.fn.bdf} (${plan.fn.deviceName ?? plan.fn.className}) from ${plan.fn.driver}?`,
          flags.yes || flags.force,
          `unbind ${plan.fn.bdf} from ${plan.fn.driver}`,
        )
        plan = recheckUnbind(plan, planUnbind(this.host, bdf, {force: flags.force}))
      }
      const result: PersistedBindResult = await executeUnbind(this.host, plan, guard)
      if (flags.persist && !result.interrupted) {
        result.persist = await removePersist(this.host, plan.fn.bdf)
        if (await guard.checkpoint()) Object.assign(result, {interrupted: true, signal: guard.signal, rolledBack: false})
      }
      else if (!flags.persist && hasRecord(this.host, plan.fn.bdf)) result.warnings.push(`a binding is recorded for ${plan.fn.bdf}: the next boot binds it again (\`iopmem unbind ${plan.fn.bdf} --persist\` forgets it)`)
      if (!this.jsonEnabled()) {
        const {renderBindResult} = await import('../ui/render-bind.js')
        this.log(renderBindResult(result, 'unbind', await this.colors()))
        if (result.persist?.changed) this.log(`removed the record ${result.persist.file}${result.persist.ruleAction === 'removed' ? ` and the udev rule ${result.persist.rule}` : ''}`)
      }
      if (result.interrupted) this.stopInterrupted(result, interruptedMessage(result))
      return result
    })
  }
}
