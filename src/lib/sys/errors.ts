/**
 * The one error type the toolkit throws for conditions a user can act on.
 * `BaseCommand` turns it into a message, suggestions, an exit code and the
 * `--json` error envelope; library code never prints.
 */

/** Exit codes: documented in the README ("Exit codes"). */
export const Exit = {
  OK: 0,
  /** Unexpected failure (a bug, or an error we did not classify). */
  FAILURE: 1,
  /** Bad input: a malformed BDF, size, flag combination, unknown driver name. */
  USAGE: 2,
  /** The thing named does not exist here: no such device, driver, file. */
  NOT_FOUND: 3,
  /** Needs privileges the caller lacks (root, lockdown). */
  PERMISSION: 4,
  /** Refused for safety: the device is in use, or a confirmation was not given. */
  REFUSED: 5,
  /** The kernel refused the operation; state was rolled back. */
  KERNEL: 6,
  /** Not possible on this machine or kernel (missing feature, no devices visible). */
  UNSUPPORTED: 7,
  /** A check of data found a difference (`map --verify`: device memory does not hold the pattern). */
  MISMATCH: 8,
  /** `check` found an item that fails: P2P will not work here until it is fixed. */
  CHECK_FAILED: 9,
  /** Interrupted by SIGINT. */
  INTERRUPTED: 130,
} as const

export type ExitCode = (typeof Exit)[keyof typeof Exit]

/**
 * Codes of the root-safety refusals (docs/json-and-exit-codes.md, "Safety
 * refusals"; docs/safety.md says what each guards).
 */
export const SafetyCode = {
  /** A path on the live system would reach an external program while the roots are a fixture (exit 7). */
  NOT_LIVE: 'E_NOT_LIVE',
  /** A test seam (IOPMEM_INSMOD, IOPMEM_VM_QEMU, …) names a program root must not run (exit 4). */
  UNTRUSTED_SEAM: 'E_UNTRUSTED_SEAM',
  /** A module file root must not load: not owned by root, or writable by others, or its directories (exit 5). */
  UNTRUSTED_MODULE: 'E_UNTRUSTED_MODULE',
  /** A module file that cannot be one: not a regular file, a symlink, over the size limit (exit 2). */
  BAD_MODULE: 'E_BAD_MODULE',
  /** A sandbox state or cache directory that is a symlink, not empty, not the user's, or writable by others (exit 5). */
  STATE_DIR: 'E_STATE_DIR',
} as const

export interface IopmemErrorOptions {
  /** Machine-readable code, e.g. `E_BDF_SYNTAX`, `E_IN_USE`, or an errno name. */
  code: string
  exit?: ExitCode
  suggestions?: string[]
  errno?: number
  syscall?: string
  path?: string
  /** Extra structured detail for `--json` consumers. */
  details?: Record<string, unknown>
  cause?: unknown
}

export class IopmemError extends Error {
  readonly code: string
  readonly exit: ExitCode
  readonly suggestions: string[]
  readonly errno?: number
  readonly syscall?: string
  readonly path?: string
  readonly details?: Record<string, unknown>

  constructor(message: string, opts: IopmemErrorOptions) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'IopmemError'
    this.code = opts.code
    this.exit = opts.exit ?? Exit.FAILURE
    this.suggestions = opts.suggestions ?? []
    this.errno = opts.errno
    this.syscall = opts.syscall
    this.path = opts.path
    this.details = opts.details
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      exit: this.exit,
      suggestions: this.suggestions,
      ...(this.errno === undefined ? {} : {errno: this.errno}),
      ...(this.syscall === undefined ? {} : {syscall: this.syscall}),
      ...(this.path === undefined ? {} : {path: this.path}),
      ...(this.details === undefined ? {} : {details: this.details}),
    }
  }
}

export function usage(message: string, code: string, suggestions: string[] = []): IopmemError {
  return new IopmemError(message, {code, exit: Exit.USAGE, suggestions})
}

/** A Node.js system error (from fs, child_process) as seen by us. */
export interface SystemError extends Error {
  code?: string
  errno?: number
  syscall?: string
  path?: string
}

export function isSystemError(e: unknown, code?: string): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && (code === undefined || (e as SystemError).code === code)
}
