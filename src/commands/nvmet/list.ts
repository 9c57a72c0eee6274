import {BaseCommand, examples} from '../../base-command.js'
import {type NvmetState, readState} from '../../lib/nvmet/index.js'

export default class NvmetList extends BaseCommand {
  static summary = 'Show the nvmet subsystems, namespaces (with p2pmem) and ports configured now.'
  static description = 'Reads the kernel\'s configfs tree (/sys/kernel/config/nvmet). When nvmet is not loaded, says so (loaded: false) and lists nothing.'

  static examples = examples(`
    # What is configured
    --json  # The same, for scripts
  `)

  async run(): Promise<NvmetState> {
    await this.parse(NvmetList)
    const state = readState(this.host)
    if (!this.jsonEnabled()) {
      const {renderState} = await import('../../ui/render-nvmet.js')
      this.log(renderState(state))
    }
    return state
  }
}
