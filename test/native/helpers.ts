/**
 * Helpers of the native addon tests: the loaded addon, scratch files on a
 * filesystem that answers FIEMAP (never tmpfs), and error assertions.
 * Nothing here touches /sys, /dev/mem or a PCI device.
 */
import {expect} from 'chai'
import {spawnSync, type SpawnSyncReturns} from 'node:child_process'
import {randomFillSync} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

import {loadNative, type Native} from '../../src/native/index.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export function native(): Native {
  return loadNative()
}

/** Assert that fn throws an error whose `code` is `code`; returns it. */
export function throwsCode(fn: () => unknown, code: string): Error & {code: string; errno?: number; syscall?: string; path?: string} {
  try {
    fn()
  } catch (err) {
    const e = err as Error & {code: string}
    expect(e.code, `${e.message}`).to.equal(code)
    return e
  }
  expect.fail(`expected an error with code ${code}`)
}

/** Run `script` (an ES module body) in a child node with tsx, from the checkout. */
export function tsxChild(script: string, options: {env?: NodeJS.ProcessEnv; timeout?: number} = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, ...options})
}

export function randomBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  randomFillSync(b)
  return b
}

const EXT_MAGIC = 0xef53
const XFS_MAGIC = 0x5846_5342
const BTRFS_MAGIC = 0x9123_683e

/**
 * A scratch directory on a filesystem with FIEMAP (ext4/xfs/btrfs): the OS
 * temp dir if it is one, else one under the checkout (its fs). Removed by
 * the returned cleanup.
 */
export function realFsDir(prefix: string): {dir: string; fsType: number; cleanup(): void} {
  for (const base of [os.tmpdir(), path.join(ROOT, 'test', 'native')]) {
    let type: number
    try {
      type = Number(fs.statfsSync(base).type)
    } catch {
      continue
    }
    if (type === EXT_MAGIC || type === XFS_MAGIC || type === BTRFS_MAGIC) {
      const dir = fs.mkdtempSync(path.join(base, `.${prefix}-`))
      return {dir, fsType: type, cleanup: () => fs.rmSync(dir, {recursive: true, force: true})}
    }
  }
  throw new Error('no ext4/xfs/btrfs directory found for FIEMAP tests (os.tmpdir() and the checkout are elsewhere)')
}

/** A scratch directory anywhere (tmpfs is fine). */
export function tmpDir(prefix: string): {dir: string; cleanup(): void} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`))
  return {dir, cleanup: () => fs.rmSync(dir, {recursive: true, force: true})}
}

/** /dev/shm if it is there and writable. */
export function devShm(): string | undefined {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK)
    return '/dev/shm'
  } catch {
    return undefined
  }
}

/** Whether the kernel has hugetlb pages free for a MFD_HUGETLB memfd. */
export function hugepagesFree(): number {
  try {
    const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}
