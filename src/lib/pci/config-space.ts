/**
 * PCI configuration space, as read from sysfs `config`. Unprivileged reads
 * return only the first 64 bytes, so every accessor says "unknown"
 * (undefined) rather than guess when the bytes it needs are missing.
 */

export const PCI_CAP_ID_EXP = 0x10
export const PCI_EXT_CAP_ID_ACS = 0x0d
/** ACS control register offset within the ACS extended capability. */
export const PCI_ACS_CTRL = 0x06
export const PCI_ACS_RR = 0x0004
export const PCI_ACS_CR = 0x0008
export const PCI_ACS_EC = 0x0020

/** PCIe device/port types (PCI_EXP_FLAGS_TYPE >> 4), with the names iopmem shows for them. */
const PCIE_TYPES = [
  ['ENDPOINT', 0x0, 'endpoint'],
  ['LEG_END', 0x1, 'legacy-endpoint'],
  ['ROOT_PORT', 0x4, 'root-port'],
  ['UPSTREAM', 0x5, 'switch-upstream'],
  ['DOWNSTREAM', 0x6, 'switch-downstream'],
  ['PCI_BRIDGE', 0x7, 'pcie-to-pci-bridge'],
  ['PCIE_BRIDGE', 0x8, 'pci-to-pcie-bridge'],
  ['RC_END', 0x9, 'rc-integrated-endpoint'],
  ['RC_EC', 0xa, 'rc-event-collector'],
] as const

/** The port type numbers by constant name (PcieType.ROOT_PORT is 0x4). */
export const PcieType = Object.fromEntries(PCIE_TYPES.map(([key, type]) => [key, type])) as {readonly [K in (typeof PCIE_TYPES)[number][0]]: number}

/** The name of each port type number. */
export const PCIE_TYPE_NAMES: Record<number, string> = Object.fromEntries(PCIE_TYPES.map(([, type, name]) => [type, name]))

/** The IDs a function's header carries. */
export interface FunctionIds {
  vendor: number
  device: number
  revision?: number
  subsystemVendor?: number
  subsystemDevice?: number
}

export class ConfigSpace {
  constructor(readonly bytes: Buffer) {}

  get length(): number {
    return this.bytes.length
  }

  private u8(off: number): number | undefined {
    return off + 1 <= this.bytes.length ? this.bytes.readUInt8(off) : undefined
  }

  private u16(off: number): number | undefined {
    return off + 2 <= this.bytes.length ? this.bytes.readUInt16LE(off) : undefined
  }

  u32(off: number): number | undefined {
    return off + 4 <= this.bytes.length ? this.bytes.readUInt32LE(off) : undefined
  }

  get headerType(): number | undefined {
    const h = this.u8(0x0e)
    return h === undefined ? undefined : h & 0x7f
  }

  /** Vendor, device, revision and subsystem IDs of a type-0 header; undefined for other headers or fewer than 48 bytes. */
  get typeZeroIds(): FunctionIds | undefined {
    if (this.headerType !== 0 || this.bytes.length < 0x30) return undefined
    return {
      vendor: this.bytes.readUInt16LE(0x00),
      device: this.bytes.readUInt16LE(0x02),
      revision: this.bytes.readUInt8(0x08),
      subsystemVendor: this.bytes.readUInt16LE(0x2c),
      subsystemDevice: this.bytes.readUInt16LE(0x2e),
    }
  }

  /** A bridge's (type-1 header) secondary and subordinate bus numbers, in the unprivileged 64 bytes. */
  get busNumbers(): {secondary: number; subordinate: number} | undefined {
    if (this.headerType !== 1 || this.bytes.length < 0x1b) return undefined
    return {secondary: this.bytes.readUInt8(0x19), subordinate: this.bytes.readUInt8(0x1a)}
  }

  /** Offset of a standard capability, 0 when absent, undefined when not readable. */
  findCapability(id: number): number | undefined {
    const status = this.u16(0x06)
    if (status === undefined) return undefined
    if (!(status & 0x10)) return 0
    let pos = this.u8(0x34)
    if (pos === undefined) return undefined
    for (let ttl = 48; pos >= 0x40 && ttl > 0; ttl--) {
      pos &= ~3
      const capId = this.u8(pos)
      const next = this.u8(pos + 1)
      if (capId === undefined || next === undefined) return undefined
      if (capId === 0xff) return 0
      if (capId === id) return pos
      pos = next
    }
    return 0
  }

  /** PCIe port type, undefined when not PCIe or not readable. */
  get pcieType(): number | undefined {
    const pos = this.findCapability(PCI_CAP_ID_EXP)
    if (!pos) return undefined
    const flags = this.u16(pos + 2)
    return flags === undefined ? undefined : (flags & 0xf0) >> 4
  }

  /** Offset of an extended capability, 0 when absent, undefined when not readable (needs root and 4 KiB config). */
  findExtCapability(id: number): number | undefined {
    if (this.bytes.length < 0x104) return undefined
    let pos = 0x100
    for (let ttl = (4096 - 256) / 8; ttl > 0; ttl--) {
      const header = this.u32(pos)
      if (header === undefined) return undefined
      if (header === 0 || header === 0xffffffff) return 0
      if ((header & 0xffff) === id) return pos
      pos = (header >>> 20) & 0xffc
      if (pos < 0x100) return 0
    }
    return 0
  }

  /** The ACS control register, 0 when there is no ACS capability, undefined when unreadable. */
  get acsControl(): number | undefined {
    const pos = this.findExtCapability(PCI_EXT_CAP_ID_ACS)
    if (pos === undefined) return undefined
    if (pos === 0) return 0
    return this.u16(pos + PCI_ACS_CTRL)
  }

  /**
   * The bus address a BAR decodes (what a peer must use), as `lspci -b` shows:
   * the raw BAR register(s) with the flag bits masked. Undefined for IO BARs,
   * unreadable config, or a type-1 header's BARs beyond index 1.
   */
  barBusAddress(index: number): bigint | undefined {
    const type = this.headerType
    if (type === undefined || index < 0 || index > (type === 1 ? 1 : 5)) return undefined
    const lo = this.u32(0x10 + index * 4)
    if (lo === undefined || lo & 1) return undefined
    let addr = BigInt(lo & ~0xf) & 0xffffffffn
    if (((lo >> 1) & 3) === 2) {
      const hi = this.u32(0x10 + (index + 1) * 4)
      if (hi === undefined) return undefined
      addr |= BigInt(hi) << 32n
    }
    return addr
  }
}
