/**
 * How wide output may be: $COLUMNS, else the terminal's width, else 80 (a
 * pipe or a log file gets the classic terminal width, so what a script or a
 * bug report captures is what a person at an 80-column terminal sees);
 * `--wide` lifts the limit. And the helpers to fit text to it.
 */

/** The width to fit to; Infinity with --wide. */
export function outputWidth(opts: {wide?: boolean} = {}, stream: {isTTY?: boolean; columns?: number} = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  if (opts.wide) return Infinity
  const cols = Number(env.COLUMNS)
  if (Number.isInteger(cols) && cols > 0) return Math.max(cols, 40)
  if (stream.isTTY && stream.columns && stream.columns > 0) return Math.max(stream.columns, 40)
  return 80
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001B\[[0-9;]*m/g

/** Columns a string takes on screen (colour codes take none; every character we print is one column). */
export function visibleWidth(s: string): number {
  return [...s.replace(ANSI, '')].length
}

/** Cut plain text to at most `max` columns, ending with "…" when cut. */
export function truncate(s: string, max: number): string {
  const chars = [...s]
  if (chars.length <= max) return s
  if (max <= 1) return chars.slice(0, Math.max(max, 0)).join('')
  return chars.slice(0, max - 1).join('') + '…'
}

/** Items joined by ", ", at most `max` of them, then "… and N more". */
export function summarise(items: string[], max: number, more = ''): string {
  if (items.length <= max) return items.join(', ')
  return `${items.slice(0, max).join(', ')} … and ${items.length - max} more${more}`
}

/** Prose wrapped at word boundaries to `width` columns, continuation lines indented by `indent` (colour codes kept). */
export function wrap(text: string, width: number, indent = ''): string {
  if (width === Infinity || visibleWidth(text) <= width) return text
  const lead = text.match(/^\s*/)![0]
  const words = text.slice(lead.length).split(' ')
  const lines: string[] = []
  let line = lead
  for (const w of words) {
    const sep = line === lead || line === indent ? '' : ' '
    if (visibleWidth(line) + sep.length + visibleWidth(w) > width && line.trim() !== '') {
      lines.push(line)
      line = indent + w
    } else line += sep + w
  }
  lines.push(line)
  return lines.join('\n')
}

/** Plain words into lines of at most `width` characters (a longer word is cut), for layouts that indent each line themselves. */
export function wrapLines(text: string, width: number): string[] {
  const lines: string[] = []
  let cur = ''
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let w = word
    while (w.length > width) {
      if (cur) lines.push(cur)
      cur = ''
      lines.push(w.slice(0, width))
      w = w.slice(width)
    }
    if (!cur) cur = w
    else if (cur.length + 1 + w.length <= width) cur += ' ' + w
    else {
      lines.push(cur)
      cur = w
    }
  }
  if (cur) lines.push(cur)
  return lines.length > 0 ? lines : ['']
}
