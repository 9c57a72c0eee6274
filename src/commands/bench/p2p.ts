import * as fs from 'node:fs'
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {Exit, IopmemError, usage} from '../../lib/sys/index.js'
import {
  type Endpoint,
  idleDram,
  kernelProbe,
  mapVia,
  type ModeResult,
  type P2pMode,
  parseSweep,
  planP2p,
  readAvailable,
  runMode,
  type ViaInfo,
} from '../../lib/bench/index.js'
import type {PairAnalysis} from '../../lib/pci/index.js'
import {formatBytes} from '../../lib/sys/index.js'
import {loadNative} from '../../native/index.js'
import type {Mapping, Native} from '../../native/types.js'

/** `iopmem bench p2p --json`. */
export interface BenchP2pResult {
  src: Endpoint
  dst: Endpoint
  via?: ViaInfo
  size: number
  bs: number
  qd: number
  jobs: number
  /** One line per default chosen. */
  choices: string[]
  /** p2pmem pool `available` (bytes) before mapping the chunk, while mapped, after unmapping. */
  p2pmem?: {bdf: string; chunk: number; availableBefore?: number; availableDuring?: number; availableAfter?: number}
  /** The DRAM probe alone (GB/s, read+write counted). */
  dramIdleGbps?: number
  results: ModeResult[]
  sweep?: Array<{mode: 'bounce' | 'p2p'; bs: number; gbps: number; iops: number; p99Us: number}>
  notes: string[]
  interrupted: boolean
}

export default class BenchP2p extends BaseCommand {
  static summary = 'Peer DMA copy benchmark: device → buffer → device, through system RAM (bounce) or device memory (p2p), in one verified run.'
  static description = `Copies --size bytes of --src to --dst in --bs blocks with O_DIRECT through io_uring (registered buffers where the kernel takes them; pread/pwrite otherwise, and it says so), --qd I/Os in flight per job.

  bounce  the buffer is page-aligned system RAM;
  p2p     the buffer is device memory: a chunk of the --via function's p2pmem (mmap of p2pmem/allocate), or a file on a DAX filesystem.

With --mode both, bounce writes --dst at --dst-offset and p2p right after it (--dst-offset + --size), so both copies can be checked. Reports GB/s (10^9 B/s), IOPS, latency percentiles, CPU time, and the DRAM bandwidth a STREAM-like probe gets while the copy runs (against the probe alone). Without --src/--dst/--via it picks NVMe namespaces and the p2pmem provider nearest them (topo) and says why. It refuses a destination that is mounted, holds a filesystem or is open or mapped in another process (unless --force), and a pair the kernel refuses — showing the kernel's EREMOTEIO.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> --yes', description: 'Defaults: two NVMe namespaces and the nearest p2pmem'},
    {command: '<%= config.bin %> <%= command.id %> --src /dev/nvme0n1 --dst /dev/nvme1n1 --via 0000:03:00.0 --mode both --verify --yes', description: 'Both paths, verified'},
    {command: '<%= config.bin %> <%= command.id %> --src /tmp/a --dst /tmp/b --mode bounce --sweep --plot sweep.svg --yes', description: 'The engine on files, a block-size sweep to SVG'},
  ]

  static flags = {
    src: Flags.string({description: 'Source block device or file (default: an NVMe namespace).'}),
    dst: Flags.string({description: 'Destination block device or existing file (default: another NVMe namespace). Overwritten.'}),
    via: Flags.string({description: 'The p2p buffer: a PCI function with p2pmem (BDF), or a file on a DAX filesystem.'}),
    mode: Flags.string({description: 'Which buffer(s).', options: ['bounce', 'p2p', 'both'], default: 'both'}),
    size: Flags.string({char: 's', description: 'Bytes to copy per mode (default 64 MiB, or what fits).'}),
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
    force: Flags.boolean({description: 'Overwrite a destination that is mounted, holds a filesystem or is open in another process.'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<BenchP2pResult> {
    const {flags} = await this.parse(BenchP2p)
    if (flags.plot !== undefined && flags.sweep === undefined) throw usage('--plot needs --sweep.', 'E_USAGE')
    if (flags.plot !== undefined && !/\.(svg|html?)$/i.test(flags.plot)) throw usage(`--plot ${flags.plot}: the file name must end in .svg or .html.`, 'E_USAGE')
    const sweepSizes = parseSweep(flags.sweep === 'default' ? true : flags.sweep)
    let native: Native | undefined
    const getNative = (): Native => (native ??= loadNative())
    const plan = planP2p(this.host, getNative, {
      src: flags.src,
      dst: flags.dst,
      via: flags.via,
      mode: flags.mode as P2pMode,
      size: flags.size,
      bs: flags.bs,
      qd: flags.qd,
      jobs: flags.jobs,
      srcOffset: flags['src-offset'],
      dstOffset: flags['dst-offset'],
      verify: flags.verify === true,
      force: flags.force === true,
      engine: flags.engine as 'auto' | 'io_uring' | 'psync',
    })
    const n = getNative()
    const need = Math.max(plan.bs, ...(sweepSizes ?? [])) * plan.qd * plan.jobs
    let buffer: Mapping | undefined
    const p2pmem: BenchP2pResult['p2pmem'] = plan.via?.kind === 'p2pmem' ? {bdf: plan.via.target, chunk: 0} : undefined
    // Only p2pmem pages meet the kernel's P2PDMA check; a DAX file's pairs are notes (daxViaNotes).
    const refused = plan.via?.kind === 'p2pmem' ? plan.via.pairs.filter((p) => p.p2p === 'no') : []
    let result: BenchP2pResult
    try {
      if (plan.via) {
        if (p2pmem) p2pmem.availableBefore = readAvailable(this.host, plan.via)
        buffer = mapVia(n, plan.via, need)
        if (p2pmem) {
          p2pmem.chunk = buffer.length
          p2pmem.availableDuring = readAvailable(this.host, plan.via)
        }
      }
      if (refused.length > 0) await this.refusePair(n, buffer!, plan.via!, refused, plan)
      await this.confirmOrRefuse(
        `bench p2p overwrites ${formatBytes(plan.size * plan.modes.length)} of ${plan.dst.path} from offset ${plan.dstOffset}. Go on?`,
        flags.yes,
        `overwrite ${plan.dst.path}`,
      )
      result = await this.measure(n, plan, buffer, p2pmem, sweepSizes, flags['no-probe'] !== true, flags.plot)
    } finally {
      buffer?.unmap()
      if (p2pmem && plan.via) p2pmem.availableAfter = readAvailable(this.host, plan.via)
    }
    return this.finish(result)
  }

  /** Print for a person, then turn a failed verify or an interrupt into the error exit (after the results). */
  private async finish(result: BenchP2pResult): Promise<BenchP2pResult> {
    if (!this.jsonEnabled()) {
      const {renderP2pBench} = await import('../../ui/render-p2pbench.js')
      this.log(renderP2pBench(result, await this.colors()))
    }
    const bad = result.results.find((r) => r.verify && !r.verify.ok)
    if (bad) {
      const v = bad.verify!
      throw new IopmemError(
        v.errno
          ? `--verify could not read back the ${bad.mode} copy (${v.syscall}: errno ${v.errno}).`
          : `--verify: the ${bad.mode} copy differs from the source at byte ${v.mismatchAt} (hash ${v.dstHash} vs ${v.srcHash}).`,
        {code: 'E_MISMATCH', exit: Exit.MISMATCH, details: {result}},
      )
    }
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

  private async measure(
    n: Native,
    plan: ReturnType<typeof planP2p>,
    buffer: Mapping | undefined,
    p2pmem: BenchP2pResult['p2pmem'],
    sweepSizes: number[] | undefined,
    probe: boolean,
    plot: string | undefined,
  ): Promise<BenchP2pResult> {
    const control = new Float64Array(3)
    let interrupted = false
    const onSigint = () => {
      interrupted = true
      control[0] = 1
    }
    process.on('SIGINT', onSigint)
    const showProgress = !this.jsonEnabled() && process.stderr.isTTY
    let label = ''
    const total = plan.size
    const timer = showProgress
      ? setInterval(() => process.stderr.write(`\r${label} ${Math.min(100, Math.round((control[1] / total) * 100))}% (${formatBytes(control[1])})   `), 200)
      : undefined
    const notes = [...plan.notes]
    const results: ModeResult[] = []
    let sweep: BenchP2pResult['sweep']
    let dramIdleGbps: number | undefined
    try {
      if (probe) dramIdleGbps = await idleDram(n)
      for (const [i, mode] of plan.modes.entries()) {
        if (interrupted) break
        label = mode
        control[1] = 0
        const dstOffset = plan.dstOffset + i * plan.size
        results.push(await runMode(n, plan, mode, {buffer: mode === 'p2p' ? buffer : undefined, dstOffset, probe, idleGbps: dramIdleGbps, control, verify: plan.verify}))
      }
      if (sweepSizes && !interrupted) {
        sweep = []
        for (const bs of sweepSizes)
          for (const [i, mode] of plan.modes.entries()) {
            if (interrupted) break
            if (plan.size % bs !== 0 && plan.size < bs) continue
            label = `sweep ${mode} ${formatBytes(bs)}`
            control[1] = 0
            const r = await runMode(n, plan, mode, {buffer: mode === 'p2p' ? buffer : undefined, dstOffset: plan.dstOffset + i * plan.size, bs, probe: false, control, verify: false})
            sweep.push({mode, bs, gbps: r.gbps, iops: r.iops, p99Us: r.latency.p99Us})
          }
      }
    } finally {
      if (timer) {
        clearInterval(timer)
        process.stderr.write('\r\x1b[K')
      }
      process.off('SIGINT', onSigint)
    }
    for (const r of results) if (r.fallbackReason) notes.push(`${r.mode}: io_uring unavailable (${r.fallbackReason}); pread/pwrite used, one I/O at a time per job.`)
    if (plan.engine === 'psync' && results.length > 0)
      notes.push(`--engine psync: pread/pwrite used, one I/O at a time per job${plan.qd > 1 ? ` (--qd ${plan.qd} does not apply)` : ''}.`)
    const result: BenchP2pResult = {
      src: plan.src,
      dst: plan.dst,
      via: plan.via,
      size: plan.size,
      bs: plan.bs,
      qd: plan.qd,
      jobs: plan.jobs,
      choices: plan.choices,
      p2pmem,
      dramIdleGbps,
      results,
      sweep,
      notes,
      interrupted,
    }
    if (plot && sweep) {
      const {sweepSvg} = await import('../../ui/render-p2pbench.js')
      const svg = sweepSvg(result)
      fs.writeFileSync(plot, /\.html?$/i.test(plot) ? `<!doctype html><meta charset="utf-8"><title>iopmem bench p2p</title>\n${svg}` : svg)
      notes.push(`chart written to ${plot}`)
    }
    return result
  }

  /** topo says the kernel refuses: show it does (EREMOTEIO), then refuse. */
  private async refusePair(n: Native, buffer: Mapping, via: ViaInfo, refused: PairAnalysis[], plan: ReturnType<typeof planP2p>): Promise<never> {
    const bad = refused[0]
    const ep = [plan.src, plan.dst].find((e) => e.bdf === bad.client)!
    const probe = await kernelProbe(n, buffer, ep.path, ep.align)
    const kernel =
      'errno' in probe
        ? probe.errno === 'EREMOTEIO'
          ? `The kernel agrees: an O_DIRECT read of ${ep.path} into ${via.target}'s p2pmem failed with EREMOTEIO (Remote I/O error) — pci_p2pdma_map_type() found no P2P path, so the block layer refused the p2pmem pages.`
          : `The kernel's answer to an O_DIRECT read of ${ep.path} into the p2pmem: ${probe.errno} (${probe.message}).`
        : `Yet the kernel accepted an O_DIRECT read of ${ep.path} into the p2pmem: topo's verdict may be stale (ACS, whitelist).`
    throw new IopmemError(
      `P2P DMA between ${bad.provider} (--via) and ${bad.client} (${ep.path}) is refused: topo says ${(bad.reasons[0] ?? 'no').replace(/\.+$/, '')}. ${kernel}`,
      {
        code: 'E_P2P_REFUSED',
        exit: Exit.UNSUPPORTED,
        suggestions: ['Use --mode bounce for this pair, or a --via provider under the same PCIe switch (see `iopmem topo`).'],
        details: {pair: bad, kernel: probe},
      },
    )
  }
}
