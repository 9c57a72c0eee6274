import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {applyPlan, planRestore, readSaved, type TargetResult, withDiskLocks, withNvmetLock} from '../../lib/nvmet/index.js'

export default class NvmetRestore extends BaseCommand {
  static summary = 'Recreate targets from a file `nvmet save` (or nvmetcli) wrote, with their p2pmem settings.'
  static description = `Adds the file's hosts, subsystems, namespaces and ports. Each is checked as \`nvmet create\` checks it (NQNs, addresses only from 127.0.0.0/8 or IPv6 link-local, devices present and not in use, p2pmem the kernel would accept) before anything is made; a subsystem that exists already is refused (remove it first), a port that exists is reused only with the same address. If a step fails or a stop signal comes, everything this run made is removed again. The "iopmem" key holds each namespace's p2pmem (off, auto or a BDF; auto is decided again on this machine). Asks first on a terminal; without one, pass --yes.`

  static examples = examples(`
    sudo /etc/iopmem/nvmet.json --yes  # Recreate what was saved
  `)

  static args = {
    file: Args.string({description: 'The JSON file to restore.', required: true}),
  }

  static flags = {
    wait: Flags.boolean({description: 'If another iopmem is changing nvmet or a device, wait for it instead of refusing.'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<TargetResult> {
    const {args, flags} = await this.parse(NvmetRestore)
    const saved = readSaved(args.file)
    return withNvmetLock(this.host, {wait: flags.wait}, async (guard) => {
      let plan = planRestore(this.host, args.file, saved)
      for (const w of plan.warnings) this.note(`note: ${w}`)
      const {describePlan, renderTargetResult} = await import('../../ui/render-nvmet.js')
      await this.confirmOrRefuse(`${describePlan(plan)}\nRestore it?`, flags.yes, `restore ${args.file}`)
      return withDiskLocks(this.host, plan.disks, {wait: flags.wait}, async () => {
        plan = planRestore(this.host, args.file, saved)
        const result = await applyPlan(this.host, plan, 'restore', guard)
        if (!this.jsonEnabled()) this.log(renderTargetResult(result))
        if (result.interrupted) this.stopInterrupted(result, `${result.signal}: stopped; ${result.rolledBack ? 'everything made was removed again' : `left: ${result.left?.join(', ')}`}.`)
        return result
      })
    })
  }
}
