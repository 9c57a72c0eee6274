/**
 * The QEMU command line of a harness guest: q35 under TCG, RAM in a shared
 * host file, NVMe controllers in the asked topology, an ivshmem-plain device,
 * and two 9p shares (the host root read-only, the per-run xfer dir writable);
 * optionally QEMU's intel-iommu, a NIC with no host backend, and the NVMe
 * DMA trace that proves where data went.
 */

export type Topology = 'switch' | 'root' | 'both'
/** 'cmb' has the CMB; 'peer', 'peer2', … sit beside it; 'rc' is on the root complex in 'both'. */
export type NvmeRole = 'cmb' | 'peer' | 'rc' | `peer${number}`

export interface NvmePlan {
  role: NvmeRole
  serial: string
  image: string
  cmbMiB?: number
  /** Where it sits: behind the switch's downstream port, or on the root complex (pcie.0). */
  placement: 'switch' | 'root'
}

export interface QemuPlan {
  kernel: string
  initrd: string
  append: string
  memoryMiB: number
  smp: number
  cpu: string
  ramFile: string
  ivshmemFile: string
  ivshmemMiB: number
  xferDir: string
  /** The guest's serial console (ttyS0) is written here: the boot log. */
  serialLog: string
  nvme: NvmePlan[]
  topology: Topology
  /** QEMU's intel-iommu (DMA remapping and interrupt remapping); the guest needs intel_iommu=on. */
  iommu?: boolean
  /** A NIC beside the CMB NVMe (behind the switch, or on the root complex in 'root'). It has
   * no host network backend: nothing it sends leaves QEMU. */
  nic?: NicModel
  /** QEMU's log backend writes the NVMe data-pointer trace events here (see dma.ts). */
  dmaTraceFile?: string
  /** A raw disk image on virtio-blk (the guest's /dev/vda): its persistent /etc and /lib/modules. */
  persistentDisk?: string
  extraArgs?: string[]
}

export const NIC_MODELS = ['e1000e', 'virtio-net-pci'] as const
export type NicModel = (typeof NIC_MODELS)[number]
/** The NIC's MAC: locally administered (02:…), so it can never clash with a real one. */
export const NIC_MAC = '02:69:6f:70:6d:01'
/** The NVMe trace events that name every data pointer a controller maps: RAM or its own CMB,
 * or (map_addr outside RAM) another device's BAR. PRP/SGL walks show the descriptors. */
export const DMA_TRACE_EVENTS = ['pci_nvme_map_addr', 'pci_nvme_map_addr_cmb', 'pci_nvme_map_prp', 'pci_nvme_map_sgl'] as const
/** Most controllers on one side: the switch's downstream ports (or root slots) they take. */
export const MAX_NVME = 6

/** QEMU's option syntax doubles commas inside values. */
export function qemuEscape(value: string): string {
  return value.replaceAll(',', ',,')
}

/** Fixed slots on pcie.0, so the guest BDFs are stable (bus numbers come from the firmware). */
export const SLOTS = {
  rootPort: 0x2,
  cmbOnRoot: 0x3,
  peerOnRoot: 0x4,
  rcNvme: 0x5,
  ivshmem: 0x6,
  nicOnRoot: 0x7,
  ninepHost: 0x8,
  ninepXfer: 0x9,
  /** peer2, peer3, … on the root complex ('root' with more than two NVMe): 0x0a, 0x0b, … */
  morePeersOnRoot: 0xa,
  /** The persistent disk (virtio-blk), after the peers' slots. */
  persistentDisk: 0x10,
} as const

/** The serial QEMU gives an NVMe of this role: the guest finds its controller by it. */
export function nvmeSerial(role: NvmeRole): string {
  return `iopmem-${role}`
}

/**
 * The NVMe controllers of a topology: `count` (default 2, at most MAX_NVME) side by side,
 * cmb, peer, peer2, …, behind one switch ('switch'), on the root complex ('root'), or behind
 * the switch plus an 'rc' NVMe on pcie.0 ('both').
 */
export function nvmeLayout(topology: Topology, count = 2): Array<{role: NvmeRole; placement: 'switch' | 'root'}> {
  if (!Number.isInteger(count) || count < 2 || count > MAX_NVME) throw new RangeError(`nvme count must be 2 to ${MAX_NVME}, not ${count}`)
  const placement: 'switch' | 'root' = topology === 'root' ? 'root' : 'switch'
  const group = Array.from({length: count}, (_, i) => ({role: (i === 0 ? 'cmb' : i === 1 ? 'peer' : `peer${i}`) as NvmeRole, placement}))
  return topology === 'both' ? [...group, {role: 'rc', placement: 'root'}] : group
}

function rootSlot(role: NvmeRole): number {
  if (role === 'rc') return SLOTS.rcNvme
  if (role === 'cmb') return SLOTS.cmbOnRoot
  if (role === 'peer') return SLOTS.peerOnRoot
  return SLOTS.morePeersOnRoot + Number(role.slice(4)) - 2
}

export function qemuArgs(plan: QemuPlan): string[] {
  const hex = (n: number) => `0x${n.toString(16)}`
  const a: string[] = [
    '-nodefaults',
    '-no-user-config',
    '-accel',
    'tcg',
    '-cpu',
    plan.cpu,
    '-smp',
    String(plan.smp),
    '-m',
    `${plan.memoryMiB}M`,
    '-object',
    `memory-backend-file,id=ram0,size=${plan.memoryMiB}M,mem-path=${qemuEscape(plan.ramFile)},share=on`,
    '-machine',
    // intel-iommu's interrupt remapping needs kernel-irqchip=split under KVM; TCG ignores it.
    plan.iommu ? 'q35,memory-backend=ram0,kernel-irqchip=split' : 'q35,memory-backend=ram0',
    '-display',
    'none',
    '-no-reboot',
    '-chardev',
    `file,id=con0,path=${qemuEscape(plan.serialLog)}`,
    '-serial',
    'chardev:con0',
    '-kernel',
    plan.kernel,
    '-initrd',
    plan.initrd,
    '-append',
    plan.append,
  ]

  if (plan.dmaTraceFile) {
    a.push('-D', plan.dmaTraceFile)
    for (const e of DMA_TRACE_EVENTS) a.push('-trace', `enable=${e}`)
  }
  // Every PCI device's DMA goes through the IOMMU whatever the order (QEMU attaches them when
  // the machine is done); it is listed first as QEMU's documentation does.
  if (plan.iommu) a.push('-device', 'intel-iommu,intremap=on')

  const onSwitch = plan.nvme.filter((n) => n.placement === 'switch').length
  const nicOnSwitch = plan.nic !== undefined && onSwitch > 0
  const ports = onSwitch + (nicOnSwitch ? 1 : 0)
  if (onSwitch > MAX_NVME) throw new Error(`qemuArgs: at most ${MAX_NVME} NVMe behind the switch`)
  if (ports > 0) {
    a.push('-device', `pcie-root-port,id=rp1,bus=pcie.0,addr=${hex(SLOTS.rootPort)},chassis=1,slot=1`, '-device', 'x3130-upstream,id=up1,bus=rp1')
    for (let i = 1; i <= ports; i++) a.push('-device', `xio3130-downstream,id=dn${i},bus=up1,chassis=2,slot=${i}`)
  }
  let downstream = 0
  for (const n of plan.nvme) {
    const where = n.placement === 'switch' ? `bus=dn${++downstream}` : `bus=pcie.0,addr=${hex(rootSlot(n.role))}`
    a.push(
      '-drive',
      `if=none,id=d-${n.role},file=${qemuEscape(n.image)},format=raw`,
      '-device',
      `nvme,id=nvme-${n.role},serial=${n.serial},drive=d-${n.role},${where}${n.cmbMiB ? `,cmb_size_mb=${n.cmbMiB}` : ''}`,
    )
  }

  if (plan.nic) {
    // No -netdev: the NIC has no peer, so no packet leaves QEMU.
    const where = nicOnSwitch ? `bus=dn${ports}` : `bus=pcie.0,addr=${hex(SLOTS.nicOnRoot)}`
    a.push('-device', `${plan.nic},id=nic0,mac=${NIC_MAC},${where}`)
  }

  a.push(
    '-object',
    `memory-backend-file,id=ivshm,size=${plan.ivshmemMiB}M,mem-path=${qemuEscape(plan.ivshmemFile)},share=on`,
    '-device',
    `ivshmem-plain,id=ivshmem0,memdev=ivshm,bus=pcie.0,addr=${hex(SLOTS.ivshmem)}`,
    '-fsdev',
    'local,id=fshost,path=/,security_model=none,readonly=on,multidevs=remap',
    '-device',
    `virtio-9p-pci,fsdev=fshost,mount_tag=host,bus=pcie.0,addr=${hex(SLOTS.ninepHost)}`,
    '-fsdev',
    `local,id=fsxfer,path=${qemuEscape(plan.xferDir)},security_model=none,multidevs=remap`,
    '-device',
    `virtio-9p-pci,fsdev=fsxfer,mount_tag=xfer,bus=pcie.0,addr=${hex(SLOTS.ninepXfer)}`,
  )
  if (plan.persistentDisk) {
    a.push(
      '-drive',
      `if=none,id=persist,file=${qemuEscape(plan.persistentDisk)},format=raw`,
      '-device',
      `virtio-blk-pci,drive=persist,serial=iopmem-persist,bus=pcie.0,addr=${hex(SLOTS.persistentDisk)}`,
    )
  }
  if (plan.extraArgs) a.push(...plan.extraArgs)
  return a
}
