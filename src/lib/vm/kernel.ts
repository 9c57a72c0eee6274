/** Finds the guest kernel: the one named, else the repository's own vm/kernel/bzImage, checked against its SHA-256 sum. */
import {createHash} from 'node:crypto'
import {closeSync, openSync, readFileSync, readSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {packageRoot} from '../sys/index.js'

/** iopmem's cache (`$XDG_CACHE_HOME/iopmem`, else `~/.cache/iopmem`): initramfs, helpers, the kernel build tree. */
export function iopmemCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache')
  return join(base, 'iopmem')
}

/** The folder of the repository's own guest kernel: bzImage, config, extmod.tar.xz, SHA256SUMS, SOURCE. */
export function bundledKernelDir(root = packageRoot()): string {
  return join(root, 'vm', 'kernel')
}

export class KernelNotFoundError extends Error {
  readonly code = 'ENOKERNEL'
  constructor(
    readonly tried: string[],
    detail?: string,
  ) {
    super(
      [
        `No usable guest kernel for the iopmem VM harness${detail ? ` (${detail})` : ''}.`,
        `Looked at: ${tried.join(', ') || '(nothing)'}.`,
        'The repository carries its own kernel in vm/kernel/ (bzImage, checked against vm/kernel/SHA256SUMS):',
        '  - a fresh clone has it; if it is missing or changed, restore it: git checkout -- vm/kernel',
        '  - or rebuild it byte for byte (about 15 min on 2 cores, Debian package linux-source-6.12):',
        '      scripts/build-kernel.sh',
        '  - or point at another bzImage built with CONFIG_PCI_P2PDMA: IOPMEM_VM_KERNEL=PATH (or --kernel PATH).',
      ].join('\n'),
    )
    this.name = 'KernelNotFoundError'
  }
}

export interface KernelInfo {
  path: string
  /** The version string from the bzImage header, e.g. "6.12.117 (iopmem@iopmem) #1 SMP ...". */
  version?: string
  /** The release, e.g. "6.12.117". */
  release?: string
  /** Where it came from: the caller's option, IOPMEM_VM_KERNEL, or the repository's vm/kernel. */
  source: 'option' | 'env' | 'bundled'
  /** SHA-256 of the image (checked against SHA256SUMS for the bundled kernel). */
  sha256?: string
}

/** Read the x86 boot header of a bzImage: returns undefined when the file is not one. */
export function readKernelInfo(path: string): Omit<KernelInfo, 'source'> | undefined {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const head = Buffer.alloc(0x400)
    if (readSync(fd, head, 0, head.length, 0) < 0x210) return undefined
    if (head.toString('ascii', 0x202, 0x206) !== 'HdrS') return undefined
    const ptr = head.readUInt16LE(0x20e)
    if (ptr === 0) return {path}
    const ver = Buffer.alloc(256)
    const n = readSync(fd, ver, 0, ver.length, ptr + 0x200)
    const s = ver.subarray(0, n).toString('latin1')
    const version = s.slice(0, s.indexOf('\0') >= 0 ? s.indexOf('\0') : s.length)
    return {path, version, release: version.split(' ')[0]}
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/** The `sha256sum` lines of a SHA256SUMS file, by file name. */
export function parseSha256Sums(text: string): Map<string, string> {
  const sums = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](\S.*)$/.exec(line.trim())
    if (m) sums.set(m[2], m[1])
  }
  return sums
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/**
 * Find the guest kernel: `explicit`, else `$IOPMEM_VM_KERNEL`, else the repository's
 * vm/kernel/bzImage, whose SHA-256 must match vm/kernel/SHA256SUMS (a truncated clone, a
 * Git LFS pointer or a hand-edited image is refused rather than booted).
 * Throws KernelNotFoundError (whose message says how to get one); never falls back silently.
 */
export function resolveKernel(explicit?: string, env: NodeJS.ProcessEnv = process.env, root = packageRoot()): KernelInfo {
  let path: string
  let source: KernelInfo['source']
  let from: string
  if (explicit) [path, source, from] = [resolve(explicit), 'option', 'the kernel option']
  else if (env.IOPMEM_VM_KERNEL) [path, source, from] = [resolve(env.IOPMEM_VM_KERNEL), 'env', 'IOPMEM_VM_KERNEL']
  else [path, source, from] = [join(bundledKernelDir(root), 'bzImage'), 'bundled', "the repository's own kernel"]
  let st
  try {
    st = statSync(path)
  } catch {
    throw new KernelNotFoundError([path], `${from} names ${path}, which does not exist`)
  }
  if (!st.isFile()) throw new KernelNotFoundError([path], `${path} is not a regular file`)
  const info = readKernelInfo(path)
  if (!info) throw new KernelNotFoundError([path], `${path} is not an x86 bzImage`)
  if (source !== 'bundled') return {...info, source}

  const sumsPath = join(bundledKernelDir(root), 'SHA256SUMS')
  let want: string | undefined
  try {
    want = parseSha256Sums(readFileSync(sumsPath, 'utf8')).get('bzImage')
  } catch {
    throw new KernelNotFoundError([path], `${sumsPath} is missing`)
  }
  if (!want) throw new KernelNotFoundError([path], `${sumsPath} has no line for bzImage`)
  const got = sha256File(path)
  if (got !== want) throw new KernelNotFoundError([path], `${path} has SHA-256 ${got}, but SHA256SUMS says ${want}`)
  return {...info, source, sha256: got}
}
