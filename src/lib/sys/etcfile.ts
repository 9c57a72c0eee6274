/** Small configuration files root keeps under /etc: directories checked before use, bounded reads on one descriptor, and atomic replacement (temp file + rename). */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError} from './errors.js'
import {untrustedReason} from './trust.js'

/**
 * The files `bind --persist` keeps (its records and its udev rule) decide
 * what root does at every boot, so:
 *
 * - a directory is used only when it is a real directory (not a symlink),
 *   owned by `owner` (root on the live system) or root, and writable by no
 *   one else, nor any directory above it (untrustedReason); missing ones are
 *   made 0755 one component at a time, never through a symlink;
 * - a file is read through one descriptor opened with O_NOFOLLOW and
 *   O_NONBLOCK (a symlink or a FIFO in its place is refused, never followed
 *   or waited on), checked on that descriptor (regular, owned by `owner`,
 *   not group/other-writable, at most `max` bytes) and read bounded;
 * - a file is written whole to a new temporary file beside it (O_CREAT |
 *   O_EXCL | O_NOFOLLOW, so nothing that already exists is reused), synced,
 *   and renamed over the old one: a reader sees the old file or the new one,
 *   never half of either, and a write interrupted at any point (even by
 *   SIGKILL or a power cut) leaves the old file as it was and, at worst, a
 *   temporary file that TEMP_RE recognises and the next write removes.
 */

export const TEMP_RE = /^\.(.+)\.tmp-\d+$/

export function badEtcFile(file: string, why: string, code = 'E_BAD_RECORD', exit: (typeof Exit)[keyof typeof Exit] = Exit.REFUSED): IopmemError {
  return new IopmemError(`Refusing to use ${file}: ${why}.`, {
    code,
    exit,
    path: file,
    suggestions: [`Look at it, and remove it if it is not yours: sudo rm -- '${file}'`],
  })
}

/** Check a directory for use (and make it, with its missing parents, when `create`): see above. Returns false when it is missing and not created. */
export function checkEtcDir(dir: string, owner: number, create: boolean): boolean {
  const st = fs.lstatSync(dir, {throwIfNoEntry: false})
  if (st === undefined) {
    if (!create) return false
    checkEtcDir(path.dirname(dir), owner, true)
    try {
      fs.mkdirSync(dir, {mode: 0o755})
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError(dir, error)
    }
    return checkEtcDir(dir, owner, false)
  }
  if (st.isSymbolicLink()) throw badEtcFile(dir, 'it is a symbolic link, and iopmem does not follow one where root keeps its configuration', 'E_ETC_DIR')
  if (!st.isDirectory()) throw badEtcFile(dir, 'it is not a directory', 'E_ETC_DIR')
  if (st.uid !== owner && st.uid !== 0) throw badEtcFile(dir, `it is owned by uid ${st.uid}, not ${owner === 0 ? 'root' : `uid ${owner}`}`, 'E_ETC_DIR')
  if ((st.mode & 0o022) !== 0) throw badEtcFile(dir, `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`, 'E_ETC_DIR')
  const above = untrustedReason(st, dir, st.uid)
  if (above) throw badEtcFile(dir, above, 'E_ETC_DIR')
  return true
}

function writeError(file: string, error: unknown): IopmemError {
  const e = error as NodeJS.ErrnoException
  const perm = e.code === 'EACCES' || e.code === 'EPERM'
  return new IopmemError(`Cannot write ${file}: ${e.message}`, {
    code: e.code ?? 'EIO',
    exit: perm ? Exit.PERMISSION : e.code === 'EROFS' || e.code === 'ENOSPC' ? Exit.UNSUPPORTED : Exit.FAILURE,
    path: file,
    suggestions: perm ? ['Run it with sudo.'] : [],
  })
}

/** The text of a file kept under /etc, checked as above; undefined when it does not exist. */
export function readEtcFile(file: string, owner: number, max: number): string | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP') throw badEtcFile(file, 'it is a symbolic link')
    throw badEtcFile(file, `it cannot be opened (${(error as Error).message})`, 'E_BAD_RECORD', code === 'EACCES' ? Exit.PERMISSION : Exit.REFUSED)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw badEtcFile(file, 'it is not a regular file')
    if (st.uid !== owner) throw badEtcFile(file, `it is owned by uid ${st.uid}, not ${owner === 0 ? 'root' : `uid ${owner}`}`)
    if ((st.mode & 0o022) !== 0) throw badEtcFile(file, `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`)
    if (st.size > max) throw badEtcFile(file, `it is ${st.size} bytes, more than the ${max} such a file can hold`)
    const buf = Buffer.alloc(max + 1)
    let n = 0
    while (n < buf.length) {
      const got = fs.readSync(fd, buf, n, buf.length - n, n)
      if (got === 0) break
      n += got
    }
    if (n > max) throw badEtcFile(file, `it is more than ${max} bytes`)
    const text = buf.subarray(0, n)
    if (text.includes(0)) throw badEtcFile(file, 'it holds a NUL byte: it is not a text file')
    return text.toString('utf8')
  } finally {
    fs.closeSync(fd)
  }
}

/** Replace `file` with `content` atomically (see above); its directory must already have passed checkEtcDir. */
export function writeEtcFile(file: string, content: string, hooks: {beforeRename?: (temp: string) => void} = {}): void {
  const dir = path.dirname(file)
  const temp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}`)
  removeStaleTemps(dir, path.basename(file))
  let fd: number
  try {
    fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
  } catch (error) {
    throw writeError(file, error)
  }
  try {
    try {
      fs.fchmodSync(fd, 0o644)
      fs.writeSync(fd, content)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    hooks.beforeRename?.(temp)
    const st = fs.lstatSync(file, {throwIfNoEntry: false})
    if (st && !st.isFile() && !st.isSymbolicLink()) throw badEtcFile(file, 'it is not a regular file, so it is not replaced')
    // rename(2) replaces a symlink in file's place, never what it points to.
    fs.renameSync(temp, file)
  } catch (error) {
    fs.rmSync(temp, {force: true})
    throw error instanceof IopmemError ? error : writeError(file, error)
  }
  syncDir(dir)
}

/** Remove `file` (a symlink in its place is removed itself, never followed); false when it was not there. */
export function removeEtcFile(file: string): boolean {
  try {
    fs.unlinkSync(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return false
    if (code === 'EISDIR' || code === 'EPERM') throw badEtcFile(file, 'it is not a file, so it is not removed')
    throw writeError(file, error)
  }
  syncDir(path.dirname(file))
  return true
}

/** Temporary files an interrupted write of `name` left behind (TEMP_RE): the next write removes them. */
function removeStaleTemps(dir: string, name: string): void {
  for (const f of fs.readdirSync(dir)) {
    const m = TEMP_RE.exec(f)
    if (m && m[1] === name) fs.rmSync(path.join(dir, f), {force: true})
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
    fs.fsyncSync(fd)
  } catch {
    /* the rename is done; a directory that cannot be synced only delays it reaching the disk */
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
