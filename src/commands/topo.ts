import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {type ProbeResult, probePairs} from '../lib/check/index.js'
import {type TopoResult, topoFor} from '../lib/pci/index.js'
import {Exit} from '../lib/sys/index.js'

export default class Topo extends BaseCommand {
  static summary = 'Show which PCI functions can do peer-to-peer DMA with each other, and why not.'
  static description = `For each pair: the path class (the legend of \`nvidia-smi topo -m\`, for any PCI function), the distance the kernel computes, and whether Linux P2PDMA would allow the pair, following drivers/pci/p2pdma.c: a common upstream bridge (PCIe switch) allows bus-address P2P unless an ACS redirect bit is set on the path; with no common bridge, traffic goes through the host bridge, which is allowed only on AMD Zen or newer CPUs or whitelisted Intel host bridges.

Default functions: those with memory BARs, p2pmem or block devices. ACS control lives in extended config space, which only root can read: without root, verdicts that depend on it are "unknown", and the note says so.`

  static examples = examples(`
                              # Matrix of every function with device memory
    0000:03:00.0 0000:04:00.0 # One pair
    sudo --json               # Including ACS checks, as JSON
    sudo --probe              # Move real data: each client disk read into each p2pmem provider, verified
  `)

  static flags = {
    probe: Flags.boolean({description: 'Also read 64 KiB of each client\'s disk into each provider\'s p2pmem with O_DIRECT and compare it with a normal read (root, live kernel; writes nothing). Exit 8 when a pair disagrees with the kernel\'s rules or its bytes are wrong.'}),
  }

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to include, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  async run(): Promise<TopoResult & {probe?: ProbeResult}> {
    const {argv, flags} = await this.parse(Topo)
    const result: TopoResult & {probe?: ProbeResult} = topoFor(this.host, argv as string[])
    if (flags.probe) result.probe = await probePairs(this.host, result.functions)
    if (!this.jsonEnabled()) {
      const {renderTopo} = await import('../ui/render-topo.js')
      this.log(renderTopo(result, await this.colors()))
      if (result.probe) {
        const {renderProbe} = await import('../ui/render-probe.js')
        this.log(renderProbe(result.probe, await this.colors()))
      }
    } else if (result.probe?.mismatches.length) this.logJson(result)
    if (result.probe?.mismatches.length) this.exit(Exit.MISMATCH)
    return result
  }
}
