/**
 * mkfs-dax logic on fixture trees with a fake runner: every check before
 * the first write, the commands run and their order, and the state a
 * failure leaves the device in. Nothing real is run here.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {type DaxDeps, executeMkfsDax, mkfsArgv, parseBlkidExport, parseWipefsJson, planMkfsDax} from '../../src/lib/dax/index.js'
import {findProgram, PROGRAM_PACKAGES, programMissing, processRunner} from '../../src/lib/sys/exec.js'
import {daxMachine, FakeRunner} from '../helpers/dax.js'
import {BDF, MiB} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

async function rejects(p: Promise<unknown>, code: string): Promise<Error & {code: string; exit: number; details?: any; suggestions: string[]}> {
  try {
    await p
  } catch (error) {
    expect((error as {code?: string}).code, (error as Error).message).to.equal(code)
    return error as Error & {code: string; exit: number; suggestions: string[]}
  }
  expect.fail(`expected ${code}`)
}

describe('mkfs-dax: parsing and command lines', () => {
  it('parses wipefs --json (util-linux 2.38) and an empty answer', () => {
    const text = '{\n   "signatures": [\n      {\n         "device": "pmem0",\n         "offset": "0x438",\n         "type": "ext4",\n         "uuid": "a72f",\n         "label": null\n      },\n      {"device": "pmem0", "offset": "0x1fe", "type": "dos", "uuid": "0x1234", "label": "x"}\n   ]\n}\n'
    expect(parseWipefsJson(text, '/dev/pmem0')).to.deep.equal([
      {device: '/dev/pmem0', offset: '0x438', type: 'ext4', uuid: 'a72f', label: null},
      {device: '/dev/pmem0', offset: '0x1fe', type: 'dos', uuid: '0x1234', label: 'x'},
    ])
    expect(parseWipefsJson('', '/dev/pmem0')).to.deep.equal([])
    expect(parseWipefsJson('{"signatures": []}', '/dev/pmem0')).to.deep.equal([])
  })

  it('parses blkid -p -o export', () => {
    expect(parseBlkidExport('DEVNAME=/dev/pmem0\nUUID=abc\nBLOCK_SIZE=4096\nTYPE=xfs\n')).to.deep.equal({DEVNAME: '/dev/pmem0', UUID: 'abc', BLOCK_SIZE: '4096', TYPE: 'xfs'})
  })

  it('ext4: block size = page size, 2 MiB stride and stripe width in blocks; -F only with --force', () => {
    expect(mkfsArgv('ext4', '/dev/pmem0', {pageSize: 4096, size: 512 * MiB})).to.deep.equal(['mkfs.ext4', '-b', '4096', '-E', 'stride=512,stripe_width=512', '/dev/pmem0'])
    expect(mkfsArgv('ext4', '/dev/pmem0', {pageSize: 16384, size: 512 * MiB, force: true})).to.deep.equal(['mkfs.ext4', '-F', '-b', '16384', '-E', 'stride=128,stripe_width=128', '/dev/pmem0'])
  })

  it('xfs: 2 MiB stripe unit, no reflink; agcount=2 below 1 GiB; -f only with --force', () => {
    expect(mkfsArgv('xfs', '/dev/iopmem0', {pageSize: 4096, size: 512 * MiB})).to.deep.equal(['mkfs.xfs', '-b', 'size=4096', '-d', 'su=2m,sw=1,agcount=2', '-m', 'reflink=0', '/dev/iopmem0'])
    expect(mkfsArgv('xfs', '/dev/iopmem0', {pageSize: 4096, size: 4096 * MiB, force: true})).to.deep.equal(['mkfs.xfs', '-f', '-b', 'size=4096', '-d', 'su=2m,sw=1', '-m', 'reflink=0', '/dev/iopmem0'])
  })

  it('a missing program is an error naming its Debian package', () => {
    expect(PROGRAM_PACKAGES).to.include({'mkfs.ext4': 'e2fsprogs', 'mkfs.xfs': 'xfsprogs', wipefs: 'util-linux', blkid: 'util-linux', mount: 'mount', umount: 'mount'})
    const e = programMissing('mkfs.xfs')
    expect(e.message).to.equal('mkfs.xfs is not installed (Debian package xfsprogs).')
    expect(e.suggestions[0]).to.contain('apt-get install xfsprogs')
    expect(e.exit).to.equal(7)
  })

  it('the real runner finds programs in sbin even without it in PATH, runs argv without a shell, and reports a missing one', async () => {
    expect(findProgram('wipefs', '/nonexistent')).to.match(/\/wipefs$/)
    expect(() => findProgram('a b')).to.throw()
    const r = await processRunner.run('blkid', ['--version'])
    expect(r.code).to.equal(0)
    // An argument that a shell would expand stays one literal argument.
    const q = await processRunner.run('blkid', ['-p', '/nonexistent/$(touch /tmp/iopmem-should-not-exist)'])
    expect(q.code).to.not.equal(0)
    expect(fs.existsSync('/tmp/iopmem-should-not-exist')).to.equal(false)
    await rejects(processRunner.run('mkfs.iopmem-nonexistent', []), 'E_PROGRAM_MISSING')
  })
})

describe('mkfs-dax: checks and execution on fixtures (fake runner)', () => {
  let fx: SysfsFixture
  let runner: FakeRunner
  let deps: DaxDeps
  let mnt: string
  let dax = true
  beforeEach(async () => {
    fx = await daxMachine()
    runner = new FakeRunner()
    dax = true
    deps = {runner, statxDax: async () => dax, pageSize: async () => 4096}
    mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-mnt-'))
  })
  afterEach(() => {
    fx.cleanup()
    fs.rmSync(mnt, {recursive: true, force: true})
  })

  it('a clean pmem disk: probes, makes ext4, checks it, mounts with -o dax and confirms DAX', async () => {
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4', mount: mnt}, deps)
    expect(runner.writes()).to.deep.equal([])
    expect(plan.alignment).to.deep.equal({stripe: 2 * MiB, deviceStart: 0, physicalStart: '0x0000000140200000', aligned: true})
    const r = await executeMkfsDax(fx.host(), plan, deps)
    expect(runner.calls.map((c) => [c.program, ...c.args].join(' '))).to.deep.equal([
      'wipefs --no-act --json /dev/pmem1',
      'mkfs.ext4 -b 4096 -E stride=512,stripe_width=512 /dev/pmem1',
      'blkid --probe --output export /dev/pmem1',
      `mount -t ext4 -o dax /dev/pmem1 ${fs.realpathSync(mnt)}`,
    ])
    expect(r).to.deep.include({device: '/dev/pmem1', disk: '/dev/pmem1', kind: 'pmem', filesystem: 'ext4', blockSize: 4096, pageSize: 4096, uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'})
    expect(r.mount).to.deep.equal({target: fs.realpathSync(mnt), options: 'dax', daxConfirmed: true})
    expect(fs.readdirSync(mnt), 'the probe file is removed').to.deep.equal([])
  })

  it('a disk with a partition table but no signature found is still refused without --force', async () => {
    const e = await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4'}, deps), 'E_HAS_SIGNATURE')
    expect(e.message).to.contain('partitions: pmem0p1')
  })

  it('a partition: only the partition is probed and formatted; alignment counts its start', async () => {
    const plan = await planMkfsDax(fx.host(), 'pmem0p1', {fs: 'ext4'}, deps)
    expect(plan.alignment).to.deep.include({deviceStart: 2 * MiB, physicalStart: '0x0000000060200000', aligned: true})
    await executeMkfsDax(fx.host(), plan, deps)
    expect(runner.calls.map((c) => c.args.at(-1))).to.deep.equal(['/dev/pmem0p1', '/dev/pmem0p1', '/dev/pmem0p1'])
  })

  it('a partition that is not 2 MiB aligned is made, with a warning that huge faults are impossible', async () => {
    fs.writeFileSync(path.join(fx.sys, 'class/block/pmem0p1/start'), '2049\n')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem0p1', {fs: 'ext4'}, deps)
    expect(plan.alignment.aligned).to.equal(false)
    expect(plan.warnings[0]).to.contain('does not start on a 2 MiB boundary')
  })

  it('xfs on an iopmem disk under 300 MiB is refused before anything runs', async () => {
    const e = await rejects(planMkfsDax(fx.host(), '/dev/iopmem0', {fs: 'xfs'}, deps), 'E_TOO_SMALL')
    expect(e.message).to.contain('mkfs.xfs refuses filesystems under 300 MiB')
    expect(runner.calls).to.deep.equal([])
  })

  it('xfs on pmem (512 MiB): agcount=2, reflink off', async () => {
    const plan = await planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'xfs', force: true}, deps)
    expect(plan.mkfsArgv).to.deep.equal(['mkfs.xfs', '-f', '-b', 'size=4096', '-d', 'su=2m,sw=1,agcount=2', '-m', 'reflink=0', '/dev/pmem0'])
  })

  it('an existing filesystem: refused without --force, naming it; nothing written', async () => {
    runner.has('/dev/pmem1', 'xfs')
    const e = await rejects(planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4'}, deps), 'E_HAS_SIGNATURE')
    expect(e.exit).to.equal(5)
    expect(e.message).to.contain('xfs at offset 0x0 of /dev/pmem1 (UUID 11111111-2222-3333-4444-555555555555)')
    expect(e.details.signatures).to.have.length(1)
    expect(runner.writes()).to.deep.equal([])
  })

  it('a whole disk with partitions is refused without --force, listing what the partitions hold', async () => {
    runner.has('/dev/pmem0', 'gpt', '0x200').has('/dev/pmem0p1', 'ext4')
    const e = await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4'}, deps), 'E_HAS_SIGNATURE')
    expect(e.message).to.contain('gpt at offset 0x200 of /dev/pmem0').and.contain('ext4 at offset 0x438 of /dev/pmem0p1')
  })

  it('--force wipes the partitions first, then the disk, then makes the filesystem', async () => {
    runner.has('/dev/pmem0', 'gpt', '0x200').has('/dev/pmem0p1', 'ext4')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4', force: true}, deps)
    const r = await executeMkfsDax(fx.host(), plan, deps)
    expect(runner.writes().map((c) => [c.program, ...c.args].join(' '))).to.deep.equal([
      'wipefs --all /dev/pmem0p1',
      'wipefs --all /dev/pmem0',
      'mkfs.ext4 -F -b 4096 -E stride=512,stripe_width=512 /dev/pmem0',
    ])
    expect(r.erased.map((s) => s.type)).to.deep.equal(['gpt', 'ext4'])
  })

  it('a mounted device, a mounted partition of the disk, a holder, swap and an open node are all "in use", even with --force', async () => {
    const cases: Array<[string, (f: SysfsFixture) => void, RegExp]> = [
      ['/dev/pmem1', (f) => f.mount({dev: '259:20', source: '/dev/pmem1', target: '/mnt/x', fstype: 'xfs', options: 'rw,dax=always'}), /pmem1 is mounted on \/mnt\/x \(xfs, dax=always\)/],
      ['/dev/pmem0', (f) => f.mount({dev: '259:11', source: '/dev/pmem0p1', target: '/mnt/p', fstype: 'ext4'}), /pmem0p1 is mounted on \/mnt\/p/],
      ['/dev/pmem0p1', (f) => f.mount({dev: '259:10', source: '/dev/pmem0', target: '/mnt/w', fstype: 'ext4'}), /pmem0 is mounted on \/mnt\/w/],
      ['/dev/pmem1', (f) => fs.mkdirSync(path.join(f.sys, 'class/block/pmem1/holders/dm-3'), {recursive: true}), /dm-3 is stacked on pmem1/],
      ['/dev/pmem1', (f) => fs.writeFileSync(path.join(f.proc, 'swaps'), 'Filename\tType\tSize\tUsed\tPriority\n/dev/pmem1  partition\t1048572\t0\t-2\n'), /\/dev\/pmem1 is in use as swap/],
      ['/dev/pmem1', (f) => f.process({pid: 4242, comm: 'fio', fds: ['/dev/pmem1']}), /fio \(pid 4242\) has \/dev\/pmem1 open/],
    ]
    for (const [devArg, setup, msg] of cases) {
      const f = await daxMachine()
      try {
        setup(f)
        const e = await rejects(planMkfsDax(f.host(), devArg, {fs: 'ext4', force: true}, deps), 'E_IN_USE')
        expect(e.message).to.match(msg)
        expect(e.exit).to.equal(5)
      } finally {
        f.cleanup()
      }
    }
    expect(runner.calls, 'nothing probed or written').to.deep.equal([])
  })

  it('an NVMe namespace cannot do DAX: refused, naming the DAX-capable devices', async () => {
    const e = await rejects(planMkfsDax(fx.host(), '/dev/nvme0n1', {fs: 'ext4'}, deps), 'E_NOT_DAX_CAPABLE')
    expect(e.message).to.contain('an NVMe namespace is a block device, not memory')
    expect(e.suggestions[0]).to.contain('/dev/iopmem0, /dev/pmem0, /dev/pmem1')
    expect(e.exit).to.equal(7)
  })

  it('needs root', async () => {
    await rejects(planMkfsDax(fx.host({uid: 1000}), '/dev/pmem0', {fs: 'ext4'}, deps), 'E_NOT_ROOT')
  })

  it('the mount point must exist, be a directory, be empty, and not be a mount point already', async () => {
    await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4', mount: path.join(mnt, 'nope')}, deps), 'E_NO_MOUNTPOINT')
    fs.writeFileSync(path.join(mnt, 'file'), '')
    await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4', mount: path.join(mnt, 'file')}, deps), 'E_MOUNT_NOT_DIR')
    await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4', mount: mnt}, deps), 'E_MOUNTPOINT_NOT_EMPTY')
    fs.rmSync(path.join(mnt, 'file'))
    fx.mount({dev: '0:50', source: 'tmpfs', target: fs.realpathSync(mnt), fstype: 'tmpfs'})
    await rejects(planMkfsDax(fx.host(), '/dev/pmem0', {fs: 'ext4', mount: mnt}, deps), 'E_MOUNTPOINT_BUSY')
    expect(runner.calls).to.deep.equal([])
  })

  it('mkfs fails: the error says the device may hold a partial filesystem and nothing is mounted', async () => {
    runner.fail('mkfs.ext4', 1, 'mkfs.ext4: Device size reported to be zero.')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4', mount: mnt}, deps)
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_MKFS_FAILED')
    expect(e.message).to.contain('mkfs.ext4 failed (exit 1)').and.contain('Device size reported to be zero').and.contain('may hold a partly written filesystem; nothing is mounted')
    expect(e.details.state).to.equal('mkfs-failed')
    expect(e.exit).to.equal(6)
    expect(runner.calls.some((c) => c.program === 'mount')).to.equal(false)
  })

  it('mount fails: the filesystem is there, not mounted, and the error says so', async () => {
    runner.fail('mount', 32, 'mount: /mnt: wrong fs type, bad option, bad superblock on /dev/pmem1.')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4', mount: mnt}, deps)
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_MOUNT_FAILED')
    expect(e.message).to.contain('holds the new ext4 filesystem; it is not mounted')
    expect(e.details.state).to.equal('made')
  })

  it('DAX not in force after mounting: unmounted again, filesystem kept, said so', async () => {
    dax = false
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'xfs', mount: mnt}, deps)
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_DAX_NOT_IN_FORCE')
    expect(e.message).to.contain('statx shows no STATX_ATTR_DAX on a probe file').and.contain('was unmounted again')
    expect(e.details.state).to.equal('mounted-not-dax')
    expect(runner.calls.at(-1)).to.deep.equal({program: 'umount', args: [fs.realpathSync(mnt)]})
    expect(fs.readdirSync(mnt)).to.deep.equal([])
  })

  it('DAX not in force and umount fails: the error says it is still mounted', async () => {
    dax = false
    runner.fail('umount', 32, 'umount: target is busy.')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4', mount: mnt}, deps)
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_DAX_NOT_IN_FORCE')
    expect(e.details.state).to.equal('mounted')
    expect(e.message).to.contain(`is still mounted on ${fs.realpathSync(mnt)}`)
  })

  it('wipefs --all fails: nothing else runs; the device is unchanged', async () => {
    runner.has('/dev/pmem1', 'ext4')
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4', force: true}, deps)
    runner.fail('wipefs', 1, 'wipefs: error: /dev/pmem1: probing initialization failed: Device or resource busy')
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_WIPE_FAILED')
    expect(e.details.state).to.equal('unchanged')
    expect(runner.calls.some((c) => c.program.startsWith('mkfs'))).to.equal(false)
  })

  it('blkid finding no filesystem after mkfs is a failure, not a success', async () => {
    const plan = await planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4'}, deps)
    runner.fail('blkid', 2, '')
    const e = await rejects(executeMkfsDax(fx.host(), plan, deps), 'E_MKFS_FAILED')
    expect(e.message).to.contain('blkid finds no filesystem')
  })

  it('a tool that is not installed: the error names the package; nothing was written', async () => {
    runner.uninstall('wipefs')
    await rejects(planMkfsDax(fx.host(), '/dev/pmem1', {fs: 'ext4'}, deps), 'E_PROGRAM_MISSING')
    expect(runner.writes()).to.deep.equal([])
  })

  it('an iopmem disk: kind iopmem and the BAR address in the alignment', async () => {
    const plan = await planMkfsDax(fx.host(), '/dev/iopmem0', {fs: 'ext4'}, deps)
    expect(plan.target.disk.kind).to.equal('iopmem')
    expect(plan.alignment.physicalStart).to.equal('0x0000000800000000')
    expect(plan.backing).to.deep.include({kind: 'iopmem', bdf: BDF.ivshmem, bar: 2})
  })
})
