import {BaseCommand, examples} from '../../base-command.js'
import {driverEnv, unloadModule, type UnloadResult} from '../../lib/bind/index.js'
import {heldBack} from '../../lib/sys/index.js'

export default class DriverUnload extends BaseCommand {
  static summary = 'Unload the iopmem kernel module.'
  static description = 'Refuses while devices are bound to it: unbind them first (`iopmem unbind BDF`), which itself refuses while their filesystems are mounted or their memory is in use.'

  static examples = examples(`
     # Unload it
  `)

  async run(): Promise<UnloadResult> {
    await this.parse(DriverUnload)
    const {result: r, signal} = await heldBack(() => unloadModule(driverEnv(this.host)))
    if (signal) {
      const state = r.changed ? 'the iopmem module was unloaded before it stopped' : 'the iopmem module was not loaded'
      this.stopInterrupted({...r, interrupted: true, signal}, `${signal}: ${state}.`)
    }
    if (!this.jsonEnabled()) this.log(r.changed ? 'iopmem unloaded' : 'iopmem is not loaded')
    return r
  }
}
