/** Debian's stock kernels in the guest: the package's bzImage from /boot, and the modules the agent needs taken from the package's /lib/modules into the initramfs. */
import {execFileSync} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {basename, join} from 'node:path'

/**
 * A distribution kernel builds as modules what the project's guest kernel
 * has built in: 9p and its virtio transport (the agent mounts the host's
 * root with them), NVMe (the agent waits for the namespaces), ext4 (mkfs-dax's
 * default). These, with everything modules.dep says they need, are loaded by
 * /init before anything else, in dependency order. Modules loaded later by a
 * command in the guest come from the same package's /lib/modules over 9p.
 * Those a kernel has built in (modules.builtin: virtio_pci in 6.12, a module
 * in 6.1) are left out.
 */
export const STOCK_INITRD_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'nvme', 'crc32c_generic', 'ext4'] as const

export interface InitrdModule {
  /** The module's name (its file name without .ko and compression). */
  name: string
  /** The uncompressed .ko (busybox insmod loads no .ko.xz). */
  data: Buffer
}

export interface StockKernel {
  release: string
  /** /boot/vmlinuz-RELEASE */
  kernel: string
  /** /lib/modules/RELEASE/build: the headers to build iopmem against. */
  headers: string | null
  modules: InitrdModule[]
}

const norm = (name: string) => name.replaceAll('-', '_')
const modName = (rel: string) => basename(rel).replace(/\.ko(\.(xz|gz|zst))?$/, '')

/**
 * The files (relative to /lib/modules/RELEASE) of `names` and of every module they need,
 * each after what it needs, from modules.dep ("path: dep dep …", each dep's own deps on its line).
 */
export function moduleClosure(depText: string, names: readonly string[], builtinText = ''): string[] {
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map((l) => norm(modName(l))))
  const deps = new Map<string, {file: string; needs: string[]}>()
  for (const line of depText.split('\n')) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const file = line.slice(0, i)
    deps.set(norm(modName(file)), {file, needs: line.slice(i + 1).trim().split(/\s+/).filter(Boolean)})
  }
  const order: string[] = []
  const visit = (name: string, chain: string[]) => {
    const d = deps.get(norm(name))
    if (!d) throw new Error(`modules.dep has no module ${name}${chain.length > 0 ? ` (needed by ${chain.join(' ← ')})` : ''}`)
    if (order.includes(d.file)) return
    if (chain.includes(name)) throw new Error(`modules.dep has a cycle through ${name}`)
    // A line lists all of a module's dependencies; load the deepest first.
    for (const n of [...d.needs].reverse()) visit(modName(n), [name, ...chain])
    order.push(d.file)
  }
  for (const n of names) if (!builtin.has(norm(n))) visit(n, [])
  return order
}

/** Read a module file, uncompressed (xz and zstd through the host's `xz` / `zstd -dc`). */
export function readModuleFile(file: string): Buffer {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], {maxBuffer: 256 * 1024 * 1024})
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-dc', file], {maxBuffer: 256 * 1024 * 1024})
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], {maxBuffer: 256 * 1024 * 1024})
  return readFileSync(file)
}

/** A Debian kernel installed here (linux-image-RELEASE), with the initramfs modules it needs. */
export function stockKernel(release: string, roots: {boot?: string; modules?: string} = {}): StockKernel {
  const boot = roots.boot ?? '/boot'
  const modules = join(roots.modules ?? '/lib/modules', release)
  const kernel = join(boot, `vmlinuz-${release}`)
  if (!existsSync(kernel)) throw new Error(`No ${kernel}: install linux-image-${release}`)
  const dep = readFileSync(join(modules, 'modules.dep'), 'utf8')
  const builtin = existsSync(join(modules, 'modules.builtin')) ? readFileSync(join(modules, 'modules.builtin'), 'utf8') : ''
  const files = moduleClosure(dep, STOCK_INITRD_MODULES, builtin)
  const headers = existsSync(join(modules, 'build', 'Makefile')) ? join(modules, 'build') : null
  return {release, kernel, headers, modules: files.map((f) => ({name: modName(f), data: readModuleFile(join(modules, f))}))}
}

/** The releases of the Debian kernels installed here whose release matches `re` (newest last). */
export function installedStockReleases(re: RegExp, boot = '/boot'): string[] {
  if (!existsSync(boot)) return []
  return readdirSync(boot)
    .filter((f) => f.startsWith('vmlinuz-') && re.test(f.slice(8)))
    .map((f) => f.slice(8))
    .sort((a, b) => a.localeCompare(b, 'en', {numeric: true}))
}
