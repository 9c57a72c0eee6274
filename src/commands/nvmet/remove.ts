import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {executeRemove, planRemove, type TargetResult, withNvmetLock} from '../../lib/nvmet/index.js'

export default class NvmetRemove extends BaseCommand {
  static summary = 'Tear a target down: unlink its subsystem from its ports, disable and remove its namespaces, remove it.'
  static description = `Ports left with no subsystem are removed too, and hosts/ entries no other subsystem allows. Refused while hosts are connected (the kernel's debugfs lists their controllers) unless --force. A stop signal ends it between steps with the state said; running remove again finishes it. Asks first on a terminal; without one, pass --yes.`

  static examples = examples(`
    sudo nqn.2026-11.io.iopmem:t1 --yes  # Remove the target
  `)

  static args = {
    nqn: Args.string({description: 'The subsystem NQN.', required: true}),
  }

  static flags = {
    force: Flags.boolean({char: 'f', description: 'Remove it even while hosts are connected (they are cut off); also skips the confirmation.'}),
    wait: Flags.boolean({description: 'If another iopmem is changing nvmet, wait for it instead of refusing.'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<TargetResult> {
    const {args, flags} = await this.parse(NvmetRemove)
    return withNvmetLock(this.host, {wait: flags.wait}, async (guard) => {
      let plan = planRemove(this.host, args.nqn, {force: flags.force})
      await this.confirmOrRefuse(`Remove ${plan.nqn} (${plan.namespaces.length} namespace(s), port(s) ${plan.ports.join(', ') || 'none'})?`, flags.yes || flags.force, `remove ${plan.nqn}`)
      plan = planRemove(this.host, args.nqn, {force: flags.force})
      const result = await executeRemove(this.host, plan, guard)
      if (!this.jsonEnabled()) {
        const {renderTargetResult} = await import('../../ui/render-nvmet.js')
        this.log(renderTargetResult(result))
      }
      if (result.interrupted) this.stopInterrupted(result, `${result.signal}: stopped part way; run remove again to finish.`)
      return result
    })
  }
}
