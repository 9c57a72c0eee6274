import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {normalizeBdf} from '../lib/pci/index.js'
import {type BindPlan, type BindResult, DEFAULT_DRIVER, driverRegistered, executeBind, interruptedMessage, planBind, recheckBind, validateDriverName, withFunctionLock} from '../lib/bind/index.js'
import {CACHE_MODES, canLoadModule, driverEnv, MODES, validateBarIndex, validateCache, validateMode, withModule} from '../lib/bind/index.js'
import {type PersistedBindResult, type PersistPlan, planPersist, recordFor, ruleProgram, savePersist} from '../lib/persist/index.js'
import {dryRunResult, type DryRunResult, Effects, Exit, IopmemError} from '../lib/sys/index.js'
import {pickFunction} from '../ui/pick.js'

export default class Bind extends BaseCommand {
  static summary = 'Hand a PCI function to a driver (iopmem, uio_pci_generic, vfio-pci, …).'
  static description = `Sets driver_override to the driver, unbinds the function from its current driver, binds it to the new one and checks the result. If any step fails, the function is put back on the driver (and driver_override) it had, and the error says so.

Before taking a function from its driver, bind refuses when it is in use: a mounted filesystem (DAX or not) or a holder on its block devices, or a process with its resource files, p2pmem or device nodes open or mapped. --force takes it anyway.

The default driver is iopmem (see \`iopmem driver\`); when it is not loaded, bind (as root) loads it after checking the function and getting the confirmation, and unloads it again if the bind then fails. For iopmem, --as picks what the BAR becomes: blockdax (/dev/iopmemN, a block device) or p2pmem (a P2PDMA provider); --bar the BAR (default: the largest memory BAR); --cache the CPU mapping of a blockdax device (wb gives DAX; wc, uc and wt a plain block device). The driver refuses a mapping the CPU caches where device writes would leave it stale (wb where the platform really caches the BAR, and wt) unless --force is given too. A BAR that cannot serve (I/O, under 2 MiB, not 2 MiB aligned, not prefetchable for anything but --cache uc) is refused with the reason. A driver that is not registered is an error that lists the candidates and how to load them. vfio-pci needs an IOMMU group, or unsafe no-IOMMU mode.

--persist also records the binding in /etc/iopmem/bind.d and installs the udev rule that binds the function the same way whenever it appears, at every boot (see \`iopmem persist\`); it is refused, before anything changes, when driverctl has an override for the function.

On a terminal, a missing BDF opens a picker and taking a device from its driver asks first; without a terminal, pass the BDF and --yes.

--dry-run (-n) prints the writes (and the module load) the bind would make, in order, and changes nothing: every check runs and refuses as the real bind would, nothing is asked, and root is not needed (the output says the real bind needs it). With --persist it also lists the directories it would make under /etc and each file it would write, with its exact content.`

  static examples = examples(`
    sudo 0000:03:00.0                                # Bind to the iopmem driver
    sudo 0000:03:00.0 --as p2pmem --bar 2            # BAR2 as a P2PDMA provider
    sudo 0000:03:00.0 --driver vfio-pci --yes        # Hand a device to vfio-pci from a script
    sudo 00:04.0 --driver uio_pci_generic --json     # Domain 0000 may be left out
    sudo 0000:03:00.0 --as blockdax --persist        # Bind now and at every boot
    0000:03:00.0 --driver vfio-pci --dry-run         # The sysfs writes a bind would make, nothing changed
  `)

  static args = {
    bdf: Args.string({description: 'PCI function, [domain:]bus:device.function (picked interactively on a TTY when omitted)', ignoreStdin: true}),
  }

  static flags = {
    driver: Flags.string({charAliases: ['d'], deprecateAliases: true, description: 'Driver to bind to. -d still works for one release, with a warning (-d is list\'s --id).', default: DEFAULT_DRIVER}),
    force: Flags.boolean({char: 'f', description: 'Take the function even if it is in use (or is a bridge); also skips the confirmation. With iopmem, also accepts a CPU-cached --cache wb/wt that device writes do not keep coherent.'}),
    as: Flags.string({aliases: ['mode'], deprecateAliases: true, description: `iopmem only: what the BAR becomes, ${MODES.join(', ')} (default blockdax). Was --mode (still accepted, with a warning, for one release).`}),
    bar: Flags.string({description: 'iopmem only: the BAR index 0-5 (default: the largest memory BAR).'}),
    cache: Flags.string({description: `iopmem only, blockdax: ${CACHE_MODES.join(', ')} (default wb).`}),
    wait: Flags.boolean({description: 'If another iopmem is changing this function, wait for it instead of refusing.'}),
    persist: Flags.boolean({description: 'Also record the binding (driver; mode, BAR and cache for iopmem) in /etc/iopmem/bind.d and install the udev rule that re-applies it at every boot.'}),
    ...BaseCommand.confirmFlags,
    ...BaseCommand.dryRunFlag(),
  }

  async run(): Promise<PersistedBindResult | DryRunResult> {
    const {args, flags} = await this.parse(Bind)
    const bdf = args.bdf ?? (await this.pickOrFail())
    // Bad input is refused before anything is loaded.
    normalizeBdf(bdf)
    const driver = validateDriverName(flags.driver)
    if (flags.as !== undefined) validateMode(flags.as)
    if (flags.cache !== undefined) validateCache(flags.cache)
    if (flags.bar !== undefined) validateBarIndex(flags.bar)
    // From the in-use check to the last write, no other iopmem changes this function.
    const effects = new Effects(flags['dry-run'])
    return withFunctionLock(this.host, bdf, {wait: flags.wait, effects}, async (guard) => {
      // The module is loaded only after the plan and the confirmation, and unloaded again if
      // the bind then fails or is interrupted and rolled back.
      const d = driverEnv(this.host)
      const load = driver === 'iopmem' && !driverRegistered(this.host, 'iopmem') && canLoadModule(d, effects)
      const opts = {force: flags.force, mode: flags.as, bar: flags.bar, cache: flags.cache, loadIopmem: load, effects}
      let plan = planBind(this.host, bdf, driver, opts)
      // Everything the record needs is checked before the first change (in a dry run too).
      const persist = flags.persist ? planPersist(this.host, recordFor(plan), ruleProgram(this.host, this.config.root)) : undefined
      if (effects.dryRun) return this.dryRun(plan, persist, await withModule(d, load, () => executeBind(this.host, plan, guard, effects), undefined, effects), effects)
      if (plan.destructive) {
        const desc = plan.fn.deviceName ?? plan.fn.className
        await this.confirmOrRefuse(`Take ${plan.fn.bdf} (${desc}) from ${plan.fn.driver} and bind it to ${plan.driver}?`, flags.yes || flags.force, `take ${plan.fn.bdf} from ${plan.fn.driver}`)
        // Time passed while a person was asked: check again what is using it.
        plan = recheckBind(plan, planBind(this.host, bdf, driver, opts))
      }
      const {result, loaded, unloaded} = await withModule(d, load, () => executeBind(this.host, plan, guard), (r) => !r.interrupted)
      // Recorded once bound as asked; a stop signal during the bind stops before the record.
      const out: PersistedBindResult = result
      if (persist && !result.interrupted && result.driver === plan.driver) {
        out.persist = await savePersist(this.host, {...persist, record: recordFor(plan)})
        // A signal held back while the record was written: the change is complete, and says so.
        if (await guard.checkpoint()) Object.assign(out, {interrupted: true, signal: guard.signal, rolledBack: false})
      }
      if (loaded?.changed) {
        result.moduleLoaded = {how: loaded.how, ko: loaded.ko ?? null}
        this.note(`loaded the iopmem module (${loaded.how}${loaded.ko ? ` ${loaded.ko}` : ''})${unloaded ? `, then ${unloaded}` : ''}`)
      }
      if (!this.jsonEnabled()) {
        const {renderBindResult} = await import('../ui/render-bind.js')
        this.log(renderBindResult(result, 'bind', await this.colors()))
        const i = result.iopmem
        if (i) this.log(`iopmem: ${i.mode} over BAR${i.bar} (${i.phys}, cache ${i.cache}) -> ${i.path ?? '?'}`)
        if (out.persist) this.log(`recorded in ${out.persist.file}; the udev rule ${out.persist.rule} re-applies it at boot`)
      }
      if (result.interrupted) this.stopInterrupted(result, interruptedMessage(result) + (persist ? (out.persist ? ` Recorded in ${out.persist.file}.` : ' Nothing was recorded.') : ''))
      return out
    })
  }

  /** The steps a bind (and its record) would take, listed by the same code through `effects`, human or --json. */
  private async dryRun(plan: BindPlan, persist: PersistPlan | undefined, {result}: {result: BindResult}, effects: Effects): Promise<DryRunResult> {
    const saved = persist && (await savePersist(this.host, {...persist, record: recordFor(plan)}, {effects}))
    const facts = {bdf: plan.fn.bdf, driver: plan.driver, previousDriver: result.previousDriver, previousOverride: result.previousOverride, usage: plan.usage, iopmem: plan.iopmem ?? null, ...(saved ? {persist: saved} : {})}
    const out = dryRunResult('bind', effects, facts)
    const {renderDryRun, usageNotes} = await import('../ui/render-dryrun.js')
    if (!this.jsonEnabled()) this.log(renderDryRun(out, `bind ${plan.fn.bdf} to ${plan.driver} (now ${plan.fn.driver ?? 'no driver'})`, await this.colors(), usageNotes(plan.usage)))
    return out
  }

  private async pickOrFail(): Promise<string> {
    if (!this.interactive()) {
      throw new IopmemError('Missing the PCI function to bind (BDF).', {
        code: 'E_MISSING_BDF',
        exit: Exit.USAGE,
        suggestions: ['Give one, e.g. `iopmem bind 0000:03:00.0`; `iopmem list` shows the candidates.'],
      })
    }
    return pickFunction(this.host, 'Which function should be bound?')
  }
}
