import {BaseCommand, examples} from '../../base-command.js'
import {type DkmsRemoveResult, dkmsRemove, driverEnv} from '../../lib/bind/index.js'

export default class DriverRemove extends BaseCommand {
  static summary = 'Remove the iopmem module that `iopmem driver install` put in DKMS.'
  static description = 'Runs `dkms remove iopmem/VERSION --all` (the module files of every kernel DKMS built it for) and removes /usr/src/iopmem-VERSION when it holds this iopmem\'s sources (a directory with other contents is left alone and reported). Does not unload a loaded module: `iopmem driver unload` does, and says if devices are still bound. Needs root.'

  static examples = examples(`
    # Remove it from every kernel
  `)

  async run(): Promise<DkmsRemoveResult> {
    await this.parse(DriverRemove)
    const r = await dkmsRemove(driverEnv(this.host))
    if (!this.jsonEnabled()) {
      for (const s of r.steps) this.log(s.done)
      if (!r.changed) this.log(`iopmem ${r.version} was not installed through DKMS`)
      if (r.stillLoaded) this.log('iopmem is still loaded: `iopmem driver unload` unloads it')
    }
    return r
  }
}
