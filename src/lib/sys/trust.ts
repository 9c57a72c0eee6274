/** What root may run or load: the ownership rule for module files and the test seams (IOPMEM_INSMOD, IOPMEM_VM_QEMU, …) that name programs. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, SafetyCode} from './errors.js'
import type {Host} from './host.js'

/** The process's effective uid (-1 where there is none). */
export function euid(): number {
  return process.geteuid ? process.geteuid() : -1
}

/**
 * Who must own a file iopmem is asked to run or load. On the live system
 * root; under fixture roots (the tests) the current effective uid, so a test
 * run by a normal user can build and "load" its own module files.
 */
export function trustedOwner(host: Host): number {
  return host.isLive ? 0 : Math.max(euid(), 0)
}

/**
 * Why a file must not be trusted, or undefined when it may be: it must be
 * owned by `owner` and not writable by group or others, and so must every
 * directory up to / (a directory may also be root's; a group/other-writable
 * one only with the sticky bit, like /tmp, where no one else can replace
 * what `owner` put in it). `real` is the file's real location (no symlinks).
 */
export function untrustedReason(st: fs.Stats, real: string, owner: number): string | undefined {
  const who = (uid: number) => (uid === 0 ? 'root' : `uid ${uid}`)
  if (st.uid !== owner) return `it is owned by ${who(st.uid)}, not ${who(owner)}`
  if ((st.mode & 0o022) !== 0) return `it is writable by ${(st.mode & 0o020) === 0 ? 'others' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`
  for (let dir = path.dirname(real); ; dir = path.dirname(dir)) {
    let ds: fs.Stats
    try {
      ds = fs.lstatSync(dir)
    } catch (error) {
      return `its directory ${dir} cannot be checked (${(error as Error).message})`
    }
    if (ds.uid !== owner && ds.uid !== 0) return `its directory ${dir} is owned by ${who(ds.uid)}`
    if ((ds.mode & 0o022) !== 0 && (ds.mode & 0o1000) === 0) return `its directory ${dir} is writable by group or others (mode ${(ds.mode & 0o7777).toString(8)})`
    if (dir === path.dirname(dir)) return undefined
  }
}

/** Seams that name a program, file or directory iopmem would run, load or build from. */
export const PROGRAM_SEAMS = ['IOPMEM_MAKE', 'IOPMEM_INSMOD', 'IOPMEM_MODPROBE', 'IOPMEM_RMMOD', 'IOPMEM_DKMS', 'IOPMEM_VM_QEMU', 'IOPMEM_NATIVE', 'IOPMEM_MODULES_ROOT'] as const
export type ProgramSeam = (typeof PROGRAM_SEAMS)[number]

/** What a path names after every symlink, and its stat: the file a trust check must look at. Throws what fs throws. */
export function realStat(p: string): {real: string; st: fs.Stats} {
  const real = fs.realpathSync(p)
  return {real, st: fs.statSync(real)}
}

/**
 * The value of a seam that names something to run, load or build from, or
 * undefined when it is not set. A normal user's seams are honoured as given:
 * what they name runs with that user's rights. As root (euid 0) a seam is
 * honoured only when it names, by absolute path, a file (or, for
 * IOPMEM_MODULES_ROOT, a directory) that untrustedReason() accepts for root:
 * owned by root, not group/other-writable, nor any directory above it.
 * Otherwise E_UNTRUSTED_SEAM: an inherited environment (`sudo -E`, a
 * service's unit file) cannot make root run a program someone else controls.
 */
export function seamValue(name: ProgramSeam, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env[name]
  if (!v) return undefined
  if (euid() !== 0) return v
  const refuse = (why: string): never => {
    throw new IopmemError(`Not honouring ${name}=${v} as root: ${why}.`, {
      code: SafetyCode.UNTRUSTED_SEAM,
      exit: Exit.PERMISSION,
      suggestions: [`Unset ${name}, or point it at a file owned by root that only root can write (chown root:root; chmod go-w), in directories only root can write.`],
      details: {seam: name, value: v},
    })
  }
  if (!path.isAbsolute(v)) refuse('as root it must be an absolute path')
  let real: string
  let st: fs.Stats
  try {
    ;({real, st} = realStat(v))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return refuse(`it cannot be read (${(error as Error).message})`)
    // Missing: harmless ("not installed" follows) when no one but root can create it, i.e. the
    // nearest existing directory above it is root's and writable by no one else (not even sticky).
    let up = path.dirname(v)
    while (!fs.existsSync(up)) up = path.dirname(up)
    const us = fs.statSync(up)
    if (us.uid !== 0 || (us.mode & 0o022) !== 0) refuse(`it does not exist, and ${up} is not root's alone, so someone else could create it`)
    return v
  }
  if (name === 'IOPMEM_MODULES_ROOT' ? !st.isDirectory() : !st.isFile()) refuse(name === 'IOPMEM_MODULES_ROOT' ? 'it is not a directory' : 'it is not a regular file')
  const why = untrustedReason(st, real, 0)
  if (why) refuse(why)
  return v
}
