import * as Flags from '@oclif/core/flags'
import * as readline from 'node:readline'

import {BaseCommand, examples} from '../../base-command.js'
import {Exit, IopmemError} from '../../lib/sys/index.js'
import {
  bootSandbox,
  describeSandbox,
  explainSandboxError,
  type Guest,
  oldKernelNote,
  runInSandbox,
  runShellLine,
  type SandboxDescription,
  sandboxOptions,
  shellBanner,
  TOPOLOGIES,
} from '../../lib/vm/index.js'

export default class Sandbox extends BaseCommand {
  static summary = 'Boot a real Linux kernel with emulated P2P hardware and run iopmem in it.'
  static description = `Starts a QEMU guest (TCG: no KVM needed) running Linux with PCI P2PDMA, with NVMe controllers behind a PCIe switch (one with a CMB published as p2pmem), optionally one on the root complex, an ivshmem device and legacy pmem. This checkout's iopmem runs inside it against the guest's own /sys, /proc and /dev.

With a command after --, runs \`iopmem <command>\` in the guest, streams its output and exits with its exit code. Without one, on a terminal, opens a line shell in the guest where \`iopmem\` is defined; --json describes the machine instead (devices, BDFs, and which pairs can do P2P).

--iommu adds QEMU's intel-iommu (interrupt remapping, intel_iommu=on): real IOMMU groups, and the ACS redirect the kernel then sets on the switch's ports. --nic adds an e1000e NIC behind the switch beside the CMB NVMe, for NVMe-oF over soft-RoCE or TCP; it has no host backend, so no packet leaves QEMU, and it gets only its IPv6 link-local address. --nvme N puts N NVMe side by side, --pmem SIZE sizes the legacy pmem (0: none), --append adds kernel parameters (e.g. the pci=disable_acs_redir= that topo suggests).

Inside the sandbox QEMU traces every NVMe data pointer, so \`bench p2p\` reports the bytes the controllers moved through guest RAM and through device memory (not under --iommu, where the trace shows IO virtual addresses).

The kernel comes from --kernel, then IOPMEM_VM_KERNEL, then the repository's own vm/kernel/bzImage, checked against vm/kernel/SHA256SUMS (\`iopmem sandbox build-kernel\` rebuilds it byte for byte). QEMU and the state directory (NVMe images, guest RAM file) are removed on exit, on Ctrl-C and when the guest hangs (--boot-timeout, --timeout); --keep keeps the state directory.`

  static examples = examples(`
    -- topo                                                        # The P2P matrix of the emulated machine
    -- list --json                                                 # A command with its own flags, after --
    --topology root -- topo                                        # Both NVMe on the root complex: P2P refused
    --json                                                         # Describe the machine
    --iommu --json                                                 # With an IOMMU: groups, and ACS redirect on the switch
    --iommu --append 'pci=disable_acs_redir=pci:1b36:000c' -- topo # ACS redirect taken off the switch ports
    --nic --nvme 3 -- list                                         # A NIC and three NVMe behind the switch
                                                                   # A shell in the guest (on a terminal)
  `)

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
    'state-dir': Flags.string({description: 'Use this state directory instead of a temporary one: created 0700, or an existing empty one you own that only you can write (a symlink is refused).'}),
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
    const stopProgress = this.progress(`Booting the sandbox (Linux under QEMU/TCG, topology ${opts.topology})`)
    let vm: Guest
    try {
      vm = await bootSandbox(opts)
    } finally {
      stopProgress()
    }
    const old = oldKernelNote(vm)
    if (old) this.note(old)
    const io = {stdout: (c: Buffer) => process.stdout.write(c), stderr: (c: Buffer) => process.stderr.write(c), note: (l: string) => this.note(l)}
    try {
      if (inner.length > 0) {
        const code = await runInSandbox(vm, inner, opts, io)
        await vm.shutdown()
        if (code !== 0) this.exit(code)
        return
      }
      if (this.jsonEnabled()) return await describeSandbox(vm, opts.topology)
      process.stderr.write(shellBanner(vm))
      const rl = readline.createInterface({input: process.stdin, output: process.stderr, prompt: 'sandbox# '})
      rl.prompt()
      for await (const line of rl) {
        if (line.trim() !== '') {
          const code = await runShellLine(vm, line, io)
          if (code !== 0) process.stderr.write(`[exit ${code}]\n`)
        }
        rl.prompt()
      }
    } catch (error) {
      throw explainSandboxError(error)
    } finally {
      await vm.shutdown()
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
