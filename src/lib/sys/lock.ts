/** Per-device locks (flock on a file under /run/lock/iopmem) so two iopmem processes never change one PCI function or block device at once. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError} from './errors.js'
import {childProcess, findProgram} from './exec.js'
import type {Effects} from './effects.js'
import type {Host} from './host.js'
import {interruptedError, SignalGuard, STOP_SIGNALS, type StopSignal} from './signals.js'

/**
 * A lock is flock(2) LOCK_EX on /run/lock/iopmem/NAME.lock. The kernel drops
 * it when the process dies however it dies (the open file description goes
 * away), so a crashed or killed iopmem never leaves a stale lock behind; the
 * pid written into the file only names the holder in the refusal.
 *
 * Node has no flock(2). The lock is taken by util-linux's flock(1) on a
 * descriptor this process opened and hands to it as fd 3 (`flock -n 3`): a
 * flock belongs to the open file description, which this process keeps
 * after flock(1) exits, so the lock is ours from then on, and no helper
 * process stays behind holding it. (npm's fs-ext would need a compiler at
 * install time; a new addon function would need a rebuilt prebuild.)
 *
 * Under fixture roots the locks live in the fixture's own run directory
 * (beside its sys/), never in the host's /run.
 */
export function lockDir(host: Host): string {
  return host.isLive ? '/run/lock/iopmem' : path.join(path.dirname(host.roots.sysfs), 'run', 'lock', 'iopmem')
}

/** The file the lock `name` is taken on. */
export function lockFile(host: Host, name: string): string {
  return path.join(lockDir(host), safeName(name) + '.lock')
}

export interface LockOptions {
  /** Wait for the holder to finish instead of refusing. */
  wait?: boolean
  /**
   * A dry run's: no lock is taken (no lock file or directory is made, nobody is kept
   * waiting, a holder is not waited for); the lock a real run would take is listed.
   */
  effects?: Effects
}

export class DeviceLock {
  private fd: number | undefined
  constructor(
    readonly name: string,
    readonly file: string,
    fd: number,
  ) {
    this.fd = fd
  }

  /** Let go (also done by the kernel when the process exits). */
  release(): void {
    if (this.fd === undefined) return
    try {
      fs.ftruncateSync(this.fd, 0)
    } catch {
      /* the lock goes with the descriptor anyway */
    }
    fs.closeSync(this.fd)
    this.fd = undefined
  }
}

/** A lock name for a file name: letters, digits and . : _ - only. */
function safeName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9.:_-]{0,120}$/.test(name)) throw new Error(`lock: bad lock name ${JSON.stringify(name)}`)
  return name
}

/** The lock directory, made 0755 if missing, and refused if it is a link or others can write it. */
function openDir(dir: string): void {
  fs.mkdirSync(dir, {recursive: true, mode: 0o755})
  const st = fs.lstatSync(dir)
  const uid = process.geteuid ? process.geteuid() : st.uid
  if (!st.isDirectory() || (st.mode & 0o022) !== 0 || (st.uid !== uid && st.uid !== 0)) {
    throw new IopmemError(`The lock directory ${dir} is not a directory owned by root (or you) and writable only by its owner; refusing to use it.`, {
      code: 'E_LOCK_DIR',
      exit: Exit.REFUSED,
      suggestions: [`Remove it (it holds only lock files): rm -r ${dir}`],
    })
  }
}

function flockArgs(wait: boolean): string[] {
  return wait ? ['--exclusive', '3'] : ['--exclusive', '--nonblock', '3']
}

function flockProgram(): string {
  const p = findProgram('flock')
  if (!p) {
    throw new IopmemError('flock is not installed (Debian package util-linux): iopmem needs it to lock devices.', {
      code: 'E_PROGRAM_MISSING',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Install it: sudo apt-get install util-linux'],
    })
  }
  return p
}

function holderOf(fd: number): number | undefined {
  try {
    const buf = Buffer.alloc(32)
    const n = fs.readSync(fd, buf, 0, 32, 0)
    const pid = Number.parseInt(buf.toString('utf8', 0, n).trim(), 10)
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Take the lock NAME (e.g. `pci-0000:03:00.0`, `block-pmem1`): refused with
 * E_LOCKED (exit 5) naming the holder's pid, or, with `wait`, waits for it.
 * `what` names the device for the message.
 */
export async function acquireLock(host: Host, name: string, what: string, opts: LockOptions = {}): Promise<DeviceLock> {
  openDir(lockDir(host))
  const file = lockFile(host, name)
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o644)
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new IopmemError(`The lock file ${file} is not a regular file; refusing to use it.`, {code: 'E_LOCK_DIR', exit: Exit.REFUSED})
    const flock = flockProgram()
    let code = runFlock(flock, flockArgs(false), fd)
    if (code !== 0 && opts.wait) code = await runFlockAsync(flock, flockArgs(true), fd, what)
    if (code !== 0) {
      const pid = holderOf(fd)
      throw new IopmemError(`${what} is being changed by another iopmem${pid ? ` (pid ${pid})` : ''}; refusing to change it at the same time.`, {
        code: 'E_LOCKED',
        exit: Exit.REFUSED,
        suggestions: ['Pass --wait to wait for it to finish.'],
        details: {lock: file, holder: pid ?? null},
      })
    }
    fs.ftruncateSync(fd, 0)
    fs.writeSync(fd, `${process.pid}\n`, 0)
    return new DeviceLock(name, file, fd)
  } catch (error) {
    fs.closeSync(fd)
    throw error
  }
}

function runFlock(flock: string, args: string[], fd: number): number {
  const r = childProcess().spawnSync(flock, args, {stdio: ['ignore', 'ignore', 'ignore', fd]})
  return r.status ?? 1
}

/** Wait for the lock; a stop signal ends the wait (E_INTERRUPTED, nothing changed) and takes flock(1) with it. */
function runFlockAsync(flock: string, args: string[], fd: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(flock, args, {stdio: ['ignore', 'ignore', 'ignore', fd]})
    let signal: StopSignal | undefined
    const stop = () => child.kill('SIGTERM')
    const onSignal = (sig: StopSignal) => {
      signal ??= sig
      stop()
    }
    process.once('exit', stop)
    for (const sig of STOP_SIGNALS) process.on(sig, onSignal)
    const done = () => {
      process.off('exit', stop)
      for (const sig of STOP_SIGNALS) process.off(sig, onSignal)
    }
    child.on('error', () => {
      done()
      resolve(1)
    })
    child.on('close', (code) => {
      done()
      if (signal) reject(interruptedError(`Interrupted (${signal}) while waiting for ${what}; nothing was changed.`, signal, {state: 'unchanged'}))
      else resolve(code ?? 1)
    })
  })
}

/** Take several locks in a fixed (sorted) order, so two processes cannot deadlock; all or none. */
export async function acquireLocks(host: Host, names: Array<{name: string; what: string}>, opts: LockOptions = {}): Promise<DeviceLock[]> {
  const held: DeviceLock[] = []
  try {
    for (const n of [...names].sort((a, b) => a.name.localeCompare(b.name))) {
      if (!held.some((h) => h.name === n.name)) held.push(await acquireLock(host, n.name, n.what, opts))
    }
    return held
  } catch (error) {
    for (const h of held) h.release()
    throw error
  }
}

/**
 * Run `fn` under a SignalGuard while holding the lock `name` (see acquireLock): the one
 * shape of every multi-step change, from before its in-use check to its last write.
 */
export async function withLock<T>(host: Host, name: string, what: string, opts: LockOptions, fn: (guard: SignalGuard) => Promise<T>): Promise<T> {
  if (opts.effects?.dryRun) {
    opts.effects.lock(lockFile(host, name), what)
    // Nothing is changed, so nothing needs a stop signal held back: a released guard lets one end the dry run at once.
    const inert = new SignalGuard()
    inert.release()
    return fn(inert)
  }
  const guard = new SignalGuard()
  try {
    const lock = await acquireLock(host, name, what, opts)
    try {
      return await fn(guard)
    } finally {
      lock.release()
    }
  } finally {
    guard.release()
  }
}
