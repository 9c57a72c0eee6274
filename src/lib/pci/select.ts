/** lspci's selectors for `iopmem list`: -s [[domain:]bus:][dev][.fn], -d [vendor]:[device][:class], and by class, driver or p2pmem. */
import {usage} from '../sys/index.js'
import type {PciFunction} from './sysfs.js'
import {offersMemory} from './topo.js'

/** What `list` was asked to keep (every part optional; all given parts must match). */
export interface Selectors {
  /** lspci -s: `[[domain:]bus:][device][.function]`, each part hex, empty or `*` for any. */
  slot?: string
  /** lspci -d: `[vendor]:[device][:class]`, hex, empty or `*` for any. */
  id?: string
  /** A class in hex (`01`, `0108`, `010802`, `0x…`) or words of its name (`nvme`, `bridge`). */
  class?: string
  /** The bound driver's name; `none` for functions with no driver. */
  driver?: string
  /** Only P2P providers: a p2pmem pool, or bound to iopmem. */
  p2pmem?: boolean
}

type Test = (f: PciFunction) => boolean

const anyOr = (s: string) => s === '' || s === '*'

function hexPart(flag: string, text: string, part: string, max: number): number | undefined {
  if (anyOr(part)) return undefined
  if (!/^[0-9a-f]+$/i.test(part) || Number.parseInt(part, 16) > max) {
    throw usage(`${flag} ${JSON.stringify(text)}: ${JSON.stringify(part)} is not a hex number up to 0x${max.toString(16)}.`, 'E_SELECTOR', [
      flag === '-s' ? 'As lspci: -s [[domain:]bus:][device][.function], e.g. -s 03:00, -s 03:, -s .1' : 'As lspci: -d [vendor]:[device][:class], e.g. -d 1b36:0010, -d ::0108',
    ])
  }
  return Number.parseInt(part, 16)
}

/** lspci's pci_filter_parse_slot: the last two colons split domain, bus and device.function. */
function slotTest(text: string): Test {
  const parts = text.split(':')
  if (parts.length > 3) throw usage(`-s ${JSON.stringify(text)}: at most domain:bus:device.function.`, 'E_SELECTOR')
  const devfn = parts.pop()!
  const bus = parts.pop()
  const domain = parts.pop()
  const [dev, fn, extra] = devfn.split('.')
  if (extra !== undefined) throw usage(`-s ${JSON.stringify(text)}: one "." between device and function.`, 'E_SELECTOR')
  const want = {
    domain: domain === undefined ? undefined : hexPart('-s', text, domain, 0xffffffff),
    bus: bus === undefined ? undefined : hexPart('-s', text, bus, 0xff),
    device: hexPart('-s', text, dev, 0x1f),
    function: fn === undefined ? undefined : hexPart('-s', text, fn, 7),
  }
  return (f) => (Object.keys(want) as Array<keyof typeof want>).every((k) => want[k] === undefined || f[k] === want[k])
}

function idTest(text: string): Test {
  const parts = text.split(':')
  if (parts.length < 2 || parts.length > 3) throw usage(`-d ${JSON.stringify(text)}: expected [vendor]:[device][:class].`, 'E_SELECTOR', ['e.g. -d 1b36:0010, -d 1b36:, -d ::0108'])
  const [v, d, c = ''] = parts
  const vendor = hexPart('-d', text, v, 0xffff)
  const device = hexPart('-d', text, d, 0xffff)
  const cls = classTest(c, '-d')
  return (f) => (vendor === undefined || Number(f.vendorId) === vendor) && (device === undefined || Number(f.deviceId) === device) && cls(f)
}

/** Words people use for a class whose pci.ids name does not contain them (the name of an NVMe controller is "Non-Volatile memory controller (NVM Express)"). */
const CLASS_WORDS: Record<string, string> = {nvme: '010802', storage: '01', network: '02', display: '03', gpu: '03', memory: '05', accelerator: '12'}

/** Hex: 2 digits the base class, 4 class and subclass (as lspci -d), 6 with the programming interface; else words of the class name. */
function classTest(text: string, flag = '--class'): Test {
  if (anyOr(text)) return () => true
  const hex = /^(0x)?([0-9a-f]{2}|[0-9a-f]{4}|[0-9a-f]{6})$/i.exec(text)
  if (hex) {
    const digits = hex[2]
    const want = Number.parseInt(digits, 16)
    const shift = 8 * ((6 - digits.length) / 2)
    return (f) => Number(f.classCode) >> shift === want
  }
  const alias = CLASS_WORDS[text.toLowerCase()]
  if (alias !== undefined && flag !== '-d') return classTest(alias)
  if (flag === '-d') throw usage(`-d ${JSON.stringify(text)}: the class is 4 hex digits (class and subclass), e.g. -d ::0108.`, 'E_SELECTOR')
  const words = text.toLowerCase().split(/\s+/).filter(Boolean)
  return (f) => words.every((w) => f.className.toLowerCase().includes(w))
}

/** One predicate for every selector given (undefined: none was). Throws E_SELECTOR (exit 2) on a malformed one. */
export function selectorTest(sel: Selectors): Test | undefined {
  const tests: Test[] = []
  if (sel.slot !== undefined) tests.push(slotTest(sel.slot))
  if (sel.id !== undefined) tests.push(idTest(sel.id))
  if (sel.class !== undefined) tests.push(classTest(sel.class))
  if (sel.driver !== undefined) {
    const want = sel.driver
    tests.push((f) => (want === 'none' ? f.driver === null : f.driver === want))
  }
  if (sel.p2pmem) tests.push(offersMemory)
  return tests.length === 0 ? undefined : (f) => tests.every((t) => t(f))
}
