/**
 * Ready-made fixture machines. `standardMachine` mirrors the guest suite's
 * q35 topology: a PCIe switch with two NVMe (one with a CMB published as
 * p2pmem), an NVMe on the root complex, an ivshmem device and a few others.
 *
 *   pci0000:00
 *   ├─ 00:00.0 host bridge 8086:29c0 (q35, not on the P2PDMA whitelist)
 *   ├─ 00:01.0 VGA 1234:1111 (BAR0 16 MiB prefetchable)
 *   ├─ 00:02.0 Ethernet 8086:10d3 (driver e1000e)
 *   ├─ 00:03.0 NVMe 1b36:0010 on the root complex (nvme2, nvme2n1)
 *   ├─ 00:04.0 ivshmem 1af4:1110 (BAR0 256 B, BAR2 64 MiB prefetchable 64-bit), unbound
 *   └─ 00:1c.0 root port → 01:00.0 switch upstream → 02:00.0 / 02:01.0 downstream
 *        ├─ 03:00.0 NVMe with a 64 MiB CMB (BAR2) published as p2pmem (nvme0, nvme0n1)
 *        └─ 04:00.0 NVMe (nvme1, nvme1n1 with nvme1n1p1)
 */
import {PcieType} from '../../src/lib/pci/config-space.js'
import {SysfsFixture} from './sysfs-fixture.js'

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

export const BDF = {
  hostBridge: '0000:00:00.0',
  vga: '0000:00:01.0',
  nic: '0000:00:02.0',
  nvmeRoot: '0000:00:03.0',
  ivshmem: '0000:00:04.0',
  rootPort: '0000:00:1c.0',
  switchUp: '0000:01:00.0',
  switchDown0: '0000:02:00.0',
  switchDown1: '0000:02:01.0',
  nvmeCmb: '0000:03:00.0',
  nvmePeer: '0000:04:00.0',
} as const

export function standardMachine(opts: {root?: string; configSize?: number} = {}): SysfsFixture {
  const fx = new SysfsFixture(opts.root)
  const cs = opts.configSize
  fx.driver({name: 'nvme', classes: [0x010802]})
    .driver({name: 'pcieport', classes: [0x060400]})
    .driver({name: 'e1000e', ids: [[0x8086, 0x10d3]]})
    .driver({name: 'uio_pci_generic'})
    .driver({name: 'vfio-pci'})
  fx.add({bdf: BDF.hostBridge, vendor: 0x8086, device: 0x29c0, class: 0x060000, configSize: cs})
  fx.add({
    bdf: BDF.vga,
    vendor: 0x1234,
    device: 0x1111,
    class: 0x030000,
    bars: [
      {index: 0, start: 0xfd000000, size: 16 * MiB, prefetch: true},
      {index: 2, start: 0xfebd0000, size: 4096},
    ],
    configSize: cs,
  })
  fx.add({
    bdf: BDF.nic,
    vendor: 0x8086,
    device: 0x10d3,
    class: 0x020000,
    driver: 'e1000e',
    bars: [
      {index: 0, start: 0xfeb80000, size: 128 * 1024},
      {index: 2, start: 0xc040, size: 32, io: true},
    ],
    iommuGroup: 2,
    configSize: cs,
  })
  fx.add({
    bdf: BDF.nvmeRoot,
    vendor: 0x1b36,
    device: 0x0010,
    class: 0x010802,
    driver: 'nvme',
    bars: [{index: 0, start: 0xfebd4000, size: 16 * 1024, is64: true}],
    pcieType: PcieType.RC_END,
    iommuGroup: 3,
    nvme: {controller: 'nvme2', namespaces: [{name: 'nvme2n1', dev: '259:4', sizeBytes: 1 * GiB}]},
    configSize: cs,
  })
  fx.add({
    bdf: BDF.ivshmem,
    vendor: 0x1af4,
    device: 0x1110,
    class: 0x050000,
    bars: [
      {index: 0, start: 0xfebd5000, size: 256},
      {index: 2, start: 0x800000000n, size: 64 * MiB, prefetch: true, is64: true},
    ],
    configSize: cs,
  })
  fx.add({
    bdf: BDF.rootPort,
    vendor: 0x1b36,
    device: 0x000c,
    class: 0x060400,
    driver: 'pcieport',
    secondaryBus: 0x01,
    pcieType: PcieType.ROOT_PORT,
    acsCtrl: 0,
    link: {speed: '16.0 GT/s PCIe', width: 16},
    configSize: cs,
  })
  fx.add({
    bdf: BDF.switchUp,
    parent: BDF.rootPort,
    vendor: 0x104c,
    device: 0x8232,
    class: 0x060400,
    driver: 'pcieport',
    secondaryBus: 0x02,
    pcieType: PcieType.UPSTREAM,
    configSize: cs,
  })
  for (const [bdf, sec] of [
    [BDF.switchDown0, 0x03],
    [BDF.switchDown1, 0x04],
  ] as const) {
    fx.add({
      bdf,
      parent: BDF.switchUp,
      vendor: 0x104c,
      device: 0x8233,
      class: 0x060400,
      driver: 'pcieport',
      secondaryBus: sec,
      pcieType: PcieType.DOWNSTREAM,
      acsCtrl: 0,
      configSize: cs,
    })
  }
  fx.add({
    bdf: BDF.nvmeCmb,
    parent: BDF.switchDown0,
    vendor: 0x1b36,
    device: 0x0010,
    class: 0x010802,
    driver: 'nvme',
    bars: [
      {index: 0, start: 0xfe600000, size: 16 * 1024, is64: true},
      {index: 2, start: 0x880000000n, size: 64 * MiB, prefetch: true, is64: true},
    ],
    pcieType: PcieType.ENDPOINT,
    link: {speed: '8.0 GT/s PCIe', width: 4, maxSpeed: '16.0 GT/s PCIe', maxWidth: 4},
    p2pmem: {size: 64 * MiB - 128 * 1024, available: 64 * MiB - 128 * 1024},
    iommuGroup: 5,
    numaNode: 0,
    nvme: {controller: 'nvme0', namespaces: [{name: 'nvme0n1', dev: '259:0', sizeBytes: 256 * MiB}]},
    configSize: cs,
  })
  fx.add({
    bdf: BDF.nvmePeer,
    parent: BDF.switchDown1,
    vendor: 0x1b36,
    device: 0x0010,
    class: 0x010802,
    driver: 'nvme',
    bars: [{index: 0, start: 0xfe400000, size: 16 * 1024, is64: true}],
    pcieType: PcieType.ENDPOINT,
    iommuGroup: 6,
    nvme: {
      controller: 'nvme1',
      namespaces: [
        {
          name: 'nvme1n1',
          dev: '259:1',
          sizeBytes: 256 * MiB,
          partitions: [{name: 'nvme1n1p1', dev: '259:2', start: 2048, sizeBytes: 128 * MiB}],
        },
      ],
    },
    configSize: cs,
  })
  return fx
}

/** A flat machine with `count` NVMe-like functions spread over buses, for speed tests. */
export function largeMachine(count: number, root?: string): SysfsFixture {
  const fx = new SysfsFixture(root)
  fx.driver({name: 'nvme', classes: [0x010802]})
  for (let i = 0; i < count; i++) {
    const bus = 1 + Math.floor(i / 32)
    const dev = i % 32
    const bdf = `0000:${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.0`
    fx.add({
      bdf,
      vendor: 0x144d,
      device: 0xa808,
      class: 0x010802,
      driver: 'nvme',
      bars: [{index: 0, start: 0x100000000n + BigInt(i) * 0x100000n, size: 16 * 1024, is64: true, file: false}],
      link: {speed: '8.0 GT/s PCIe', width: 4},
      nvme: {controller: `nvme${i}`, namespaces: [{name: `nvme${i}n1`, dev: `259:${i}`, sizeBytes: 1 * GiB}]},
    })
  }
  return fx
}
