/** The one parser of map operations (for `iopmem map` flags and the interactive session alike), their runner, and the `map --json` result types. */
import * as fs from 'node:fs'

import type {CachingMode, CopyStrategy, FlushInstruction, Mapping, UsedStrategy, Width} from '../../native/types.js'
import {checkOutputPath, Exit, IopmemError, usage} from '../sys/index.js'
import {formatBytes} from '../sys/index.js'
import {
  checkRange,
  checkStrategy,
  copyInOp,
  copyInOpChunks,
  copyOutOp,
  copyOutOpChunks,
  dumpOp,
  fillOp,
  fillOpChunks,
  type OpsNative,
  parseCount,
  parseOffset,
  parsePattern,
  parseValues,
  parseWidth,
  type Pattern,
  readOp,
  runBulkUntil,
  verifyOp,
  verifyOpChunks,
  writeOp,
} from './ops.js'
import type {MapFacts} from './target.js'

/**
 * What an operation did (`op` in the --json result). Offsets and sizes are
 * bytes; widths are bits; values are 0x hex strings zero-padded to the width
 * (exact for 64-bit); `gbps` is 10^9 bytes/s of the copies alone; `strategy`
 * is the copy loop used; `flush` the cache-line instruction that pushed WB
 * writes to the device (null when none was needed).
 */
export type MapOpResult =
  | {kind: 'read'; offset: number; width: number; count: number; values: string[]}
  | {kind: 'write'; offset: number; width: number; count: number; values: string[]; readback: string[] | null; flush: FlushInstruction | null}
  | {kind: 'dump'; offset: number; size: number; width: number; hex: string}
  | {kind: 'fill'; offset: number; size: number; pattern: string; strategy: UsedStrategy; seconds: number; gbps: number; flush: FlushInstruction | null}
  | {kind: 'verify'; offset: number; size: number; pattern: string; strategy: UsedStrategy; seconds: number; gbps: number; mismatches: 0}
  | {kind: 'copy-in'; file: string; offset: number; size: number; strategy: UsedStrategy; seconds: number; gbps: number; flush: FlushInstruction | null}
  | {kind: 'copy-out'; file: string; offset: number; size: number; strategy: UsedStrategy; seconds: number; gbps: number}
  | {kind: 'interactive'; steps: number}
  /** A fill, verify or copy stopped by a signal between two chunks: `done` of `size` bytes were done (from `offset`), no flush. */
  | {kind: 'fill' | 'verify' | 'copy-in' | 'copy-out'; offset: number; size: number; interrupted: true; done: number; file?: string; pattern?: string}

/**
 * `iopmem map --json`:
 * `{mapping: MapFacts, op: MapOpResult | null, held: seconds | null}`.
 * `op` is null when no operation was given (the facts alone); `held` is
 * how long --hold kept the mapping. A verify mismatch is not a result but
 * the error envelope (code E_VERIFY_MISMATCH, exit 8, details.first lists
 * up to 16 differing bytes).
 */
export interface MapResult {
  mapping: MapFacts
  op: MapOpResult | null
  held: number | null
  /** A signal stopped the operation (op says how far it got) or the session: exit 130. */
  interrupted?: boolean
  signal?: string
}

export const OPERATIONS = ['read', 'write', 'dump', 'fill', 'verify', 'copy-in', 'copy-out'] as const
export type Operation = (typeof OPERATIONS)[number]

/** The operation asked for, parsed and range-checked before anything is mapped (or touched). */
export type OpPlan =
  | {kind: 'none'}
  | {kind: 'read'; offset: number; width: Width; count: number}
  | {kind: 'write'; offset: number; width: Width; values: bigint[]; readback: boolean}
  | {kind: 'dump'; offset: number; size: number; width: Width}
  | {kind: 'fill' | 'verify'; offset: number; size: number; pattern: Pattern; strategy: CopyStrategy}
  | {kind: 'copy-in'; file: string; offset: number; size: number; strategy: CopyStrategy}
  | {kind: 'copy-out'; file: string; offset: number; size: number; strategy: CopyStrategy}

/**
 * An operation's arguments as typed (flag values or prompt answers). `at`
 * is the operation's own offset (--read/--write/--dump OFF), `offset` the
 * start of a bulk operation; `width` is in bits.
 */
export interface OpInput {
  at?: string
  offset?: string
  width?: string
  count?: string
  values?: string
  readback?: boolean
  size?: string
  pattern?: string
  file?: string
  strategy?: CopyStrategy
}

/** How errors name what was typed: flags (`--read offset`, `--size`, `--read`) by default. */
export interface OpNames {
  at?: string
  offset?: string
  size?: string
  op?: string
}

/** Parse and range-check one operation against a mapping of `target.length` bytes in `target.mode`. */
export function planOperation(kind: Operation, input: OpInput, target: {length: number; mode: CachingMode}, names: OpNames = {}): OpPlan {
  const len = target.length
  const op = names.op ?? `--${kind}`
  const at = () => parseOffset(input.at ?? '', names.at ?? `--${kind} offset`)
  const sizeName = names.size ?? '--size'
  const start = () => (input.offset === undefined ? 0 : parseOffset(input.offset, names.offset ?? '--offset'))
  const strategy = input.strategy ?? 'auto'
  switch (kind) {
    case 'read': {
      const width = parseWidth(input.width)
      const offset = at()
      const count = input.count === undefined ? 1 : parseCount(input.count)
      checkRange(len, offset, count * width, width, op)
      return {kind, offset, width, count}
    }
    case 'write': {
      const width = parseWidth(input.width)
      const offset = at()
      if (input.values === undefined) throw usage('--write needs --value V[,V…].', 'E_FLAG_COMBO')
      const values = parseValues(input.values, width)
      checkRange(len, offset, values.length * width, width, op)
      return {kind, offset, width, values, readback: input.readback === true}
    }
    case 'dump': {
      const width = parseWidth(input.width)
      const offset = at()
      let size: number
      if (input.size === undefined) {
        if (offset >= len) checkRange(len, offset, width, width, op)
        size = Math.min(256, len - offset)
        size -= size % width
      } else size = parseOffset(input.size, sizeName)
      if (size === 0) throw usage(`${sizeName} must be at least one access.`, 'E_SIZE_RANGE')
      checkRange(len, offset, size, width, op)
      return {kind, offset, size, width}
    }
    case 'fill':
    case 'verify': {
      const pattern = parsePattern(input.pattern ?? '')
      const offset = start()
      checkRange(len, offset, 1, 1, op)
      const size = input.size === undefined ? len - offset : parseOffset(input.size, sizeName)
      if (size === 0) throw usage(`${sizeName} must be at least 1 byte.`, 'E_SIZE_RANGE')
      checkRange(len, offset, size, 1, op)
      checkStrategy(target.mode, strategy, kind === 'fill' ? 'in' : 'out')
      return {kind, offset, size, pattern, strategy}
    }
    case 'copy-in': {
      const file = input.file ?? ''
      let st: fs.Stats
      try {
        st = fs.statSync(file)
      } catch {
        throw new IopmemError(`--copy-in ${file}: no such file.`, {code: 'E_NO_FILE', exit: Exit.NOT_FOUND, path: file})
      }
      if (!st.isFile()) throw usage(`--copy-in ${file} is not a regular file.`, 'E_NO_FILE')
      const offset = start()
      const size = input.size === undefined ? st.size : parseOffset(input.size, sizeName)
      if (size > st.size) throw usage(`${sizeName} ${formatBytes(size)} is more than ${file} holds (${st.size} bytes).`, 'E_SIZE_RANGE')
      if (size === 0) throw usage(`--copy-in ${file} is empty: nothing to copy.`, 'E_SIZE_RANGE')
      checkRange(len, offset, size, 1, op)
      checkStrategy(target.mode, strategy, 'in')
      return {kind, file, offset, size, strategy}
    }
    case 'copy-out': {
      const file = input.file ?? ''
      if (file === '') throw usage('--copy-out needs a file name.', 'E_NO_FILE')
      checkOutputPath(file, '--copy-out') // before anything is mapped
      const offset = start()
      checkRange(len, offset, 1, 1, op)
      const size = input.size === undefined ? len - offset : parseOffset(input.size, sizeName)
      if (size === 0) throw usage(`${sizeName} must be at least 1 byte.`, 'E_SIZE_RANGE')
      checkRange(len, offset, size, 1, op)
      checkStrategy(target.mode, strategy, 'out')
      return {kind, file, offset, size, strategy}
    }
  }
}

/** Which flags go with which operations (any other combination is E_FLAG_COMBO). */
const ALLOWED: Record<string, readonly string[]> = {
  value: ['write'],
  readback: ['write'],
  width: ['read', 'write', 'dump'],
  count: ['read'],
  size: ['dump', 'fill', 'verify', 'copy-in', 'copy-out'],
  offset: ['fill', 'verify', 'copy-in', 'copy-out'],
  strategy: ['fill', 'verify', 'copy-in', 'copy-out'],
}

/** `iopmem map`'s operation flags to a plan: one operation at a time, its flags only, then planOperation. */
export function planFromFlags(flags: Record<string, unknown>, target: {length: number; mode: CachingMode}): OpPlan {
  const f = flags as {[k: string]: string | boolean | undefined}
  const given = OPERATIONS.filter((o) => f[o] !== undefined)
  if (given.length > 1) {
    throw usage(`Give one operation at a time: ${given.map((g) => `--${g}`).join(' and ')} were both given.`, 'E_OPERATIONS', [
      '--hold may follow any one of them.',
    ])
  }
  const kind = given.length === 0 ? 'none' : given[0]
  for (const [flag, ops] of Object.entries(ALLOWED)) {
    if (f[flag] !== undefined && f[flag] !== false && !ops.includes(kind)) {
      throw usage(
        `--${flag} goes with ${ops.map((o) => `--${o}`).join(', ')}${kind === 'none' ? ', and no operation was given' : `, not --${kind}`}.`,
        'E_FLAG_COMBO',
      )
    }
  }
  if (kind === 'none') return {kind}
  const s = (k: string) => f[k] as string | undefined
  const arg = s(kind)
  return planOperation(
    kind,
    {
      at: arg,
      pattern: arg,
      file: arg,
      offset: s('offset'),
      width: s('width'),
      count: s('count'),
      values: s('value'),
      readback: f.readback === true,
      size: s('size'),
      strategy: f.strategy as CopyStrategy | undefined,
    },
    target,
  )
}

/** Carry out a plan on a mapping; WB mappings (DAX) are flushed after writes when `flush`. */
export function runOperation(n: OpsNative, m: Mapping, p: OpPlan, flush: boolean): MapOpResult | null {
  switch (p.kind) {
    case 'none':
      return null
    case 'read':
      return {kind: 'read', offset: p.offset, width: p.width * 8, count: p.count, values: readOp(n, m, p.offset, p.width, p.count)}
    case 'write': {
      writeOp(n, m, p.offset, p.width, p.values)
      const f = flush ? n.flush(m, p.offset, p.values.length * p.width) : null
      return {
        kind: 'write',
        offset: p.offset,
        width: p.width * 8,
        count: p.values.length,
        values: p.values.map((v) => '0x' + v.toString(16).padStart(p.width * 2, '0')),
        readback: p.readback ? readOp(n, m, p.offset, p.width, p.values.length) : null,
        flush: f,
      }
    }
    case 'dump':
      return {kind: 'dump', offset: p.offset, size: p.size, width: p.width * 8, hex: dumpOp(n, m, p.offset, p.size, p.width).toString('hex')}
    case 'fill': {
      const s = fillOp(n, m, p.offset, p.size, p.pattern, p.strategy, flush)
      return {kind: 'fill', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...s}
    }
    case 'verify': {
      const s = verifyOp(n, m, p.offset, p.size, p.pattern, p.strategy)
      return {kind: 'verify', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...s}
    }
    case 'copy-in': {
      const s = copyInOp(n, m, p.file, p.offset, p.size, p.strategy, flush)
      return {kind: 'copy-in', file: p.file, offset: p.offset, size: p.size, ...s}
    }
    case 'copy-out': {
      const s = copyOutOp(n, m, p.file, p.offset, p.size, p.strategy)
      return {kind: 'copy-out', file: p.file, offset: p.offset, size: p.size, ...s}
    }
  }
}

/**
 * runOperation for the command: fills, verifies and copies run chunk by
 * chunk and stop within a fraction of a second when `stop` says so, with
 * the bytes done; the other operations are single accesses.
 */
export async function runOperationUntil(n: OpsNative, m: Mapping, p: OpPlan, flush: boolean, stop: () => Promise<boolean>): Promise<MapOpResult | null> {
  const partial = (offset: number, size: number, done: number, extra: {file?: string; pattern?: string}): MapOpResult => ({kind: p.kind as 'fill', offset, size, interrupted: true, done, ...extra})
  switch (p.kind) {
    case 'fill': {
      const r = await runBulkUntil(fillOpChunks(n, m, p.offset, p.size, p.pattern, p.strategy, flush), stop)
      return r.value ? {kind: 'fill', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...r.value} : partial(p.offset, p.size, r.done, {pattern: p.pattern.spec})
    }
    case 'verify': {
      const r = await runBulkUntil(verifyOpChunks(n, m, p.offset, p.size, p.pattern, p.strategy), stop)
      return r.value ? {kind: 'verify', offset: p.offset, size: p.size, pattern: p.pattern.spec, ...r.value} : partial(p.offset, p.size, r.done, {pattern: p.pattern.spec})
    }
    case 'copy-in': {
      const r = await runBulkUntil(copyInOpChunks(n, m, p.file, p.offset, p.size, p.strategy, flush), stop)
      return r.value ? {kind: 'copy-in', file: p.file, offset: p.offset, size: p.size, ...r.value} : partial(p.offset, p.size, r.done, {file: p.file})
    }
    case 'copy-out': {
      const r = await runBulkUntil(copyOutOpChunks(n, m, p.file, p.offset, p.size, p.strategy), stop)
      return r.value ? {kind: 'copy-out', file: p.file, offset: p.offset, size: p.size, ...r.value} : partial(p.offset, p.size, r.done, {file: p.file})
    }
    default:
      return runOperation(n, m, p, flush)
  }
}

/** `--hold SECONDS`: 0 (until a signal) up to a week. */
export function parseHold(text: string): number {
  const t = text.trim()
  const n = Number(t)
  if (!/^\d+(\.\d+)?$/.test(t) || !Number.isFinite(n) || n > 7 * 24 * 3600) {
    throw usage(`Invalid --hold ${JSON.stringify(text)}: seconds, e.g. 20 or 0.5 (0 holds until Ctrl-C or SIGTERM).`, 'E_HOLD')
  }
  return n
}
