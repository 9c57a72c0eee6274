/**
 * Bad input for `iopmem map` and `iopmem bench mmio`: each case fails with a
 * clear message and the exit code the README gives it, and leaves the
 * fixture tree byte-identical (every path, link and byte: nothing was
 * written to a BAR file), also under --json.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {cli, cliProcess} from '../helpers/cli.js'
import {argsLabel, badInputTable} from '../helpers/bad-input.js'
import {BDF, MiB, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

interface Case {
  args: string[] | ((fx: SysfsFixture) => string[])
  exit: number
  message: RegExp
  code?: string
  setup?: (fx: SysfsFixture) => void
  /** Run as a child process (argument lists runCommand would re-split). */
  spawn?: boolean
}

const IVS = BDF.ivshmem
const CMB = BDF.nvmeCmb
/** A function with awkward BARs: BAR1 I/O, BAR2 disabled, BAR3 unassigned, BAR4 prefetchable without _wc. */
const odd = (fx: SysfsFixture) =>
  fx.add({
    bdf: '0000:00:07.0',
    vendor: 0x10ee,
    device: 0x9038,
    class: 0x058000,
    bars: [
      {index: 0, start: 0xfe000000, size: MiB},
      {index: 1, start: 0xc100, size: 64, io: true},
      {index: 2, start: 0xd0000000, size: 256 * MiB, prefetch: true, disabled: true},
      {index: 3, start: 0, size: 512 * MiB, prefetch: true, unset: true},
      {index: 4, start: 0xe0000000, size: 32 * MiB, prefetch: true, wc: false},
    ],
  })
const patUc = (fx: SysfsFixture) => {
  fs.mkdirSync(path.join(fx.sys, 'kernel/debug/x86'), {recursive: true})
  fs.writeFileSync(path.join(fx.sys, 'kernel/debug/x86/pat_memtype_list'), 'PAT memtype list:\nPAT: [mem 0x0000000800000000-0x0000000804000000] uncached-minus\n')
}
const plainFile = (fx: SysfsFixture) => fs.writeFileSync(path.join(fx.root, 'plain.bin'), Buffer.alloc(4096))
const BAD_BDF = /Invalid PCI address/

const cases: Case[] = [
  // TARGET
  {args: ['map', 'zz:00.0'], exit: 2, message: BAD_BDF, code: 'E_BDF_SYNTAX'},
  {args: ['map', '03:00.8'], exit: 2, message: /function number must be 0-7/},
  {args: ['map', 'nonsense'], exit: 2, message: /neither a PCI address .* nor an existing file/, code: 'E_NO_TARGET'},
  {args: ['map', '0000:42:00.0'], exit: 3, message: /No PCI function 0000:42:00.0/, code: 'E_NO_DEVICE'},
  {args: ['map'], exit: 2, message: /Missing 1 required arg/},
  {args: ['map', '', '--read', '0'], exit: 2, message: /Missing TARGET|Invalid PCI|required arg/, spawn: true},
  {args: (fx) => ['map', path.join(fx.root, 'nope.bin')], exit: 3, message: /no such file or device/, code: 'E_NO_TARGET'},
  {args: (fx) => ['map', fx.root], exit: 2, message: /is a directory: iopmem cannot map it/, code: 'E_TARGET_KIND'},
  {args: (fx) => ['map', path.join(fx.root, 'plain.bin')], exit: 7, message: /not a DAX file .*page cache/, code: 'E_NOT_DAX', setup: plainFile},
  // BARs
  {args: ['map', IVS, '--bar', '6'], exit: 2, message: /Invalid --bar "6": a BAR index is 0-5/, code: 'E_BAR_SYNTAX'},
  {args: ['map', IVS, '--bar', 'two'], exit: 2, message: /Invalid --bar "two"/},
  {args: ['map', IVS, '--bar', '1'], exit: 3, message: /0000:00:04.0 has no BAR1\. .*BAR0 \(256 B\), BAR2 \(64 MiB, prefetchable\)/, code: 'E_NO_BAR'},
  {args: ['map', BDF.nic, '--bar', '2'], exit: 7, message: /BAR2 of 0000:00:02.0 is an I\/O port BAR/, code: 'E_BAR_IO'},
  {args: ['map', '00:07.0', '--bar', '2'], exit: 7, message: /BAR2 of 0000:00:07.0 is disabled/, code: 'E_BAR_DISABLED', setup: odd},
  {args: ['map', '00:07.0', '--bar', '3'], exit: 7, message: /BAR3 of 0000:00:07.0 has no address/, code: 'E_BAR_UNASSIGNED', setup: odd},
  {args: ['map', BDF.hostBridge], exit: 3, message: /has no memory BAR to map/, code: 'E_NO_MEM_BAR'},
  // modes
  {args: ['map', IVS, '--bar', '0', '--cache', 'wc'], exit: 7, message: /BAR0 of 0000:00:04.0 is not prefetchable, so write-combining is impossible/, code: 'E_WC_NOT_PREFETCHABLE'},
  {args: ['map', '00:07.0', '--bar', '4', '--cache', 'wc'], exit: 7, message: /prefetchable, but this kernel\/architecture offers no resource4_wc/, code: 'E_WC_UNAVAILABLE', setup: odd},
  {args: ['map', IVS, '--cache', 'wb'], exit: 7, message: /WB \(write-back\) cannot be had for a raw BAR.*kernel driver/, code: 'E_MODE_NEEDS_DRIVER'},
  {args: ['map', IVS, '--cache', 'wt', '--read', '0'], exit: 7, message: /WT \(write-through\) cannot be had/},
  {args: ['map', IVS, '--cache', 'fast'], exit: 2, message: /Expected --cache=fast to be one of/},
  {args: ['map', IVS, '--cache', 'wc', '--read', '0'], exit: 6, message: /PAT conflict: BAR2 of 0000:00:04.0 is already mapped uncached-minus/, code: 'E_PAT_CONFLICT', setup: patUc},
  // p2pmem
  {args: ['map', IVS, '--p2pmem', '1M'], exit: 7, message: /0000:00:04.0 \(no driver\) has no p2pmem/, code: 'E_NO_P2PMEM'},
  {args: ['map', CMB, '--p2pmem', '1Q'], exit: 2, message: /Invalid --p2pmem size "1Q"/, code: 'E_SIZE_SYNTAX'},
  {args: ['map', CMB, '--p2pmem', '0'], exit: 2, message: /must be at least 1 B/},
  {args: ['map', CMB, '--p2pmem', '1G'], exit: 2, message: /larger than 0000:03:00.0's whole p2pmem pool \(63.9 MiB\)/, code: 'E_P2PMEM_SIZE'},
  {args: ['map', CMB, '--p2pmem', '1M', '--cache', 'wc'], exit: 7, message: /p2pmem is mapped by the kernel, which chooses/, code: 'E_MODE_UNAVAILABLE'},
  {args: ['map', CMB, '--p2pmem', '1M', '--bar', '2'], exit: 2, message: /--bar and --p2pmem do not go together/, code: 'E_FLAG_COMBO'},
  {
    args: ['map', CMB, '--p2pmem', '1M'],
    exit: 6,
    message: /cannot give 1 MiB: 64 KiB \(65536 bytes\) of 63.9 MiB available/,
    code: 'E_P2PMEM_EXHAUSTED',
    setup: (fx) => fs.writeFileSync(path.join(fx.fnDir(CMB), 'p2pmem/available'), '65536\n'),
  },
  // operations: offsets, widths, values, counts
  {args: ['map', IVS, '--read', '0x4000000'], exit: 2, message: /--read offset 0x4000000 is past the end of the mapping \(64 MiB: offsets 0x0-0x3ffffff\)/, code: 'E_RANGE'},
  {args: ['map', IVS, '--read', '0x3fffffc', '--count', '2'], exit: 2, message: /runs past the end of the mapping at 0x4000000/, code: 'E_RANGE'},
  {args: ['map', IVS, '--read', '0x2'], exit: 2, message: /--read offset 0x2 is not aligned to 4 bytes: 32-bit accesses must be naturally aligned/, code: 'E_ALIGN'},
  {args: ['map', IVS, '--read', '4', '--width', '64'], exit: 2, message: /not aligned to 8 bytes/, code: 'E_ALIGN'},
  {args: ['map', IVS, '--read', '0', '--width', '12'], exit: 2, message: /Invalid --width "12": an access is 8, 16, 32 or 64 bits wide/, code: 'E_WIDTH'},
  {args: ['map', IVS, '--read', 'ten'], exit: 2, message: /Invalid --read offset "ten"/, code: 'E_SIZE_SYNTAX'},
  {args: ['map', IVS, '--read', '0', '--count', '0'], exit: 2, message: /Invalid --count "0": must be at least 1/, code: 'E_COUNT'},
  {args: ['map', IVS, '--write', '0', '--value', '0x1ff', '--width', '8', '--yes'], exit: 2, message: /Invalid --value 0x1ff: it does not fit 8 bits \(at most 0xff\)/, code: 'E_VALUE'},
  {args: ['map', IVS, '--write', '0', '--value', 'abc', '--yes'], exit: 2, message: /Invalid --value "abc"/, code: 'E_VALUE'},
  {args: ['map', IVS, '--write', '0', '--yes'], exit: 2, message: /--write needs --value/, code: 'E_FLAG_COMBO'},
  {args: ['map', IVS, '--value', '1'], exit: 2, message: /--value goes with --write, and no operation was given/, code: 'E_FLAG_COMBO'},
  {args: ['map', IVS, '--read', '0', '--size', '16'], exit: 2, message: /--size goes with .*, not --read/, code: 'E_FLAG_COMBO'},
  {args: ['map', IVS, '--write', '0x3fffffe', '--value', '1', '--width', '16', '--count', '2', '--yes'], exit: 2, message: /--count goes with --read, not --write/},
  {args: ['map', IVS, '--write', '0xf8', '--value', '1,2', '--width', '64', '--yes', '--bar', '0'], exit: 2, message: /16 B \(16 bytes\) from 0xf8 runs past the end of the mapping at 0x100 \(256 B\); at most 8 bytes fit there/},
  // patterns, sizes, strategies
  {args: ['map', IVS, '--fill', 'stripes', '--yes'], exit: 2, message: /Invalid pattern "stripes": not a pattern iopmem knows/, code: 'E_PATTERN'},
  {args: ['map', IVS, '--fill', '0xdeadbeef', '--yes'], exit: 2, message: /a bare 0x value is one byte.*u32:0xdeadbeef/, code: 'E_PATTERN'},
  {args: ['map', IVS, '--verify', 'u16:0x10000'], exit: 2, message: /0x10000 does not fit 16 bits/, code: 'E_PATTERN'},
  {args: ['map', IVS, '--fill', 'zero', '--offset', '60M', '--size', '8M', '--yes'], exit: 2, message: /8 MiB \(8388608 bytes\) from 0x3c00000 runs past the end/, code: 'E_RANGE'},
  {args: ['map', IVS, '--fill', 'zero', '--size', '0', '--yes'], exit: 2, message: /--size must be at least 1 byte/},
  {args: ['map', IVS, '--dump', '0x100', '--size', '1x'], exit: 2, message: /Invalid --size "1x"/},
  {args: ['map', IVS, '--bar', '0', '--cache', 'uc', '--fill', 'zero', '--strategy', 'memcpy', '--yes'], exit: 2, message: /--strategy memcpy cannot copy into a uc mapping: memcpy may use any access width/, code: 'E_STRATEGY'},
  {args: ['map', IVS, '--verify', 'zero', '--strategy', 'stream-store'], exit: 2, message: /--strategy stream-store cannot copy out of a wc mapping/, code: 'E_STRATEGY'},
  {args: ['map', IVS, '--read', '0', '--strategy', 'exact64'], exit: 2, message: /--strategy goes with --fill, --verify, --copy-in, --copy-out, not --read/},
  // operation combinations, files, confirmation
  {args: ['map', IVS, '--read', '0', '--dump', '0'], exit: 2, message: /Give one operation at a time: --read and --dump were both given/, code: 'E_OPERATIONS'},
  {args: ['map', IVS, '--fill', 'zero', '--verify', 'zero', '--yes'], exit: 2, message: /--fill and --verify/},
  {args: (fx) => ['map', IVS, '--copy-in', path.join(fx.root, 'missing.bin'), '--yes'], exit: 3, message: /--copy-in .*missing\.bin: no such file/, code: 'E_NO_FILE'},
  {args: (fx) => ['map', IVS, '--copy-out', fx.root], exit: 2, message: /--copy-out .* is a directory/, code: 'E_NOT_REGULAR'},
  {args: (fx) => ['map', IVS, '--copy-out', fx.root + '/no/such/dir/out.bin'], exit: 3, message: /--copy-out .*: the directory .*no\/such\/dir does not exist/, code: 'E_NO_DIR'},
  {args: (fx) => ['map', IVS, '--copy-out', fx.sys + '/bus/pci/drivers_probe/x'], exit: 2, message: /is not a directory/, code: 'E_NO_DIR'},
  {args: (fx) => ['map', IVS, '--bar', '0', '--copy-in', path.join(fx.root, 'plain.bin'), '--yes'], exit: 2, message: /4 KiB \(4096 bytes\) from 0x0 runs past the end of the mapping at 0x100/, setup: plainFile},
  {args: ['map', IVS, '--write', '0', '--value', '1'], exit: 5, message: /Refusing to write to BAR2 of 0000:00:04.0 without confirmation: not on a terminal/, code: 'E_CONFIRM'},
  {args: ['map', IVS, '--fill', 'zero'], exit: 5, message: /without confirmation/, code: 'E_CONFIRM'},
  {args: ['map', IVS, '--hold', 'soon'], exit: 2, message: /Invalid --hold "soon"/, code: 'E_HOLD'},
  {args: ['map', IVS, '--bogus'], exit: 2, message: /Nonexistent flag: --bogus/, code: 'E_USAGE'},
  {args: ['map', '/sys/bus/pci/devices/0000:00:04.0/resource2', '--cache', 'wc'], exit: 2, message: /--cache wc contradicts .*resource2, which maps uc/, code: 'E_FLAG_COMBO'},
  // bench mmio
  {args: ['bench', 'mmio', IVS, '--sizes', '4K', '--time', '0.01'], exit: 5, message: /Refusing to write to .*resource2_wc \(bench\) without confirmation/, code: 'E_CONFIRM'},
  {args: ['bench', 'mmio', IVS, '--read-only', '--sizes', '128M'], exit: 2, message: /--sizes 128M does not fit the mapping/, code: 'E_RANGE'},
  {args: ['bench', 'mmio', IVS, '--read-only', '--sizes', '4K,,8K'], exit: 2, message: /Invalid --sizes/},
  {args: ['bench', 'mmio', IVS, '--read-only', '--time', '0'], exit: 2, message: /Invalid --time "0"/, code: 'E_TIME'},
  {args: ['bench', 'mmio', IVS, '--read-only', '--strategy', 'memcpy'], exit: 2, message: /--strategy memcpy is not allowed on a wc mapping/, code: 'E_STRATEGY'},
  {args: ['bench', 'mmio', IVS, '--read-only', '--strategy', 'stream-store'], exit: 2, message: /leaves nothing to measure with --read-only/, code: 'E_STRATEGY'},
  {args: ['bench', 'mmio', IVS, '--bar', '0', '--cache', 'wc', '--read-only'], exit: 7, message: /not prefetchable, so write-combining is impossible/},
  {args: ['bench', 'mmio', IVS, '--read-only', '--offset', '64M'], exit: 2, message: /--offset 0x4000000 is past the end/},
]

badInputTable({
  title: `bad input for map and bench mmio (${cases.length} cases): clear message, meaningful exit code, nothing changed`,
  cases,
  atLeast: 30,
  label: (c) => (typeof c.args === 'function' ? `${c.message.source.slice(0, 60)} (computed args)` : argsLabel(c.args) + (c.setup ? ' (with setup)' : '')),
  arrange(c) {
    const fx = standardMachine()
    c.setup?.(fx)
    const args = typeof c.args === 'function' ? c.args(fx) : c.args
    const before = fx.hash()
    const bar2 = fs.readFileSync(path.join(fx.fnDir(IVS), 'resource2_wc'))
    return {
      args,
      run: (a) => (c.spawn ? cliProcess(a, fx) : cli(a, fx)),
      check(phase) {
        expect(fx.hash(), phase === 'json' ? 'fixture tree changed (--json)' : 'fixture tree changed').to.equal(before)
        if (phase === 'plain') expect(fs.readFileSync(path.join(fx.fnDir(IVS), 'resource2_wc')).equals(bar2), 'BAR2 bytes changed').to.equal(true)
      },
      cleanup: () => fx.cleanup(),
    }
  },
})
