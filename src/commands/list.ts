import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {type ListResult, listFunctions} from '../lib/pci/index.js'

export default class List extends BaseCommand {
  static summary = 'List PCI functions and the device memory they expose.'
  static description = `Shows each function's IDs and names, driver, memory BARs (size, 64-bit, prefetchable, write-combining mappable, disabled/unassigned), p2pmem (size, free, published) and the NVMe, pmem, iopmem and device-dax devices on it.

One line per function, fitted to $COLUMNS (80 when not a terminal; the device name is cut first, empty columns go); a link running below its maximum speed or width is marked ↓; --wide shows every BAR with its address and the names in full.

By default only functions with memory BARs, p2pmem or storage are shown (bridges excluded); --all shows every function. Reads sysfs only: no root needed. Set IOPMEM_SYSFS_ROOT to read another tree.`

  static examples = examples(`
                        # Functions with device memory
    --all               # Every PCI function, bridges included
    0000:03:00.0 --json # One function, as JSON for scripts
  `)

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to show, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  static flags = {
    all: Flags.boolean({char: 'a', description: 'Show every function, not only those with device memory.'}),
    wide: Flags.boolean({description: 'Every detail (each BAR with its address, names in full), not fitted to the terminal ($COLUMNS; 80 when not a terminal).'}),
  }

  async run(): Promise<ListResult> {
    const {argv, flags} = await this.parse(List)
    const result = listFunctions(this.host, {bdfs: argv as string[], all: flags.all})
    if (!this.jsonEnabled()) {
      const [{renderList}, {outputWidth}] = await Promise.all([import('../ui/render-list.js'), import('../ui/width.js')])
      this.log(renderList(result, await this.colors(), outputWidth(flags)))
    }
    return result
  }
}
