/** Running external programs (wipefs, blkid, mkfs, mount) safely, replaceably for tests. */
import type * as ChildProcess from 'node:child_process'
import * as fs from 'node:fs'
import {constants as osConstants} from 'node:os'
import * as path from 'node:path'

import {Exit, IopmemError} from './errors.js'
import type {Host, ProgramArg} from './host.js'
import {trackChild} from './signals.js'

/**
 * The external programs iopmem runs (mkfs.ext4, mkfs.xfs, wipefs, blkid,
 * mount, umount): always an argument array handed to spawn(2), never a shell
 * string, with stdin closed (a program that would prompt reads EOF and gives
 * up instead of hanging) and LC_ALL=C (output we parse stays stable).
 *
 * The runner is replaceable (`setRunner`) so tests can observe exactly what
 * would have run, and prove that nothing ran.
 */

export interface ExecResult {
  /** Exit status; 128+n when killed by signal n (as a shell reports it). */
  code: number
  stdout: string
  stderr: string
}

export interface Runner {
  /**
   * Run `program` (a bare name, looked up in PATH and the sbin directories)
   * with `args`. Resolves with the exit status and output; rejects with an
   * IopmemError E_PROGRAM_MISSING (naming the Debian package) when the
   * program is not installed.
   */
  run(program: string, args: string[], opts?: {timeoutMs?: number}): Promise<ExecResult>
  /**
   * Whether run() would find `program` (false: it would reject with
   * E_PROGRAM_MISSING). Asked before a change's first step, so a missing
   * program is refused before anything changed, in a dry run as in the real one.
   */
  installed?(program: string): boolean
  /**
   * A stand-in that plays the kernel's world under the kernel's names (the
   * tests' fake wipefs/mkfs): it is handed /dev/pmem7 as shown, not the
   * fixture's file. Real runners leave this unset and get the real paths.
   */
  readonly kernelNames?: boolean
}

/**
 * The gate every external program of mkfs-dax and bench p2p passes: the argv
 * is built by the host from words and ProgramPaths it mapped itself
 * (host.programPath), so under fixture roots no host path can reach the
 * program. Returns the result and the argv as shown (kernel names).
 */
export async function runProgram(host: Host, runner: Runner, program: string, args: readonly ProgramArg[], opts?: {timeoutMs?: number}): Promise<ExecResult & {argv: string[]}> {
  const real = host.argv(args, runner.kernelNames ? 'shown' : 'real')
  const r = await runner.run(program, real, opts)
  return {...r, argv: [program, ...host.argv(args, 'shown')]}
}

/** Debian package of each program we run, for the "not installed" message. */
export const PROGRAM_PACKAGES: Record<string, string> = {
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  blkid: 'util-linux',
  wipefs: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  filefrag: 'e2fsprogs',
  insmod: 'kmod',
  modprobe: 'kmod',
  rmmod: 'kmod',
}

/** sbin directories are searched too: a normal user's PATH often lacks them. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin']

/** The absolute path of a program, or undefined when it is not installed. */
export function findProgram(program: string, envPath = process.env.PATH ?? ''): string | undefined {
  if (!/^[A-Za-z0-9._-]+$/.test(program)) throw new Error(`findProgram: not a bare program name: ${JSON.stringify(program)}`)
  const dirs = [...envPath.split(path.delimiter).filter((d) => d.startsWith('/')), ...EXTRA_DIRS]
  for (const d of dirs) {
    const p = path.join(d, program)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      if (fs.statSync(p).isFile()) return p
    } catch {
      // next
    }
  }
  return undefined
}

/**
 * Whether spawn finds `program` as named: a path (a seam such as IOPMEM_INSMOD) must be an
 * executable regular file; a bare name is looked up in `envPath`, as execvp(3) does.
 */
export function onPath(program: string, envPath = process.env.PATH ?? ''): boolean {
  const isExec = (p: string) => {
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return fs.statSync(p).isFile()
    } catch {
      return false
    }
  }
  if (program.includes('/')) return isExec(program)
  return envPath.split(path.delimiter).some((d) => isExec(path.join(d || '.', program)))
}

/** Refuse (E_PROGRAM_MISSING) the first of `programs` that `installed` cannot find. */
export function requireInstalled(programs: readonly string[], installed: (program: string) => boolean): void {
  const missing = programs.find((p) => !installed(p))
  if (missing !== undefined) throw programMissing(missing)
}

export function programMissing(program: string): IopmemError {
  const pkg = PROGRAM_PACKAGES[program]
  return new IopmemError(`${program} is not installed${pkg ? ` (Debian package ${pkg})` : ''}.`, {
    code: 'E_PROGRAM_MISSING',
    exit: Exit.UNSUPPORTED,
    suggestions: [pkg ? `Install it: sudo apt-get install ${pkg} (or run scripts/install-deps.sh).` : `Install ${program}.`],
    details: {program, package: pkg ?? null},
  })
}

/**
 * child_process, loaded on the first spawn rather than with the library: most
 * commands (`list`, `topo`, `--version`) spawn nothing, and it costs each of them
 * a few ms of start-up (docs/speed.md).
 */
export function childProcess(): typeof ChildProcess {
  return process.getBuiltinModule('node:child_process')
}

/** The real runner: spawn with an argument array, no shell. */
export const processRunner: Runner = {
  installed: (program) => findProgram(program) !== undefined,
  run(program, args, opts = {}) {
    const file = findProgram(program)
    if (!file) return Promise.reject(programMissing(program))
    return new Promise((resolve, reject) => {
      const child = childProcess().spawn(file, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {...process.env, LC_ALL: 'C', LANG: 'C'},
        timeout: opts.timeoutMs ?? 600_000,
        killSignal: 'SIGKILL',
      })
      // A stop signal that iopmem holds back is passed on, so the program ends before iopmem reports.
      const untrack = trackChild(child)
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (b: Buffer) => out.push(b))
      child.stderr.on('data', (b: Buffer) => err.push(b))
      child.on('error', (e) => {
        untrack()
        reject(e)
      })
      child.on('close', (code, signal) => {
        untrack()
        const sig = signal ? ((osConstants.signals as Record<string, number>)[signal] ?? 9) : 0
        resolve({code: code ?? 128 + sig, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8')})
      })
    })
  },
}

let current: Runner | undefined

/** The runner in force: the real one unless a test installed another. */
export function getRunner(): Runner {
  return current ?? processRunner
}

/** Install a runner (tests), or undefined to go back to the real one. */
export function setRunner(r: Runner | undefined): void {
  current = r
}

/** The last lines of a program's stderr (or stdout), for an error message. */
export function outputTail(r: ExecResult, lines = 6): string {
  const text = (r.stderr.trim() || r.stdout.trim()).split('\n')
  return text.slice(-lines).join('\n')
}
