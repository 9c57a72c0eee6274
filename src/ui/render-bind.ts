import type {ChalkInstance} from 'chalk'

import type {BindResult} from '../lib/bind/index.js'

export function renderBindResult(r: BindResult, verb: 'bind' | 'unbind', c: ChalkInstance): string {
  const lines: string[] = []
  const was = r.previousDriver ?? 'no driver'
  if (!r.changed) {
    lines.push(verb === 'bind' ? `${c.bold(r.bdf)} is already bound to ${r.driver}; nothing to do.` : `${c.bold(r.bdf)} has no driver and no driver_override; nothing to do.`)
  } else if (verb === 'bind') {
    lines.push(`${c.green('✓')} ${c.bold(r.bdf)} bound to ${c.bold(r.driver ?? '?')} (was ${was}); driver_override is ${r.override ?? '(null)'}.`)
  } else {
    lines.push(
      `${c.green('✓')} ${c.bold(r.bdf)} ${r.previousDriver ? `unbound from ${r.previousDriver}` : 'had no driver'}` +
        `${r.previousOverride ? `; driver_override ${r.previousOverride} cleared` : ''}.`,
    )
  }
  if (r.usage?.inUse) lines.push(c.yellow(`Taken while in use (--force):\n${r.usage.reasons.map((x) => `  - ${x.detail}`).join('\n')}`))
  for (const u of [...(r.usage?.notes ?? []), ...(r.usage?.unchecked ?? [])]) lines.push(c.dim(`note: ${u}`))
  for (const w of r.warnings) lines.push(c.yellow(`warning: ${w}`))
  return lines.join('\n')
}
