/** Running the sandbox: booting the guest from validated options, a command or shell line in it, the guest kernel's log, and the --json description. */
import {bootGuest, type Guest} from './guest.js'
import {explainSandboxError, type SandboxOptions} from './sandbox.js'

/** `iopmem sandbox --json` (without a command): the machine that was built. */
export interface SandboxDescription {
  kernel: string
  release: string
  /** 'bundled' (the repository's vm/kernel, SHA-256 checked), 'env' (IOPMEM_VM_KERNEL) or 'option' (--kernel). */
  kernelSource: string
  kernelSha256: string | null
  /** The guest's kernel command line. */
  commandLine: string
  topology: string
  stateDir: string
  /** QEMU's intel-iommu: on or off, and the guest's IOMMU groups (number, type, members). */
  iommu: {enabled: boolean; groups: Array<{group: number; type: string; devices: string[]}>}
  /** Whether QEMU traces NVMe data pointers, so `bench p2p` can say where its data went. */
  dmaTrace: boolean
  devices: {
    nvme: Array<{role: string; bdf: string; namespace: string; placement: string; cmbMiB: number}>
    ivshmem: {bdf: string; sizeMiB: number}
    pmem?: {device: string; physAddr: string; sizeMiB: number}
    nic?: {bdf: string; interface: string; mac: string; model: string; addresses: string[]}
  }
  /** `iopmem topo --json` run inside the guest. */
  topo: unknown
}

/** Boot the sandbox guest; failures come back explained (explainSandboxError). */
export async function bootSandbox(opts: SandboxOptions): Promise<Guest> {
  try {
    return await bootGuest({
      kernel: opts.kernel,
      topology: opts.topology,
      cmbMiB: opts.cmbMiB,
      ivshmemMiB: opts.ivshmemMiB,
      memory: opts.memoryMiB,
      nvmeCount: opts.nvmeCount,
      pmem: opts.pmemMiB > 0,
      pmemMiB: opts.pmemMiB > 0 ? opts.pmemMiB : undefined,
      iommu: opts.iommu,
      nic: opts.nic,
      extraAppend: opts.append,
      timeoutMs: opts.bootTimeoutMs,
      commandTimeoutMs: opts.commandTimeoutMs,
      keep: opts.keep,
      stateDir: opts.stateDir,
    })
  } catch (error) {
    throw explainSandboxError(error)
  }
}

/** A note when the guest kernel is too old for p2pmem/allocate, else undefined. */
export function oldKernelNote(vm: Guest): string | undefined {
  if (!vm.release.startsWith('6.') || Number(vm.release.split('.')[1]) < 2) return `note: guest kernel ${vm.release} predates p2pmem/allocate (Linux 6.2): P2P checks will fail.`
  return undefined
}

/** Where a guest command's output goes, and notes for the person. */
export interface SandboxIo {
  stdout(chunk: Buffer): void
  stderr(chunk: Buffer): void
  note(line: string): void
}

/**
 * Run `iopmem INNER…` in the guest, streaming its output; after a failure, the
 * kernel's warnings and errors logged meanwhile. Returns the command's exit code.
 */
export async function runInSandbox(vm: Guest, inner: string[], opts: SandboxOptions, io: SandboxIo): Promise<number> {
  const uptime = await vm.run(['cat', '/proc/uptime'], {timeoutMs: 30_000}).catch(() => undefined)
  const since = Number.parseFloat(uptime?.stdout ?? '') || 0
  const r = await vm.run(['node', 'bin/run.js', ...inner], {timeoutMs: opts.commandTimeoutMs, onStdout: io.stdout, onStderr: io.stderr})
  if (r.timedOut) io.note(`iopmem sandbox: the command was killed after ${opts.commandTimeoutMs / 1000} s (--timeout).`)
  if (r.code !== 0 && !r.timedOut) {
    const lines = await guestKernelLog(vm, since)
    if (lines.length > 0) io.note(`iopmem sandbox: the guest kernel logged while the command ran:\n${lines.slice(-15).map((l) => `  ${l}`).join('\n')}`)
  }
  if (opts.keep) io.note(`iopmem sandbox: state kept in ${vm.stateDir}`)
  return r.code
}

/**
 * The warnings and errors the guest kernel logged since `since` (seconds of
 * uptime): a device's own account of an EIO, a WARN, an oops.
 */
export async function guestKernelLog(vm: Guest, since: number): Promise<string[]> {
  const log = await vm.run(['dmesg', '--level=emerg,alert,crit,err,warn'], {timeoutMs: 30_000}).catch(() => undefined)
  if (log?.code !== 0) return []
  const lines: string[] = []
  for (const line of log.stdout.split('\n')) {
    const m = /^\[\s*(\d+\.\d+)\]\s?(.*)$/.exec(line)
    if (m && Number(m[1]) >= since) lines.push(m[2])
  }
  return lines
}

/** `iopmem sandbox --json`: the guest's kernel, devices, IOMMU groups and `topo` as the guest sees it. */
export async function describeSandbox(vm: Guest, topology: string): Promise<SandboxDescription> {
  const d = vm.devices
  const bdfs = [...d.nvme.map((n) => n.bdf), ...(d.nic ? [d.nic.bdf] : [])]
  const t = await vm.run(['node', 'bin/run.js', 'topo', ...bdfs, '--json'])
  let topo: unknown = null
  try {
    topo = JSON.parse(t.stdout)
  } catch {
    topo = {error: t.stderr.trim() || `topo exited ${t.code}`}
  }
  // One line per IOMMU group: "N TYPE BDF...", and the NIC's addresses (link-local only).
  const g = await vm.sh(
    'for g in /sys/kernel/iommu_groups/*; do [ -d "$g" ] || continue; echo "${g##*/} $(cat $g/type) $(ls $g/devices | tr "\\n" " ")"; done',
  )
  const groups = g.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && /^\d+$/.test(f[0]))
    .map(([n, type, ...devices]) => ({group: Number(n), type, devices}))
    .sort((a, b) => a.group - b.group)
  let addresses: string[] = []
  if (d.nic) {
    const a = await vm.run(['ip', '-o', 'addr', 'show', 'dev', d.nic.interface])
    addresses = [...a.stdout.matchAll(/\binet6? (\S+)/g)].map((m) => m[1])
  }
  return {
    kernel: vm.kernel.path,
    release: vm.release,
    kernelSource: vm.kernel.source,
    kernelSha256: vm.kernel.sha256 ?? null,
    commandLine: vm.append,
    topology,
    stateDir: vm.stateDir,
    iommu: {enabled: vm.iommu, groups},
    dmaTrace: vm.dma !== undefined,
    devices: {
      nvme: d.nvme.map((n) => ({role: n.role, bdf: n.bdf, namespace: n.namespace, placement: n.placement, cmbMiB: n.cmbMiB})),
      ivshmem: {bdf: d.ivshmem.bdf, sizeMiB: d.ivshmem.size / (1024 * 1024)},
      ...(d.pmem ? {pmem: {device: d.pmem.device, physAddr: '0x' + d.pmem.physAddr.toString(16), sizeMiB: d.pmem.size / (1024 * 1024)}} : {}),
      ...(d.nic ? {nic: {...d.nic, addresses}} : {}),
    },
    topo,
  }
}

/** The line shell's greeting: the guest's kernel and devices. */
export function shellBanner(vm: Guest): string {
  const d = vm.devices
  return (
    `Sandbox guest: Linux ${vm.release}. NVMe: ${d.nvme.map((n) => `${n.role} ${n.bdf} ${n.namespace}`).join(', ')}; ivshmem ${d.ivshmem.bdf}.\n` +
    'Each line runs in the guest (sh; `iopmem` is this checkout). Ctrl-D leaves and removes the guest.\n'
  )
}

/** One shell line in the guest, with `iopmem` defined as this checkout; returns its exit code. */
export async function runShellLine(vm: Guest, line: string, io: Pick<SandboxIo, 'stdout' | 'stderr'>): Promise<number> {
  const r = await vm.sh(`iopmem() { node ${vm.repoRoot}/bin/run.js "$@"; }; ${line}`, {onStdout: io.stdout, onStderr: io.stderr})
  return r.code
}
