/**
 * The one runner for bad-input tables: each case runs once as typed and once
 * with --json, must fail with the case's exit code and message (the error
 * envelope and its code under --json), and the table's own checks (fixture
 * unchanged, nothing written, nothing run…) follow each run.
 */
import {expect} from 'chai'

import type {CliResult} from './cli.js'

export interface BadInputCase {
  exit: number
  message: RegExp
  /** The error code expected in the --json envelope. */
  code?: string
}

/** One case made ready to run. */
export interface Arranged {
  args: string[]
  run(args: string[]): Promise<CliResult> | CliResult
  /** Checks after a run: `plain` after the run as typed, `json` after the --json one. */
  check?(phase: 'plain' | 'json'): void
  cleanup?(): Promise<void> | void
}

export interface BadInputTable<C extends BadInputCase> {
  /** The describe() title. */
  title: string
  cases: C[]
  /** The table's size, at least. */
  atLeast: number
  label(c: C): string
  arrange(c: C): Promise<Arranged> | Arranged
  /** Where stderr's "Error: " must be: at the start (default) or anywhere (output streamed before it). */
  errorAnywhere?: boolean
  /** Also run every case with --json (default true). */
  json?: boolean
  /** Around the table: set up and restore the environment. */
  before?: () => void
  after?: () => void
}

export function badInputTable<C extends BadInputCase>(t: BadInputTable<C>): void {
  describe(t.title, () => {
    if (t.before) before(t.before)
    if (t.after) after(t.after)
    it(`has at least ${t.atLeast} cases`, () => expect(t.cases.length).to.be.at.least(t.atLeast))

    for (const c of t.cases) {
      it(`${t.label(c)} → exit ${c.exit}`, async () => {
        let a: Arranged | undefined
        try {
          a = await t.arrange(c)
          const r = await a.run(a.args)
          expect(r.exit, r.stderr + r.stdout).to.equal(c.exit)
          expect(r.stderr).to.match(t.errorAnywhere ? /Error: / : /^Error: /)
          expect(r.stderr).to.match(c.message)
          a.check?.('plain')
          if (t.json === false) return
          // The same case under --json: the error envelope, the same exit code.
          const j = await a.run([...a.args, '--json'])
          expect(j.exit).to.equal(c.exit)
          expect(j.json?.error?.message, j.stdout + j.stderr).to.match(c.message)
          if (c.code) expect(j.json.error.code).to.equal(c.code)
          a.check?.('json')
        } finally {
          await a?.cleanup?.()
        }
      })
    }
  })
}

/** A case's arguments as a label: each JSON-quoted. */
export function argsLabel(args: string[]): string {
  return args.map((a) => JSON.stringify(a)).join(' ')
}
