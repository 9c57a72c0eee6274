/**
 * Where the NVMe controllers' data went, counted from QEMU's own trace of every data pointer
 * they map (pci_nvme_map_addr / _cmb): the host side reads the trace as the guest asks, and the
 * guest side (`dmaCheckpoint`, used by `bench p2p` inside the sandbox) asks at phase boundaries.
 *
 * Protocol over the never-cached xfer share (the directory is `IOPMEM_SANDBOX_DMA` in the guest):
 *   guest: write req-ID (tmp + rename), wait for resp-ID (JSON DmaTotals), remove both
 *   host:  on each poll, for every req-ID: read the trace to its end, write resp-ID
 * The totals are cumulative since boot; a phase's traffic is the difference of two checkpoints.
 * Every I/O the guest saw complete was traced before its completion was posted, and QEMU's log
 * backend flushes each line, so a checkpoint taken after an I/O returned counts that I/O.
 */
import {closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

/** Bytes NVMe controllers mapped as data, by where the address lay. */
export interface DmaTotals {
  /** In guest RAM. */
  ramBytes: number
  /** Outside guest RAM: a PCI BAR (a CMB, another device's memory). */
  deviceBytes: number
  /** The part of deviceBytes that was the controller's own CMB (pci_nvme_map_addr_cmb). */
  ownCmbBytes: number
  /** Data pointers counted (pci_nvme_map_addr lines). */
  events: number
}

export const ZERO_TOTALS: DmaTotals = {ramBytes: 0, deviceBytes: 0, ownCmbBytes: 0, events: 0}

export function subtractTotals(after: DmaTotals, before: DmaTotals): DmaTotals {
  return {
    ramBytes: after.ramBytes - before.ramBytes,
    deviceBytes: after.deviceBytes - before.deviceBytes,
    ownCmbBytes: after.ownCmbBytes - before.ownCmbBytes,
    events: after.events - before.events,
  }
}

const LINE = /^pci_nvme_map_addr(_cmb)? addr 0x([0-9a-f]+) len (\d+)$/

/**
 * Reads QEMU's trace log incrementally and keeps the totals. `isRam(addr, len)` says whether a
 * range is guest RAM (the q35 layout of the guest's memory size).
 */
export class DmaTraceCounter {
  private offset = 0
  private partial = ''
  readonly totals: DmaTotals = {...ZERO_TOTALS}

  constructor(
    readonly traceFile: string,
    private readonly isRam: (addr: bigint, len: number) => boolean,
  ) {}

  /** Add the lines written since the last call; returns the totals. */
  update(): DmaTotals {
    let fd: number
    try {
      fd = openSync(this.traceFile, 'r')
    } catch {
      return {...this.totals}
    }
    try {
      const size = fstatSync(fd).size
      const chunk = Buffer.alloc(1 << 20)
      while (this.offset < size) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, size - this.offset), this.offset)
        if (n <= 0) break
        this.offset += n
        this.feed(chunk.toString('latin1', 0, n))
      }
    } finally {
      closeSync(fd)
    }
    return {...this.totals}
  }

  /** @internal Count complete lines of `text` (a line cut at a read boundary waits for its end). */
  feed(text: string): void {
    const lines = (this.partial + text).split('\n')
    this.partial = lines.pop() ?? ''
    for (const line of lines) {
      const m = LINE.exec(line)
      if (!m) continue
      const len = Number(m[3])
      // QEMU's nvme_map_addr() traces every pointer as map_addr, then, for one in the
      // controller's own CMB, map_addr_cmb as well: the second line refines the first.
      if (m[1]) this.totals.ownCmbBytes += len
      else {
        this.totals.events++
        if (this.isRam(BigInt(`0x${m[2]}`), len)) this.totals.ramBytes += len
        else this.totals.deviceBytes += len
      }
    }
  }
}

/** Host side: answer the guest's checkpoint requests in `dir` from `counter`. */
export class DmaServer {
  constructor(
    readonly dir: string,
    readonly counter: DmaTraceCounter,
  ) {}

  /** Answer every pending request; cheap when there is none (one readdir). */
  serve(): void {
    let names: string[]
    try {
      names = readdirSync(this.dir)
    } catch {
      return
    }
    const reqs = names.filter((n) => /^req-[A-Za-z0-9_-]+$/.test(n))
    if (reqs.length === 0) return
    const totals = this.counter.update()
    for (const r of reqs) {
      const id = r.slice(4)
      const tmp = join(this.dir, `.resp-${id}`)
      writeFileSync(tmp, JSON.stringify(totals) + '\n')
      renameSync(tmp, join(this.dir, `resp-${id}`))
      rmSync(join(this.dir, r), {force: true})
    }
  }
}

/** The guest's environment variable naming the checkpoint directory (set by the sandbox). */
export const DMA_ENV = 'IOPMEM_SANDBOX_DMA'

let seq = 0

/**
 * Guest side: the cumulative DMA totals now, or undefined outside a sandbox that counts them
 * (or when the host does not answer within `timeoutMs`).
 */
export async function dmaCheckpoint(env: NodeJS.ProcessEnv = process.env, timeoutMs = 10_000): Promise<DmaTotals | undefined> {
  const dir = env[DMA_ENV]
  if (!dir || !existsSync(dir)) return undefined
  const id = `${process.pid}-${++seq}`
  const tmp = join(dir, `.req-${id}`)
  const resp = join(dir, `resp-${id}`)
  writeFileSync(tmp, '')
  renameSync(tmp, join(dir, `req-${id}`))
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (existsSync(resp)) {
      try {
        const t = JSON.parse(readFileSync(resp, 'utf8')) as DmaTotals
        return t
      } finally {
        rmSync(resp, {force: true})
      }
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  rmSync(join(dir, `req-${id}`), {force: true})
  return undefined
}
