/** `iopmem persist list` for people: one line per record with its state, then what the state means when it needs action. */
import type {ChalkInstance} from 'chalk'

import type {PersistList, RecordState} from '../lib/persist/index.js'
import {table} from './table.js'

export function renderPersistList(l: PersistList, c: ChalkInstance): string {
  if (l.records.length === 0 && l.leftovers.length === 0) {
    return `No bindings are recorded (${l.dir}).${l.rule.installed ? c.yellow(`\nwarning: the udev rule ${l.rule.path} is still installed without a record.`) : ''}`
  }
  const color: Record<RecordState, (s: string) => string> = {
    applied: c.green,
    pending: c.yellow,
    'device-missing': c.red,
    'driver-missing': c.red,
    deferred: c.cyan,
    invalid: c.red,
  }
  const rows = l.records.map((r) => {
    const s = r.record?.iopmem
    const what = r.record ? `${r.record.driver}${s ? ` ${s.mode} BAR${s.bar} cache ${s.cache}${s.force ? ' (forced)' : ''}` : ''}` : '?'
    return [r.bdf, what, color[r.state](r.state), r.driver ?? '-']
  })
  const lines = [table(['FUNCTION', 'RECORDED', 'STATE', 'DRIVER NOW'], rows)]
  for (const r of l.records) if (r.state !== 'applied') lines.push(`${c.bold(r.bdf)}: ${r.detail}`)
  for (const f of l.leftovers) lines.push(c.dim(`note: ${f} is a temporary file an interrupted write left; it is ignored, and the next write removes it.`))
  lines.push(c.dim(`Records in ${l.dir}; udev rule ${l.rule.path} ${l.rule.installed ? 'installed' : c.red('MISSING: nothing re-applies them at boot (record one again to reinstall it)')}.`))
  return lines.join('\n')
}
