/**
 * locate-vs-filefrag: whole-process `iopmem locate --json FILE` against
 * `filefrag -v FILE` on the same file, in the same run, at 100k and 1M
 * extents. Both map the file with FIEMAP; the difference is everything
 * else: process start-up (iopmem pays Node's and oclif's) and the work per
 * extent, which decides at 1M. Goal: iopmem faster than filefrag at 1M.
 *
 * The files: every other 4 KiB block fallocate'd (xfs_io, one process, one
 * command per block), so each block is its own extent (holes between them);
 * on ext4 they are unwritten extents. They live in a temp directory on a
 * block-device filesystem (os.tmpdir(), else the checkout) and are removed
 * afterwards by a detached `rm -rf`: on ext4 mounted with `discard`, freeing
 * a million extents issues a million discards and takes many minutes. The file's device is described to iopmem by a fixture sysfs
 * (as an NVMe namespace), so the run does not depend on this machine's
 * /sys; FIEMAP is real.
 *
 * Timing: interleaved runs, median of BENCH_LOCATE_RUNS (default 5), stdout
 * to /dev/null for both (what `time tool > /dev/null` measures).
 */
import {spawn, spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {loadNative} from '../src/native/index.js'
import {SysfsFixture} from '../test/helpers/sysfs-fixture.js'
import {median} from './stats.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BLOCK = 4096
const SIZES = [100_000, 1_000_000]

/** A directory on a filesystem with a real block device and FIEMAP, or undefined. */
function scratchDir(): string | undefined {
  const n = loadNative()
  for (const base of [os.tmpdir(), ROOT, '/var/tmp']) {
    let dir: string | undefined
    try {
      dir = fs.mkdtempSync(path.join(base, '.iopmem-locate-bench-'))
      if (n.statx(dir).devMajor === 0) throw new Error('no block device')
      const probe = path.join(dir, 'probe')
      fs.writeFileSync(probe, 'x')
      n.fiemap(probe)
      fs.rmSync(probe)
      return dir
    } catch {
      if (dir) fs.rmSync(dir, {recursive: true, force: true})
    }
  }
  return undefined
}

/** A file of `extents` separate 4 KiB extents: every other block fallocate'd. */
function makeFile(file: string, extents: number): void {
  const cmds: string[] = []
  for (let i = 0; i < extents; i++) cmds.push(`falloc ${i * 2 * BLOCK} ${BLOCK}`)
  const r = spawnSync('xfs_io', ['-f', file], {input: cmds.join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'], maxBuffer: 1 << 26})
  if (r.error || r.status !== 0) throw new Error(`xfs_io (xfsprogs) could not make ${file}: ${r.error?.message ?? r.stderr}`)
}

function timeRun(cmd: string, args: string[], env: NodeJS.ProcessEnv, devNull: number): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(cmd, args, {env, stdio: ['ignore', devNull, 'pipe']})
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return ms
}

export async function locateBench(): Promise<boolean> {
  const runs = Number(process.env.BENCH_LOCATE_RUNS ?? 5)
  const dir = scratchDir()
  console.log(`locate-vs-filefrag (whole process, median of ${runs}, stdout to /dev/null)`)
  if (!dir) {
    console.log('  no directory on a block-device filesystem with FIEMAP (tried the temp dir, the checkout, /var/tmp): not measured')
    return false
  }
  const fx = new SysfsFixture()
  const devNull = fs.openSync('/dev/null', 'w')
  let met = false
  try {
    const st = loadNative().statx(dir)
    const dev = `${st.devMajor}:${st.devMinor}`
    fx.addDisk('pci0000:00/0000:00:03.0/nvme/nvme0', {name: 'nvme0n1', dev, sizeBytes: 2 ** 50, nsid: 1})
    fx.mount({id: Number(st.mntId), dev, source: '/dev/nvme0n1', target: '/', fstype: 'ext4'})
    const env = {...process.env, ...fx.env(), NO_COLOR: '1'}
    const bin = path.join(ROOT, 'bin/run.js')
    for (const n of SIZES) {
      const file = path.join(dir, `every-other-block-${n}`)
      const t0 = Date.now()
      makeFile(file, n)
      // Check once (piped): the JSON parses and has one extent per block.
      const check = spawnSync(process.execPath, [bin, 'locate', '--json', file], {env, encoding: 'utf8', maxBuffer: 1 << 30})
      if (check.status !== 0) throw new Error(`iopmem locate failed: ${check.stderr}`)
      const count = JSON.parse(check.stdout).extents.length
      if (count !== n) throw new Error(`expected ${n} extents in ${file}, iopmem locate found ${count}`)
      const ff = spawnSync('filefrag', ['-v', file], {encoding: 'utf8', maxBuffer: 1 << 30})
      if (ff.status !== 0) throw new Error(`filefrag (e2fsprogs) failed: ${ff.stderr}`)
      const made = ((Date.now() - t0) / 1000).toFixed(1)
      const tool: number[] = []
      const base: number[] = []
      for (let i = 0; i < runs; i++) {
        base.push(timeRun('filefrag', ['-v', file], env, devNull))
        tool.push(timeRun(process.execPath, [bin, 'locate', '--json', file], env, devNull))
      }
      const t = median(tool)
      const b = median(base)
      const label = n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`
      console.log(`  ${label.padEnd(4)} extents  iopmem locate --json ${t.toFixed(0).padStart(6)} ms   filefrag -v ${b.toFixed(0).padStart(6)} ms   ratio iopmem/filefrag ${(t / b).toFixed(2)}   (file made and checked in ${made} s)`)
      if (n === SIZES.at(-1)) met = t < b
    }
    console.log(`  goal: faster than filefrag at 1M extents: ${met ? 'met' : 'NOT met'}`)
    return met
  } finally {
    fs.closeSync(devNull)
    fx.cleanup()
    removeLater(dir)
  }
}

/** rm -rf in a detached process: unlinking a 1M-extent file can take minutes (online discard). */
function removeLater(dir: string): void {
  const child = spawn('rm', ['-rf', '--', dir], {detached: true, stdio: 'ignore'})
  child.on('error', () => fs.rmSync(dir, {recursive: true, force: true}))
  child.unref()
  console.log(`  (removing ${dir} in the background: freeing a million extents can take minutes on a discard-mounted ext4)`)
}

// Run on its own: node --import tsx bench/locate.ts
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ok = await locateBench()
  process.exitCode = ok ? 0 : 1
}
