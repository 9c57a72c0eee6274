/** What a path names once it is resolved (realpath): a PCI BAR's resource file, a function's p2pmem allocator, another sysfs file, or something outside sysfs. */
import * as path from 'node:path'

import type {Host} from '../sys/index.js'

const BDF = '[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]'
const RESOURCE_RE = new RegExp(`/(${BDF})/resource([0-5])(_wc)?$`, 'i')
const P2P_ALLOC_RE = new RegExp(`/(${BDF})/p2pmem/allocate$`, 'i')

export type SysPathKind =
  /** `…/BDF/resourceN[_wc]` in sysfs's device tree, however it was reached. */
  | {kind: 'bar'; file: string; bdf: string; index: number; wc: boolean}
  /** `…/BDF/p2pmem/allocate`. */
  | {kind: 'p2pmem'; file: string; bdf: string}
  /** Any other file under sysfs: an attribute, never device memory to map or copy. */
  | {kind: 'sysfs'; file: string}
  /** Outside sysfs: the resolved path (the path as given, made absolute, when it does not exist). */
  | {kind: 'other'; file: string}

/**
 * Resolve `p` (relative to the working directory, through every symlink:
 * /sys/class/nvme/nvme0/device/resource0, /sys/bus/pci/devices/BDF/…, a link
 * a user made) and say what it is. Under fixture roots a kernel path
 * (/sys/…) means the fixture's, as everywhere else.
 */
export function classifyPath(host: Host, p: string): SysPathKind {
  const abs = host.fromSystemPath(path.resolve(p))
  const real = host.realpath(abs) ?? realParent(host, abs)
  const sysRoots = [...new Set([host.realpath(host.roots.sysfs) ?? host.roots.sysfs, host.roots.sysfs])]
  const root = sysRoots.find((r) => real === r || real.startsWith(r + '/'))
  if (root === undefined) return {kind: 'other', file: real}
  const file = path.join(host.roots.sysfs, path.relative(root, real))
  const r = RESOURCE_RE.exec(file)
  if (r) return {kind: 'bar', file, bdf: r[1].toLowerCase(), index: Number(r[2]), wc: r[3] !== undefined}
  const a = P2P_ALLOC_RE.exec(file)
  if (a) return {kind: 'p2pmem', file, bdf: a[1].toLowerCase()}
  return {kind: 'sysfs', file}
}

/** A path that does not exist (yet): its directory resolved, its name kept. */
function realParent(host: Host, abs: string): string {
  const dir = host.realpath(path.dirname(abs))
  return dir === undefined ? abs : path.join(dir, path.basename(abs))
}
