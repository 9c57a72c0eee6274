/**
 * The interactive `iopmem map` session (a person at a terminal, no
 * operation given): peek, poke, dump and fill until quit. Prompts come in
 * as an argument (the @inquirer/prompts module, or a script in tests).
 * Bad input in a step is reported and the session goes on; Ctrl-C or
 * Ctrl-D at a prompt ends it.
 */
import type {ChalkInstance} from 'chalk'

import {checkRange, hexdump, type MapFacts, type MapOpResult, type OpInput, type Operation, type OpsNative, parseOffset, parsePattern, parseValues, planOperation, runOperation, valueRows} from '../lib/map/index.js'
import {formatBytes, formatRate, IopmemError} from '../lib/sys/index.js'
import type {Mapping, Width} from '../lib/map/index.js'
import {mappingLine, renderFacts} from './render-map.js'

/** The prompts the session uses (a subset of @inquirer/prompts). */
export interface SessionPrompts {
  select<T>(config: {message: string; choices: Array<{value: T; name?: string; description?: string}>; default?: T}): Promise<T>
  input(config: {message: string; default?: string; validate?: (value: string) => boolean | string | Promise<boolean | string>}): Promise<string>
  confirm(config: {message: string; default?: boolean}): Promise<boolean>
}

export interface SessionContext {
  native: OpsNative
  mapping: Mapping
  facts: MapFacts
  prompts: SessionPrompts
  log: (line: string) => void
  colors: ChalkInstance
  /** Called when the session ends by Ctrl-C (or a closed terminal) rather than by `quit`: the command then exits 130. */
  onInterrupt?: () => void
}

type Action = 'peek' | 'poke' | 'dump' | 'fill' | 'facts' | 'quit'

/** The session's menu, in order: each action and what it does. */
const ACTIONS: Record<Action, string> = {peek: 'read one value', poke: 'write one value', dump: 'hexdump a range', fill: 'fill a range with a pattern', facts: 'show the mapping', quit: ''}

/** Run the session; returns the number of steps carried out. */
export async function mapSession(ctx: SessionContext): Promise<number> {
  const {native: n, mapping: m, facts, prompts, log, colors: c} = ctx
  const len = facts.length
  const flush = facts.backend === 'devdax' || facts.backend === 'fsdax'
  let writesOk = false
  let steps = 0
  let lastOffset = 0
  const interrupted = () => {
    ctx.onInterrupt?.()
    return steps
  }
  let lastWidth: Width = 4
  const check = (fn: () => void) => (v: string) => {
    try {
      fn.call(undefined)
      void v
      return true
    } catch (error) {
      return (error as Error).message
    }
  }
  const askOffset = async (message: string, width: number): Promise<number> => {
    const text = await prompts.input({
      message,
      default: '0x' + lastOffset.toString(16),
      validate: (v) => check(() => checkRange(len, parseOffset(v, 'offset'), width, width, 'offset'))(v),
    })
    return parseOffset(text, 'offset')
  }
  const askWidth = async (): Promise<Width> =>
    prompts.select<Width>({
      message: 'Access width',
      default: lastWidth,
      choices: [
        {value: 1, name: '8-bit'},
        {value: 2, name: '16-bit'},
        {value: 4, name: '32-bit'},
        {value: 8, name: '64-bit'},
      ],
    })
  // Every step goes through the parser and runner `iopmem map` uses; the prompts' names stand in for flags.
  const run = <K extends MapOpResult['kind']>(kind: Operation & K, input: OpInput, op: string) =>
    runOperation(n, m, planOperation(kind, input, facts, {at: 'offset', size: 'size', op}), flush) as Extract<MapOpResult, {kind: K}>
  /** Asks once a session whether writes may go to the device; true (and says so) when they may not. */
  const writesRefused = async (): Promise<boolean> => {
    writesOk ||= await prompts.confirm({message: `Writes go straight to ${mappingLine(facts)} and change it in place. Allow writes in this session?`, default: false})
    if (!writesOk) log(c.dim('writes not allowed; nothing written'))
    return !writesOk
  }

  log(c.dim(mappingLine(facts)))
  for (const w of facts.warnings) log(c.yellow(`warning: ${w}`))
  for (;;) {
    let action: Action
    try {
      action = await prompts.select<Action>({
        message: 'map>',
        choices: Object.entries(ACTIONS).map(([value, what]) => ({value: value as Action, name: what ? `${value.padEnd(6)} ${what}` : value})),
      })
    } catch (error) {
      if (isPromptExit(error)) return interrupted()
      throw error
    }
    if (action === 'quit') return steps
    try {
      switch (action) {
        case 'facts':
          log(renderFacts(facts, c))
          break
        case 'peek': {
          const width = await askWidth()
          const off = await askOffset('Offset', width)
          log(valueRows(off, width, run('read', {at: String(off), width: String(width * 8)}, 'offset').values).join('\n'))
          lastOffset = off
          lastWidth = width
          break
        }
        case 'poke': {
          if (await writesRefused()) break
          const width = await askWidth()
          const off = await askOffset('Offset', width)
          const text = await prompts.input({message: 'Value (decimal or 0x hex)', validate: (v) => check(() => parseValues(v, width))(v)})
          const done = run('write', {at: String(off), width: String(width * 8), values: text}, 'poke')
          log(`${c.green('✓')} wrote ${done.values.join(' ')} at 0x${off.toString(16)}`)
          lastOffset = off
          lastWidth = width
          break
        }
        case 'dump': {
          const off = await askOffset('Offset', 1)
          const sizeText = await prompts.input({
            message: 'Bytes',
            default: String(Math.min(256, len - off)),
            validate: (v) => check(() => checkRange(len, off, parseOffset(v, 'size'), 1, 'dump'))(v),
          })
          const size = parseOffset(sizeText, 'size')
          const width: Width = off % 4 === 0 && size % 4 === 0 ? 4 : 1
          log(hexdump(Buffer.from(run('dump', {at: String(off), size: String(size), width: String(width * 8)}, 'dump').hex, 'hex'), off))
          lastOffset = off
          break
        }
        case 'fill': {
          if (await writesRefused()) break
          const patText = await prompts.input({message: 'Pattern (zero, ones, 0xNN, u32:V, inc, addr, random[:SEED], …)', validate: (v) => check(() => parsePattern(v))(v)})
          const off = await askOffset('Offset', 1)
          const sizeText = await prompts.input({
            message: 'Bytes',
            default: String(len - off),
            validate: (v) => check(() => checkRange(len, off, parseOffset(v, 'size'), 1, 'fill'))(v),
          })
          const s = run('fill', {pattern: patText, offset: String(off), size: sizeText}, 'fill')
          log(`${c.green('✓')} filled ${formatBytes(s.size)} at 0x${off.toString(16)} with ${s.pattern} (${s.strategy}, ${formatRate(s.gbps)} GB/s)`)
          lastOffset = off
          break
        }
      }
      steps++
    } catch (error) {
      if (isPromptExit(error)) return interrupted()
      if (error instanceof IopmemError || (error as {code?: string}).code) log(c.red(`error: ${(error as Error).message}`))
      else throw error
    }
  }
}

function isPromptExit(error: unknown): boolean {
  return error instanceof Error && (error.name === 'ExitPromptError' || error.name === 'AbortPromptError')
}
