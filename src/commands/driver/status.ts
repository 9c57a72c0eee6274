import {BaseCommand, examples} from '../../base-command.js'
import {driverEnv, type DriverStatus, driverStatus, renderStatus} from '../../lib/bind/index.js'

export default class DriverStatusCommand extends BaseCommand {
  static summary = 'Show the iopmem driver: loaded or not, version, parameters, bound devices.'
  static description = 'Reads sysfs (no root needed): /sys/module/iopmem and /sys/bus/pci/drivers/iopmem, and for each bound device its iopmem/{mode,bar,cache,node,phys,size,memtype}; as root also debugfs iopmem/fail_probe (the fault-injection hook).'

  static examples = examples(`
    --json # For scripts
  `)

  async run(): Promise<DriverStatus> {
    await this.parse(DriverStatusCommand)
    const s = driverStatus(driverEnv(this.host))
    if (!this.jsonEnabled()) this.log(renderStatus(s))
    return s
  }
}
