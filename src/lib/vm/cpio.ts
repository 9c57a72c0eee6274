/**
 * A minimal writer for the cpio "newc" format (what the kernel unpacks as an
 * initramfs). Writing it ourselves avoids depending on the host's `cpio` and
 * lets us add device nodes (/dev/console) without being root.
 */

export type CpioEntry =
  | {type: 'dir'; path: string; mode?: number}
  | {type: 'file'; path: string; data: Buffer; mode?: number}
  | {type: 'symlink'; path: string; target: string}
  | {type: 'char' | 'block'; path: string; major: number; minor: number; mode?: number}

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000
const S_IFBLK = 0o060000

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio: field out of range: ${n}`)
  return n.toString(16).padStart(8, '0')
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4
}

function record(ino: number, mode: number, nlink: number, name: string, data: Buffer, rdev: [number, number] = [0, 0]): Buffer {
  const nameBuf = Buffer.from(name + '\0', 'utf8')
  const header =
    '070701' +
    hex8(ino) +
    hex8(mode) +
    hex8(0) + // uid
    hex8(0) + // gid
    hex8(nlink) +
    hex8(0) + // mtime (fixed: reproducible archives)
    hex8(data.length) +
    hex8(0) + // devmajor
    hex8(0) + // devminor
    hex8(rdev[0]) +
    hex8(rdev[1]) +
    hex8(nameBuf.length) +
    hex8(0) // check
  const head = Buffer.from(header, 'ascii')
  return Buffer.concat([
    head,
    nameBuf,
    Buffer.alloc(pad4(head.length + nameBuf.length)),
    data,
    Buffer.alloc(pad4(data.length)),
  ])
}

/** Serialise entries (paths relative to the archive root, no leading slash needed) as newc. */
export function writeCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  let ino = 1
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '')
    if (name === '' || name.includes('\0')) throw new Error(`cpio: bad path ${JSON.stringify(e.path)}`)
    switch (e.type) {
      case 'dir':
        parts.push(record(ino++, S_IFDIR | (e.mode ?? 0o755), 2, name, Buffer.alloc(0)))
        break
      case 'file':
        parts.push(record(ino++, S_IFREG | (e.mode ?? 0o644), 1, name, e.data))
        break
      case 'symlink':
        parts.push(record(ino++, S_IFLNK | 0o777, 1, name, Buffer.from(e.target, 'utf8')))
        break
      case 'char':
      case 'block':
        parts.push(
          record(ino++, (e.type === 'char' ? S_IFCHR : S_IFBLK) | (e.mode ?? 0o600), 1, name, Buffer.alloc(0), [
            e.major,
            e.minor,
          ]),
        )
        break
    }
  }
  parts.push(record(0, 0, 1, 'TRAILER!!!', Buffer.alloc(0)))
  return Buffer.concat(parts)
}
