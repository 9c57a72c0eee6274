/**
 * What `iopmem check` reads besides PCI, written into a fixture tree: the
 * kernel's release and config (/proc/config.gz or /boot/config-RELEASE),
 * /proc/cmdline, lockdown, /lib/modules, /proc/meminfo and mtrr, IOMMU units
 * and group types, and an NVMe's CMBLOC/CMBSZ in its resource0.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {gzipSync} from 'node:zlib'

import {NVME_REG_CMBLOC, NVME_REG_CMBSZ} from '../../src/lib/check/providers.js'
import {standardMachine, BDF} from './machines.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export const RELEASE = '6.12.48-iopmem'

/** The options a P2P-ready kernel has (as Debian's 6.12 sets them, plus PCI_P2PDMA). */
export const GOOD_CONFIG: Record<string, string | null> = {
  PCI_P2PDMA: 'y',
  ZONE_DEVICE: 'y',
  FS_DAX: 'y',
  DEV_DAX: 'm',
  IO_STRICT_DEVMEM: null,
  SECURITY_LOCKDOWN_LSM: 'y',
  MODULE_SIG_FORCE: null,
}

export function configText(opts: Record<string, string | null>): string {
  const lines = ['#', '# Automatically generated file; DO NOT EDIT.', '#']
  for (const [k, v] of Object.entries(opts)) lines.push(v === null ? `# CONFIG_${k} is not set` : `CONFIG_${k}=${v}`)
  return lines.join('\n') + '\n'
}

function write(file: string, data: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), {recursive: true})
  fs.writeFileSync(file, data)
}

export const boot = (fx: SysfsFixture, ...p: string[]) => path.join(fx.root, 'boot', ...p)
export const modules = (fx: SysfsFixture, ...p: string[]) => path.join(fx.root, 'lib/modules', ...p)

export interface KernelSpec {
  release?: string
  /** Where the config lives: /proc/config.gz, /boot/config-RELEASE, or nowhere. */
  config?: {where: 'proc' | 'boot' | 'none'; options?: Record<string, string | null>}
  cmdline?: string
  /** The lockdown file's content, or null for no file. */
  lockdown?: string | null
  /** modules.dep lines; modules.builtin lines. */
  modulesDep?: string[]
  modulesBuiltin?: string[]
  meminfo?: string
  mtrr?: string | null
  cpuFlags?: string
}

export function setKernel(fx: SysfsFixture, spec: KernelSpec = {}): SysfsFixture {
  const release = spec.release ?? RELEASE
  write(path.join(fx.proc, 'sys/kernel/osrelease'), release + '\n')
  const cfg = spec.config ?? {where: 'proc'}
  const text = configText({...GOOD_CONFIG, ...cfg.options})
  fs.rmSync(path.join(fx.proc, 'config.gz'), {force: true})
  fs.rmSync(boot(fx), {recursive: true, force: true})
  if (cfg.where === 'proc') write(path.join(fx.proc, 'config.gz'), gzipSync(text))
  if (cfg.where === 'boot') write(boot(fx, `config-${release}`), text)
  write(path.join(fx.proc, 'cmdline'), (spec.cmdline ?? `BOOT_IMAGE=/vmlinuz-${release} root=/dev/vda1 ro quiet`) + '\n')
  const lock = path.join(fx.sys, 'kernel/security/lockdown')
  fs.rmSync(lock, {force: true})
  if (spec.lockdown !== null) write(lock, (spec.lockdown ?? '[none] integrity confidentiality') + '\n')
  write(
    modules(fx, release, 'modules.dep'),
    (spec.modulesDep ?? ['kernel/drivers/uio/uio_pci_generic.ko.xz: kernel/drivers/uio/uio.ko.xz', 'kernel/drivers/uio/uio.ko.xz:']).join('\n') + '\n',
  )
  write(modules(fx, release, 'modules.builtin'), (spec.modulesBuiltin ?? ['kernel/drivers/vfio/pci/vfio-pci.ko']).join('\n') + '\n')
  write(path.join(fx.proc, 'meminfo'), spec.meminfo ?? 'MemTotal:       8000000 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n')
  write(path.join(fx.sys, 'kernel/mm/transparent_hugepage/enabled'), 'always [madvise] never\n')
  fs.rmSync(path.join(fx.proc, 'mtrr'), {force: true})
  if (spec.mtrr !== null) write(path.join(fx.proc, 'mtrr'), spec.mtrr ?? 'reg00: base=0x000000000 (    0MB), size= 2048MB, count=1: write-back\nreg01: base=0x080000000 ( 2048MB), size=  512MB, count=1: write-back\n')
  const cpuinfo = fs.readFileSync(path.join(fx.proc, 'cpuinfo'), 'utf8')
  const flags = spec.cpuFlags ?? 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush'
  write(path.join(fx.proc, 'cpuinfo'), cpuinfo.replaceAll(/^flags\t\t: .*\n/gm, '').replaceAll('model name\t: Fixture CPU\n', `model name\t: Fixture CPU\nflags\t\t: ${flags}\n`))
  return fx
}

/** An IOMMU: a unit in /sys/class/iommu and a `type` in every group the fixture has. */
export function setIommu(fx: SysfsFixture, type: string | null, unit = 'dmar0'): SysfsFixture {
  fs.mkdirSync(path.join(fx.sys, 'class/iommu', unit), {recursive: true})
  const groups = path.join(fx.sys, 'kernel/iommu_groups')
  for (const g of fs.readdirSync(groups)) {
    const f = path.join(groups, g, 'type')
    fs.rmSync(f, {force: true})
    if (type !== null) fs.writeFileSync(f, type + '\n')
  }
  return fx
}

/** QEMU's CMB: CMBSZ with SQS, LISTS, RDS, WDS, SZU = MiB and SZ = cmb_size_mb; CMBLOC with BIR 2, offset 0 (hw/nvme/ctrl.c). */
export function qemuCmbsz(mb: number, flags = 0x1d): number {
  return ((mb << 12) | (2 << 8) | flags) >>> 0
}

/** Write CAP (high dword), CMBLOC and CMBSZ into a function's resource0, as its BAR0 registers read. */
export function setNvmeRegisters(fx: SysfsFixture, bdf: string, regs: {cmbloc: number; cmbsz: number; capHi?: number}): void {
  const f = path.join(fx.fnDir(bdf), 'resource0')
  const fd = fs.openSync(f, 'r+')
  try {
    const b = Buffer.alloc(0x40)
    b.writeUInt32LE(regs.capHi ?? 0, 4)
    b.writeUInt32LE(regs.cmbloc >>> 0, NVME_REG_CMBLOC)
    b.writeUInt32LE(regs.cmbsz >>> 0, NVME_REG_CMBSZ)
    fs.writeSync(fd, b, 0, b.length, 0)
  } finally {
    fs.closeSync(fd)
  }
}

/** No IOMMU: no groups at all, as the kernel shows it (standardMachine gives some functions groups for vfio's sake). */
export function removeIommu(fx: SysfsFixture): SysfsFixture {
  const groups = path.join(fx.sys, 'kernel/iommu_groups')
  fs.rmSync(groups, {recursive: true})
  fs.mkdirSync(groups)
  for (const b of fx.fns.keys()) fs.rmSync(path.join(fx.fnDir(b), 'iommu_group'), {force: true})
  fs.rmSync(path.join(fx.sys, 'class/iommu'), {recursive: true, force: true})
  return fx
}

/**
 * standardMachine() with a P2P-ready kernel around it: config in
 * /proc/config.gz, no lockdown, and the CMB NVMe's registers saying what
 * QEMU's cmb_size_mb=64 sets (CAP.CMBS, BIR 2). No IOMMU unless `iommu`
 * names the domain type of its groups (null: groups without a type file).
 */
export function checkMachine(opts: {configSize?: number; iommu?: string | null} & KernelSpec = {}): SysfsFixture {
  const fx = standardMachine({configSize: opts.configSize})
  setKernel(fx, opts)
  if (opts.iommu === undefined) removeIommu(fx)
  else setIommu(fx, opts.iommu)
  setNvmeRegisters(fx, BDF.nvmeCmb, {cmbloc: 0x2, cmbsz: qemuCmbsz(64), capHi: 1 << 25})
  return fx
}
