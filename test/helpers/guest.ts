/** What guest tests share: a command's stdout as JSON, or an error that shows what the command printed. */
import type {RunResult} from '../../src/lib/vm/index.js'

export function guestJson(r: RunResult): any {
  try {
    return JSON.parse(r.stdout)
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  }
}
