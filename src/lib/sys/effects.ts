/** The one seam through which bind, unbind, mkfs-dax and driver load change the machine: each change made, or in a dry run (`--dry-run`) only recorded. */
import {Exit, IopmemError} from './errors.js'
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
 */
export type Step =
  | {kind: 'write'; file: string; value: string}
  | {kind: 'run'; argv: string[]; fd3?: string}
  | {kind: 'lock'; file: string; what: string}
  | {kind: 'then'; text: string}

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
