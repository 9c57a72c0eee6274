/** PCI addresses ([domain:]bus:device.function): parsing, normalising and recognising them. */
import {usage} from '../sys/index.js'

/**
 * A PCI function address: domain:bus:device.function.
 *
 * Parsing is strict on purpose: the result is used to build sysfs paths, so
 * nothing but hex digits in the kernel's own shape may pass. The domain is
 * optional (defaults to 0000) and may be 4 to 8 hex digits (VMD and some
 * hypervisors use domains above 0xffff; the kernel prints them with %04x).
 */
export interface Bdf {
  domain: number
  bus: number
  device: number
  fn: number
}

const BDF_RE = /^(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i

export function tryParseBdf(text: string): Bdf | undefined {
  const m = BDF_RE.exec(text)
  if (!m) return undefined
  const device = Number.parseInt(m[3], 16)
  if (device > 0x1f) return undefined
  return {
    domain: m[1] === undefined ? 0 : Number.parseInt(m[1], 16),
    bus: Number.parseInt(m[2], 16),
    device,
    fn: Number.parseInt(m[4], 10),
  }
}

/** Parse strictly; throws IopmemError(E_BDF_SYNTAX) naming what was wrong. */
export function parseBdf(text: string): Bdf {
  const bdf = tryParseBdf(text)
  if (bdf) return bdf
  throw bdfError(text)
}

function bdfError(text: string) {
  const shown = JSON.stringify(text.length > 64 ? text.slice(0, 64) + '…' : text)
  let why = 'expected [domain:]bus:device.function in hex, e.g. 0000:03:00.0 or 03:00.0'
  const m = /^(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:([0-9a-f]{2})\.[0-7]$/i.exec(text)
  if (m && Number.parseInt(m[1], 16) > 0x1f) why = `device number 0x${m[1]} is above 0x1f (a bus has 32 device slots)`
  else if (/^(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[89a-f]$/i.test(text)) why = 'the function number must be 0-7'
  return usage(`Invalid PCI address ${shown}: ${why}.`, 'E_BDF_SYNTAX', [
    'Run `iopmem list --all` to see the addresses of the functions on this machine.',
  ])
}

/** Canonical kernel spelling: 0000:03:00.0 */
export function formatBdf(b: Bdf): string {
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0')
  return `${hex(b.domain, 4)}:${hex(b.bus, 2)}:${hex(b.device, 2)}.${b.fn}`
}

/** Parse and canonicalise; throws IopmemError(E_BDF_SYNTAX). */
export function normalizeBdf(text: string): string {
  return formatBdf(parseBdf(text))
}

/** Whether a sysfs directory name is a PCI function (as opposed to pci0000:00, power/, ...). */
export function isBdfName(name: string): boolean {
  return /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(name)
}
