/** `check`'s driver items: whether uio_pci_generic and vfio-pci can be had (registered, built in, or a module on disk), and hugepages. */
import type {Host} from '../sys/index.js'
import type {CheckItem} from './types.js'

export type DriverAvailability = 'registered' | 'builtin' | 'module' | 'missing' | 'unknown'

/** A PCI driver: registered now (/sys/bus/pci/drivers), built in (modules.builtin), or a module in modules.dep. */
export function driverAvailability(host: Host, release: string | null, name: string, module: string): DriverAvailability {
  if (host.exists(host.sys('bus/pci/drivers', name))) return 'registered'
  if (!release) return 'unknown'
  const re = new RegExp(`(^|/)${module.replaceAll(/[-_]/g, '[-_]')}\\.ko(\\.[gx]z|\\.zst)?:?$`)
  const builtin = host.read(host.modules(release, 'modules.builtin'))
  const dep = host.read(host.modules(release, 'modules.dep'))
  if (builtin === undefined && dep === undefined) return 'unknown'
  if (builtin?.split('\n').some((l) => re.test(l.trim()))) return 'builtin'
  if (dep?.split('\n').some((l) => re.test(l.split(':')[0] + ':'))) return 'module'
  return 'missing'
}

const WHAT: Record<string, string> = {
  uio_pci_generic: 'user-space access to a function without an IOMMU',
  'vfio-pci': 'user-space DMA with an IOMMU group',
}

export function driverItem(host: Host, release: string | null, name: 'uio_pci_generic' | 'vfio-pci'): CheckItem {
  const module = name.replace('-', '_')
  const a = driverAvailability(host, release, name, module)
  const base = {id: `drivers.${name}`, area: 'drivers' as const, title: name}
  const details = {availability: a}
  switch (a) {
    case 'registered':
      return {...base, verdict: 'pass', found: `registered (${WHAT[name]})`, fix: null, details}
    case 'builtin':
      return {...base, verdict: 'pass', found: 'built into the kernel', fix: null, details}
    case 'module':
      return {...base, verdict: 'pass', found: `module available, not loaded`, fix: null, details}
    case 'missing':
      return {...base, verdict: 'warn', found: `neither built in nor a module for ${release}`, fix: `Install the kernel's extra modules (e.g. linux-modules-extra-${release}).`, details}
    default:
      return {...base, verdict: 'unknown', found: `no /lib/modules/${release ?? 'RELEASE'}/modules.{dep,builtin} and not registered`, fix: null, details}
  }
}

/** /proc/meminfo's HugePages_* and Hugepagesize, and transparent hugepages. */
export function hugepagesItem(host: Host): CheckItem {
  const base = {id: 'drivers.hugepages', area: 'drivers' as const, title: 'hugepages'}
  const info = host.read(host.proc('meminfo'))
  const thpText = host.readTrim(host.sys('kernel/mm/transparent_hugepage/enabled'))
  const thp = thpText ? (/\[(\w+)\]/.exec(thpText)?.[1] ?? null) : null
  if (info === undefined) return {...base, verdict: 'unknown', found: 'no /proc/meminfo', fix: null, details: {thp}}
  const field = (n: string) => {
    const m = new RegExp(`^${n}:\\s*(\\d+)`, 'm').exec(info)
    return m ? Number(m[1]) : null
  }
  const total = field('HugePages_Total')
  const free = field('HugePages_Free')
  const sizeKb = field('Hugepagesize')
  const details = {total, free, size: sizeKb === null ? null : sizeKb * 1024, thp}
  const size = sizeKb === null ? '?' : sizeKb >= 1024 ? `${sizeKb / 1024} MiB` : `${sizeKb} KiB`
  const thpNote = thp ? `; THP ${thp}` : ''
  if (total && total > 0) return {...base, verdict: 'pass', found: `${free ?? '?'} of ${total} × ${size} free${thpNote}`, fix: null, details}
  return {
    ...base,
    verdict: thp && thp !== 'never' ? 'pass' : 'warn',
    found: `none reserved${thpNote} (host buffers for bench p2p use ${thp && thp !== 'never' ? 'THP' : '4 KiB pages'})`,
    fix: thp && thp !== 'never' ? null : `echo 512 > /proc/sys/vm/nr_hugepages`,
    details,
  }
}
