import * as Args from '@oclif/core/args'

import {BaseCommand, examples} from '../../base-command.js'
import {type SavedConfig, saveConfig} from '../../lib/nvmet/index.js'

export default class NvmetSave extends BaseCommand {
  static summary = 'Write the nvmet configuration to a JSON file nvmetcli can restore, with the p2pmem settings nvmetcli drops.'
  static description = 'The file has nvmetcli\'s keys (hosts, ports, subsystems) and an "iopmem" key with each namespace\'s p2pmem, which nvmetcli ignores. `iopmem nvmet restore FILE` applies both. The file is written whole or not at all (a temporary file renamed into place), readable by its owner only.'

  static examples = examples(`
    /etc/iopmem/nvmet.json  # Save the configuration
  `)

  static args = {
    file: Args.string({description: 'The JSON file to write.', required: true}),
  }

  async run(): Promise<{file: string; saved: SavedConfig}> {
    const {args} = await this.parse(NvmetSave)
    const r = saveConfig(this.host, args.file)
    if (!this.jsonEnabled()) this.log(`saved ${r.saved.subsystems.length} subsystem(s), ${r.saved.ports.length} port(s), ${r.saved.iopmem.p2pmem.length} p2pmem setting(s) to ${r.file}`)
    return r
  }
}
