/** The shape of `iopmem check`'s report: items with a verdict, what was found and the one-line fix. */
import type {SCHEMA_VERSION} from '../sys/index.js'

export type Verdict = 'pass' | 'warn' | 'fail' | 'unknown'

export type Area = 'kernel' | 'iommu' | 'path' | 'memory' | 'providers' | 'drivers'

export const AREAS: readonly Area[] = ['kernel', 'iommu', 'path', 'memory', 'providers', 'drivers']

export interface CheckItem {
  /** Stable id, e.g. `kernel.config.PCI_P2PDMA`, `providers.cmb` (with `subject` for per-function items). */
  id: string
  area: Area
  /** A few words on what is checked. */
  title: string
  /** The PCI function (or bridge) the item is about, when it is about one. */
  subject?: string
  verdict: Verdict
  /** What was found, one line. */
  found: string
  /** What to change, one line; null when nothing needs changing. */
  fix: string | null
  /** Structured facts behind the verdict, for --json. */
  details?: Record<string, unknown>
}

export interface CheckSummary {
  pass: number
  warn: number
  fail: number
  unknown: number
}

export interface CheckReport {
  schemaVersion: typeof SCHEMA_VERSION
  /** Kernel release, effective uid (root reads config space and registers), whether the roots are the live kernel's. */
  machine: {kernelRelease: string | null; root: boolean; live: boolean}
  /** The PCI functions the per-function items are about: those named, or every non-bridge one with device memory. */
  functions: string[]
  items: CheckItem[]
  summary: CheckSummary
  /** No item failed (the exit code is 0 exactly then). */
  ok: boolean
}

export function summarize(items: CheckItem[]): CheckSummary {
  const s: CheckSummary = {pass: 0, warn: 0, fail: 0, unknown: 0}
  for (const i of items) s[i.verdict]++
  return s
}

/** The worst of several verdicts: fail > warn > unknown > pass. */
export function worst(verdicts: Verdict[]): Verdict {
  for (const v of ['fail', 'warn', 'unknown'] as const) if (verdicts.includes(v)) return v
  return 'pass'
}

