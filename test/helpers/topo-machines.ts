/**
 * Fixture machines for the P2P topology analysis (src/lib/pci/topo.ts).
 *
 * topoMachine(): standardMachine() plus
 *   ├─ 00:04.1 second function of the ivshmem device, directly on the root bus
 *   ├─ 04:00.1 second function of the NVMe below switch port 02:01.0
 *   └─ 02:02.0 third downstream port → 05:00.0 switch upstream → 06:00.0 downstream → 07:00.0 NVMe
 *
 * skylakeMachine(): Intel Xeon Scalable (Skylake-SP) style, no 00.0 host bridge on most stacks
 *   pci0000:00  00:00.0 8086:2020 (whitelisted)                   numa 0
 *   pci0000:17  17:00.0 root port 8086:2030 → 18:00.0 NVMe         numa 0
 *               17:01.0 root port 8086:2031 → 19:00.0 switch up → 1a:00.0 / 1a:01.0 down → 1b:00.0 / 1c:00.0 NVMe
 *   pci0000:3a  3a:02.0 root port 8086:2032 (first device, not 00.0) → 3b:00.0 NVMe   numa 0
 *   pci0000:5d  5d:05.0 VT-d 8086:2034 (first device: neither 00.0 nor a root port)
 *               5d:06.0 root port 8086:2030 → 5e:00.0 NVMe                            numa 0
 *
 * xeonE5Machine(): two sockets, host bridge 8086:3c00 (whitelisted with REQ_SAME_HOST_BRIDGE)
 *   pci0000:00  00:00.0 8086:3c00, 00:02.0 RP → 02:00.0 NVMe, 00:03.0 RP → 03:00.0 NVMe   numa 0
 *   pci0000:80  80:00.0 8086:3c00, 80:02.0 RP → 81:00.0 NVMe                               numa 1
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {PCI_ACS_CR, PCI_ACS_RR, PcieType} from '../../src/lib/pci/config-space.js'
import {standardMachine, BDF} from './machines.js'
import {SysfsFixture, type FnSpec} from './sysfs-fixture.js'

export const TOPO = {
  ...BDF,
  ivshmemFn1: '0000:00:04.1',
  nvmePeerFn1: '0000:04:00.1',
  switchDown2: '0000:02:02.0',
  switch2Up: '0000:05:00.0',
  switch2Down: '0000:06:00.0',
  nvmeDeep: '0000:07:00.0',
} as const

/** RR | CR, what the kernel enables on downstream ports when an IOMMU is on. */
export const ACS_REDIRECT = PCI_ACS_RR | PCI_ACS_CR

/** Rewrite a function's config space with this ACS control value (keeps every other field). */
export function setAcs(fx: SysfsFixture, bdf: string, acsCtrl: number): void {
  const spec = fx.fns.get(bdf)
  if (!spec) throw new Error(`fixture: unknown function ${bdf}`)
  const next: FnSpec = {...spec, acsCtrl, pcieType: spec.pcieType ?? PcieType.ENDPOINT}
  fx.fns.set(bdf, next)
  fs.writeFileSync(path.join(fx.fnDir(bdf), 'config'), fx.configBytes(next))
}

const nvme = (bdf: string, parent: string | undefined, numaNode: number | undefined, configSize: number | undefined): FnSpec => ({
  bdf,
  parent,
  vendor: 0x144d,
  device: 0xa808,
  class: 0x010802,
  driver: 'nvme',
  pcieType: PcieType.ENDPOINT,
  numaNode,
  configSize,
})

const bridge = (
  bdf: string,
  parent: string | undefined,
  vendor: number,
  device: number,
  pcieType: number,
  secondaryBus: number,
  numaNode: number | undefined,
  configSize: number | undefined,
): FnSpec => ({
  bdf,
  parent,
  vendor,
  device,
  class: 0x060400,
  driver: 'pcieport',
  secondaryBus,
  pcieType,
  acsCtrl: pcieType === PcieType.UPSTREAM ? undefined : 0,
  numaNode,
  configSize,
})

export function topoMachine(opts: {configSize?: number} = {}): SysfsFixture {
  const cs = opts.configSize
  const fx = standardMachine({configSize: cs})
  fx.add({bdf: TOPO.ivshmemFn1, vendor: 0x1af4, device: 0x1110, class: 0x050000, configSize: cs})
  fx.add({...nvme(TOPO.nvmePeerFn1, TOPO.switchDown1, undefined, cs), vendor: 0x1b36, device: 0x0010})
  fx.add(bridge(TOPO.switchDown2, TOPO.switchUp, 0x104c, 0x8233, PcieType.DOWNSTREAM, 0x05, undefined, cs))
  fx.add(bridge(TOPO.switch2Up, TOPO.switchDown2, 0x10b5, 0x8724, PcieType.UPSTREAM, 0x06, undefined, cs))
  fx.add(bridge(TOPO.switch2Down, TOPO.switch2Up, 0x10b5, 0x8724, PcieType.DOWNSTREAM, 0x07, undefined, cs))
  fx.add(nvme(TOPO.nvmeDeep, TOPO.switch2Down, undefined, cs))
  return fx
}

export const SKX = {
  hb00: '0000:00:00.0',
  rp17a: '0000:17:00.0',
  nvme18: '0000:18:00.0',
  rp17b: '0000:17:01.0',
  swUp: '0000:19:00.0',
  swDown0: '0000:1a:00.0',
  swDown1: '0000:1a:01.0',
  nvme1b: '0000:1b:00.0',
  nvme1c: '0000:1c:00.0',
  rp3a: '0000:3a:02.0',
  nvme3b: '0000:3b:00.0',
  vtd5d: '0000:5d:05.0',
  rp5d: '0000:5d:06.0',
  nvme5e: '0000:5e:00.0',
} as const

export function skylakeMachine(opts: {configSize?: number} = {}): SysfsFixture {
  const cs = opts.configSize
  const fx = new SysfsFixture()
  fx.driver({name: 'nvme', classes: [0x010802]}).driver({name: 'pcieport', classes: [0x060400]})
  fx.add({bdf: SKX.hb00, vendor: 0x8086, device: 0x2020, class: 0x060000, numaNode: 0, configSize: cs})
  fx.add(bridge(SKX.rp17a, undefined, 0x8086, 0x2030, PcieType.ROOT_PORT, 0x18, 0, cs))
  fx.add(nvme(SKX.nvme18, SKX.rp17a, 0, cs))
  fx.add(bridge(SKX.rp17b, undefined, 0x8086, 0x2031, PcieType.ROOT_PORT, 0x19, 0, cs))
  fx.add(bridge(SKX.swUp, SKX.rp17b, 0x10b5, 0x9765, PcieType.UPSTREAM, 0x1a, 0, cs))
  fx.add(bridge(SKX.swDown0, SKX.swUp, 0x10b5, 0x9765, PcieType.DOWNSTREAM, 0x1b, 0, cs))
  fx.add(bridge(SKX.swDown1, SKX.swUp, 0x10b5, 0x9765, PcieType.DOWNSTREAM, 0x1c, 0, cs))
  fx.add(nvme(SKX.nvme1b, SKX.swDown0, 0, cs))
  fx.add(nvme(SKX.nvme1c, SKX.swDown1, 0, cs))
  fx.add(bridge(SKX.rp3a, undefined, 0x8086, 0x2032, PcieType.ROOT_PORT, 0x3b, 0, cs))
  fx.add(nvme(SKX.nvme3b, SKX.rp3a, 0, cs))
  fx.add({bdf: SKX.vtd5d, vendor: 0x8086, device: 0x2034, class: 0x088000, pcieType: PcieType.RC_END, numaNode: 0, configSize: cs})
  fx.add(bridge(SKX.rp5d, undefined, 0x8086, 0x2030, PcieType.ROOT_PORT, 0x5e, 0, cs))
  fx.add(nvme(SKX.nvme5e, SKX.rp5d, 0, cs))
  return fx
}

export const E5 = {
  hb00: '0000:00:00.0',
  rp02: '0000:00:02.0',
  nvme02: '0000:02:00.0',
  rp03: '0000:00:03.0',
  nvme03: '0000:03:00.0',
  hb80: '0000:80:00.0',
  rp80: '0000:80:02.0',
  nvme81: '0000:81:00.0',
} as const

export function xeonE5Machine(opts: {configSize?: number} = {}): SysfsFixture {
  const cs = opts.configSize
  const fx = new SysfsFixture()
  fx.driver({name: 'nvme', classes: [0x010802]}).driver({name: 'pcieport', classes: [0x060400]})
  fx.add({bdf: E5.hb00, vendor: 0x8086, device: 0x3c00, class: 0x060000, pcieType: PcieType.ROOT_PORT, numaNode: 0, configSize: cs})
  fx.add(bridge(E5.rp02, undefined, 0x8086, 0x3c04, PcieType.ROOT_PORT, 0x02, 0, cs))
  fx.add(nvme(E5.nvme02, E5.rp02, 0, cs))
  fx.add(bridge(E5.rp03, undefined, 0x8086, 0x3c08, PcieType.ROOT_PORT, 0x03, 0, cs))
  fx.add(nvme(E5.nvme03, E5.rp03, 0, cs))
  fx.add({bdf: E5.hb80, vendor: 0x8086, device: 0x3c00, class: 0x060000, pcieType: PcieType.ROOT_PORT, numaNode: 1, configSize: cs})
  fx.add(bridge(E5.rp80, undefined, 0x8086, 0x3c04, PcieType.ROOT_PORT, 0x81, 1, cs))
  fx.add(nvme(E5.nvme81, E5.rp80, 1, cs))
  return fx
}
