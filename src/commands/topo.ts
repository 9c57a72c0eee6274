import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {lockProbeDisks, planProbeWrite, type ProbeResult, probePairs, probeWriteRequest} from '../lib/check/index.js'
import {type TopoResult, topoFor} from '../lib/pci/index.js'
import {Exit, formatBytes, withSignalGuard} from '../lib/sys/index.js'

export default class Topo extends BaseCommand {
  static summary = 'Show which PCI functions can do peer-to-peer DMA with each other, and why not.'
  static description = `For each pair of a provider (the function with p2pmem, or bound to iopmem) and a client: the path class (the legend of \`nvidia-smi topo -m\`, for any PCI function), the distance the kernel computes, and whether Linux P2PDMA would allow the pair, following drivers/pci/p2pdma.c: a common upstream bridge (PCIe switch) allows bus-address P2P unless an ACS redirect bit is set on the path; with no common bridge, traffic goes through the host bridge, which is allowed only on AMD Zen or newer CPUs or whitelisted Intel host bridges.

Pairs with no provider, or with a bridge, get no verdict ("n/a"). Default functions: those with memory BARs, p2pmem or block devices. The matrix is fitted to $COLUMNS (80 when not a terminal): too many functions give a list of the pairs with a provider instead, and long pair lists are summarised; --wide shows everything. ACS control lives in extended config space, which only root can read: without root, verdicts that depend on it are "unknown", and the note says so.`

  static examples = examples(`
                              # Matrix of every function with device memory
    0000:03:00.0 0000:04:00.0 # One pair
    sudo --json               # Including ACS checks, as JSON
    sudo --probe              # Move real data: each client disk read into each p2pmem provider, verified
  `)

  static flags = {
    ...BaseCommand.confirmFlags,
    probe: Flags.boolean({description: 'Also read 64 KiB of each client\'s disk into each provider\'s p2pmem with O_DIRECT and compare it with a normal read (root, live kernel; writes nothing). Exit 8 when a pair disagrees with the kernel\'s rules or its bytes are wrong.'}),
    write: Flags.boolean({description: 'With --probe: also write from each provider\'s p2pmem to each client\'s disk, into the region --offset/--lba names (128 KiB; saved first, restored after and read back). Refuses a disk that is mounted or open. Asks on a terminal; --yes without one.'}),
    offset: Flags.string({description: 'With --write: byte offset of the region in each client disk (units: K, M, G; a multiple of 4 KiB).'}),
    lba: Flags.string({description: 'With --write: the region\'s first logical block in each client disk (instead of --offset).'}),
    wait: Flags.boolean({description: 'With --write: wait for another iopmem holding a disk instead of refusing.'}),
    wide: Flags.boolean({description: 'Do not fit the output to the terminal ($COLUMNS; 80 when not a terminal): the whole matrix, every pair listed.'}),
  }

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to include, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  async run(): Promise<TopoResult & {probe?: ProbeResult}> {
    const {argv, flags} = await this.parse(Topo)
    const result: TopoResult & {probe?: ProbeResult} = topoFor(this.host, argv as string[])
    const at = probeWriteRequest(flags)
    if (at) result.probe = await this.probeWrite(result.functions, at, flags)
    else if (flags.probe) result.probe = await probePairs(this.host, result.functions)
    if (!this.jsonEnabled()) {
      const [{renderTopo}, {outputWidth}] = await Promise.all([import('../ui/render-topo.js'), import('../ui/width.js')])
      const width = outputWidth(flags)
      this.log(renderTopo(result, await this.colors(), width))
      if (result.probe) {
        const {renderProbe} = await import('../ui/render-probe.js')
        this.log(renderProbe(result.probe, await this.colors(), width))
      }
    } else if (result.probe?.mismatches.length) this.logJson(result)
    if (result.probe?.mismatches.length) this.exit(Exit.MISMATCH)
    return result
  }

  /** --write: plan, ask, lock every client disk, plan again under the locks, then probe with signals held per pair. */
  private async probeWrite(bdfs: string[], at: {offset?: number; lba?: number}, flags: {yes?: boolean; wait?: boolean}): Promise<ProbeResult> {
    const first = planProbeWrite(this.host, bdfs, at)
    const where = first.disks.map((d) => `${d.node} at byte ${d.offset}`).join(', ')
    await this.confirmOrRefuse(`Overwrite ${formatBytes(first.bytes)} of ${where} (saved first, restored after)?`, flags.yes, 'write to disks')
    const unlock = await lockProbeDisks(this.host, first, flags.wait)
    try {
      const plan = planProbeWrite(this.host, bdfs, at)
      return await withSignalGuard((guard) => probePairs(this.host, bdfs, {write: plan, guard}))
    } finally {
      unlock()
    }
  }
}
