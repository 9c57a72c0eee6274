import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {type TopoResult, topoFor} from '../lib/pci/index.js'

export default class Topo extends BaseCommand {
  static summary = 'Show which PCI functions can do peer-to-peer DMA with each other, and why not.'
  static description = `For each pair of a provider (the function with p2pmem, or bound to iopmem) and a client: the path class (the legend of \`nvidia-smi topo -m\`, for any PCI function), the distance the kernel computes, and whether Linux P2PDMA would allow the pair, following drivers/pci/p2pdma.c: a common upstream bridge (PCIe switch) allows bus-address P2P unless an ACS redirect bit is set on the path; with no common bridge, traffic goes through the host bridge, which is allowed only on AMD Zen or newer CPUs or whitelisted Intel host bridges.

Pairs with no provider, or with a bridge, get no verdict ("n/a"). Default functions: those with memory BARs, p2pmem or block devices. The matrix is fitted to $COLUMNS (80 when not a terminal): too many functions give a list of the pairs with a provider instead, and long pair lists are summarised; --wide shows everything. ACS control lives in extended config space, which only root can read: without root, verdicts that depend on it are "unknown", and the note says so.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Matrix of every function with device memory'},
    {command: '<%= config.bin %> <%= command.id %> 0000:03:00.0 0000:04:00.0', description: 'One pair'},
    {command: 'sudo <%= config.bin %> <%= command.id %> --json', description: 'Including ACS checks, as JSON'},
  ]

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to include, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  static flags = {
    wide: Flags.boolean({description: 'Do not fit the output to the terminal ($COLUMNS; 80 when not a terminal): the whole matrix, every pair listed.'}),
  }

  async run(): Promise<TopoResult> {
    const {argv, flags} = await this.parse(Topo)
    const result = topoFor(this.host, argv as string[])
    if (!this.jsonEnabled()) {
      const [{renderTopo}, {outputWidth}] = await Promise.all([import('../ui/render-topo.js'), import('../ui/width.js')])
      this.log(renderTopo(result, await this.colors(), outputWidth(flags)))
    }
    return result
  }
}
