/**
 * Bad input across mkfs-dax and locate: each case must fail with a clear
 * message and an exit code that means what the README says, leave the
 * fixture tree byte-identical, and run nothing that writes (the fake
 * runner records every external program; most cases must run none at all).
 * Every case is repeated under --json.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import type {FileOps} from '../../src/lib/dax/locate.js'
import {EXTENT_FLAGS as X} from '../../src/lib/dax/locate.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {badInputTable} from '../helpers/bad-input.js'
import {daxMachine, fakeFiemap, fakeFileOps, FakeRunner, installDaxDeps, installFileOps} from '../helpers/dax.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

interface Paths {
  file: string
  empty: string
  dir: string
  fifo: string
  mnt: string
}

interface Case {
  args: (p: Paths) => string[]
  exit: number
  message: RegExp
  code?: string
  setup?: (fx: SysfsFixture, runner: FakeRunner, p: Paths) => void
  /** Fake statx/FIEMAP for locate. */
  ops?: () => FileOps
  uid?: number
  spawn?: boolean
  env?: Record<string, string>
  /** Read-only probes (wipefs -n) are allowed to have run. */
  probes?: boolean
  label: string
}

const pmemOps = (extents: Parameters<typeof fakeFiemap>[0], stat: Record<string, unknown> = {}) => () =>
  fakeFileOps({devMajor: 259, devMinor: 10, size: 1 << 20, ...stat}, fakeFiemap(extents))

const BAD_DEVICE = /Invalid device .*give a block device, e\.g\. \/dev\/pmem0/

const cases: Case[] = [
  // ---- locate
  {label: 'locate without a file', args: () => ['locate'], exit: 2, message: /Missing 1 required arg/, code: 'E_USAGE'},
  {label: 'locate a missing file', args: () => ['locate', '/nonexistent/iopmem/file'], exit: 3, message: /No such file: \/nonexistent\/iopmem\/file/, code: 'E_NO_FILE'},
  {label: 'locate a directory', args: (p) => ['locate', p.dir], exit: 2, message: /is a directory: locate works on regular files/, code: 'E_NOT_REGULAR'},
  {label: 'locate a character device', args: () => ['locate', '/dev/null'], exit: 2, message: /\/dev\/null is a character device/, code: 'E_NOT_REGULAR'},
  {label: 'locate a FIFO', args: (p) => ['locate', p.fifo], exit: 2, message: /is a FIFO: locate works on regular files/},
  {label: 'locate --offset not a number', args: (p) => ['locate', p.file, '--offset', 'lots'], exit: 2, message: /Invalid --offset "lots"/, code: 'E_SIZE_SYNTAX', ops: pmemOps([])},
  {label: 'locate --size 0', args: (p) => ['locate', p.file, '--size', '0'], exit: 2, message: /Invalid --size "0": must be at least 1 B/, code: 'E_SIZE_RANGE', ops: pmemOps([])},
  {label: 'locate --size negative', args: (p) => ['locate', p.file, '--size=-4096'], exit: 2, message: /Invalid --size "-4096"/, ops: pmemOps([])},
  {label: 'locate --offset unit unknown', args: (p) => ['locate', p.file, '--offset', '4X'], exit: 2, message: /Invalid --offset "4X"/, ops: pmemOps([])},
  {label: 'locate --offset past the end', args: (p) => ['locate', p.file, '--offset', '1M'], exit: 2, message: /--offset 1048576 is past the end of .* \(1048576 bytes\)/, code: 'E_RANGE', ops: pmemOps([])},
  {label: 'locate --offset on an empty file', args: (p) => ['locate', p.empty, '--offset', '0'], exit: 2, message: /the file is empty/, code: 'E_RANGE', ops: pmemOps([], {size: 0})},
  {label: 'locate a non-DAX file on pmem', args: (p) => ['locate', p.file], exit: 5, message: /is not DAX .*a physical address would be a lie/, code: 'E_NOT_DAX', ops: pmemOps([[0, 0, 4096, X.LAST]], {dax: false})},
  {label: 'locate a delalloc extent', args: (p) => ['locate', p.file, '--no-sync'], exit: 5, message: /1 extent of .* has no usable address \(it has no blocks yet \(delayed allocation\)\)/, code: 'E_UNUSABLE_EXTENT', ops: pmemOps([[0, 0, 4096, X.DELALLOC | X.LAST]])},
  {label: 'locate an inline extent', args: (p) => ['locate', p.file], exit: 5, message: /its data is inline in metadata/, code: 'E_UNUSABLE_EXTENT', ops: pmemOps([[0, 0, 60, X.DATA_INLINE | X.NOT_ALIGNED | X.LAST]])},
  {label: 'locate an encrypted extent', args: (p) => ['locate', p.file], exit: 5, message: /its data is encrypted on the device/, ops: pmemOps([[0, 0x1000, 4096, X.DATA_ENCRYPTED | X.LAST]])},
  {label: 'locate on device-mapper', args: (p) => ['locate', p.file], exit: 7, message: /a stacked device \(device-mapper or md over nvme2n1\)/, code: 'E_STACKED', ops: () => fakeFileOps({devMajor: 253, devMinor: 0}, fakeFiemap([]))},
  {label: 'locate on tmpfs', args: (p) => ['locate', p.file], exit: 7, message: /which has no block device of its own/, code: 'E_NOT_BLOCK_BACKED', ops: () => fakeFileOps({devMajor: 0, devMinor: 33}, fakeFiemap([]))},
  {label: 'locate on a device sysfs lacks', args: (p) => ['locate', p.file], exit: 3, message: /is on block device 8:77, which is not in \/sys\/dev\/block/, code: 'E_NO_BLOCK_DEVICE', ops: () => fakeFileOps({devMajor: 8, devMinor: 77}, fakeFiemap([]))},
  {
    label: 'locate with pmem whose resource is unreadable',
    args: (p) => ['locate', p.file],
    exit: 7,
    message: /Cannot tell where pmem5's memory is .*namespace5\.0\/resource: it does not exist/,
    code: 'E_NO_BASE',
    setup: (fx) => fx.pmem({name: 'pmem5', dev: '259:50', region: 5, start: 0x2_0000_0000, sizeBytes: 1 << 26, noResource: true}),
    ops: () => fakeFileOps({devMajor: 259, devMinor: 50}, fakeFiemap([[0, 0, 4096, X.LAST]])),
  },
  {label: 'locate an extent past the end of the disk', args: (p) => ['locate', p.file], exit: 7, message: /lies past the end of iopmem0/, code: 'E_EXTENT_OUTSIDE', ops: () => fakeFileOps({devMajor: 252, devMinor: 0}, fakeFiemap([[0, 1 << 30, 4096, X.LAST]]))},
  {
    label: 'locate where FIEMAP is not supported',
    args: (p) => ['locate', p.file],
    exit: 7,
    message: /does not support FIEMAP/,
    code: 'E_NO_FIEMAP',
    ops: () => ({
      ...fakeFileOps({devMajor: 259, devMinor: 10}, fakeFiemap([])),
      fiemap: () => {
        throw Object.assign(new Error('Operation not supported'), {code: 'EOPNOTSUPP'})
      },
    }),
  },
  {label: 'locate with an unknown flag', args: (p) => ['locate', p.file, '--physical'], exit: 2, message: /Nonexistent flag: --physical/, code: 'E_USAGE'},
  {label: 'locate two files', args: (p) => ['locate', p.file, p.empty], exit: 2, message: /Unexpected argument/},
  {label: 'locate without the native addon', args: (p) => ['locate', p.file], exit: 7, message: /the iopmem native addon is not available/, code: 'E_NATIVE_MISSING', spawn: true, env: {IOPMEM_NATIVE: '/nonexistent/iopmem.node'}},
  {label: 'locate an empty argument', args: () => ['locate', ''], exit: 3, message: /No such file/, spawn: true},
  // ---- mkfs-dax
  {label: 'mkfs-dax without a device', args: () => ['mkfs-dax'], exit: 2, message: /Missing 1 required arg/, code: 'E_USAGE'},
  {label: 'mkfs-dax a path outside /dev', args: () => ['mkfs-dax', '/etc/passwd', '--yes'], exit: 2, message: BAD_DEVICE, code: 'E_DEVICE_SYNTAX'},
  {label: 'mkfs-dax a relative escape', args: () => ['mkfs-dax', '../../dev/pmem0', '--yes'], exit: 2, message: BAD_DEVICE, code: 'E_DEVICE_SYNTAX'},
  {label: 'mkfs-dax /dev/../', args: () => ['mkfs-dax', '/dev/../dev/pmem0', '--yes'], exit: 2, message: BAD_DEVICE},
  {label: 'mkfs-dax an empty device', args: () => ['mkfs-dax', '', '--yes'], exit: 2, message: BAD_DEVICE, spawn: true},
  {label: 'mkfs-dax a name with a space', args: () => ['mkfs-dax', 'pmem0 ', '--yes'], exit: 2, message: BAD_DEVICE, spawn: true},
  {label: 'mkfs-dax a missing device', args: () => ['mkfs-dax', '/dev/pmem9', '--yes'], exit: 3, message: /No device \/dev\/pmem9/, code: 'E_NO_DEVICE'},
  {label: 'mkfs-dax a character device', args: () => ['mkfs-dax', '/dev/nvme0', '--yes'], exit: 2, message: /\/dev\/nvme0 is not a block device/, code: 'E_NOT_BLOCK'},
  {label: 'mkfs-dax an NVMe namespace', args: () => ['mkfs-dax', '/dev/nvme0n1', '--yes'], exit: 7, message: /\/dev\/nvme0n1 cannot do DAX .*an NVMe namespace is a block device, not memory/, code: 'E_NOT_DAX_CAPABLE'},
  {label: 'mkfs-dax device-mapper', args: () => ['mkfs-dax', '/dev/dm-0', '--yes'], exit: 7, message: /cannot do DAX/},
  {label: 'mkfs-dax an unknown filesystem', args: () => ['mkfs-dax', '/dev/pmem1', '--fs', 'btrfs', '--yes'], exit: 2, message: /Expected --fs=btrfs to be one of: ext4, xfs/},
  {label: 'mkfs-dax xfs under 300 MiB', args: () => ['mkfs-dax', '/dev/iopmem0', '--fs', 'xfs', '--yes'], exit: 7, message: /mkfs\.xfs refuses filesystems under 300 MiB/, code: 'E_TOO_SMALL'},
  {label: 'mkfs-dax without --yes off a terminal', args: () => ['mkfs-dax', '/dev/pmem1'], exit: 5, message: /without confirmation: not on a terminal/, code: 'E_CONFIRM', probes: true},
  {label: 'mkfs-dax as a normal user', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 4, message: /mkfs-dax needs root/, code: 'E_NOT_ROOT', uid: 1000},
  {
    label: 'mkfs-dax a mounted device, even with --force',
    args: () => ['mkfs-dax', '/dev/pmem1', '--force'],
    exit: 5,
    message: /\/dev\/pmem1 is in use.*\/dev\/pmem1 is mounted on \/mnt\/dax \(ext4, dax=always\)/s,
    code: 'E_IN_USE',
    setup: (fx) => fx.mount({dev: '259:20', source: '/dev/pmem1', target: '/mnt/dax', fstype: 'ext4', options: 'rw,dax=always'}),
  },
  {label: 'mkfs-dax a disk whose partition is mounted', args: () => ['mkfs-dax', '/dev/pmem0', '--yes'], exit: 5, message: /pmem0p1 is mounted on \/data/, setup: (fx) => fx.mount({dev: '259:11', source: '/dev/pmem0p1', target: '/data', fstype: 'xfs'})},
  {label: 'mkfs-dax a held device', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 5, message: /dm-7 is stacked on pmem1/, setup: (fx) => fs.mkdirSync(path.join(fx.sys, 'class/block/pmem1/holders/dm-7'), {recursive: true})},
  {label: 'mkfs-dax a device open in a process', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 5, message: /process fio \(pid 321\) has \/dev\/pmem1 open/, setup: (fx) => fx.process({pid: 321, comm: 'fio', fds: ['/dev/pmem1']})},
  {label: 'mkfs-dax over a filesystem', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 5, message: /not empty; refusing to overwrite.*ext4 at offset 0x438 of \/dev\/pmem1/s, code: 'E_HAS_SIGNATURE', setup: (_fx, r) => r.has('/dev/pmem1', 'ext4'), probes: true},
  {label: 'mkfs-dax over a partition table', args: () => ['mkfs-dax', '/dev/pmem0', '--yes'], exit: 5, message: /partitions: pmem0p1/, code: 'E_HAS_SIGNATURE', probes: true},
  {label: 'mkfs-dax a read-only device', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 7, message: /\/dev\/pmem1 is read-only/, code: 'E_READ_ONLY', setup: (fx) => fs.writeFileSync(path.join(fx.sys, 'class/block/pmem1/ro'), '1\n')},
  {label: 'mkfs-dax --mount a missing directory', args: (p) => ['mkfs-dax', '/dev/pmem1', '--mount', path.join(p.mnt, 'nope'), '--yes'], exit: 3, message: /The mount point .*nope does not exist/, code: 'E_NO_MOUNTPOINT'},
  {label: 'mkfs-dax --mount a file', args: (p) => ['mkfs-dax', '/dev/pmem1', '--mount', p.file, '--yes'], exit: 2, message: /is not a directory/, code: 'E_MOUNT_NOT_DIR'},
  {label: 'mkfs-dax --mount a non-empty directory', args: (p) => ['mkfs-dax', '/dev/pmem1', '--mount', p.dir, '--yes'], exit: 5, message: /is not empty \(3 entries\): mounting over it would hide them/, code: 'E_MOUNTPOINT_NOT_EMPTY'},
  {label: 'mkfs-dax --mount a mount point', args: (p) => ['mkfs-dax', '/dev/pmem1', '--mount', p.mnt, '--yes'], exit: 5, message: /is already a mount point \(tmpfs from tmpfs\)/, code: 'E_MOUNTPOINT_BUSY', setup: (fx, _r, p) => fx.mount({dev: '0:60', source: 'tmpfs', target: fs.realpathSync(p.mnt), fstype: 'tmpfs'})},
  {label: 'mkfs-dax without wipefs installed', args: () => ['mkfs-dax', '/dev/pmem1', '--yes'], exit: 7, message: /wipefs is not installed \(Debian package util-linux\)/, code: 'E_PROGRAM_MISSING', setup: (_fx, r) => r.uninstall('wipefs'), probes: true},
  {label: 'mkfs-dax with an unknown flag', args: () => ['mkfs-dax', '/dev/pmem1', '--yes', '--nodiscard'], exit: 2, message: /Nonexistent flag: --nodiscard/},
  {label: 'mkfs-dax two devices', args: () => ['mkfs-dax', '/dev/pmem0', '/dev/pmem1', '--yes'], exit: 2, message: /Unexpected argument/},
]

badInputTable({
  title: `bad input for mkfs-dax and locate (${cases.length} cases): clear message, meaningful exit code, nothing changed, nothing run`,
  cases,
  atLeast: 30,
  label: (c) => c.label,
  async arrange(c) {
    const fx = await daxMachine()
    const runner = new FakeRunner()
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-bad-'))
    const p: Paths = {
      file: path.join(tmp, 'file'),
      empty: path.join(tmp, 'empty'),
      dir: path.join(tmp, 'dir'),
      fifo: path.join(tmp, 'fifo'),
      mnt: path.join(tmp, 'mnt'),
    }
    const cleanup = async () => {
      await installDaxDeps({})
      await installFileOps(undefined)
      fx.cleanup()
      fs.rmSync(tmp, {recursive: true, force: true})
    }
    fs.writeFileSync(p.file, Buffer.alloc(4096, 1))
    fs.writeFileSync(p.empty, '')
    fs.mkdirSync(p.dir)
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(p.dir, n), '')
    fs.mkdirSync(p.mnt)
    execFileSync('mkfifo', [p.fifo])
    c.setup?.(fx, runner, p)
    await installDaxDeps({runner, statxDax: async () => true, pageSize: async () => 4096})
    await installFileOps(c.ops?.())
    const before = fx.hash()
    return {
      args: c.args(p),
      run: (a) => (c.spawn ? cliProcess(a, fx, c.env) : cli(a, fx, {uid: c.uid})),
      check(phase) {
        if (phase === 'plain') return expect(fx.hash(), 'fixture tree changed').to.equal(before)
        expect(fx.hash(), 'fixture tree changed (--json)').to.equal(before)
        expect(runner.writes(), 'a writing program ran').to.deep.equal([])
        if (!c.probes) expect(runner.calls, 'a program ran').to.deep.equal([])
        expect(fs.readdirSync(p.mnt), 'the mount point was touched').to.deep.equal([])
      },
      cleanup,
    }
  },
})
