import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {readMemoryRegions} from '../lib/dax/index.js'
import {type ListDocument, listFunctions} from '../lib/pci/index.js'

export default class List extends BaseCommand {
  static summary = 'List PCI functions and the device memory they expose.'
  static description = `Shows each function's IDs and names, driver, memory BARs (size, 64-bit, prefetchable, write-combining mappable, disabled/unassigned), p2pmem (size, free, published) and the NVMe, pmem, iopmem and device-dax devices on it.

One line per function, fitted to $COLUMNS (80 when not a terminal; the device name is cut first, empty columns go); a link running below its maximum speed or width is marked ↓; --wide shows every BAR with its address and the names in full.

By default only functions with memory BARs, p2pmem or storage are shown (bridges excluded); --all shows every function; selectors as lspci's (-s, -d) and by class, driver or p2pmem pick among every function. --tree draws the hierarchy as \`lspci -tv\` does, with P2P providers and P2P groups (functions under one switch with no ACS redirect between them) marked.

pmem regions and device-dax instances (/sys/bus/nd, /sys/bus/dax) follow in a section of their own. Reads sysfs only: no root needed. Set IOPMEM_SYSFS_ROOT to read another tree.`

  static examples = examples(`
                          # Functions with device memory
    --all                 # Every PCI function, bridges included
    --tree                # The PCIe hierarchy, as lspci -tv
    -s 03:                # Functions on bus 03 (lspci -s)
    -d 1b36:0010          # By vendor:device (lspci -d)
    --class nvme --p2pmem # NVMe controllers that are P2P providers
    0000:03:00.0 --json   # One function, as JSON for scripts
  `)

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to show, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  static flags = {
    all: Flags.boolean({char: 'a', description: 'Show every function, not only those with device memory.'}),
    tree: Flags.boolean({description: 'The PCIe hierarchy as lspci -tv draws it, P2P providers and groups marked.', exclusive: ['slot', 'id', 'class', 'driver', 'p2pmem']}),
    slot: Flags.string({char: 's', description: 'Only functions in this slot, as lspci -s: [[domain:]bus:][device][.function], parts hex, empty or * for any.', helpGroup: 'SELECT'}),
    id: Flags.string({char: 'd', description: 'Only functions with these IDs, as lspci -d: [vendor]:[device][:class], hex, empty or * for any.', helpGroup: 'SELECT'}),
    class: Flags.string({description: 'Only functions of this class: hex (01, 0108, 010802) or words of its name (nvme, bridge).', helpGroup: 'SELECT'}),
    driver: Flags.string({description: 'Only functions bound to this driver (none: unbound).', helpGroup: 'SELECT'}),
    p2pmem: Flags.boolean({description: 'Only P2P providers: functions with p2pmem or bound to iopmem.', helpGroup: 'SELECT'}),
    wide: Flags.boolean({description: 'Every detail (each BAR with its address, names in full), not fitted to the terminal ($COLUMNS; 80 when not a terminal).'}),
  }

  async run(): Promise<ListDocument> {
    const {argv, flags} = await this.parse(List)
    const selectors = {slot: flags.slot, id: flags.id, class: flags.class, driver: flags.driver, p2pmem: flags.p2pmem}
    const result = {...(await listFunctions(this.host, {bdfs: argv as string[], all: flags.all, tree: flags.tree, selectors})), regions: readMemoryRegions(this.host)}
    if (!this.jsonEnabled()) {
      const [{renderList}, {outputWidth}] = await Promise.all([import('../ui/render-list.js'), import('../ui/width.js')])
      this.log(renderList(result, await this.colors(), outputWidth(flags)))
    }
    return result
  }
}
