/** `iopmem check` for a person: one line per passing item, the rest wrapped with their fix, grouped by area, within the terminal's width. */
import type {ChalkInstance} from 'chalk'

import {AREAS, type CheckItem, type CheckReport, type Verdict} from '../lib/check/index.js'
import {outputWidth, wrapLines as wrap} from './width.js'

const MARK: Record<Verdict, string> = {pass: '✓', warn: '!', fail: '✗', unknown: '?'}
const TITLE = 18
const INDENT = 4 + TITLE + 1

function truncate(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + '…'
}

function paint(c: ChalkInstance, v: Verdict, s: string): string {
  return v === 'pass' ? c.green(s) : v === 'warn' ? c.yellow(s) : v === 'fail' ? c.red.bold(s) : c.dim(s)
}

function itemLines(it: CheckItem, c: ChalkInstance, width: number): string[] {
  const room = width - INDENT
  const subject = it.subject ? ` ${it.subject.replace(/^0000:/, '')}` : ''
  const title = truncate(it.title + subject, TITLE).padEnd(TITLE)
  const head = `  ${paint(c, it.verdict, MARK[it.verdict])} ${title} `
  const pad = ' '.repeat(INDENT)
  if (it.verdict === 'pass') return [head + truncate(it.found, room)]
  const found = wrap(it.found, room)
  const out = [head + found[0], ...found.slice(1).map((l) => pad + l)]
  if (it.fix) {
    const fix = wrap(it.fix, room - 2)
    out.push(pad + c.cyan('→ ') + fix[0], ...fix.slice(1).map((l) => pad + '  ' + l))
  }
  return out
}

export function renderCheck(r: CheckReport, c: ChalkInstance, width = outputWidth()): string {
  const fns = r.functions.map((b) => b.replace(/^0000:/, ''))
  const who = `${r.machine.kernelRelease ?? 'kernel ?'}, ${r.machine.root ? 'root' : 'not root: some items need root'}${r.machine.live ? '' : ', fixture roots'}`
  const lines = wrap(`iopmem check — ${who}; ${fns.length} function(s)${fns.length > 0 ? ': ' + fns.join(' ') : ''}`, width)
  for (const area of AREAS) {
    const items = r.items.filter((i) => i.area === area)
    if (items.length === 0) continue
    lines.push('', c.bold(area.toUpperCase()))
    for (const it of items) lines.push(...itemLines(it, c, width))
  }
  const s = r.summary
  const tally = `${s.pass} pass, ${s.warn} warn, ${s.fail} fail, ${s.unknown} unknown`
  const verdict = r.ok
    ? s.warn + s.unknown > 0
      ? 'nothing fails; read the warnings.'
      : 'P2P should work here.'
    : 'P2P will not work until the failures are fixed.'
  lines.push('', ...wrap(`${tally}: ${verdict}`, width).map((l, i) => (i === 0 ? paint(c, r.ok ? 'pass' : 'fail', l) : l)))
  return lines.join('\n')
}
