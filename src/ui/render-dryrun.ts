/** The human form of a dry run (`--dry-run` of bind, unbind, mkfs-dax, driver load): the steps the real run would take, numbered, in order. */
import type {ChalkInstance} from 'chalk'

import type {UsageReport} from '../lib/bind/index.js'
import {CHANGE_KINDS, type DryRunResult, type Step} from '../lib/sys/index.js'

function stepLine(s: Step): string {
  switch (s.kind) {
    case 'write': {
      return `write  ${s.file}  ${JSON.stringify(s.value)}`
    }
    case 'run': {
      return `run    ${s.argv.join(' ')}${s.fd3 ? `   (fd 3: ${s.fd3}, opened and checked)` : ''}`
    }
    case 'lock': {
      return `lock   ${s.file}  (${s.what}, held to the last step)`
    }
    case 'then': {
      return `then   ${s.text}`
    }
    case 'mkdir': {
      return `mkdir  ${s.file}  (mode 0755)`
    }
    case 'write-file': {
      // The exact content, each line indented under the step (a file ends with its newline).
      const body = s.content.endsWith('\n') ? s.content.slice(0, -1) : s.content
      return `file   ${s.file}  (written whole, then renamed into place; ${Buffer.byteLength(s.content)} bytes):\n${body
        .split('\n')
        .map((l) => `         | ${l}`)
        .join('\n')}${s.content.endsWith('\n') ? '' : '\n         (no newline at the end)'}`
    }
    case 'remove': {
      return `remove ${s.file}`
    }
  }
}

/** `title`: what was asked, e.g. "bind 0000:03:00.0 to vfio-pci (now nvme)"; `notes`: said after the steps. */
export function renderDryRun(r: DryRunResult, title: string, c: ChalkInstance, notes: string[] = []): string {
  const lines = [`${c.bold('dry run')}: ${title}; nothing was changed.`]
  const changes = r.steps.filter((s) => CHANGE_KINDS.has(s.kind))
  if (changes.length === 0) lines.push('The real run would change nothing: there is nothing to do.')
  else {
    lines.push('The real run would, in order:')
    const width = String(r.steps.length).length
    for (const [i, s] of r.steps.entries()) lines.push(`  ${String(i + 1).padStart(width)}. ${stepLine(s)}`)
  }
  if (r.needsRoot) lines.push(c.yellow(`not root: the real run would stop with "${r.needsRoot}" (exit 4); the checks above ran without it.`))
  for (const n of notes) lines.push(c.dim(`note: ${n}`))
  return lines.join('\n')
}

/** What bind's and unbind's in-use check found, as notes: a use --force takes over, and what it could not check. */
export function usageNotes(u: UsageReport | null): string[] {
  if (!u) return []
  return [...(u.inUse ? u.reasons.map((r) => `in use, taken anyway (--force): ${r.detail}`) : []), ...u.notes, ...u.unchecked]
}
