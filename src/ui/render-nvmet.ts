/** Text for `iopmem nvmet`: the plan a person confirms, the result of a change, and the configured targets. */
import type {NvmetState, TargetPlan, TargetResult} from '../lib/nvmet/index.js'

function where(p: {trtype: string; traddr: string; trsvcid: string}): string {
  return p.trtype === 'loop' ? 'loop' : `${p.trtype} ${p.traddr.includes(':') ? `[${p.traddr}]` : p.traddr}:${p.trsvcid}`
}

export function describePlan(plan: TargetPlan): string {
  const lines: string[] = []
  for (const s of plan.subsystems) {
    lines.push(`subsystem ${s.nqn} (${s.allowAnyHost ? 'any host' : `hosts: ${s.allowedHosts.join(', ')}`})`)
    for (const n of s.namespaces) lines.push(`  namespace ${n.nsid}: ${n.device}${n.p2pmem.provider ? `, p2pmem ${n.p2pmem.provider} (${n.p2pmem.why})` : ''}`)
  }
  for (const p of plan.ports) lines.push(`port ${p.id}${p.exists ? ' (exists)' : ''}: ${where(p)} ← ${p.subsystems.join(', ')}`)
  return lines.join('\n')
}

export function renderTargetResult(r: TargetResult): string {
  const lines: string[] = []
  const done = r.steps.filter((s) => s.ok).length
  if (r.interrupted) lines.push(`${r.action} stopped by ${r.signal ?? 'a signal'} after ${done} step(s)${r.rolledBack ? '; everything it made was removed again' : ''}.`)
  else if (r.action === 'remove') lines.push(`✓ removed ${r.subsystems.join(', ')} (${r.namespaces.length} namespace(s); port(s) ${r.ports.join(', ') || 'none'} unlinked)`)
  else lines.push(`✓ ${r.action === 'create' ? 'created' : 'restored'} ${r.subsystems.join(', ')} on port(s) ${r.ports.join(', ')} (${done} configfs step(s))`)
  if (r.action !== 'remove') {
    for (const n of r.namespaces) {
      lines.push(`  ${n.nqn} namespace ${n.nsid}: ${n.device}`)
      if (n.p2pmem) lines.push(`    p2pmem ${n.p2pmem.provider}: ${n.p2pmem.why}`)
    }
  }
  for (const w of r.warnings) lines.push(`note: ${w}`)
  if (r.left && r.left.length > 0) lines.push(`left in configfs: ${r.left.join(', ')}`)
  return lines.join('\n')
}

export function renderState(s: NvmetState): string {
  if (!s.loaded) return `nvmet is not loaded (${s.root} does not exist): no targets.`
  if (s.subsystems.length === 0 && s.ports.length === 0) return 'No nvmet subsystems or ports.'
  const lines: string[] = []
  for (const sub of s.subsystems) {
    lines.push(`${sub.nqn}  ${sub.allowAnyHost ? 'any host' : `hosts: ${sub.allowedHosts.join(', ') || 'none'}`}  ports: ${sub.ports.join(', ') || 'none'}`)
    for (const n of sub.namespaces) {
      const p2p = n.p2pmem === null || n.p2pmem === '0' ? '' : `  p2pmem ${n.p2pmem === '1' ? 'any' : n.p2pmem}`
      lines.push(`  ns ${n.nsid}: ${n.devicePath || '(no device)'} ${n.enabled ? 'enabled' : 'disabled'}${p2p}`)
    }
  }
  for (const p of s.ports) lines.push(`port ${p.id}: ${where(p)} ← ${p.subsystems.join(', ') || '(no subsystem)'}`)
  return lines.join('\n')
}
