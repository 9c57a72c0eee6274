/** `check`'s IOMMU items: whether one is on, each chosen function's group and its domain type, the command line, and vfio viability. */
import * as path from 'node:path'

import type {PciFunction} from '../pci/index.js'
import type {Host} from '../sys/index.js'
import type {CheckItem, Verdict} from './types.js'
import {worst} from './types.js'

/** /proc/cmdline split into words (quotes respected as the kernel does: "a b" is one word). */
export function readCmdline(host: Host): string[] | null {
  const text = host.readTrim(host.proc('cmdline'))
  if (text === undefined) return null
  const words: string[] = []
  for (const m of text.matchAll(/(?:[^\s"]+|"[^"]*")+/g)) words.push(m[0].replaceAll('"', ''))
  // Parameters after `--` go to init, not the kernel.
  const dd = words.indexOf('--')
  return dd < 0 ? words : words.slice(0, dd)
}

/** The options of `pci=`: comma-separated, possibly given in several pci= words. */
export function pciOptions(cmdline: string[]): string[] {
  return cmdline.filter((w) => w.startsWith('pci=')).flatMap((w) => w.slice(4).split(','))
}

/** The IOMMU-related parameters, as given (later ones win, as in the kernel). */
export function iommuParams(cmdline: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const w of cmdline) {
    const m = /^(iommu|intel_iommu|amd_iommu|iommu\.passthrough|iommu\.strict)=(.*)$/.exec(w)
    if (m) out[m[1]] = m[2]
  }
  for (const o of pciOptions(cmdline)) {
    const m = /^(disable_acs_redir|config_acs)=(.*)$/.exec(o)
    if (m) out[`pci=${m[1]}`] = m[2]
    if (o === 'noats' || o === 'nommconf') out[`pci=${o}`] = ''
  }
  return out
}

export interface IommuState {
  /** /sys/class/iommu entries (dmar0, ivhd0, …). */
  units: string[]
  /** Number of /sys/kernel/iommu_groups entries. */
  groups: number
  present: boolean
}

export function readIommu(host: Host): IommuState {
  const units = host.list(host.sys('class/iommu'))
  const groups = host.list(host.sys('kernel/iommu_groups')).filter((g) => /^\d+$/.test(g)).length
  return {units, groups, present: units.length > 0 || groups > 0}
}

export function presenceItem(st: IommuState, params: Record<string, string>): CheckItem {
  const base = {id: 'iommu.present', area: 'iommu' as const, title: 'IOMMU'}
  const p = Object.entries(params)
    .filter(([k]) => !k.startsWith('pci='))
    .map(([k, v]) => `${k}=${v}`)
  const given = p.length > 0 ? `; command line: ${p.join(' ')}` : ''
  if (!st.present) {
    return {...base, verdict: 'pass', found: `none${given}: DMA uses physical (bus) addresses, no ACS redirect requested by the kernel`, fix: null, details: {...st, params}}
  }
  return {
    ...base,
    verdict: 'pass',
    found: `on (${st.units.join(', ') || 'no unit listed'}, ${st.groups} groups)${given}; with an IOMMU the kernel asks for ACS redirect on ports (pci_request_acs)`,
    fix: null,
    details: {...st, params},
  }
}

/** The `type` file of an IOMMU group: identity, DMA, DMA-FQ, unmanaged, blocked (drivers/iommu/iommu.c). */
const TYPE_VERDICT: Record<string, {verdict: Verdict; meaning: string}> = {
  identity: {verdict: 'pass', meaning: 'passthrough: DMA addresses are bus addresses'},
  DMA: {verdict: 'pass', meaning: 'translated (strict): P2P pages are mapped through the IOMMU'},
  'DMA-FQ': {verdict: 'pass', meaning: 'translated (lazy flush): P2P pages are mapped through the IOMMU'},
  unmanaged: {verdict: 'pass', meaning: 'owned by user space (vfio) or a driver'},
  blocked: {verdict: 'fail', meaning: 'all DMA blocked'},
  unknown: {verdict: 'unknown', meaning: 'no default domain'},
}

export function groupsItem(host: Host, st: IommuState, fns: PciFunction[]): CheckItem {
  const base = {id: 'iommu.groups', area: 'iommu' as const, title: 'IOMMU groups'}
  if (!st.present) return {...base, verdict: 'pass', found: 'no IOMMU groups (no IOMMU)', fix: null, details: {groups: []}}
  const groups: Array<{group: number | null; type: string | null; functions: string[]; members: string[]}> = []
  for (const f of fns) {
    if (f.iommuGroup === null) {
      groups.push({group: null, type: null, functions: [f.bdf], members: []})
      continue
    }
    const known = groups.find((g) => g.group === f.iommuGroup)
    if (known) {
      known.functions.push(f.bdf)
      continue
    }
    const dir = host.sys('kernel/iommu_groups', String(f.iommuGroup))
    groups.push({
      group: f.iommuGroup,
      type: host.readTrim(path.join(dir, 'type')) ?? null,
      functions: [f.bdf],
      members: host.list(path.join(dir, 'devices')),
    })
  }
  const verdicts = groups.map((g) => (g.group === null ? 'warn' : (TYPE_VERDICT[g.type ?? 'unknown']?.verdict ?? 'unknown')))
  const short = (b: string) => b.replace(/^0000:/, '')
  const found = groups
    .map((g) => (g.group === null ? `${g.functions.map(short).join(',')}: no group` : `${g.group}: ${g.type ?? '?'} (${g.functions.map(short).join(',')})`))
    .join('; ')
  const verdict = worst(verdicts as Verdict[])
  const types = new Set(groups.map((g) => g.type))
  const fix = verdict === 'pass' ? null : types.has('blocked') ? 'Bind a driver, or echo DMA > /sys/kernel/iommu_groups/N/type with the group unbound.' : 'A function without an IOMMU group cannot do DMA under this IOMMU: check the firmware (DMAR/IVRS tables).'
  const meaning = [...types].map((t) => (t && TYPE_VERDICT[t] ? `${t} = ${TYPE_VERDICT[t].meaning}` : null)).filter(Boolean)
  return {...base, verdict, found: found + (meaning.length > 0 ? ` — ${meaning.join('; ')}` : ''), fix, details: {groups}}
}

/** Drivers whose devices may share a group with a vfio-pci device (they declare driver_managed_dma, or bind none). */
const VFIO_COMPATIBLE = new Set(['vfio-pci', 'pci-stub', 'pcieport'])

export function vfioItem(host: Host, st: IommuState, fns: PciFunction[]): CheckItem {
  const base = {id: 'iommu.vfio', area: 'iommu' as const, title: 'vfio viability'}
  const noiommu = host.readTrim(host.sys('module/vfio/parameters/enable_unsafe_noiommu_mode'))
  if (!st.present) {
    return noiommu === 'Y'
      ? {...base, verdict: 'pass', found: 'no IOMMU; vfio in unsafe no-IOMMU mode', fix: null, details: {noiommu: true}}
      : {
          ...base,
          verdict: 'warn',
          found: 'no IOMMU: vfio-pci can bind but offers no group (use uio_pci_generic or iopmem instead)',
          fix: 'Turn the IOMMU on (intel_iommu=on / amd_iommu=on), or modprobe vfio enable_unsafe_noiommu_mode=1.',
          details: {noiommu: noiommu === undefined ? null : noiommu === 'Y'},
        }
  }
  const blockers: Array<{function: string; member: string; driver: string}> = []
  const seen = new Set<number>()
  for (const f of fns) {
    if (f.iommuGroup === null || seen.has(f.iommuGroup)) continue
    seen.add(f.iommuGroup)
    for (const m of host.list(host.sys('kernel/iommu_groups', String(f.iommuGroup), 'devices'))) {
      if (fns.some((x) => x.bdf === m)) continue
      const drv = host.linkName(host.sys('bus/pci/devices', m, 'driver'))
      const cls = host.readInt(host.sys('bus/pci/devices', m, 'class'), 16) ?? 0
      if (drv && !VFIO_COMPATIBLE.has(drv) && cls >> 8 !== 0x0604) blockers.push({function: f.bdf, member: m, driver: drv})
    }
  }
  if (blockers.length === 0) return {...base, verdict: 'pass', found: 'each chosen function\'s group holds only it, bridges or unbound functions', fix: null, details: {blockers}}
  const b = blockers[0]
  return {
    ...base,
    verdict: 'warn',
    found: `${blockers.length} group member(s) bound to other drivers, e.g. ${b.member} (${b.driver}) in ${b.function}'s group: vfio can take the group only with all of it`,
    fix: `Unbind them too (iopmem bind ${b.member} --driver vfio-pci), or move the card to a slot with its own group.`,
    details: {blockers},
  }
}
