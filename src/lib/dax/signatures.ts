/** The one filesystem-signature detector (wipefs, i.e. libblkid): what a device or image holds, for mkfs-dax and bench p2p alike. */
import {Exit, type Host, IopmemError, outputTail, type Runner, runProgram} from '../sys/index.js'

export interface Signature {
  /** Where it was found: the device itself or one of its partitions. */
  device: string
  /** Byte offset of the magic, hex as wipefs prints it. */
  offset: string
  /** ext4, xfs, gpt, dos, swap, LVM2_member, crypto_LUKS, … (libblkid's names). */
  type: string
  uuid: string | null
  label: string | null
}

/** Parse `wipefs --no-act --json` output. */
export function parseWipefsJson(text: string, device: string): Signature[] {
  if (!text.trim()) return []
  const j = JSON.parse(text) as {signatures?: Array<Record<string, unknown>>}
  return (j.signatures ?? []).map((s) => ({
    device: typeof s.device === 'string' ? (s.device.startsWith('/') ? s.device : device) : device,
    offset: String(s.offset ?? '?'),
    type: String(s.type ?? 'unknown'),
    uuid: typeof s.uuid === 'string' ? s.uuid : null,
    label: typeof s.label === 'string' ? s.label : null,
  }))
}

/**
 * Every signature wipefs (libblkid) finds on each node: filesystems, swap,
 * partition tables (MBR/dos, GPT), LUKS, LVM, md members. Read-only
 * (`wipefs --no-act`). An unreadable node is E_PROBE_FAILED.
 */
export async function probeSignatures(runner: Runner, nodes: string[], host: Host): Promise<Signature[]> {
  const out: Signature[] = []
  for (const node of nodes) {
    const r = await runProgram(host, runner, 'wipefs', ['--no-act', '--json', host.programPath(node)])
    if (r.code !== 0) {
      throw new IopmemError(`Cannot read ${node} to look for existing filesystems: wipefs said: ${outputTail(r, 3) || `exit ${r.code}`}`, {
        code: 'E_PROBE_FAILED',
        exit: /denied|permitted/i.test(r.stderr) ? Exit.PERMISSION : Exit.FAILURE,
        suggestions: ['Run as root (sudo).'],
      })
    }
    try {
      // wipefs names what it read (the fixture's file under fixture roots): report the kernel's name.
      out.push(...parseWipefsJson(r.stdout, node).map((s) => ({...s, device: host.display(s.device)})))
    } catch {
      throw new IopmemError(`Cannot understand wipefs's answer for ${node}: ${r.stdout.slice(0, 200)}`, {code: 'E_PROBE_FAILED', exit: Exit.FAILURE})
    }
  }
  return out
}

/** One signature in words: type, offset, where, label and UUID. */
export function describeSignature(s: Signature): string {
  return `${s.type} at offset ${s.offset} of ${s.device}${s.label ? ` (label ${JSON.stringify(s.label)})` : ''}${s.uuid ? ` (UUID ${s.uuid})` : ''}`
}

const KINDS: Record<string, string> = {
  crypto_LUKS: 'a LUKS encrypted volume',
  dos: 'an MBR (dos) partition table',
  gpt: 'a GPT partition table',
  PMBR: 'a GPT protective MBR',
  LVM2_member: 'an LVM physical volume',
  linux_raid_member: 'an md RAID member',
  swap: 'swap space',
  xfs: 'an XFS filesystem',
  ext2: 'an ext2/3/4 filesystem',
  ext3: 'an ext2/3/4 filesystem',
  ext4: 'an ext2/3/4 filesystem',
  btrfs: 'a btrfs filesystem',
  exfat: 'an exFAT filesystem',
}

/** What a node holds, in words ("a LUKS encrypted volume (crypto_LUKS at offset 0x0 of /dev/nvme1n1)"), or undefined. */
export async function holdsSignature(runner: Runner, node: string, host: Host): Promise<string | undefined> {
  const [s] = await probeSignatures(runner, [node], host)
  if (!s) return undefined
  return `${KINDS[s.type] ?? `a ${s.type} signature`} (${describeSignature(s)})`
}
