/** Checking a file a command will write (--copy-out, --plot) before any work starts. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, usage} from './errors.js'

/**
 * An output file must be writable as a regular file: its directory exists
 * and is writable, and the path is not a directory, device, FIFO or socket
 * (a symlink is followed: what it points to is judged). Returns the
 * absolute path. Every failure is the user's to fix (exit 2, 3 or 4), found
 * before anything is mapped, measured or written.
 */
export function checkOutputPath(file: string, flag: string): string {
  if (file === '' || file.includes('\0')) throw usage(`${flag} needs a file name.`, 'E_NO_FILE')
  const abs = path.resolve(file)
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(abs)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new IopmemError(`${flag} ${file}: ${(error as Error).message}`, {code: code ?? 'EIO', exit: code === 'EACCES' ? Exit.PERMISSION : Exit.USAGE})
  }
  if (st && !st.isFile()) {
    const what = st.isDirectory() ? 'a directory' : st.isBlockDevice() ? 'a block device' : st.isCharacterDevice() ? 'a character device' : st.isFIFO() ? 'a FIFO' : 'not a regular file'
    throw usage(`${flag} ${file} is ${what}: give a regular file to write.`, 'E_NOT_REGULAR')
  }
  const dir = path.dirname(abs)
  let dst: fs.Stats
  try {
    dst = fs.statSync(dir)
  } catch {
    throw new IopmemError(`${flag} ${file}: the directory ${dir} does not exist.`, {code: 'E_NO_DIR', exit: Exit.NOT_FOUND, suggestions: [`Create it first: mkdir -p ${dir}`]})
  }
  if (!dst.isDirectory()) throw usage(`${flag} ${file}: ${dir} is not a directory.`, 'E_NO_DIR')
  try {
    fs.accessSync(st ? abs : dir, fs.constants.W_OK)
  } catch {
    throw new IopmemError(`${flag} ${file}: ${st ? 'the file' : `the directory ${dir}`} is not writable.`, {code: 'EACCES', exit: Exit.PERMISSION})
  }
  return abs
}
