import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples, pick} from '../../base-command.js'
import {type BenchP2pResult, type P2pMode, runBenchP2p, verifyFailure} from '../../lib/bench/index.js'
import {Exit, formatBytes, IopmemError} from '../../lib/sys/index.js'

export default class BenchP2p extends BaseCommand {
  static summary = 'Peer DMA copy benchmark: device → buffer → device, through system RAM (bounce) or device memory (p2p), in one verified run.'
  static description = `Copies --size bytes of --src to --dst in --bs blocks with O_DIRECT through io_uring (registered buffers where the kernel takes them; pread/pwrite otherwise, and it says so), --qd I/Os in flight per job.

  bounce  the buffer is page-aligned system RAM;
  p2p     the buffer is device memory: a chunk of the --via function's p2pmem (mmap of p2pmem/allocate), or a file on a DAX filesystem.

With --buffer both, bounce writes --dst at --dst-offset and p2p right after it (--dst-offset + --size), so both copies can be checked. Reports GB/s (10^9 B/s), IOPS, latency percentiles, CPU time, and the DRAM bandwidth a STREAM-like probe gets while the copy runs (against the probe alone). Without --src/--dst/--via it picks NVMe namespaces and the p2pmem provider nearest them (topo) and says why. It refuses a destination that is mounted, holds a filesystem or is open or mapped in another process (unless --force, which also skips the confirmation), and a pair the kernel refuses — showing the kernel's EREMOTEIO.`

  static examples = examples(`
    --yes                                                                                 # Defaults: two NVMe namespaces and the nearest p2pmem
    --src /dev/nvme0n1 --dst /dev/nvme1n1 --via 0000:03:00.0 --buffer both --verify --yes # Both paths, verified
    --src a.bin --dst b.bin --buffer bounce --sweep default --plot sweep.svg --yes        # The engine on two existing files, a block-size sweep to SVG
  `)

  static flags = {
    src: Flags.string({description: 'Source block device or file (default: an NVMe namespace).'}),
    dst: Flags.string({description: 'Destination block device or existing file (default: another NVMe namespace). Overwritten.'}),
    via: Flags.string({description: 'The p2p buffer: a PCI function with p2pmem (BDF), or a file on a DAX filesystem.'}),
    buffer: Flags.string({aliases: ['mode'], deprecateAliases: true, description: 'Which buffer(s): system RAM (bounce), device memory (p2p) or both. Was --mode (still accepted, with a warning, for one release).', options: ['bounce', 'p2p', 'both'], default: 'both'}),
    size: Flags.string({charAliases: ['s'], deprecateAliases: true, description: 'Bytes to copy per mode (default 64 MiB, or what fits). -s still works for one release, with a warning.'}),
    bs: Flags.string({description: 'Block size of one I/O (default 128K).'}),
    qd: Flags.string({description: 'I/Os in flight per job (default 8).'}),
    jobs: Flags.string({description: 'Parallel jobs, each with its own ring and buffer slice (default 1).'}),
    'src-offset': Flags.string({description: 'Byte offset in --src (default 0).'}),
    'dst-offset': Flags.string({description: 'Byte offset in --dst (default 0).'}),
    engine: Flags.string({description: 'Submission path.', options: ['auto', 'io_uring', 'psync'], default: 'auto'}),
    sweep: Flags.string({description: 'Run over block sizes (a comma list, or "default": 4K…1M).'}),
    plot: Flags.string({description: 'With --sweep: write the chart to FILE (.svg or .html).'}),
    verify: Flags.boolean({description: 'Read back the destination and compare with the source.'}),
    'no-probe': Flags.boolean({description: 'Skip the DRAM bandwidth probe.'}),
    wide: Flags.boolean({description: 'Do not fit the report to the terminal ($COLUMNS; 80 when not a terminal): long lines whole, the p2pmem buffer by its sysfs path.'}),
    force: Flags.boolean({char: 'f', description: 'Overwrite a destination that is mounted, holds a filesystem or is open in another process; also skips the confirmation.'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<BenchP2pResult> {
    const {flags} = await this.parse(BenchP2p)
    const showProgress = !this.jsonEnabled() && process.stderr.isTTY
    const result = await runBenchP2p(
      this.host,
      {
        ...pick(flags, ['src', 'dst', 'via', 'size', 'bs', 'qd', 'jobs', 'sweep', 'plot']),
        mode: flags.buffer as P2pMode,
        srcOffset: flags['src-offset'],
        dstOffset: flags['dst-offset'],
        verify: flags.verify === true,
        force: flags.force === true,
        engine: flags.engine as 'auto' | 'io_uring' | 'psync',
        probe: flags['no-probe'] !== true,
      },
      {
        confirm: (question, refusal) => this.confirmOrRefuse(question, flags.yes || flags.force, refusal),
        progress: showProgress
          ? (label, done, total) => process.stderr.write(`\r${label} ${Math.min(100, Math.round((done / total) * 100))}% (${formatBytes(done)})   `)
          : undefined,
        progressEnd: () => process.stderr.write('\r\x1b[K'),
        chart: async (r) => (await import('../../ui/render-p2pbench.js')).sweepSvg(r),
      },
    )
    if (!this.jsonEnabled()) {
      const [{renderP2pBench}, {outputWidth}] = await Promise.all([import('../../ui/render-p2pbench.js'), import('../../ui/width.js')])
      this.log(renderP2pBench(result, await this.colors(), outputWidth({wide: flags.wide})))
    }
    const failed = verifyFailure(result)
    if (failed) throw failed
    if (result.interrupted) {
      // Under --json, stdout is one document: the partial result (interrupted: true), then exit 130.
      if (this.jsonEnabled()) {
        this.logJson(result)
        this.exit(Exit.INTERRUPTED)
      }
      throw new IopmemError('Interrupted: partial results above; buffers unmapped, p2pmem returned.', {code: 'E_INTERRUPTED', exit: Exit.INTERRUPTED})
    }
    return result
  }
}
