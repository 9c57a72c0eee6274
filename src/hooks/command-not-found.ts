import type {Hook, Interfaces} from '@oclif/core'

import {errorEnvelope, Exit, IopmemError} from '../lib/sys/index.js'

type Config = Interfaces.Config

/**
 * `iopmem lst`: say so, suggest the nearest commands, and exit 2 (bad input,
 * like an unknown flag). In place of @oclif/plugin-not-found, which asks "Did
 * you mean …?" whenever stdin is a TTY (even under --json) and then runs the
 * guess — `unbnd` would become `unbind` with one keypress — exits 127, and has
 * no JSON form. This hook never asks and never runs anything; under --json the
 * error is the usual envelope on stdout:
 * `{"schemaVersion": 1, "error": {"code": "E_UNKNOWN_COMMAND", "message", "exit": 2, "suggestions": ["list"], "details"}}`.
 *
 * oclif loads this file only when a command is not found, so it costs nothing
 * at start-up.
 */
const hook: Hook<'command_not_found'> = async function (opts) {
  const {config} = opts
  const words = opts.id.split(':').filter((w) => w !== '')
  const argv = opts.argv ?? []
  const json = wantsJson([...words, ...argv])
  const e = unknownCommand(config, words, argv)
  if (json) {
    process.stdout.write(JSON.stringify(errorEnvelope(e), null, 2) + '\n')
  } else {
    // The message already says "did you mean …"; the one line below it says where the list is.
    const {printError} = await import('../base-command.js')
    await printError(e, [`Run \`${String(e.details?.help)}\` to see the commands.`])
  }
  this.exit(e.exit)
}

export default hook

/** --json anywhere before `--`. */
function wantsJson(args: string[]): boolean {
  for (const a of args) {
    if (a === '--') return false
    if (a === '--json') return true
  }
  return false
}

interface Candidate {
  /** Words of the command or topic ID, e.g. ['bench', 'mmio']. */
  words: string[]
  topic: boolean
}

function candidates(config: Config): Candidate[] {
  const out: Candidate[] = []
  const seen = new Set<string>()
  const add = (id: string, topic: boolean) => {
    if (id === '' || seen.has(id)) return
    seen.add(id)
    out.push({words: id.split(':'), topic})
  }
  for (const c of config.commands) {
    if (c.hidden) continue
    add(c.id, false)
    for (const a of c.aliases ?? []) add(a, false)
  }
  // A topic is worth suggesting when it has a visible command: `iopmem drvier` → `driver`.
  for (const t of config.topics) if (out.some((c) => !c.topic && c.words.join(':').startsWith(t.name + ':'))) add(t.name, true)
  return out
}

export function unknownCommand(config: Config, words: string[], argv: string[]): IopmemError {
  const bin = config.bin
  // Flags before the command (`iopmem --json list`): oclif takes the first word as the ID.
  if (words.length === 1 && words[0].startsWith('-')) {
    const word = argv.find((a) => !a.startsWith('-'))
    const known = word !== undefined && config.findCommand(word) !== undefined
    return new IopmemError(`\`${words[0]}\` is a flag, not an ${bin} command: give the command first, then its flags.`, {
      code: 'E_UNKNOWN_COMMAND',
      exit: Exit.USAGE,
      suggestions: known ? [`${word} ${words[0]}`] : [],
      details: {command: words[0], help: `${bin} help`},
    })
  }
  // The known topic the words start with (`bench` in `bench mmo`), and the first unknown word.
  let depth = 0
  while (depth < words.length - 1 && config.findTopic(words.slice(0, depth + 1).join(':'))) depth++
  const topic = words.slice(0, depth).join(' ')
  const typed = words.slice(0, depth + 1).join(' ')
  const suggestions = closest(candidates(config), words)
  const did = suggestions.length > 0 ? `; did you mean ${suggestions.map((s) => `\`${s}\``).join(' or ')}?` : '.'
  const help = topic ? `${bin} help ${topic}` : `${bin} help`
  return new IopmemError(`\`${typed}\` is not an ${bin} command${did}`, {
    code: 'E_UNKNOWN_COMMAND',
    exit: Exit.USAGE,
    suggestions,
    details: {command: typed, ...(topic ? {topic} : {}), help},
  })
}

/**
 * The nearest commands or topics to what was typed, best first (at most 3), as
 * they are typed (`bench mmio`). Each candidate is compared with as many of the
 * typed words as it has (the rest are arguments); a word counts as close when
 * it is a prefix of the candidate's (`mkfs` → `mkfs-dax`) or within a third of
 * its length in edits, a swap of two letters being one edit.
 */
export function closest(all: Candidate[], words: string[]): string[] {
  const scored: {id: string; distance: number; depth: number}[] = []
  for (const c of all) {
    if (c.words.length > words.length) continue
    let distance = 0
    let differing = 0
    for (const [i, w] of c.words.entries()) {
      const typed = words[i]
      if (typed === w) continue
      differing += typed.length
      distance += typed.length >= 2 && w.startsWith(typed) ? 1 : editDistance(typed, w)
    }
    if (distance === 0) continue
    if (distance > Math.max(1, Math.floor(differing / 3))) continue
    scored.push({id: c.words.join(' '), distance, depth: c.words.length})
  }
  scored.sort((a, b) => a.distance - b.distance || b.depth - a.depth || a.id.localeCompare(b.id))
  const best = scored.filter((s) => s.distance === scored[0].distance)
  // `driver status` makes `driver` redundant.
  const ids = best.map((s) => s.id).filter((id, _, xs) => !xs.some((o) => o !== id && o.startsWith(id + ' ')))
  return ids.slice(0, 3)
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}
