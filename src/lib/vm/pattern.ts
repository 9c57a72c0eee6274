/**
 * The deterministic byte pattern written into the harness's NVMe disk images,
 * so a test can check that the bytes that arrived (by P2P DMA or otherwise)
 * are the ones on the disk. Every 512-byte sector starts with a readable tag
 * `<role>@<lba as 8 hex digits>` padded with '.' to 16 bytes, continues with
 * bytes derived from (role, lba, index), and ends in "\r\n" (so sector 0 never
 * carries the 0x55AA MBR signature and the kernel sees no partition table).
 */

export const SECTOR = 512

function seedOf(role: string): number {
  let s = 0
  for (const c of Buffer.from(role, 'utf8')) s = (s * 31 + c) & 0xff
  return s
}

function sector(role: string, lba: number, seed: number): Buffer {
  const b = Buffer.alloc(SECTOR)
  for (let i = 16; i < SECTOR - 2; i++) b[i] = (lba * 7 + i * 13 + seed) & 0xff
  const tag = `${role}@${(lba >>> 0).toString(16).padStart(8, '0')}`.slice(0, 16).padEnd(16, '.')
  b.write(tag, 0, 'ascii')
  b[SECTOR - 2] = 0x0d
  b[SECTOR - 1] = 0x0a
  return b
}

/** The pattern bytes of disk `role` in [offset, offset + length). */
export function diskPattern(role: string, offset: number, length: number): Buffer {
  if (offset < 0 || length < 0) throw new RangeError('diskPattern: negative range')
  const seed = seedOf(role)
  const out = Buffer.alloc(length)
  let pos = 0
  while (pos < length) {
    const abs = offset + pos
    const lba = Math.floor(abs / SECTOR)
    const within = abs % SECTOR
    const n = Math.min(SECTOR - within, length - pos)
    sector(role, lba, seed).copy(out, pos, within, within + n)
    pos += n
  }
  return out
}
