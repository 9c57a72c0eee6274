import {BaseCommand, examples} from '../../base-command.js'
import {listPersistent, type PersistList} from '../../lib/persist/index.js'

export default class PersistList_ extends BaseCommand {
  static summary = 'Show the bindings recorded to survive a reboot, and whether each is in force.'
  static description = `Reads /etc/iopmem/bind.d (one BDF.conf per function, written by \`iopmem bind … --persist\`) and the udev rule /etc/udev/rules.d/89-iopmem.rules that re-applies them when the function appears at boot. Each record gets a state: applied (bound as recorded), pending (present but not bound so: the next boot or \`iopmem persist apply BDF\` binds it), device-missing (no such function now), driver-missing (its driver is not registered), deferred (driverctl has an override for the function, which wins), or invalid (the file cannot be used, and why). Nothing is skipped silently. No root needed.`

  static examples = examples(`
     # What is recorded
    --json # For scripts
  `)

  async run(): Promise<PersistList> {
    await this.parse(PersistList_)
    const list = listPersistent(this.host)
    if (!this.jsonEnabled()) {
      const {renderPersistList} = await import('../../ui/render-persist.js')
      this.log(renderPersistList(list, await this.colors()))
    }
    return list
  }
}
