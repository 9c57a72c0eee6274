/** The mount table (/proc/self/mountinfo) and the DAX mode of a mount. */
import type {Host} from './host.js'

/** One line of /proc/self/mountinfo (see proc(5)). */
export interface MountEntry {
  id: number
  /** major:minor of the mounted device */
  dev: string
  root: string
  target: string
  options: string
  fstype: string
  source: string
  superOptions: string
}

const unescape = (s: string) => s.replaceAll(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    const f = line.split(' ')
    const sep = f.indexOf('-', 6)
    if (sep < 0 || f.length < sep + 3) continue
    out.push({
      id: Number(f[0]),
      dev: f[2],
      root: unescape(f[3]),
      target: unescape(f[4]),
      options: f[5],
      fstype: f[sep + 1],
      source: unescape(f[sep + 2]),
      superOptions: f[sep + 3] ?? '',
    })
  }
  return out
}

export function readMounts(host: Host): MountEntry[] {
  return parseMountinfo(host.read(host.proc('self/mountinfo')) ?? '')
}

/** A DAX mount: ext4/xfs `dax`, `dax=always`, or `dax=inode` (per-file). */
export function mountDaxMode(m: MountEntry): 'always' | 'inode' | 'never' | undefined {
  const opts = (m.options + ',' + m.superOptions).split(',')
  if (opts.includes('dax') || opts.includes('dax=always')) return 'always'
  if (opts.includes('dax=inode')) return 'inode'
  if (opts.includes('dax=never')) return 'never'
  return undefined
}
