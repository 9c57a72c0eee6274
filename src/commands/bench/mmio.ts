import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples, pick} from '../../base-command.js'
import {type BenchMmioResult, ISAS, runBenchMmio} from '../../lib/bench/index.js'
import {MODE_REQUESTS, type ModeRequest} from '../../lib/map/index.js'

export default class BenchMmio extends BaseCommand {
  static summary = 'CPU ↔ device-memory bandwidth and latency of a mapping, per mode and copy strategy (gdrcopy copybw/copylat for any BAR).'
  static description = `Maps TARGET as \`iopmem map\` does (a BAR with --bar/--cache, a p2pmem chunk with --p2pmem, /dev/daxX.Y, a DAX file — or any regular file, to measure the copy engine on RAM) and measures:

  bandwidth  copies into the mapping (CPU → device) and out of it (device → CPU) with every strategy the mode allows (wc: stream-store / exact64 in, stream-load / exact64 out; uc: exact64 / stream-store in; wb: memcpy too), over a size sweep (default ×4 from 64 B to 4 MiB);
  latency    single volatile reads and writes of 8, 16, 32 and 64 bits, beside the same loop on anonymous RAM (the addon's share of each access).

GB/s are 10^9 bytes per second. The bench writes into the mapping: it asks first on a terminal and needs --yes without one; --read-only measures reads alone and changes nothing. Progress goes to stderr when a run takes over a second on a terminal.`

  static examples = examples(`
    00:04.0 --bar 2 --cache wc --yes                         # A prefetchable BAR, write-combining
    00:04.0 --bar 2 --cache uc --read-only                   # Reads only, uncached (nothing written)
    0000:03:00.0 --p2pmem 4M --sizes 4K,64K,1M --yes --json # A p2pmem chunk of an NVMe CMB, for a script
    scratch.bin --yes --isa sse2                            # The copy engine on RAM (any existing file), SSE2 loops only
  `)

  static args = {
    target: Args.string({description: 'A PCI function ([domain:]bus:device.function), /dev/daxX.Y, or a file', required: true, ignoreStdin: true}),
  }

  static flags = {
    bar: Flags.string({char: 'b', description: 'BAR to map, 0-5 (default: the largest memory BAR).'}),
    p2pmem: Flags.string({description: "Bench a chunk of this size from the function's p2pmem pool."}),
    cache: Flags.string({description: 'Caching: uc, wc, wb, wt or auto. Was --mode/-m (still accepted, with a warning, for one release).', aliases: ['mode'], charAliases: ['m'], deprecateAliases: true, options: [...MODE_REQUESTS], default: 'auto'}),
    sizes: Flags.string({description: 'Copy sizes, comma separated (units K/M/G, 0x hex); default ×4 from 64 B to 4 MiB.'}),
    offset: Flags.string({char: 'o', description: 'Offset in the mapping where copies start (default 0).'}),
    time: Flags.string({char: 't', description: 'Minimum seconds per bandwidth cell (default 0.2).'}),
    strategy: Flags.string({description: 'Only these strategies, comma separated (memcpy, stream-store, stream-load, exact64).'}),
    'read-only': Flags.boolean({description: 'Measure reads only: copy-out and read latency; nothing is written.'}),
    isa: Flags.string({description: 'Cap the vector ISA of the copy loops.', options: [...ISAS], default: 'best'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<BenchMmioResult> {
    const {args, flags} = await this.parse(BenchMmio)
    const result = await runBenchMmio(
      this.host,
      {
        target: args.target,
        ...pick(flags, ['bar', 'p2pmem', 'sizes', 'offset', 'time', 'strategy']),
        mode: flags.cache as ModeRequest,
        readOnly: flags['read-only'] === true,
        isa: flags.isa as (typeof ISAS)[number],
      },
      {confirm: (question, refusal) => this.confirmOrRefuse(question, flags.yes, refusal), progress: () => this.progress()},
    )
    if (!this.jsonEnabled()) {
      const {renderBenchMmio} = await import('../../ui/render-bench-mmio.js')
      const c = await this.colors()
      for (const w of result.mapping.warnings) process.stderr.write((await this.colors(process.stderr)).yellow(`warning: ${w}`) + '\n')
      this.log(renderBenchMmio(result, c))
    }
    return result
  }

  /** A progress bar on stderr, started only once a run has taken a second, on a terminal, without --json. */
  private async progress(): Promise<{update: (done: number, total: number, label: string) => void; stop: () => void}> {
    if (this.jsonEnabled() || !process.stdout.isTTY || !process.stderr.isTTY || process.env.CI) return {update: () => {}, stop: () => {}}
    const {SingleBar, Presets} = (await import('cli-progress')).default
    const t0 = Date.now()
    let bar: InstanceType<typeof SingleBar> | undefined
    return {
      update(done, total, label) {
        if (!bar && Date.now() - t0 > 1000) {
          bar = new SingleBar({stream: process.stderr, format: 'bench mmio [{bar}] {value}/{total} {label}', hideCursor: true, clearOnComplete: true}, Presets.shades_classic)
          bar.start(total, done, {label})
        }
        bar?.update(done, {label})
      },
      stop() {
        bar?.stop()
      },
    }
  }
}
