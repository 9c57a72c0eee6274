/** One `iopmem map` from start to end: resolve the target, plan the operation, ask, map, run it (or a session), hold, unmap. */
import {loadNative, releaseOnExit} from '../../native/index.js'
import type {Mapping, Native} from '../../native/types.js'
import {formatBytes, type Host, IopmemError, SignalGuard} from '../sys/index.js'
import {holdFor} from './hold.js'
import {type MapOpResult, type MapResult, parseHold, planFromFlags, runOperationUntil} from './plan.js'
import {explainMapError, type MapFacts, type ModeRequest, openMapping, resolveTarget, type ResolvedTarget} from './target.js'

export interface MapRequest {
  target: string
  bar?: string
  p2pmem?: string
  mode: ModeRequest
  hold?: string
  /** The operation flags as parsed (read, write, value, width, …). */
  flags: Record<string, unknown>
}

/** What the command supplies: the person-facing parts. */
export interface MapHooks {
  /** A terminal, so no operation means an interactive session. */
  interactive(): boolean
  /** Ask before a write (throws when refused). */
  confirm(question: string, refusal: string): Promise<void>
  /** Run the interactive session on the mapping; returns the steps taken. */
  session(native: Native, mapping: Mapping, facts: MapFacts): Promise<number>
  /** Show the facts or the operation's outcome (before any hold). */
  show(facts: MapFacts, op: MapOpResult | null, session: boolean): Promise<void>
  note(line: string): void
}

export async function runMap(host: Host, req: MapRequest, hooks: MapHooks): Promise<MapResult> {
  // The addon is loaded only here, when something is mapped: `list` and `--help` work without it.
  let native: Native | undefined
  const getNative = (): Native => (native ??= loadNative())
  const resolved = resolveTarget(host, {target: req.target, bar: req.bar, p2pmem: req.p2pmem, mode: req.mode}, () => getNative())
  const plan = planFromFlags(req.flags, resolved)
  const hold = req.hold === undefined ? undefined : parseHold(req.hold)
  const session = plan.kind === 'none' && hold === undefined && hooks.interactive()
  const destructive = plan.kind === 'write' || plan.kind === 'fill' || plan.kind === 'copy-in'
  if (destructive) {
    const bytes = plan.kind === 'write' ? plan.values.length * plan.width : plan.size
    await hooks.confirm(
      `Write ${formatBytes(bytes)} to ${describeTarget(resolved)} at 0x${plan.offset.toString(16)}? Device memory is changed in place.`,
      `write to ${describeTarget(resolved)}`,
    )
  }

  const n = getNative()
  releaseOnExit({signals: true})
  const {mapping, facts} = openMapping(host, n, resolved, {writable: destructive || session})
  const flush = resolved.backend === 'devdax' || resolved.backend === 'fsdax'
  let op: MapOpResult | null = null
  let held: number | null = null
  // Fills and copies stop between chunks on SIGINT/SIGTERM/SIGHUP, reporting the bytes done (exit 130).
  const guard = new SignalGuard()
  try {
    op = session ? {kind: 'interactive', steps: await hooks.session(n, mapping, facts)} : await runOperationUntil(n, mapping, plan, flush, () => guard.checkpoint())
    if (op && 'interrupted' in op) return {mapping: facts, op, held: null, interrupted: true, signal: guard.signal}
    guard.release()
    await hooks.show(facts, op, session)
    if (hold !== undefined) {
      hooks.note(hold === 0 ? 'holding the mapping until Ctrl-C or SIGTERM…' : `holding the mapping for ${hold} s (Ctrl-C releases it)…`)
      const t0 = Date.now()
      await holdFor(hold, mapping)
      held = (Date.now() - t0) / 1000
    }
  } catch (error) {
    if (error instanceof IopmemError) throw error
    const e = error as {code?: string}
    if (e.code === 'E_SIGBUS') throw explainMapError(host, resolved, error)
    throw error
  } finally {
    guard.release()
    mapping.unmap()
  }
  return {mapping: facts, op, held}
}

/** A resolved target in words: "BAR2 of 0000:03:00.0", "a p2pmem chunk of …", or its path. */
export function describeTarget(r: ResolvedTarget): string {
  if (r.backend === 'bar') return `${r.bar!.name} of ${r.bdf}`
  if (r.backend === 'p2pmem') return `a p2pmem chunk of ${r.bdf}`
  return r.path
}
