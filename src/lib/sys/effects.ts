/** The one seam through which bind, unbind, mkfs-dax and driver load change the machine: each change made, or in a dry run (`--dry-run`) only recorded. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError} from './errors.js'
import {badEtcFile, checkEtcDir, removeEtcFile, writeEtcFile} from './etcfile.js'
import type {Host} from './host.js'
import {SCHEMA_VERSION} from './json.js'

/**
 * A step of a change, as a dry run lists it. Paths are the kernel's names
 * (/sys/..., /dev/...), as `host.display` shows them, whatever the roots.
 *
 * - `write`: `value` (exactly the bytes written, newline included) into the sysfs attribute `file`
 * - `run`: an external program with this argv (argv[0] the program as run: a name, or the
 *   stand-in a seam such as IOPMEM_INSMOD names); `fd3`: the file it gets as its fd 3
 * - `lock`: the lock held from the checks to the last step (flock on `file`)
 * - `then`: what the real run does next with the result of an earlier step (reads back a
 *   link, checks what a program printed): a dry run cannot know the result, so it says so
 * - `mkdir`: a directory made (mode 0755) under /etc, for `--persist`'s files
 * - `write-file`: a file under /etc replaced atomically with exactly `content`
 *   (a temporary file beside it, renamed over it: etcfile.ts)
 * - `remove`: a file under /etc removed
 */
export type Step =
  | {kind: 'write'; file: string; value: string}
  | {kind: 'run'; argv: string[]; fd3?: string}
  | {kind: 'lock'; file: string; what: string}
  | {kind: 'then'; text: string}
  | {kind: 'mkdir'; file: string}
  | {kind: 'write-file'; file: string; content: string}
  | {kind: 'remove'; file: string}

/** The kinds of step that change something (the others say how and when). */
export const CHANGE_KINDS: ReadonlySet<Step['kind']> = new Set(['write', 'run', 'mkdir', 'write-file', 'remove'])

/**
 * The changes a command makes all pass through one Effects: a real one
 * performs each (Host.write, the program run) and records nothing; a dry one
 * records each step and performs none. The code that decides which writes
 * and which programs is the same in both, so the list a dry run prints is
 * the list a real run makes. Checks (reading sysfs and /proc, opening a
 * module file, `wipefs --no-act`) run in both: a dry run refuses what the
 * real run would refuse, with the same error.
 */
export class Effects {
  readonly steps: Step[] = []
  /** The real run would stop here for lack of root (skipped in a dry run, where it is only about permission to write). */
  needsRoot: string | null = null

  /** Directories a dry run has listed as made: later steps see them as the real run would. */
  private made = new Set<string>()

  constructor(readonly dryRun: boolean) {}

  /** Write a sysfs attribute (Host.write, with its checks), or in a dry run record it. */
  write(host: Host, file: string, value: string): void {
    if (!this.dryRun) {
      host.write(file, value)
      return
    }
    // The same rule as Host.write: a path outside the sysfs root is a bug, dry or not.
    if (!file.startsWith(host.roots.sysfs + '/')) throw new Error(`Effects.write: ${file} is not under the sysfs root ${host.roots.sysfs}`)
    this.steps.push({kind: 'write', file: host.display(file), value})
  }

  /**
   * Run a program through `real` (which returns its result), or in a dry run
   * record `argv` (as shown: the kernel's names) and return undefined.
   */
  run<T>(argv: string[], real: () => T, extra: {fd3?: string} = {}): T | undefined {
    if (!this.dryRun) return real()
    this.steps.push({kind: 'run', argv, ...(extra.fd3 === undefined ? {} : {fd3: extra.fd3})})
    return undefined
  }

  /**
   * Make `dir` (under the etc root) and its missing parents, each checked (checkEtcDir).
   * A dry run checks the deepest existing directory as the real run would, and
   * lists each one the real run would make, outermost first.
   */
  etcDir(host: Host, dir: string, owner: number): void {
    if (!this.dryRun) {
      checkEtcDir(dir, owner, true)
      return
    }
    const missing: string[] = []
    for (let d = dir; !this.made.has(d) && !checkEtcDir(d, owner, false); d = path.dirname(d)) missing.unshift(d)
    for (const d of missing) {
      this.made.add(d)
      this.steps.push({kind: 'mkdir', file: host.display(d)})
    }
  }

  /** Replace a file under the etc root with `content` (writeEtcFile: atomic), or in a dry run record it with its exact content. */
  writeEtcFile(host: Host, file: string, content: string, hooks: {beforeRename?: (temp: string) => void} = {}): void {
    if (!this.dryRun) {
      writeEtcFile(file, content, hooks)
      return
    }
    const st = fs.lstatSync(file, {throwIfNoEntry: false})
    // The real write's own refusal, made before its rename.
    if (st && !st.isFile() && !st.isSymbolicLink()) throw badEtcFile(file, 'it is not a regular file, so it is not replaced')
    this.steps.push({kind: 'write-file', file: host.display(file), content})
  }

  /** Remove a file under the etc root (removeEtcFile); false when it was not there. A dry run records it when it is there. */
  removeEtcFile(host: Host, file: string): boolean {
    if (!this.dryRun) return removeEtcFile(file)
    const st = fs.lstatSync(file, {throwIfNoEntry: false})
    if (st === undefined) return false
    if (st.isDirectory()) throw badEtcFile(file, 'it is not a file, so it is not removed')
    this.steps.push({kind: 'remove', file: host.display(file)})
    return true
  }

  /** Record what the real run does next with an earlier step's result (dry run only). */
  then(text: string): void {
    if (this.dryRun) this.steps.push({kind: 'then', text})
  }

  /** Record the lock a real run takes (dry run only: a dry run takes none). */
  lock(file: string, what: string): void {
    if (this.dryRun) this.steps.push({kind: 'lock', file, what})
  }

  /**
   * The real run's root check. It refuses (E_NOT_ROOT, exit 4) in a real run;
   * a dry run notes it and goes on, for a check that is only about permission
   * to write.
   */
  requireRoot(host: Host, message: string, suggestions = ['Run it with sudo.']): void {
    if (host.isRoot()) return
    if (this.dryRun) {
      this.needsRoot ??= message
      return
    }
    throw new IopmemError(message, {code: 'E_NOT_ROOT', exit: Exit.PERMISSION, suggestions})
  }
}

/** The Effects of a command that only ever acts for real (callers that take no --dry-run). */
export function realEffects(): Effects {
  return new Effects(false)
}

/**
 * `--dry-run --json` of bind, unbind, mkfs-dax and driver load: the command's
 * facts (as its own result names them) and the steps, in order.
 */
export interface DryRunResult {
  schemaVersion: typeof SCHEMA_VERSION
  dryRun: true
  command: string
  /** Each change the real run would make, in order; empty when there is nothing to do. */
  steps: Step[]
  /** The real run needs root, which this process lacks (the message it would stop with), else null. */
  needsRoot: string | null
}

export function dryRunResult<T extends object>(command: string, effects: Effects, facts: T): DryRunResult & T {
  return {schemaVersion: SCHEMA_VERSION, dryRun: true, command, ...facts, steps: effects.steps, needsRoot: effects.needsRoot}
}
