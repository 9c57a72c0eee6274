/** The guest kernel's external-module build tree for the guest tests that build the iopmem module. */
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {iopmemCacheDir, parseSha256Sums, sha256File} from '../../src/lib/vm/index.js'
import {ROOT} from './cli.js'

/** The extmod tree of the repository's guest kernel, unpacked into the cache on first use (IOPMEM_VM_KMOD_TREE names another). */
export function kmodTree(): string {
  if (process.env.IOPMEM_VM_KMOD_TREE) return process.env.IOPMEM_VM_KMOD_TREE
  const tarball = path.resolve(ROOT, 'vm/kernel/extmod.tar.xz')
  if (!fs.existsSync(tarball)) throw new Error(`No kernel build tree for the guest: set IOPMEM_VM_KMOD_TREE or restore ${tarball}`)
  const sha = sha256File(tarball)
  if (sha !== parseSha256Sums(fs.readFileSync(path.resolve(ROOT, 'vm/kernel/SHA256SUMS'), 'utf8')).get('extmod.tar.xz')) {
    throw new Error(`${tarball} does not match vm/kernel/SHA256SUMS (git checkout -- vm/kernel)`)
  }
  const dir = path.join(iopmemCacheDir(), `extmod-${sha.slice(0, 16)}`)
  if (!fs.existsSync(path.join(dir, 'Module.symvers'))) {
    fs.rmSync(`${dir}.tmp`, {recursive: true, force: true})
    fs.mkdirSync(`${dir}.tmp`, {recursive: true})
    execFileSync('tar', ['-xJf', tarball, '-C', `${dir}.tmp`])
    fs.rmSync(dir, {recursive: true, force: true})
    fs.renameSync(`${dir}.tmp`, dir)
  }
  return dir
}

/** Build the iopmem module for the guest kernel (-Werror) into `out`; returns the .ko path. */
export function buildGuestModule(out: string): string {
  execFileSync(process.execPath, [path.join(ROOT, 'bin/run.js'), 'driver', 'build', '--kdir', kmodTree(), '--out', out, '--werror'], {stdio: 'pipe'})
  return path.join(out, 'iopmem.ko')
}
