import {Flags} from '@oclif/core'
import * as readline from 'node:readline'

import {BaseCommand} from '../../base-command.js'
import {Exit, IopmemError} from '../../lib/sys/index.js'
import {explainSandboxError, sandboxOptions, TOPOLOGIES} from '../../lib/vm/index.js'

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

export default class Sandbox extends BaseCommand {
  static summary = 'Boot a real Linux kernel with emulated P2P hardware and run iopmem in it.'
  static description = `Starts a QEMU guest (TCG: no KVM needed) running Linux with PCI P2PDMA, with NVMe controllers behind a PCIe switch (one with a CMB published as p2pmem), optionally one on the root complex, an ivshmem device and legacy pmem. This checkout's iopmem runs inside it against the guest's own /sys, /proc and /dev.

With a command after --, runs \`iopmem <command>\` in the guest, streams its output and exits with its exit code. Without one, on a terminal, opens a line shell in the guest where \`iopmem\` is defined; --json describes the machine instead (devices, BDFs, and which pairs can do P2P).

--iommu adds QEMU's intel-iommu (interrupt remapping, intel_iommu=on): real IOMMU groups, and the ACS redirect the kernel then sets on the switch's ports. --nic adds an e1000e NIC behind the switch beside the CMB NVMe, for NVMe-oF over soft-RoCE or TCP; it has no host backend, so no packet leaves QEMU, and it gets only its IPv6 link-local address. --nvme N puts N NVMe side by side, --pmem SIZE sizes the legacy pmem (0: none), --append adds kernel parameters (e.g. the pci=disable_acs_redir= that topo suggests).

Inside the sandbox QEMU traces every NVMe data pointer, so \`bench p2p\` reports the bytes the controllers moved through guest RAM and through device memory (not under --iommu, where the trace shows IO virtual addresses).

The kernel comes from --kernel, then IOPMEM_VM_KERNEL, then the repository's own vm/kernel/bzImage, checked against vm/kernel/SHA256SUMS (\`iopmem sandbox build-kernel\` rebuilds it byte for byte). QEMU and the state directory (NVMe images, guest RAM file) are removed on exit, on Ctrl-C and when the guest hangs (--boot-timeout, --timeout); --keep keeps the state directory.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> -- topo', description: 'The P2P matrix of the emulated machine'},
    {command: '<%= config.bin %> <%= command.id %> -- list --json', description: 'A command with its own flags, after --'},
    {command: '<%= config.bin %> <%= command.id %> --topology root -- topo', description: 'Both NVMe on the root complex: P2P refused'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'Describe the machine'},
    {command: '<%= config.bin %> <%= command.id %> --iommu --json', description: 'With an IOMMU: groups, and ACS redirect on the switch'},
    {command: "<%= config.bin %> <%= command.id %> --iommu --append 'pci=disable_acs_redir=pci:1b36:000c' -- topo", description: 'ACS redirect taken off the switch ports'},
    {command: '<%= config.bin %> <%= command.id %> --nic --nvme 3 -- list', description: 'A NIC and three NVMe behind the switch'},
    {command: '<%= config.bin %> <%= command.id %>', description: 'A shell in the guest (on a terminal)'},
  ]

  static strict = false

  static flags = {
    kernel: Flags.string({description: 'Guest kernel image (bzImage) with CONFIG_PCI_P2PDMA.'}),
    topology: Flags.string({description: `NVMe placement: ${TOPOLOGIES.join(', ')}.`, default: 'both'}),
    cmb: Flags.string({description: 'CMB size of the first NVMe (power of two, e.g. 64M).', default: '64M'}),
    ivshmem: Flags.string({description: 'ivshmem BAR2 size (power of two).', default: '64M'}),
    memory: Flags.string({description: 'Guest RAM (1792M to 2816M; the pmem takes part of it). Default 2G, more with --pmem above 256M.'}),
    nvme: Flags.integer({description: 'NVMe controllers side by side, the first with the CMB (2 to 6).', default: 2}),
    pmem: Flags.string({description: 'Legacy pmem size (memmap=, at 1.5 GiB; 0 for none).', default: '256M'}),
    iommu: Flags.boolean({description: "QEMU's intel-iommu with interrupt remapping, and intel_iommu=on."}),
    nic: Flags.boolean({description: 'An e1000e NIC beside the CMB NVMe, with no host backend (link-local only).'}),
    append: Flags.string({description: 'Extra kernel parameters, e.g. pci=disable_acs_redir=pci:1b36:000c.'}),
    'boot-timeout': Flags.integer({description: 'Seconds the guest may take to boot before it is killed.', default: 180}),
    timeout: Flags.integer({description: 'Seconds a command in the guest may run before it is killed.', default: 600}),
    keep: Flags.boolean({description: 'Keep the state directory (disk images, RAM file, serial log) after exit.'}),
    'state-dir': Flags.string({description: 'Use this state directory instead of a temporary one.'}),
  }

  async run(): Promise<SandboxDescription | void> {
    const {argv, flags} = await this.parse(Sandbox)
    const opts = sandboxOptions(flags)
    const inner = argv as string[]
    if (inner.length === 0 && !this.jsonEnabled() && !this.interactive()) {
      throw new IopmemError('Nothing to do: give an iopmem command after -- (or --json to describe the machine).', {
        code: 'E_MISSING_COMMAND',
        exit: Exit.USAGE,
        suggestions: ['e.g. `iopmem sandbox -- topo`'],
      })
    }

    const vmlib = await import('../../lib/vm/index.js')
    const stopProgress = this.progress(`Booting the sandbox (Linux under QEMU/TCG, topology ${opts.topology})`)
    let vm: Awaited<ReturnType<typeof vmlib.bootGuest>>
    try {
      vm = await vmlib.bootGuest({
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
    } finally {
      stopProgress()
    }
    if (!vm.release.startsWith('6.') || Number(vm.release.split('.')[1]) < 2) {
      this.note(`note: guest kernel ${vm.release} predates p2pmem/allocate (Linux 6.2): P2P checks will fail.`)
    }
    try {
      if (inner.length > 0) {
        const uptime = await vm.run(['cat', '/proc/uptime'], {timeoutMs: 30_000}).catch(() => undefined)
        const since = Number.parseFloat(uptime?.stdout ?? '') || 0
        const r = await vm.run(['node', 'bin/run.js', ...inner], {
          timeoutMs: opts.commandTimeoutMs,
          onStdout: (c) => process.stdout.write(c),
          onStderr: (c) => process.stderr.write(c),
        })
        if (r.timedOut) this.note(`iopmem sandbox: the command was killed after ${opts.commandTimeoutMs / 1000} s (--timeout).`)
        if (r.code !== 0 && !r.timedOut) await this.kernelLogTail(vm, since)
        if (opts.keep) this.note(`iopmem sandbox: state kept in ${vm.stateDir}`)
        await vm.shutdown()
        if (r.code !== 0) this.exit(r.code)
        return
      }
      if (this.jsonEnabled()) return await this.describe(vm, opts.topology)
      await this.shell(vm)
    } catch (error) {
      throw explainSandboxError(error)
    } finally {
      await vm.shutdown()
    }
  }

  /**
   * After a failed command: the warnings and errors the guest kernel logged while it
   * ran (a device's own account of an EIO, a WARN, an oops), the last 15 of them.
   */
  private async kernelLogTail(vm: import('../../lib/vm/index.js').Guest, since: number): Promise<void> {
    const log = await vm.run(['dmesg', '--level=emerg,alert,crit,err,warn'], {timeoutMs: 30_000}).catch(() => undefined)
    if (log?.code !== 0) return
    const lines: string[] = []
    for (const line of log.stdout.split('\n')) {
      const m = /^\[\s*(\d+\.\d+)\]\s?(.*)$/.exec(line)
      if (m && Number(m[1]) >= since) lines.push(m[2])
    }
    if (lines.length > 0)
      this.note(`iopmem sandbox: the guest kernel logged while the command ran:\n${lines.slice(-15).map((l) => `  ${l}`).join('\n')}`)
  }

  private async describe(vm: import('../../lib/vm/index.js').Guest, topology: string): Promise<SandboxDescription> {
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

  /** A line shell: each line runs in the guest with `iopmem` defined; Ctrl-D leaves. */
  private async shell(vm: any): Promise<void> {
    const d = vm.devices
    process.stderr.write(
      `Sandbox guest: Linux ${vm.release}. NVMe: ${d.nvme.map((n: any) => `${n.role} ${n.bdf} ${n.namespace}`).join(', ')}; ivshmem ${d.ivshmem.bdf}.\n` +
        'Each line runs in the guest (sh; `iopmem` is this checkout). Ctrl-D leaves and removes the guest.\n',
    )
    const rl = readline.createInterface({input: process.stdin, output: process.stderr, prompt: 'sandbox# '})
    rl.prompt()
    for await (const line of rl) {
      if (line.trim() !== '') {
        const r = await vm.sh(`iopmem() { node ${vm.repoRoot}/bin/run.js "$@"; }; ${line}`, {
          onStdout: (c: Buffer) => process.stdout.write(c),
          onStderr: (c: Buffer) => process.stderr.write(c),
        })
        if (r.code !== 0) process.stderr.write(`[exit ${r.code}]\n`)
      }
      rl.prompt()
    }
  }

  /** A spinner with elapsed time on stderr, only for a person (TTY, not --json). */
  private progress(label: string): () => void {
    if (!process.stderr.isTTY || this.jsonEnabled()) return () => {}
    const t0 = Date.now()
    const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
    let i = 0
    const timer = setInterval(() => {
      process.stderr.write(`\r${frames[i++ % frames.length]} ${label}… ${((Date.now() - t0) / 1000).toFixed(0)} s`)
    }, 120)
    return () => {
      clearInterval(timer)
      process.stderr.write(`\r\u001B[2K`)
    }
  }
}
