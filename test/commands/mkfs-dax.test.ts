import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cli} from '../helpers/cli.js'
import {daxMachine, FakeRunner, installDaxDeps} from '../helpers/dax.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

describe('iopmem mkfs-dax', () => {
  let fx: SysfsFixture
  let runner: FakeRunner
  let mnt: string
  beforeEach(async () => {
    fx = await daxMachine()
    runner = new FakeRunner()
    await installDaxDeps({runner, statxDax: async () => true, pageSize: async () => 4096})
    mnt = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-mkfs-cmd-')))
  })
  afterEach(async () => {
    await installDaxDeps({})
    fx.cleanup()
    fs.rmSync(mnt, {recursive: true, force: true})
  })

  it('makes ext4, mounts it with -o dax and prints a summary', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--mount', mnt, '--yes'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout.split('\n')).to.deep.equal([
      '✓ ext4 on /dev/pmem1 (1022 MiB, fsdax pmem)',
      '  block size  4096 (page size 4096)',
      '  alignment   2 MiB stripe; starts at physical 0x140200000, 2 MiB aligned: huge (PMD) faults possible',
      '  UUID        aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      `  mounted     on ${mnt} with -o dax; DAX confirmed (statx STATX_ATTR_DAX on a probe file)`,
      '',
    ])
    expect(runner.writes().map((c) => c.program)).to.deep.equal(['mkfs.ext4', 'mount'])
  })

  it('--json: the documented shape, with every command run', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--fs', 'xfs', '--yes', '--json'], fx)
    expect(r.exit, r.stdout).to.equal(0)
    expect(Object.keys(r.json)).to.deep.equal(['schemaVersion', 'device', 'disk', 'kind', 'size', 'filesystem', 'uuid', 'blockSize', 'pageSize', 'alignment', 'erased', 'mount', 'commands', 'warnings', 'notes'])
    expect(r.json).to.deep.include({device: '/dev/pmem1', disk: '/dev/pmem1', kind: 'pmem', filesystem: 'xfs', mount: null, erased: []})
    expect(r.json.commands.map((c: any) => c.argv.join(' '))).to.deep.equal([
      'mkfs.xfs -b size=4096 -d su=2m,sw=1,agcount=2 -m reflink=0 /dev/pmem1', // 1022 MiB: below 1 GiB
      'blkid --probe --output export /dev/pmem1',
    ])
  })

  it('without a terminal it needs --yes, after the checks, and writes nothing', async () => {
    const r = await cli(['mkfs-dax', '/dev/pmem1'], fx)
    expect(r.exit).to.equal(5)
    expect(r.stderr).to.contain('Refusing to make a filesystem on /dev/pmem1 without confirmation: not on a terminal.')
    expect(runner.writes()).to.deep.equal([])
  })

  it('an existing filesystem is shown and refused; --force erases it and says so', async () => {
    runner.has('/dev/pmem1', 'xfs')
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--yes'], fx)
    expect(r.exit).to.equal(5)
    expect(r.stderr).to.contain('/dev/pmem1 is not empty; refusing to overwrite what it holds:\n  - xfs at offset 0x0 of /dev/pmem1')
    expect(runner.writes()).to.deep.equal([])
    const f = await cli(['mkfs-dax', '/dev/pmem1', '--force'], fx)
    expect(f.exit, f.stderr).to.equal(0)
    expect(f.stdout).to.contain('erased first: xfs on /dev/pmem1')
    expect(runner.writes().map((c) => [c.program, ...c.args].join(' '))).to.deep.equal([
      'wipefs --all /dev/pmem1',
      'mkfs.ext4 -F -b 4096 -E stride=512,stripe_width=512 /dev/pmem1',
    ])
  })

  it('a failure after mkfs states what the device holds (--json: details.state)', async () => {
    runner.fail('mount', 32, 'mount: wrong fs type')
    const r = await cli(['mkfs-dax', '/dev/pmem1', '--mount', mnt, '--yes', '--json'], fx)
    expect(r.exit).to.equal(6)
    expect(r.json.error).to.deep.include({code: 'E_MOUNT_FAILED'})
    expect(r.json.error.details.state).to.equal('made')
    expect(r.json.error.message).to.contain('State: /dev/pmem1 holds the new ext4 filesystem; it is not mounted.')
  })

  it('a misaligned partition is made with a warning', async () => {
    fs.writeFileSync(path.join(fx.sys, 'class/block/pmem0p1/start'), '4097\n')
    const r = await cli(['mkfs-dax', 'pmem0p1', '--yes'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.contain('NOT 2 MiB aligned').and.contain('warning: the filesystem does not start on a 2 MiB boundary')
  })
})
