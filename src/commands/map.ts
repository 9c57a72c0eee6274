import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {type MapResult, MODE_REQUESTS, type ModeRequest, runMap} from '../lib/map/index.js'

const STRATEGY_FLAGS = ['auto', 'memcpy', 'stream-store', 'stream-load', 'exact64'] as const

export default class MapCmd extends BaseCommand {
  static summary = 'Map device memory (a PCI BAR, a p2pmem chunk, device-dax or a DAX file) and read, write, dump, fill, verify or copy it.'
  static description = `TARGET is a PCI function (BDF) — its largest memory BAR, or --bar N; with --p2pmem SIZE a fresh chunk of its P2PDMA pool — or a path: /dev/daxX.Y, or a file on a DAX filesystem. A sysfs resourceN[_wc] path is taken as the BDF and BAR it names.

Caching (--cache): a BAR maps uc (resourceN) or wc (resourceN_wc, prefetchable BARs only); p2pmem is uc, DAX is wb, both chosen by the kernel. auto (the default) takes the best the backend gives; the mode obtained and why are always reported, and a mode the backend cannot give is an error that says what would give it. Nothing falls back silently: where the x86 PAT table is readable (root, debugfs), a mapping that got another memory type than asked is refused (auto: remapped uc and said so).

Operations (one at a time; --hold may follow one):
  --read OFF [--width 8|16|32|64] [--count N]    one volatile access of exactly that width per value
  --write OFF --value V[,V…] [--width W] [--readback]
  --dump OFF [--size N] [--width W]              hexdump (exact-width reads, default 32-bit, 256 bytes)
  --fill PATTERN [--offset OFF] [--size N]       bulk copy in (stream-store for wc, exact64 for uc, memcpy+flush for wb)
  --verify PATTERN [--offset OFF] [--size N]     bulk copy out and compare; exit 8 on a mismatch
  --copy-in FILE [--offset OFF] [--size N]       FILE's bytes into the mapping
  --copy-out FILE [--offset OFF] [--size N]      the mapping's bytes into FILE
  --hold SECONDS                                 keep the mapping alive (0: until Ctrl-C or SIGTERM)
Patterns: zero, ones, 0xNN, u8:V, u16:V, u32:V, u64:V (little-endian at every aligned offset), bytes:HEX, inc, addr (each 8-byte word holds its offset), random[:SEED]. Offsets and sizes take 0x hex and K/M/G units.

With no operation: on a terminal, an interactive session (peek, poke, dump, fill); otherwise the mapping's facts (path, backend, mode and why, length, CPU physical and PCI bus address). Writes change device memory in place: they ask first on a terminal and need --yes without one. Mappings are released on exit, Ctrl-C and SIGTERM (a p2pmem chunk goes back to the pool).

Needs root for sysfs resource files and p2pmem; failures say why in words (not root, Secure Boot lockdown, a driver's claim under strict devmem, a PAT conflict, a disabled BAR, p2pmem exhausted).`

  static examples = examples(`
    0000:03:00.0 --bar 0 --read 0x1c --width 32                     # Read a 32-bit register (NVMe CSTS), as pcimem would
    00:04.0 --bar 2 --cache wc --fill u32:0xdeadbeef --size 1M --yes # Fill 1 MiB of a prefetchable BAR through a write-combining mapping
    00:04.0 --bar 2 --verify u32:0xdeadbeef --size 1M               # Check it (exit 8 on a mismatch)
    00:04.0 --dump 0x1000 --size 128 --width 8                      # Hexdump 128 bytes with byte reads
    0000:03:00.0 --p2pmem 2M --hold 60                              # Hold a 2 MiB chunk of an NVMe CMB's p2pmem for a minute
    /dev/dax0.0 --copy-in image.bin --offset 2M --yes               # Copy a file into device-dax (write-back, flushed)
    00:04.0 --json                                                  # The mapping facts (mode obtained, why, physical address) for a script
  `)

  static args = {
    target: Args.string({description: 'A PCI function ([domain:]bus:device.function), /dev/daxX.Y, or a file on a DAX filesystem', required: true, ignoreStdin: true}),
  }

  static flags = {
    bar: Flags.string({char: 'b', description: 'BAR to map, 0-5 (default: the largest memory BAR).', helpGroup: 'TARGET'}),
    p2pmem: Flags.string({description: "Map a chunk of this size from the function's p2pmem pool (page-granular).", helpGroup: 'TARGET'}),
    cache: Flags.string({description: 'Caching: uc, wc, wb, wt or auto. Was --mode/-m (still accepted, with a warning, for one release).', aliases: ['mode'], charAliases: ['m'], deprecateAliases: true, options: [...MODE_REQUESTS], default: 'auto', helpGroup: 'TARGET'}),
    strategy: Flags.string({description: 'Copy loop for --fill/--verify/--copy-in/--copy-out (auto: by mode).', options: [...STRATEGY_FLAGS], helpGroup: 'OPERATION'}),
    read: Flags.string({char: 'r', description: 'Read value(s) at this offset.', helpGroup: 'OPERATION'}),
    write: Flags.string({char: 'w', description: 'Write --value(s) at this offset.', helpGroup: 'OPERATION'}),
    value: Flags.string({description: 'Value(s) for --write: decimal or 0x hex, comma separated.', helpGroup: 'OPERATION'}),
    width: Flags.string({description: 'Access width in bits for --read/--write/--dump: 8, 16, 32, 64 (default 32).', helpGroup: 'OPERATION'}),
    count: Flags.string({charAliases: ['n'], deprecateAliases: true, description: 'Values to --read (default 1). -n still works for one release, with a warning.', helpGroup: 'OPERATION'}),
    readback: Flags.boolean({description: 'After --write, read the values back.', helpGroup: 'OPERATION'}),
    dump: Flags.string({charAliases: ['d'], deprecateAliases: true, description: 'Hexdump from this offset. -d still works for one release, with a warning.', helpGroup: 'OPERATION'}),
    size: Flags.string({charAliases: ['s'], deprecateAliases: true, description: 'Bytes for --dump (default 256), --fill/--verify/--copy-out (default: to the end), --copy-in (default: the file). -s still works for one release, with a warning.', helpGroup: 'OPERATION'}),
    offset: Flags.string({char: 'o', description: 'Start offset for --fill/--verify/--copy-in/--copy-out (default 0).', helpGroup: 'OPERATION'}),
    fill: Flags.string({description: 'Fill with a PATTERN.', helpGroup: 'OPERATION'}),
    verify: Flags.string({description: 'Compare with a PATTERN (exit 8 on a mismatch).', helpGroup: 'OPERATION'}),
    'copy-in': Flags.string({description: "Copy FILE's bytes into the mapping.", helpGroup: 'OPERATION'}),
    'copy-out': Flags.string({description: "Copy the mapping's bytes into FILE (created or truncated).", helpGroup: 'OPERATION'}),
    hold: Flags.string({description: 'Keep the mapping for SECONDS (after the operation, if any); 0 holds until Ctrl-C or SIGTERM.', helpGroup: 'OPERATION'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<MapResult> {
    const {args, flags} = await this.parse(MapCmd)
    let ctrlC = false
    const result = await runMap(
      this.host,
      {target: args.target, bar: flags.bar, p2pmem: flags.p2pmem, mode: flags.cache as ModeRequest, hold: flags.hold, flags},
      {
        interactive: () => this.interactive(),
        confirm: (question, refusal) => this.confirmOrRefuse(question, flags.yes, refusal),
        session: async (native, mapping, facts) => {
          const {mapSession} = await import('../ui/map-session.js')
          const prompts = await import('@inquirer/prompts')
          return mapSession({native, mapping, facts, prompts, log: (s) => this.log(s), colors: await this.colors(), onInterrupt: () => (ctrlC = true)})
        },
        show: async (facts, op, session) => {
          if (this.jsonEnabled()) return
          const {mappingLine, renderFacts, renderOp} = await import('../ui/render-map.js')
          const c = await this.colors()
          for (const w of facts.warnings) process.stderr.write((await this.colors(process.stderr)).yellow(`warning: ${w}`) + '\n')
          if (op === null) this.log(renderFacts(facts, c))
          else {
            if (!session) this.note(mappingLine(facts))
            this.log(renderOp(op, c))
          }
        },
        note: (line) => this.note(line),
      },
    )
    if (result.interrupted) {
      if (!this.jsonEnabled() && result.op) this.log((await import('../ui/render-map.js')).renderOp(result.op, await this.colors()))
      this.stopInterrupted(result, `Interrupted (${result.signal}); stopped between two chunks, mapping released.`)
    }
    if (ctrlC) this.stopInterrupted(result, 'Interrupted (Ctrl-C): the session ended; mapping released.')
    return result
  }
}
