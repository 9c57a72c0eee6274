import {closeSync, openSync, readSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

/** Where scripts/build-kernel.sh leaves its results (`$XDG_CACHE_HOME/iopmem`, else `~/.cache/iopmem`). */
export function iopmemCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache')
  return join(base, 'iopmem')
}

/** The kernel scripts/build-kernel.sh installs: `~/.cache/iopmem/bzImage`. */
export function defaultKernelPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(iopmemCacheDir(env), 'bzImage')
}

export class KernelNotFoundError extends Error {
  readonly code = 'ENOKERNEL'
  constructor(readonly tried: string[], detail?: string) {
    super(
      [
        `No guest kernel for the iopmem VM harness${detail ? ` (${detail})` : ''}.`,
        `Looked at: ${tried.join(', ') || '(nothing)'}.`,
        'Get one in either of these ways:',
        '  - point IOPMEM_VM_KERNEL at a bzImage built with CONFIG_PCI_P2PDMA, e.g. in this workspace:',
        '      export IOPMEM_VM_KERNEL=$PWD/../shared/vm/bzImage-6.12-p2pdma',
        '  - or build one (about 25 min on 2 cores, needs the Debian package linux-source-6.12):',
        '      scripts/build-kernel.sh        # writes ~/.cache/iopmem/bzImage',
      ].join('\n'),
    )
    this.name = 'KernelNotFoundError'
  }
}

export interface KernelInfo {
  path: string
  /** The version string from the bzImage header, e.g. "6.12.117 (root@host) #1 SMP ...". */
  version?: string
  /** The release, e.g. "6.12.117". */
  release?: string
}

/** Read the x86 boot header of a bzImage: returns undefined when the file is not one. */
export function readKernelInfo(path: string): KernelInfo | undefined {
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

/**
 * Find the guest kernel: `explicit`, else `$IOPMEM_VM_KERNEL`, else `~/.cache/iopmem/bzImage`.
 * Throws KernelNotFoundError (whose message says how to get one) when none is usable;
 * it never falls back silently to something else.
 */
export function resolveKernel(explicit?: string, env: NodeJS.ProcessEnv = process.env): KernelInfo {
  const candidates: Array<[string, string]> = []
  if (explicit) candidates.push([resolve(explicit), 'the kernel option'])
  else if (env.IOPMEM_VM_KERNEL) candidates.push([resolve(env.IOPMEM_VM_KERNEL), 'IOPMEM_VM_KERNEL'])
  else candidates.push([defaultKernelPath(env), 'the build-kernel.sh cache'])
  const [path, from] = candidates[0]
  let st
  try {
    st = statSync(path)
  } catch {
    throw new KernelNotFoundError([path], `${from} names ${path}, which does not exist`)
  }
  if (!st.isFile()) throw new KernelNotFoundError([path], `${path} is not a regular file`)
  const info = readKernelInfo(path)
  if (!info) throw new KernelNotFoundError([path], `${path} is not an x86 bzImage`)
  return info
}
