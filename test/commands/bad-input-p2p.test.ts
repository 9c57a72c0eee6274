/**
 * Bad input for `iopmem bench p2p`: each case fails with a clear message and
 * an exit code that means what the README says, leaves the fixture tree and
 * the destination file byte-identical, and is repeated under --json. Sources
 * and destinations are temp files; PCI facts come from a sysfs fixture.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cli, cliProcess} from '../helpers/cli.js'
import {badInputTable} from '../helpers/bad-input.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'

interface Paths {
  src: string
  dst: string
  empty: string
  dir: string
  fifo: string
  tmp: string
  /** A symlink and a hard link to src. */
  srcLink: string
  srcHard: string
}

interface Case {
  label: string
  args: (p: Paths) => string[]
  exit: number
  message: RegExp
  code?: string
  /** An empty machine (no PCI at all) instead of the standard one. */
  bare?: boolean
  spawn?: boolean
  env?: Record<string, string>
}

const files = (p: Paths, ...more: string[]) =>
  ['bench', 'p2p', '--src', p.src, '--dst', p.dst, ...(more.includes('--buffer') ? [] : ['--buffer', 'bounce']), '--yes', ...more]

const cases: Case[] = [
  {label: 'an unknown --buffer', args: (p) => files(p, '--buffer', 'dma'), exit: 2, message: /Expected --buffer=dma to be one of: bounce, p2p, both/},
  {label: 'an unknown --engine', args: (p) => files(p, '--engine', 'spdk'), exit: 2, message: /Expected --engine=spdk to be one of: auto, io_uring, psync/},
  {label: '--bs not a size', args: (p) => files(p, '--bs', 'big'), exit: 2, message: /Invalid --bs "big"/, code: 'E_SIZE_SYNTAX'},
  {label: '--bs 0', args: (p) => files(p, '--bs', '0'), exit: 2, message: /Invalid --bs "0": must be at least 512 B/, code: 'E_SIZE_RANGE'},
  {label: '--bs over 64 MiB', args: (p) => files(p, '--bs', '128M'), exit: 2, message: /Invalid --bs "128M": must be at most 64 MiB/, code: 'E_SIZE_RANGE'},
  {label: '--bs not a multiple of the O_DIRECT alignment', args: (p) => files(p, '--bs', '1000'), exit: 2, message: /--bs 1000 is not a multiple of \d+ bytes, the O_DIRECT alignment/, code: 'E_ALIGN'},
  {label: '--qd 0', args: (p) => files(p, '--qd', '0'), exit: 2, message: /Invalid --qd "0": must be from 1 to 1024/, code: 'E_COUNT'},
  {label: '--qd not a number', args: (p) => files(p, '--qd', 'deep'), exit: 2, message: /Invalid --qd "deep": expected a whole number/, code: 'E_COUNT'},
  {label: '--qd too deep', args: (p) => files(p, '--qd', '5000'), exit: 2, message: /Invalid --qd "5000"/, code: 'E_COUNT'},
  {label: '--qd fractional', args: (p) => files(p, '--qd', '1.5'), exit: 2, message: /Invalid --qd "1.5"/, code: 'E_COUNT'},
  {label: '--jobs 0', args: (p) => files(p, '--jobs', '0'), exit: 2, message: /Invalid --jobs "0": must be from 1 to 64/, code: 'E_COUNT'},
  {label: '--jobs too many', args: (p) => files(p, '--jobs', '65'), exit: 2, message: /Invalid --jobs "65"/, code: 'E_COUNT'},
  {label: '--size 0', args: (p) => files(p, '--size', '0'), exit: 2, message: /Invalid --size "0": must be at least 512 B/, code: 'E_SIZE_RANGE'},
  {label: '--size not aligned', args: (p) => files(p, '--size', '1000'), exit: 2, message: /Invalid --size "1000"|--size 1000 is not a multiple/, code: undefined},
  {label: '--size past the end of the source', args: (p) => files(p, '--size', '2M'), exit: 2, message: /--size 2 MiB runs past the end of .*src/, code: 'E_RANGE'},
  {label: '--src-offset past the end', args: (p) => files(p, '--src-offset', '1M'), exit: 2, message: /--src-offset 1048576 is past the end of .*src/, code: 'E_RANGE'},
  {label: '--src-offset not aligned', args: (p) => files(p, '--src-offset', '100'), exit: 2, message: /--src-offset 100 is not a multiple/, code: 'E_ALIGN'},
  {label: '--dst-offset not aligned', args: (p) => files(p, '--dst-offset', '7'), exit: 2, message: /--dst-offset 7 is not a multiple/, code: 'E_ALIGN'},
  {label: '--dst-offset not a size', args: (p) => files(p, '--dst-offset', 'end'), exit: 2, message: /Invalid --dst-offset "end"/, code: 'E_SIZE_SYNTAX'},
  {label: 'a missing source', args: (p) => ['bench', 'p2p', '--src', path.join(p.tmp, 'nope'), '--dst', p.dst, '--buffer', 'bounce', '--yes'], exit: 3, message: /--src .*nope: no such file or device/, code: 'E_NO_FILE'},
  {label: 'a missing destination', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', path.join(p.tmp, 'nope'), '--buffer', 'bounce', '--yes'], exit: 3, message: /--dst .*nope: no such file or device/, code: 'E_NO_FILE'},
  {label: 'a directory as source', args: (p) => ['bench', 'p2p', '--src', p.dir, '--dst', p.dst, '--buffer', 'bounce', '--yes'], exit: 2, message: /--src .* is a directory/, code: 'E_NOT_REGULAR'},
  {label: 'a FIFO as destination', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', p.fifo, '--buffer', 'bounce', '--yes'], exit: 2, message: /--dst .*fifo is neither a block device nor a regular file/, code: 'E_NOT_REGULAR'},
  {label: 'a symlink to the source as destination', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', p.srcLink, '--buffer', 'bounce', '--yes'], exit: 2, message: /are the same file \(one inode\)/, code: 'E_SAME'},
  {label: 'a hard link to the source as destination', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', p.srcHard, '--buffer', 'bounce', '--yes'], exit: 2, message: /are the same file \(one inode\)/, code: 'E_SAME'},
  {label: 'the same file as source and destination', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', p.src, '--buffer', 'bounce', '--yes'], exit: 2, message: /--src and --dst are the same/, code: 'E_SAME'},
  {label: 'an empty source', args: (p) => ['bench', 'p2p', '--src', p.empty, '--dst', p.dst, '--buffer', 'bounce', '--yes'], exit: 2, message: /--src .*empty is empty: nothing to copy/, code: 'E_RANGE'},
  {label: '--buffer p2p without --via', args: (p) => files(p, '--buffer', 'p2p'), exit: 2, message: /--buffer p2p needs --via/, code: 'E_NO_VIA'},
  {label: 'an empty --via', args: (p) => files(p, '--buffer', 'p2p', '--via', ''), exit: 2, message: /--via is empty/, code: 'E_NO_VIA', spawn: true},
  {label: '--via neither a BDF nor a path', args: (p) => files(p, '--buffer', 'p2p', '--via', 'cmb0'), exit: 2, message: /Invalid --via "cmb0": expected a PCI function/, code: 'E_BDF_SYNTAX'},
  {label: '--via a function that is not there', args: (p) => files(p, '--buffer', 'p2p', '--via', '0000:7f:00.0'), exit: 3, message: /No PCI function 0000:7f:00.0/, code: 'E_NO_DEVICE'},
  {label: '--via a function without p2pmem', args: (p) => files(p, '--buffer', 'p2p', '--via', BDF.nvmeRoot), exit: 7, message: /0000:00:03.0 publishes no p2pmem/, code: 'E_NO_P2PMEM'},
  {label: '--via a buffer bigger than the free p2pmem', args: (p) => files(p, '--buffer', 'p2p', '--via', BDF.nvmeCmb, '--bs', '64M', '--qd', '2', '--size', '512K'), exit: 7, message: /has 63\.9 MiB of p2pmem free; the buffer needs 128 MiB/, code: 'E_P2PMEM_SHORT'},
  {label: '--via a file not on DAX', args: (p) => files(p, '--buffer', 'p2p', '--via', p.src), exit: 7, message: /is not on a DAX filesystem/, code: 'E_NOT_DAX'},
  {label: '--via a directory', args: (p) => files(p, '--buffer', 'p2p', '--via', p.dir), exit: 2, message: /--via .* is not a regular file/, code: 'E_NOT_REGULAR'},
  {label: '--via a missing file', args: (p) => files(p, '--buffer', 'p2p', '--via', path.join(p.tmp, 'nope')), exit: 3, message: /--via .*nope/, code: 'E_NO_FILE'},
  {label: '--plot without --sweep', args: (p) => files(p, '--plot', path.join(p.tmp, 'x.svg')), exit: 2, message: /--plot needs --sweep/},
  {label: '--plot in a directory that does not exist: refused before the run', args: (p) => files(p, '--sweep', '4K', '--plot', path.join(p.tmp, 'nodir', 'x.svg')), exit: 3, message: /--plot .*the directory .*nodir does not exist/, code: 'E_NO_DIR'},
  {label: '--plot naming a directory', args: (p) => files(p, '--sweep', '4K', '--plot', path.join(p.tmp, 'dir.svg')), exit: 2, message: /--plot .*dir\.svg is a directory/, code: 'E_NOT_REGULAR'},
  {label: '--plot with an unknown extension', args: (p) => files(p, '--sweep', '4K', '--plot', path.join(p.tmp, 'x.png')), exit: 2, message: /must end in \.svg or \.html/},
  {label: '--sweep with a bad size', args: (p) => files(p, '--sweep', '4K,huge'), exit: 2, message: /Invalid --sweep block size "huge"/, code: 'E_SIZE_SYNTAX'},
  {label: 'no --yes off a terminal', args: (p) => ['bench', 'p2p', '--src', p.src, '--dst', p.dst, '--buffer', 'bounce'], exit: 5, message: /without confirmation: not on a terminal/, code: 'E_CONFIRM'},
  {label: 'an unknown flag', args: (p) => files(p, '--iodepth', '4'), exit: 2, message: /Nonexistent flag: --iodepth/},
  {label: 'defaults on a machine without PCI', args: () => ['bench', 'p2p', '--yes'], exit: 7, message: /Cannot choose defaults for bench p2p: no NVMe namespace is visible/, code: 'E_NO_CANDIDATES', bare: true},
  {label: 'defaults without a destination namespace', args: (p) => ['bench', 'p2p', '--src', p.src, '--buffer', 'bounce', '--yes'], exit: 7, message: /Cannot choose defaults .*NVMe namespace/, code: 'E_NO_CANDIDATES', bare: true},
  {label: 'without the native addon', args: (p) => files(p), exit: 7, message: /the iopmem native addon is not available/, code: 'E_NATIVE_MISSING', spawn: true, env: {IOPMEM_NATIVE: '/nonexistent/iopmem.node'}},
]

badInputTable({
  title: `bad input for bench p2p (${cases.length} cases): clear message, meaningful exit code, nothing written`,
  cases,
  atLeast: 30,
  errorAnywhere: true,
  label: (c) => c.label,
  arrange(c) {
    const fx = c.bare ? new SysfsFixture() : standardMachine()
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-p2p-bad-'))
    const p: Paths = {
      src: path.join(tmp, 'src'),
      dst: path.join(tmp, 'dst'),
      empty: path.join(tmp, 'empty'),
      dir: path.join(tmp, 'dir'),
      fifo: path.join(tmp, 'fifo'),
      srcLink: path.join(tmp, 'src-link'),
      srcHard: path.join(tmp, 'src-hard'),
      tmp,
    }
    const cleanup = () => {
      fs.rmSync(tmp, {recursive: true, force: true})
      fx.cleanup()
    }
    fs.writeFileSync(p.src, Buffer.alloc(1 << 20, 7))
    fs.writeFileSync(p.dst, Buffer.alloc(1 << 20, 9))
    fs.writeFileSync(p.empty, '')
    fs.mkdirSync(p.dir)
    fs.mkdirSync(path.join(tmp, 'dir.svg'))
    execFileSync('mkfifo', [p.fifo])
    fs.symlinkSync(p.src, p.srcLink)
    fs.linkSync(p.src, p.srcHard)
    const before = fx.hash()
    return {
      args: c.args(p),
      run: (a) => (c.spawn ? cliProcess(a, fx, c.env) : cli(a, fx)),
      check(phase) {
        if (phase !== 'json') return
        expect(fx.hash(), 'fixture tree changed').to.equal(before)
        expect(fs.readFileSync(p.dst).every((b) => b === 9), 'the destination was written').to.equal(true)
        expect(fs.existsSync(path.join(tmp, 'x.svg')) || fs.existsSync(path.join(tmp, 'x.png')), 'a chart was written').to.equal(false)
      },
      cleanup,
    }
  },
})
