/** The guest's private directories (its state directory and its cache): made 0700 by us, or an existing one the user owns; no symlink followed. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {euid, Exit, IopmemError, SafetyCode} from '../sys/index.js'

function refuse(dir: string, why: string, what: string): never {
  throw new IopmemError(`Refusing ${what} ${dir}: ${why}.`, {
    code: SafetyCode.STATE_DIR,
    exit: Exit.REFUSED,
    path: dir,
    suggestions: [`Give a path that does not exist yet (it is created, mode 0700), or an empty directory you own that only you can write.`],
  })
}

/**
 * Make `dir` a private directory, or accept an existing one, and return its
 * real path. Missing components are created one by one, mode 0700, each in a
 * parent that lstat shows is a real directory (a symlinked component we would
 * create in is refused), and each checked after mkdir (a directory owned by
 * us, not a symlink swapped in). An existing `dir` must be a real directory
 * (not a symlink), owned by the user, writable by no one else, and — when
 * `mustBeEmpty` (a state directory: its files are created, truncated and
 * removed) — empty.
 */
export function privateDir(dir: string, opts: {mustBeEmpty: boolean; what?: string}): {dir: string; created: boolean} {
  const what = opts.what ?? 'the state directory'
  if (dir === '' || /[\0\n\r]/.test(dir)) refuse(JSON.stringify(dir), 'it is not a usable path', what)
  const abs = path.resolve(dir)
  const me = euid()
  const st = fs.lstatSync(abs, {throwIfNoEntry: false})
  if (st) {
    if (st.isSymbolicLink()) refuse(abs, 'it is a symbolic link (not followed)', what)
    if (!st.isDirectory()) refuse(abs, 'it exists and is not a directory', what)
    if (st.uid !== me) refuse(abs, `it is owned by uid ${st.uid}, not you (uid ${me}), and was not created by iopmem`, what)
    if ((st.mode & 0o022) !== 0) refuse(abs, `others can write it (mode ${(st.mode & 0o7777).toString(8)})`, what)
    if (opts.mustBeEmpty) {
      const n = fs.readdirSync(abs).length
      if (n > 0) refuse(abs, `it is not empty (${n} entr${n === 1 ? 'y' : 'ies'}) and was not created by iopmem`, what)
    }
    return {dir: fs.realpathSync(abs), created: false}
  }
  // The missing components, outermost first.
  const missing: string[] = []
  let p = abs
  while (!fs.lstatSync(p, {throwIfNoEntry: false})) {
    missing.unshift(p)
    const up = path.dirname(p)
    if (up === p) break
    p = up
  }
  for (const c of missing) {
    const parent = path.dirname(c)
    const ps = fs.lstatSync(parent)
    if (ps.isSymbolicLink()) refuse(abs, `${parent}, where it would be created, is a symbolic link`, what)
    if (!ps.isDirectory()) refuse(abs, `${parent} is not a directory`, what)
    try {
      fs.mkdirSync(c, {mode: 0o700})
    } catch (error) {
      refuse(abs, `${c} cannot be created (${(error as Error).message})`, what)
    }
    const cs = fs.lstatSync(c)
    if (!cs.isDirectory() || cs.uid !== me) refuse(abs, `${c} changed while it was being created`, what)
  }
  return {dir: fs.realpathSync(abs), created: true}
}
