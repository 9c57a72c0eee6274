import {Command} from '@oclif/core/command'
// oclif's run path has loaded it by the time a command runs (and esbuild's bundle gives a dynamic import of it no names).
import {Config} from '@oclif/core/config'
import * as Errors from '@oclif/core/errors'
import * as Flags from '@oclif/core/flags'

import {errorEnvelope, Exit, getHost, type Host, IopmemError, isSystemError, setBulkReader, versioned} from './lib/sys/index.js'
import {bulkReader} from './native/index.js'
import type {ChalkInstance} from 'chalk'

// A scan of many devices reads sysfs in a few addon calls (Host.readMany); the addon is
// loaded on the first such read, and without it the host reads file by file.
setBulkReader(bulkReader)

/**
 * What every iopmem command shares: `--json` (the run() result is printed as
 * JSON with `schemaVersion` first; errors become `{"schemaVersion", "error": {code, message, exit, suggestions, …}}`),
 * one mapping from IopmemError to message and exit code, colours that
 * respect NO_COLOR, and the rules for asking a person: prompts only on a
 * TTY, never under --json, and a destructive step without a TTY needs --yes.
 */
export abstract class BaseCommand extends Command {
  static enableJsonFlag = true

  /** Shared by commands with a destructive step. */
  static confirmFlags = {
    yes: Flags.boolean({char: 'y', description: 'Proceed without asking for confirmation (required when not on a TTY).'}),
  }

  /** `--dry-run` of the commands that change the machine (docs/vocabulary.md): every check, no change, no question; `exclusive`: flags it does not cover. */
  static dryRunFlag(exclusive: string[] = []) {
    return {
      'dry-run': Flags.boolean({
        char: 'n',
        description: 'Print the sysfs writes and commands the real run would make, in order, and change nothing: every check runs, nothing is asked, no lock is taken, and root is needed only where the checks need it.',
        exclusive,
      }),
    }
  }

  /**
   * oclif's warning for a deprecated flag name, also when the value is attached:
   * oclif looks for the bare word (`--mode`, `-d`) in argv, so `--mode=p2pmem` and
   * `-duio_pci_generic` reached the flag without a word said.
   */
  protected warnIfFlagDeprecated(flags: Record<string, unknown>): void {
    const typed = this.argv
    const end = typed.indexOf('--')
    this.argv = typed.map((a, i) => {
      if (end >= 0 && i >= end) return a
      if (a.startsWith('--')) return a.includes('=') ? a.slice(0, a.indexOf('=')) : a
      return /^-[a-zA-Z]./.test(a) ? a.slice(0, 2) : a
    })
    try {
      super.warnIfFlagDeprecated(flags)
    } finally {
      this.argv = typed
    }
  }

  protected get host(): Host {
    return getHost()
  }

  /** Colours for stdout (or another stream); chalk is loaded only when something is rendered for a person. */
  protected async colors(stream: NodeJS.WriteStream = process.stdout): Promise<ChalkInstance> {
    const {colorsFor} = await import('./ui/color.js')
    return colorsFor(stream)
  }

  /** A person is at the keyboard and nothing asked for machine output. */
  protected interactive(): boolean {
    return Boolean(process.stdin.isTTY && process.stdout.isTTY) && !this.jsonEnabled() && !process.env.CI
  }

  /** Progress and notes for a person: stderr, and silent under --json. */
  protected note(message: string): void {
    if (!this.jsonEnabled()) process.stderr.write(message + '\n')
  }

  /**
   * Ask before a destructive step. With --yes, go on; on a TTY, ask; otherwise
   * refuse with a message that says to pass --yes.
   */
  protected async confirmOrRefuse(question: string, yes: boolean | undefined, what: string): Promise<void> {
    if (yes) return
    if (!this.interactive()) {
      throw new IopmemError(`Refusing to ${what} without confirmation: not on a terminal.`, {
        code: 'E_CONFIRM',
        exit: Exit.REFUSED,
        suggestions: ['Pass --yes to confirm.'],
      })
    }
    const {confirm} = await import('@inquirer/prompts')
    const ok = await confirm({message: question, default: false})
    if (!ok) throw new IopmemError('Cancelled; nothing was changed.', {code: 'E_CANCELLED', exit: Exit.REFUSED})
  }

  /**
   * End a command that a stop signal cut short (`result.interrupted`): under
   * --json the result, which states where things were left, is the one
   * document on stdout; either way the exit status is 130. A person has
   * already been shown the result; the message says what it means.
   */
  protected stopInterrupted(result: unknown, message: string): never {
    if (this.jsonEnabled()) {
      this.logJson(result)
      this.exit(Exit.INTERRUPTED)
    }
    throw new IopmemError(message, {code: 'E_INTERRUPTED', exit: Exit.INTERRUPTED})
  }

  /**
   * JSON for machines is written as is; oclif's colorizer (which tokenises the
   * whole document) is kept for a person looking at --json on a terminal.
   */
  logJson(json: unknown): void {
    const doc = versioned(json)
    if (process.stdout.isTTY && !process.env.NO_COLOR) {
      super.logJson(doc)
      return
    }
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n')
  }

  protected toIopmemError(err: unknown): IopmemError {
    if (err instanceof Errors.ExitError) throw err
    return toIopmemError(err, this.id)
  }

  async catch(error: Error & {exitCode?: number}): Promise<void> {
    if (error instanceof Errors.ExitError) throw error
    const e = this.toIopmemError(error)
    if (process.env.DEBUG && e.code === 'E_INTERNAL') process.stderr.write(String((error as Error).stack) + '\n')
    if (this.jsonEnabled()) {
      this.logJson(errorEnvelope(e))
    } else {
      await printError(e)
    }
    this.exit(e.exit)
  }
}

/** The named fields of an object (flags that a lib option takes under the same name). */
export function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>
  for (const k of keys) out[k] = from[k]
  return out
}

/**
 * A command's examples, written as they are typed: one a line, the arguments
 * after the command (none: the line starts with the `#`), then `#` and what it
 * does (`sudo` in front where root is needed). Each becomes `<%= config.bin %> <%= command.id %> ARGS` for oclif,
 * which fills in the binary and the command's name.
 */
export function examples(lines: string): Command.Example[] {
  return lines
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const parts = /^(.*?)(?:^| )# (.*)$/.exec(line)
      if (!parts) throw new Error(`example without a description: ${line}`)
      const typed = parts[1].trim()
      const sudo = typed === 'sudo' || typed.startsWith('sudo ')
      const args = (sudo ? typed.slice(4) : typed).trim()
      const command = `${sudo ? 'sudo ' : ''}<%= config.bin %> <%= command.id %>${args ? ' ' + args : ''}`
      return {command, description: parts[2].trim()}
    })
}

/**
 * Any error as an IopmemError: oclif's parse errors become bad input (E_USAGE)
 * with the whole message, system errors keep their errno, the rest are bugs.
 * `id` is the command's (for the "see --help" suggestion).
 */
export function toIopmemError(err: unknown, id?: string): IopmemError {
  if (err instanceof IopmemError) return err
  const oclif = (err as {oclif?: {exit?: number}}).oclif
  if (err instanceof Error && oclif && typeof oclif.exit === 'number') {
    // Parse errors: missing/unknown flags and arguments. The whole message
    // (a missing argument's name and description are on its second line),
    // without oclif's colours and its "See more help with --help" line,
    // which the suggestion says.
    return new IopmemError(parseErrorMessage(err.message), {
      code: 'E_USAGE',
      exit: oclif.exit === 2 ? Exit.USAGE : Exit.FAILURE,
      suggestions: [`See \`iopmem ${id?.replaceAll(':', ' ') ?? ''} --help\`.`.replace('  ', ' ')],
    })
  }
  if (err instanceof Error && err.name === 'ExitPromptError') {
    return new IopmemError('Cancelled; nothing was changed.', {code: 'E_CANCELLED', exit: Exit.INTERRUPTED})
  }
  if (isSystemError(err)) {
    const perm = err.code === 'EACCES' || err.code === 'EPERM'
    return new IopmemError(err.message, {
      code: err.code ?? 'EIO',
      errno: err.errno,
      syscall: err.syscall,
      path: err.path,
      exit: systemErrorExit(err.code),
      suggestions: perm ? ['Run as root (sudo).'] : [],
    })
  }
  const msg = err instanceof Error ? err.message : String(err)
  return new IopmemError(`Unexpected error: ${msg}`, {
    code: 'E_INTERNAL',
    exit: Exit.FAILURE,
    suggestions: ['Set DEBUG=iopmem to see the stack, and report it.'],
    cause: err,
  })
}

/**
 * The exit code of a system error no lib code classified: what the user can
 * fix is not a bug (1). A missing path is 3, a path of the wrong kind 2, no
 * permission 4, a full or read-only filesystem 7.
 */
export function systemErrorExit(code: string | undefined): (typeof Exit)[keyof typeof Exit] {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return Exit.PERMISSION
    case 'ENOENT':
    case 'ENOTDIR':
      return Exit.NOT_FOUND
    case 'EISDIR':
    case 'ELOOP':
    case 'ENAMETOOLONG':
    case 'EEXIST':
      return Exit.USAGE
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EROFS':
    case 'EFBIG':
      return Exit.UNSUPPORTED
    default:
      return Exit.FAILURE
  }
}

/** An error for a person, on stderr: the message, then one line per suggestion. */
export async function printError(e: IopmemError, suggestions: string[] = e.suggestions): Promise<void> {
  const {colorsFor} = await import('./ui/color.js')
  const c = colorsFor(process.stderr)
  const lines = [`${c.red.bold('Error:')} ${e.message}`, ...suggestions.map((s) => `  ${c.dim('→')} ${s}`)]
  process.stderr.write(lines.join('\n') + '\n')
}

/** oclif's parse error message, whole, without ANSI colours or the trailing "See more help with --help". */
export function parseErrorMessage(message: string): string {
  return message
    .replaceAll(/\u001B\[[0-9;]*m/g, '')
    .split('\n')
    .filter((line) => line.trim() !== 'See more help with --help')
    .join('\n')
    .trim()
}

/**
 * bin/run.js hands here what no BaseCommand caught: errors of the plugins'
 * commands (`iopmem help lst`, `iopmem help --json`, `iopmem autocomplete
 * fish`). oclif's own handler prints them its way, and for a parse error
 * under `help` it shows help for the same arguments, which throws again and
 * prints two stacks. Errors oclif raised on purpose (they carry an exit code)
 * are reported like ours — the JSON envelope on stdout under --json, else
 * "Error: …" on stderr — and `help` naming no command gets did-you-mean.
 * Returns the exit code, or undefined for oclif's handler (exits, bugs).
 */
export async function reportUncaught(error: unknown, argv: string[], root: string): Promise<number | undefined> {
  if (error instanceof Errors.ExitError) return undefined
  if (!(error instanceof Error) || typeof (error as {oclif?: {exit?: unknown}}).oclif?.exit !== 'number') return undefined
  const args = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length)
  const json = args.includes('--json')
  let e: IopmemError
  const missing = /^Command (\S+) not found\.$/.exec(error.message)
  if (missing && args[0] === 'help') {
    const {unknownCommand} = await import('./hooks/command-not-found.js')
    e = unknownCommand(await Config.load(root), missing[1].split(':'), [])
  } else {
    e = toIopmemError(error, args[0] === 'help' || args[0] === 'autocomplete' ? args[0] : undefined)
  }
  if (json) process.stdout.write(JSON.stringify(errorEnvelope(e), null, 2) + '\n')
  else await printError(e, e.code === 'E_UNKNOWN_COMMAND' ? [`Run \`${String(e.details?.help)}\` to see the commands.`] : e.suggestions)
  return e.exit
}
