import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {locate, LocateResult} from '../lib/dax/index.js'
import {parseSize} from '../lib/sys/index.js'

export default class Locate extends BaseCommand {
  static summary = "Show where a file's blocks are: CPU physical and PCI bus addresses on device memory, LBAs on NVMe."
  static description = `Maps the file with FIEMAP (FIEMAP_FLAG_SYNC first, paged to the last extent) and follows the chain file → filesystem → partition → disk → memory:
  fsdax pmem: the namespace (or pfn) resource gives the physical address of sector 0;
  iopmem: the PCI BAR behind the disk gives the physical and the PCI bus address;
  NVMe and other disks: no memory, so the answer is device offsets and LBAs.

Each extent gets its file offset, length, device offset, physical address (and bus address when a PCI BAR is behind it), LBA and flags; the totals say how many segments are contiguous in both file and device, and the largest run.

Safety: a file on device memory that is not DAX (statx STATX_ATTR_DAX) is refused: its data may live in the page cache, so an address would be a lie (--offsets-only gives device offsets anyway). Extents without a usable address (unknown, delalloc, encoded, encrypted, not aligned, inline, tail) are refused. Unwritten extents (they read as zeros) and shared ones (a DMA write would bypass copy-on-write) are warned about.

Reading pmem addresses needs root (the kernel shows namespace resources to root only).`

  static examples = examples(`
    /mnt/dax/data.bin                                 # Every extent of a file on a DAX filesystem
    /mnt/dax/data.bin --offset 1M --size 64K --json   # The addresses of 64 KiB from 1 MiB in, for a script
    /mnt/nvme/data.bin                                # LBAs of a file on an NVMe namespace
  `)

  static args = {
    file: Args.string({description: 'A regular file (on a DAX filesystem for addresses)', required: true}),
  }

  static flags = {
    offset: Flags.string({description: 'Start of the range to map, bytes (units: K, M, G; 0x hex).'}),
    size: Flags.string({description: 'Size of the range to map, bytes (units: K, M, G; 0x hex; default: to the end of the file). Was --length (still accepted, with a warning, for one release).', aliases: ['length'], deprecateAliases: true}),
    sync: Flags.boolean({description: 'Flush delayed allocations first (FIEMAP_FLAG_SYNC); --no-sync skips it.', default: true, allowNo: true}),
    'offsets-only': Flags.boolean({description: 'For a non-DAX file on device memory: show device offsets instead of refusing (no addresses).'}),
  }

  async run(): Promise<LocateResult> {
    const {args, flags} = await this.parse(Locate)
    const offset = flags.offset === undefined ? undefined : parseSize(flags.offset, '--offset')
    const length = flags.size === undefined ? undefined : parseSize(flags.size, '--size', {min: 1})
    const result = await locate(this.host, args.file, {offset, length, sync: flags.sync, offsetsOnly: flags['offsets-only'], json: this.jsonEnabled()})
    if (!this.jsonEnabled()) {
      const {renderLocate} = await import('../ui/render-locate.js')
      renderLocate(result, await this.colors(), (chunk) => process.stdout.write(chunk))
    }
    return result
  }

  /** A located file is streamed (a million extents must not become a million objects). */
  logJson(json: unknown): void {
    if (json instanceof LocateResult) {
      json.writeJson((chunk) => process.stdout.write(chunk))
      return
    }
    super.logJson(json)
  }
}
