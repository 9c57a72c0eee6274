/** A scan of every PCI function started ahead of the command that asks for it, so its sysfs reads overlap start-up. */
import type {Host} from '../sys/index.js'
import {type PciFunction, PciScanner} from './sysfs.js'

interface Started {
  host: Host
  bdfs: string[]
  functions: Promise<PciFunction[] | undefined>
  stop: AbortController
}

let started: Started | undefined

/**
 * Start reading every PCI function of this host (PciScanner.readAllAsync: the
 * system calls on the addon's threads) and keep the promise for
 * takePrefetched(). bin/run.js calls it for `iopmem list` before oclif loads,
 * which is most of start-up's single-threaded work: the reads (~5,000 files on
 * a 256-function machine) happen meanwhile instead of after. Any failure just
 * leaves nothing started; the command then reads as it would have.
 */
export function prefetchScan(host: Host): void {
  abandonPrefetch()
  try {
    const scanner = new PciScanner(host)
    const bdfs = scanner.listBdfs()
    if (bdfs.length === 0) return
    const stop = new AbortController()
    // A failed scan answers undefined: the command's own read then raises its error.
    started = {host, bdfs, stop, functions: scanner.readAllAsync(bdfs, stop.signal).catch(() => undefined)}
  } catch {
    started = undefined
  }
}

/**
 * Stop a started scan nobody will take (list of named functions, a usage
 * error, the command done): it issues no further batch, so the process does
 * not stay for reads it does not need; the batch on the threads, if any, ends.
 */
export function abandonPrefetch(): void {
  started?.stop.abort()
  started = undefined
}

/**
 * What prefetchScan read, if it read these functions of this host (the same
 * Host object: a test's or another root's host never gets another's answers)
 * with the default scan options; taken once. The answers are as old as the
 * reads, a few tens of milliseconds, as any scan's are by the time it is shown.
 * One that does not match is abandoned.
 */
export async function takePrefetched(host: Host, bdfs: readonly string[]): Promise<PciFunction[] | undefined> {
  const s = started
  started = undefined
  if (!s) return undefined
  if (s.host !== host || s.bdfs.length !== bdfs.length || s.bdfs.some((b, i) => b !== bdfs[i])) {
    s.stop.abort()
    return undefined
  }
  return s.functions
}
