/**
 * The real mkfs.ext4 / mkfs.xfs / wipefs / blkid, run by the real runner with
 * mkfs-dax's own command lines, on temp image files this test creates (never
 * a device, never mounted): the geometry DAX needs is really there, and the
 * probes read what the tools wrote.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {mkfsArgv, parseBlkidExport, probeSignatures} from '../../src/lib/dax/index.js'
import {processRunner} from '../../src/lib/sys/exec.js'
import {Host} from '../../src/lib/sys/host.js'

const MiB = 1024 * 1024

describe('mkfs-dax: the real tools on temp image files', function () {
  this.timeout(120_000)
  let dir: string
  const image = (name: string, size: number) => {
    const p = path.join(dir, name)
    fs.writeFileSync(p, '')
    fs.truncateSync(p, size)
    return p
  }
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-mkfs-'))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('ext4: 4 KiB blocks, RAID stride and stripe width 512 blocks (2 MiB); wipefs and blkid see it', async () => {
    const img = image('ext4.img', 64 * MiB)
    expect(await probeSignatures(processRunner, [img], new Host())).to.deep.equal([])
    const argv = mkfsArgv('ext4', img, {pageSize: 4096, size: 64 * MiB})
    const r = await processRunner.run(argv[0], argv.slice(1))
    expect(r.code, r.stderr).to.equal(0)
    const h = execFileSync('dumpe2fs', ['-h', img], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']})
    expect(h).to.match(/Block size:\s+4096/).and.match(/RAID stride:\s+512/).and.match(/RAID stripe width:\s+512/)
    expect(h).to.not.match(/inline_data/)
    const sigs = await probeSignatures(processRunner, [img], new Host())
    expect(sigs).to.have.length(1)
    expect(sigs[0]).to.deep.include({device: img, type: 'ext4', offset: '0x438'})
    const b = await processRunner.run('blkid', ['--probe', '--output', 'export', img])
    expect(parseBlkidExport(b.stdout)).to.deep.include({TYPE: 'ext4', BLOCK_SIZE: '4096'})
  })

  it('xfs: refuses to overwrite ext4 without -f; with it: 4 KiB blocks, 2 MiB stripe unit, no reflink, 2 AGs below 1 GiB', async () => {
    const img = image('xfs.img', 512 * MiB)
    const e = mkfsArgv('ext4', img, {pageSize: 4096, size: 512 * MiB})
    expect((await processRunner.run(e[0], e.slice(1))).code).to.equal(0)
    const plain = mkfsArgv('xfs', img, {pageSize: 4096, size: 512 * MiB})
    const refused = await processRunner.run(plain[0], plain.slice(1))
    expect(refused.code).to.not.equal(0)
    expect(refused.stderr).to.contain('appears to contain an existing filesystem')
    const forced = mkfsArgv('xfs', img, {pageSize: 4096, size: 512 * MiB, force: true})
    const r = await processRunner.run(forced[0], forced.slice(1))
    expect(r.code, r.stderr).to.equal(0)
    const db = execFileSync('xfs_db', ['-r', '-c', 'version', '-c', 'sb 0', '-c', 'p blocksize unit width agcount features_ro_compat', img], {encoding: 'utf8'})
    expect(db).to.match(/blocksize = 4096/).and.match(/unit = 512/).and.match(/width = 512/).and.match(/agcount = 2/)
    expect(db).to.not.match(/REFLINK/)
    const ro = /features_ro_compat = (0x[0-9a-f]+|\d+)/.exec(db)
    expect(Number(ro![1]) & 0x4, 'XFS_SB_FEAT_RO_COMPAT_REFLINK').to.equal(0)
    const sigs = await probeSignatures(processRunner, [img], new Host())
    expect(sigs.map((s) => s.type)).to.deep.equal(['xfs'])
  })

  it('xfs below 300 MiB is refused by mkfs.xfs itself, as mkfs-dax says before running it', async () => {
    const img = image('small.img', 299 * MiB)
    const argv = mkfsArgv('xfs', img, {pageSize: 4096, size: 299 * MiB})
    const r = await processRunner.run(argv[0], argv.slice(1))
    expect(r.code).to.not.equal(0)
    expect(r.stderr).to.contain('must be larger than 300MB')
  })

  it('an xfs stripe of 2 MiB without agcount=2 fails below 1 GiB (why mkfs-dax adds it)', async () => {
    const img = image('geom.img', 512 * MiB)
    const r = await processRunner.run('mkfs.xfs', ['-b', 'size=4096', '-d', 'su=2m,sw=1', '-m', 'reflink=0', img])
    expect(r.code).to.not.equal(0)
  })
})
