/** Which processes hold a file open or mapped, from /proc/PID/fd and /proc/PID/maps. */
import * as path from 'node:path'

import type {Host} from './host.js'

export interface ProcessUse {
  pid: number
  comm: string
  /** "has /dev/nvme0n1 open" or "maps /sys/…/p2pmem/allocate". */
  what: string
}

/**
 * Processes that have a file for which `matches` says yes open (their fd
 * links) or mapped (their maps). Paths are the kernel's, as /proc shows them.
 * Without root, other users' processes cannot be read: they are counted in
 * `denied` rather than guessed at.
 */
export function processesUsing(host: Host, matches: (file: string) => boolean): {uses: ProcessUse[]; denied: number} {
  const uses: ProcessUse[] = []
  let denied = 0
  for (const pidName of host.list(host.proc())) {
    if (!/^\d+$/.test(pidName)) continue
    const pid = Number(pidName)
    if (pid === process.pid && host.isLive) continue
    const fdDir = host.proc(pidName, 'fd')
    const fds = host.list(fdDir)
    const maps = host.read(host.proc(pidName, 'maps'))
    if (fds.length === 0 && host.exists(fdDir) && maps === undefined) {
      denied++
      continue
    }
    const seen = new Set<string>()
    for (const fd of fds) {
      const target = host.readLink(path.join(fdDir, fd))
      if (target && matches(target.replace(/ \(deleted\)$/, ''))) seen.add(`has ${target} open`)
    }
    for (const line of (maps ?? '').split('\n')) {
      const i = line.indexOf('/')
      if (i < 0) continue
      const file = line.slice(i).replace(/ \(deleted\)$/, '')
      if (matches(file)) seen.add(`maps ${file}`)
    }
    if (seen.size === 0) continue
    const comm = host.readTrim(host.proc(pidName, 'comm')) ?? '?'
    for (const what of seen) uses.push({pid, comm, what})
  }
  return {uses, denied}
}

/** The note for processes that could not be inspected. */
export function deniedNote(denied: number): string[] {
  return denied > 0 ? [`${denied} processes could not be inspected (run as root to see every process's open files)`] : []
}
