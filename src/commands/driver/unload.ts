import {BaseCommand, examples} from '../../base-command.js'
import {driverEnv, unloadModule, type UnloadResult} from '../../lib/bind/index.js'

export default class DriverUnload extends BaseCommand {
  static summary = 'Unload the iopmem kernel module.'
  static description = 'Refuses while devices are bound to it: unbind them first (`iopmem unbind BDF`), which itself refuses while their filesystems are mounted or their memory is in use.'

  static examples = examples(`
     # Unload it
  `)

  async run(): Promise<UnloadResult> {
    await this.parse(DriverUnload)
    const r = unloadModule(driverEnv(this.host))
    if (!this.jsonEnabled()) this.log(r.changed ? 'iopmem unloaded' : 'iopmem is not loaded')
    return r
  }
}
