/** What guest tests share: a command's stdout as JSON, checked against its schema, or an error that shows what the command printed. */
import type {RunResult} from '../../src/lib/vm/index.js'
import {commandIdOf, expectSchema} from './schemas.js'

/**
 * The command's stdout as JSON. When it was `node bin/run.js … --json`, the
 * document is also checked against the command's schema (docs/schemas; the
 * error envelope's when it is one): what only the guest can produce (driver
 * build/install/load, topo --probe, bench p2p on p2pmem) is checked there.
 */
export function guestJson(r: RunResult): any {
  let doc: unknown
  try {
    doc = JSON.parse(r.stdout)
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  }
  const args = r.argv[0] === 'node' && r.argv[1] === 'bin/run.js' ? r.argv.slice(2) : undefined
  if (args?.includes('--json')) expectSchema(commandIdOf(args), doc)
  return doc
}
