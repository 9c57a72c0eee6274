/**
 * `check`'s provider items: which chosen functions publish p2pmem, and for an
 * NVMe, its Controller Memory Buffer decoded from CMBLOC/CMBSZ as nvme-cli
 * show-regs does, with what drivers/nvme/host/pci.c nvme_map_cmb() makes of it.
 */
import * as path from 'node:path'

import {loadNative} from '../../native/index.js'
import type {PciFunction} from '../pci/index.js'
import {formatBytes, type Host} from '../sys/index.js'
import type {CheckItem} from './types.js'

export const NVME_REG_CAP = 0x00
export const NVME_REG_CMBLOC = 0x38
export const NVME_REG_CMBSZ = 0x3c
/** memremap_compat_align() on x86-64: SUBSECTION_SIZE, 2 MiB. */
export const CMB_ALIGN = 2 * 1024 * 1024

export interface CmbDecode {
  cmbloc: string
  cmbsz: string
  /** CAP.CMBS (NVMe 1.4): the controller wants CMBMSC.CRE set before CMBSZ reads non-zero. */
  capCmbs: boolean
  /** Size unit (SZU) in bytes: 4 KiB << 4·SZU. */
  unit: number
  /** SZ × unit: what the controller offers. */
  size: number
  /** OFST × unit, within the BAR. */
  offset: number
  /** BIR: the BAR holding it. */
  bar: number
  sqs: boolean
  cqs: boolean
  lists: boolean
  rds: boolean
  wds: boolean
  cqmms: boolean
  cqpds: boolean
  cdpmls: boolean
  cdpcils: boolean
  cdmmms: boolean
  cqda: boolean
}

/** Decode CMBLOC and CMBSZ (NVMe base spec 3.1.4.12/13), null when CMBSZ is 0 (no CMB). */
export function decodeCmb(cmbloc: number, cmbsz: number, capHi = 0): CmbDecode | null {
  if (cmbsz === 0) return null
  const szu = (cmbsz >>> 8) & 0xf
  const unit = 2 ** (12 + 4 * szu)
  const bit = (v: number, n: number) => ((v >>> n) & 1) === 1
  return {
    cmbloc: '0x' + (cmbloc >>> 0).toString(16).padStart(8, '0'),
    cmbsz: '0x' + (cmbsz >>> 0).toString(16).padStart(8, '0'),
    capCmbs: bit(capHi, 57 - 32),
    unit,
    size: unit * ((cmbsz >>> 12) & 0xfffff),
    offset: unit * ((cmbloc >>> 12) & 0xfffff),
    bar: cmbloc & 0x7,
    sqs: bit(cmbsz, 0),
    cqs: bit(cmbsz, 1),
    lists: bit(cmbsz, 2),
    rds: bit(cmbsz, 3),
    wds: bit(cmbsz, 4),
    cqmms: bit(cmbloc, 3),
    cqpds: bit(cmbloc, 4),
    cdpmls: bit(cmbloc, 5),
    cdpcils: bit(cmbloc, 6),
    cdmmms: bit(cmbloc, 7),
    cqda: bit(cmbloc, 8),
  }
}

/** What nvme_map_cmb() does with a decoded CMB on this BAR: the size it registers, and whether it publishes. */
export function kernelCmbOutcome(d: CmbDecode, bar: {start: bigint; size: number} | undefined): {registered: boolean; size: number; published: boolean; why: string} {
  if (!bar) return {registered: false, size: 0, published: false, why: `BIR names BAR${d.bar}, which is not there`}
  if (d.offset > bar.size) return {registered: false, size: 0, published: false, why: `offset ${formatBytes(d.offset)} lies past BAR${d.bar} (${formatBytes(bar.size)})`}
  const size = Math.min(d.size, bar.size - d.offset)
  if (size % CMB_ALIGN !== 0 || bar.start % BigInt(CMB_ALIGN) !== 0n) {
    return {registered: false, size, published: false, why: `size ${formatBytes(size)} or BAR${d.bar} start not 2 MiB aligned (memremap_compat_align)`}
  }
  if (d.rds && d.wds) return {registered: true, size, published: true, why: 'RDS and WDS set: registered and published as p2pmem'}
  const missing = [d.rds ? null : 'RDS', d.wds ? null : 'WDS'].filter(Boolean).join(' and ')
  return {registered: true, size, published: false, why: `registered as P2PDMA memory but not published: ${missing} missing (the kernel publishes only with both)`}
}

/** CAP (high dword), CMBLOC and CMBSZ from BAR0, or why they could not be read. */
export type RegisterReader = (host: Host, f: PciFunction) => {cap: number; cmbloc: number; cmbsz: number} | {error: string}

/**
 * Read through resource0: on the live kernel an mmap (read-only, uncached:
 * MMIO cannot be read(2) through sysfs), on fixture trees the file's bytes.
 * Both need root, as the kernel's resource0 does.
 */
export const readNvmeRegisters: RegisterReader = (host, f) => {
  const file = path.join(f.sysfsPath, 'resource0')
  if (!host.isRoot()) return {error: 'reading BAR0 registers needs root'}
  if (!host.exists(file)) return {error: 'no resource0 file'}
  if (!host.isLive) {
    const b = host.readBytes(file, 0x40)
    if (!b || b.length < 0x40) return {error: 'resource0 shorter than the registers'}
    return {cap: b.readUInt32LE(4), cmbloc: b.readUInt32LE(NVME_REG_CMBLOC), cmbsz: b.readUInt32LE(NVME_REG_CMBSZ)}
  }
  try {
    const n = loadNative()
    const m = n.map(file, {length: 4096, readOnly: true, mode: 'uc'})
    try {
      return {cap: n.read32(m, 4), cmbloc: n.read32(m, NVME_REG_CMBLOC), cmbsz: n.read32(m, NVME_REG_CMBSZ)}
    } finally {
      m.unmap()
    }
  } catch (error) {
    const msg = error instanceof Error ? error.message : String(error)
    return {error: `mapping resource0 failed (${msg}); with CONFIG_IO_STRICT_DEVMEM a BAR the nvme driver holds cannot be mapped`}
  }
}

const short = (b: string) => b.replace(/^0000:/, '')

export function isNvme(f: PciFunction): boolean {
  return f.classCode === '0x010802'
}

export function p2pmemItem(fns: PciFunction[]): CheckItem {
  const base = {id: 'providers.p2pmem', area: 'providers' as const, title: 'p2pmem providers'}
  const prov = fns.filter((f) => f.p2pmem)
  const details = {providers: prov.map((f) => ({bdf: f.bdf, size: f.p2pmem!.size, available: f.p2pmem!.available, published: f.p2pmem!.published}))}
  const published = prov.filter((f) => f.p2pmem!.published)
  if (published.length > 0) {
    return {
      ...base,
      verdict: 'pass',
      found: published.map((f) => `${short(f.bdf)} ${formatBytes(f.p2pmem!.size)} (${formatBytes(f.p2pmem!.available)} free)`).join('; ') + (prov.length > published.length ? `; ${prov.length - published.length} registered, not published` : ''),
      fix: null,
      details,
    }
  }
  return {
    ...base,
    verdict: 'warn',
    found: prov.length > 0 ? `${prov.map((f) => short(f.bdf)).join(', ')} registered but none published` : 'no chosen function publishes p2pmem: nothing to DMA into',
    fix: 'An NVMe with a CMB (RDS+WDS), or a BAR given to iopmem: iopmem bind BDF --as p2pmem',
    details,
  }
}

export function cmbItem(host: Host, f: PciFunction, read: RegisterReader = readNvmeRegisters): CheckItem {
  const base = {id: 'providers.cmb', area: 'providers' as const, title: 'NVMe CMB', subject: f.bdf}
  const pub = f.p2pmem?.published === true
  const regs = read(host, f)
  if ('error' in regs) {
    return {
      ...base,
      verdict: pub ? 'pass' : 'unknown',
      found: `${pub ? `p2pmem published (${formatBytes(f.p2pmem!.size)}); ` : ''}CMBLOC/CMBSZ not read: ${regs.error}`,
      fix: pub ? null : 'Run as root (sudo iopmem check) to decode the CMB registers.',
      details: {registers: null, error: regs.error, p2pmem: f.p2pmem},
    }
  }
  const d = decodeCmb(regs.cmbloc, regs.cmbsz, regs.cap)
  if (!d) {
    const capCmbs = ((regs.cap >>> 25) & 1) === 1
    return {
      ...base,
      verdict: pub ? 'warn' : 'pass',
      found: pub ? 'CMBSZ reads 0 yet p2pmem is published (another BAR?)' : `no CMB (CMBSZ = 0${capCmbs ? ', CAP.CMBS set: the driver enables it at probe' : ''}): a client, not a provider`,
      fix: null,
      details: {registers: {cmbloc: regs.cmbloc, cmbsz: regs.cmbsz}, cmb: null, p2pmem: f.p2pmem},
    }
  }
  const bar = f.bars.find((b) => b.index === d.bar && b.type === 'mem')
  const k = kernelCmbOutcome(d, bar ? {start: BigInt(bar.start), size: bar.size} : undefined)
  const flags = (['sqs', 'cqs', 'lists', 'rds', 'wds'] as const).filter((x) => d[x]).map((x) => x.toUpperCase())
  const desc = `${formatBytes(d.size)} in BAR${d.bar} at +${formatBytes(d.offset)}, ${flags.join(' ') || 'no use flags'}`
  let verdict: CheckItem['verdict'] = 'pass'
  let fix: string | null = null
  let found = `${desc}: ${k.why}`
  if (k.published && !pub) {
    verdict = 'warn'
    found += `, yet sysfs shows ${f.p2pmem ? 'it unpublished' : 'no p2pmem'}` + (f.driver === 'nvme' ? '' : ` (driver: ${f.driver ?? 'none'})`)
    fix = f.driver === 'nvme' ? 'Check dmesg for "failed to register the CMB"; CONFIG_PCI_P2PDMA must be set.' : 'Bind it to nvme: iopmem bind BDF --driver nvme'
  } else if (!k.published) {
    verdict = 'warn'
    fix = 'This CMB cannot be a P2P provider; use another NVMe or a BAR given to iopmem.'
  }
  return {...base, verdict, found, fix, details: {registers: {cmbloc: d.cmbloc, cmbsz: d.cmbsz}, cmb: d, kernel: k, p2pmem: f.p2pmem}}
}
