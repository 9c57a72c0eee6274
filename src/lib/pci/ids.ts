/** Vendor and device names from the pci.ids database. */
import * as fs from 'node:fs'

/**
 * Names from the pci.ids database (Debian package `pci.ids`), looked up by
 * scanning the text on demand rather than parsing the whole 1.3 MB file:
 * `list` asks for a handful of names, so indexOf over the file beats
 * building maps.
 */
const CANDIDATES = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids', '/usr/share/pci.ids']

const CLASS_FALLBACK: Record<number, string> = {
  0x01: 'Mass storage controller',
  0x02: 'Network controller',
  0x03: 'Display controller',
  0x04: 'Multimedia controller',
  0x05: 'Memory controller',
  0x06: 'Bridge',
  0x07: 'Communication controller',
  0x08: 'Generic system peripheral',
  0x0b: 'Processor',
  0x0c: 'Serial bus controller',
  0x12: 'Processing accelerators',
  0xff: 'Unassigned class',
}

export class PciIds {
  /** The file's bytes: searched as bytes (Buffer#indexOf), never decoded whole (1.3 MB). */
  private data: Buffer | undefined
  private classStart = -1
  private readonly memo = new Map<string, string | undefined>()
  /** Where each vendor's line starts (or -1): a device name needs its vendor's block, found once. */
  private readonly vendorLines = new Map<number, number>()

  constructor(readonly file: string | undefined) {}

  static open(env: NodeJS.ProcessEnv = process.env): PciIds {
    if (env.IOPMEM_PCI_IDS !== undefined) return new PciIds(env.IOPMEM_PCI_IDS || undefined)
    return new PciIds(CANDIDATES.find((f) => fs.existsSync(f)))
  }

  private load(): Buffer {
    if (this.data === undefined) {
      let data: Buffer
      try {
        data = this.file ? fs.readFileSync(this.file) : EMPTY
      } catch {
        data = EMPTY
      }
      this.take(data)
    }
    return this.data!
  }

  /**
   * Read the file on libuv's threads, so that the names cost no read on this
   * thread later (PciScanner.readAllAsync reads it beside its batches). It
   * never rejects: a file it cannot read has no names, as in load().
   */
  async preload(): Promise<void> {
    if (this.data !== undefined || !this.file) return
    let data: Buffer
    try {
      data = await fs.promises.readFile(this.file)
    } catch {
      data = EMPTY
    }
    if (this.data === undefined) this.take(data)
  }

  private take(data: Buffer): void {
    this.data = data
    this.classStart = data.indexOf('\nC ')
  }

  private vendorAt(vendor: number): number {
    let at = this.vendorLines.get(vendor)
    if (at === undefined) {
      const t = this.load()
      const key = '\n' + hex4(vendor) + '  '
      const end = this.classStart < 0 ? t.length : this.classStart
      const i = t.indexOf(key)
      at = i >= 0 && i < end ? i + 1 : -1
      this.vendorLines.set(vendor, at)
    }
    return at
  }

  private cached(key: string, f: () => string | undefined): string | undefined {
    if (!this.memo.has(key)) this.memo.set(key, f())
    return this.memo.get(key)
  }

  vendor(vendor: number): string | undefined {
    return this.cached(`v${vendor}`, () => this.lookupVendor(vendor))
  }

  device(vendor: number, device: number): string | undefined {
    return this.cached(`d${vendor}:${device}`, () => this.lookupDevice(vendor, device))
  }

  /** Name of a 24-bit class code: the most specific of class/subclass/prog-if known. */
  className(classCode: number): string {
    return this.cached(`c${classCode}`, () => this.lookupClass(classCode))!
  }

  private lookupVendor(vendor: number): string | undefined {
    const i = this.vendorAt(vendor)
    if (i < 0) return undefined
    return lineRest(this.load(), i + 6)
  }

  private lookupDevice(vendor: number, device: number): string | undefined {
    const t = this.load()
    const i = this.vendorAt(vendor)
    if (i < 0) return undefined
    // The vendor's block runs until the next line that does not start with a tab.
    let pos = t.indexOf(NL, i)
    const key = '\t' + hex4(device) + '  '
    // Comment lines (#…) may sit inside a vendor's block.
    while (pos >= 0 && pos + 1 < t.length && (t[pos + 1] === TAB || t[pos + 1] === HASH)) {
      if (startsWith(t, key, pos + 1)) return lineRest(t, pos + 1 + key.length)
      pos = t.indexOf(NL, pos + 1)
    }
    return undefined
  }

  private lookupClass(classCode: number): string {
    const base = (classCode >> 16) & 0xff
    const sub = (classCode >> 8) & 0xff
    const progIf = classCode & 0xff
    const t = this.load()
    if (this.classStart >= 0) {
      const ci = t.indexOf('\nC ' + hex2(base) + '  ', this.classStart)
      if (ci >= 0) {
        let name = lineRest(t, ci + 7)
        let pos = t.indexOf(NL, ci + 1)
        while (pos >= 0 && t[pos + 1] === TAB) {
          if (startsWith(t, '\t' + hex2(sub) + '  ', pos + 1)) {
            name = lineRest(t, pos + 5)
            let p2 = t.indexOf(NL, pos + 1)
            while (progIf !== 0 && p2 >= 0 && startsWith(t, '\t\t', p2 + 1)) {
              if (startsWith(t, '\t\t' + hex2(progIf) + '  ', p2 + 1)) return `${name} (${lineRest(t, p2 + 7)})`
              p2 = t.indexOf(NL, p2 + 1)
            }
            return name
          }
          pos = t.indexOf(NL, pos + 1)
        }
        return name
      }
    }
    return CLASS_FALLBACK[base] ?? `Class ${hex2(base)}${hex2(sub)}`
  }
}

const EMPTY = Buffer.alloc(0)
const NL = 0x0a
const TAB = 0x09
const HASH = 0x23

/** Whether the bytes at `at` are `ascii` (the keys are ASCII). */
function startsWith(t: Buffer, ascii: string, at: number): boolean {
  if (at + ascii.length > t.length) return false
  for (let i = 0; i < ascii.length; i++) if (t[at + i] !== ascii.charCodeAt(i)) return false
  return true
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0')
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0')
}

/** The rest of the line from `from`, trimmed; pci.ids is UTF-8 (read as latin1 before: names with accents came out garbled). */
function lineRest(t: Buffer, from: number): string {
  const e = t.indexOf(NL, from)
  return t.toString('utf8', from, e < 0 ? t.length : e).trim()
}
