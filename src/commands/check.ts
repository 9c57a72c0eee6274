import * as Args from '@oclif/core/args'

import {BaseCommand, examples} from '../base-command.js'
import {type CheckReport, runCheck} from '../lib/check/index.js'
import {Exit} from '../lib/sys/index.js'

export default class Check extends BaseCommand {
  static summary = 'Will peer-to-peer DMA work on this machine? Each item with a verdict and the fix.'
  static description = `Reads (never writes) the kernel's configuration, lockdown and the iopmem module; the IOMMU, each chosen function's group and the command line; the CPU rule and host-bridge whitelist of drivers/pci/p2pdma.c, ACS on every bridge above the chosen functions and the kernel's verdict per pair; where the BARs sit (64-bit, prefetchable, above 4 GiB, MTRRs), Resizable BAR and PAT; which functions publish p2pmem and, for an NVMe, its CMB decoded from CMBLOC/CMBSZ; and the drivers and hugepages.

Each item is pass, warn, fail or unknown (unknown when it needs root or a file that is not there: ACS and the NVMe registers need root). Exit 0 when nothing fails, 9 when something does.

Default functions: every non-bridge function with memory BARs, p2pmem or a block device.`

  static examples = examples(`
                              # Everything, for the functions with device memory
    sudo 0000:03:00.0 0000:04:00.0 # One provider and one client, with ACS and the CMB registers
    --json                    # The report as JSON
  `)

  static strict = false
  static args = {
    bdf: Args.string({description: 'PCI functions to check, [domain:]bus:device.function (several allowed)', ignoreStdin: true}),
  }

  async run(): Promise<CheckReport> {
    const {argv} = await this.parse(Check)
    const report = runCheck(this.host, argv as string[])
    if (this.jsonEnabled()) {
      if (report.ok) return report
      this.logJson(report)
    } else {
      const {renderCheck} = await import('../ui/render-check.js')
      this.log(renderCheck(report, await this.colors()))
    }
    if (!report.ok) this.exit(Exit.CHECK_FAILED)
    return report
  }
}
