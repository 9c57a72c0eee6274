/**
 * The second half of a big `locate --json`: FIEMAP over the range it is
 * given, the scan, and the JSON lines, while the main thread does the first
 * half. Everything comes back by transfer (no copies). Its first extent's
 * line is left to the main thread: the join may merge it into the first half's last.
 */
import {parentPort, workerData} from 'node:worker_threads'

import {type FormatParams, formatExtents, type ScanContext, scanExtents, sliceExtents} from './locate-core.js'
import {loadNative} from '../../native/index.js'

interface Job {
  file: string
  start: number
  length: number | bigint
  sync: boolean
  ctx: ScanContext
  fmt?: FormatParams
}

const job = workerData as Job
try {
  const r = loadNative().fiemap(job.file, {start: job.start, length: job.length, sync: job.sync})
  const part = scanExtents(r, job.ctx)
  const chunks: Uint8Array[] = []
  // All lines but the first: that extent may continue the first half's last (the main thread writes it after the join).
  if (job.fmt) formatExtents(sliceExtents(part, 1, part.count), job.fmt, false, (c) => chunks.push(c))
  const transfer = [part.fileOffset.buffer, part.length.buffer, part.deviceOffset.buffer, part.flags.buffer, ...chunks.map((c) => c.buffer)] as ArrayBuffer[]
  parentPort!.postMessage({part, chunks}, [...new Set(transfer)])
} catch (error) {
  const e = error as {message?: string; code?: string}
  parentPort!.postMessage({error: {message: e.message ?? String(error), code: e.code}})
}
