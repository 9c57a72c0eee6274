/**
 * The QEMU command line of a harness guest: q35 under TCG, RAM in a shared
 * host file, NVMe controllers in the asked topology, an ivshmem-plain device,
 * and two 9p shares (the host root read-only, the per-run xfer dir writable).
 */

export type Topology = 'switch' | 'root' | 'both'
export type NvmeRole = 'cmb' | 'peer' | 'rc'

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
  extraArgs?: string[]
}

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
  ninepHost: 0x8,
  ninepXfer: 0x9,
} as const

export const NVME_SERIALS: Record<NvmeRole, string> = {
  cmb: 'iopmem-cmb',
  peer: 'iopmem-peer',
  rc: 'iopmem-rc',
}

/** The NVMe controllers of a topology: 'switch' = cmb + peer behind one switch;
 * 'root' = cmb + peer both on the root complex; 'both' = 'switch' + an rc NVMe on pcie.0. */
export function nvmeLayout(topology: Topology): Array<{role: NvmeRole; placement: 'switch' | 'root'}> {
  switch (topology) {
    case 'switch':
      return [
        {role: 'cmb', placement: 'switch'},
        {role: 'peer', placement: 'switch'},
      ]
    case 'root':
      return [
        {role: 'cmb', placement: 'root'},
        {role: 'peer', placement: 'root'},
      ]
    case 'both':
      return [
        {role: 'cmb', placement: 'switch'},
        {role: 'peer', placement: 'switch'},
        {role: 'rc', placement: 'root'},
      ]
  }
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
    'q35,memory-backend=ram0',
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

  const hasSwitch = plan.nvme.some((n) => n.placement === 'switch')
  if (hasSwitch) {
    a.push(
      '-device',
      `pcie-root-port,id=rp1,bus=pcie.0,addr=${hex(SLOTS.rootPort)},chassis=1,slot=1`,
      '-device',
      'x3130-upstream,id=up1,bus=rp1',
      '-device',
      'xio3130-downstream,id=dn1,bus=up1,chassis=2,slot=1',
      '-device',
      'xio3130-downstream,id=dn2,bus=up1,chassis=2,slot=2',
    )
  }
  let downstream = 0
  for (const n of plan.nvme) {
    let where: string
    if (n.placement === 'switch') {
      downstream++
      if (downstream > 2) throw new Error('qemuArgs: at most two NVMe behind the switch')
      where = `bus=dn${downstream}`
    } else {
      const slot = n.role === 'rc' ? SLOTS.rcNvme : n.role === 'cmb' ? SLOTS.cmbOnRoot : SLOTS.peerOnRoot
      where = `bus=pcie.0,addr=${hex(slot)}`
    }
    a.push(
      '-drive',
      `if=none,id=d-${n.role},file=${qemuEscape(n.image)},format=raw`,
      '-device',
      `nvme,id=nvme-${n.role},serial=${n.serial},drive=d-${n.role},${where}${n.cmbMiB ? `,cmb_size_mb=${n.cmbMiB}` : ''}`,
    )
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
  if (plan.extraArgs) a.push(...plan.extraArgs)
  return a
}
