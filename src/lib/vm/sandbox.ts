/**
 * `iopmem sandbox`: a real Linux kernel with emulated P2P hardware (QEMU/TCG),
 * built on the guest harness in ./vm. Validation of the user's choices lives
 * here so it can be tested without booting anything.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, usage} from '../sys/index.js'
import {parseSize} from '../sys/index.js'

export const TOPOLOGIES = ['switch', 'root', 'both'] as const
export type SandboxTopology = (typeof TOPOLOGIES)[number]

export interface SandboxOptions {
  kernel?: string
  topology: SandboxTopology
  cmbMiB: number
  ivshmemMiB: number
  memoryMiB: number
  /** NVMe controllers side by side (cmb, peer, peer2, …). */
  nvmeCount: number
  /** Legacy pmem (memmap=) in MiB; 0 for none. */
  pmemMiB: number
  iommu: boolean
  nic: boolean
  /** Extra kernel parameters. */
  append?: string
  bootTimeoutMs: number
  commandTimeoutMs: number
  keep: boolean
  stateDir?: string
}

export interface SandboxFlags {
  kernel?: string
  topology?: string
  cmb?: string
  ivshmem?: string
  memory?: string
  nvme?: number
  pmem?: string
  iommu?: boolean
  nic?: boolean
  append?: string
  'boot-timeout'?: number
  timeout?: number
  keep?: boolean
  'state-dir'?: string
}

const MiB = 1024 * 1024
const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0

function sizeMiB(text: string | undefined, fallback: number, what: string, min: number, max: number, pow2: boolean): number {
  if (text === undefined) return fallback
  const bytes = parseSize(text, what)
  if (bytes % MiB !== 0) throw usage(`Invalid ${what} ${JSON.stringify(text)}: give whole MiB, e.g. 64M.`, 'E_SIZE_RANGE')
  const mib = bytes / MiB
  if (mib < min || mib > max) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be between ${min} MiB and ${max} MiB.`, 'E_SIZE_RANGE')
  if (pow2 && !isPow2(mib)) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be a power of two (a PCI BAR is), e.g. 64M or 128M.`, 'E_SIZE_RANGE')
  return mib
}

/** Check every flag before anything is started; throws usage errors (exit 2) naming the flag. */
export function sandboxOptions(flags: SandboxFlags): SandboxOptions {
  const topology = (flags.topology ?? 'both') as SandboxTopology
  if (!TOPOLOGIES.includes(topology)) {
    throw usage(`Unknown topology ${JSON.stringify(flags.topology)}: use switch, root or both.`, 'E_TOPOLOGY', [
      'switch: two NVMe behind one PCIe switch (P2P allowed); root: both on the root complex (refused); both: the switch pair plus one NVMe on the root complex.',
    ])
  }
  if (flags.kernel !== undefined) {
    let st: fs.Stats | undefined
    try {
      st = fs.statSync(flags.kernel)
    } catch {
      st = undefined
    }
    if (!st || !st.isFile()) {
      throw new IopmemError(`No kernel image at ${JSON.stringify(flags.kernel)}.`, {
        code: 'E_NO_KERNEL',
        exit: Exit.NOT_FOUND,
        suggestions: ['Leave --kernel out to use the repository\'s own kernel (vm/kernel/bzImage), or rebuild it: `iopmem sandbox build-kernel`.'],
      })
    }
  }
  const bootTimeout = flags['boot-timeout'] ?? 180
  const timeout = flags.timeout ?? 600
  if (!Number.isInteger(bootTimeout) || bootTimeout < 1 || bootTimeout > 3600) throw usage(`Invalid --boot-timeout ${bootTimeout}: 1 to 3600 seconds.`, 'E_TIMEOUT')
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400) throw usage(`Invalid --timeout ${timeout}: 1 to 86400 seconds.`, 'E_TIMEOUT')
  const nvmeCount = flags.nvme ?? 2
  if (!Number.isInteger(nvmeCount) || nvmeCount < 2 || nvmeCount > 6) {
    throw usage(`Invalid --nvme ${flags.nvme}: 2 to 6 NVMe controllers (the first has the CMB).`, 'E_NVME_COUNT')
  }
  const pmemMiB = flags.pmem === '0' || flags.pmem === 'off' ? 0 : sizeMiB(flags.pmem, 256, '--pmem', 2, 1008, false)
  if (pmemMiB % 2 !== 0) throw usage(`Invalid --pmem ${JSON.stringify(flags.pmem)}: an even number of MiB (memmap= sections), e.g. 256M.`, 'E_SIZE_RANGE')
  // pmem sits at 1.5 GiB in low RAM (memmap=SIZE!1536M); above 256 MiB the default RAM grows with it.
  const memoryMiB = sizeMiB(flags.memory, pmemMiB > 256 ? 1792 + pmemMiB : 2048, '--memory', 1792, 2816, false)
  const lowMiB = memoryMiB >= 2816 ? 2048 : memoryMiB
  if (pmemMiB > 0 && lowMiB < 1536 + pmemMiB) {
    throw usage(`--pmem ${pmemMiB}M needs guest RAM up to ${1536 + pmemMiB} MiB below the PCI hole, but --memory gives ${lowMiB} MiB there.`, 'E_SIZE_RANGE', [
      `Give --memory ${1792 + pmemMiB}M or more (at most 2816M), or a smaller --pmem.`,
    ])
  }
  return {
    kernel: flags.kernel === undefined ? undefined : path.resolve(flags.kernel),
    topology,
    cmbMiB: sizeMiB(flags.cmb, 64, '--cmb', 1, 1024, true),
    ivshmemMiB: sizeMiB(flags.ivshmem, 64, '--ivshmem', 1, 1024, true),
    memoryMiB,
    nvmeCount,
    pmemMiB,
    iommu: Boolean(flags.iommu),
    nic: Boolean(flags.nic),
    append: checkAppend(flags.append),
    bootTimeoutMs: bootTimeout * 1000,
    commandTimeoutMs: timeout * 1000,
    keep: Boolean(flags.keep),
    stateDir: flags['state-dir'] === undefined ? undefined : path.resolve(flags['state-dir']),
  }
}

/**
 * Extra kernel parameters for the guest: one line of printable text. Parameters that would give
 * the guest an address of its own (ip=, nfsaddrs=) are refused: the sandbox's NIC has no host
 * backend and takes loopback or IPv6 link-local addresses only.
 */
export function checkAppend(text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  const t = text.trim()
  if (t === '') return undefined
  if (!/^[\x20-\x7e]+$/.test(t) || t.length > 1024) {
    throw usage(`Invalid --append ${JSON.stringify(text)}: kernel parameters are one line of printable ASCII, at most 1024 characters.`, 'E_APPEND')
  }
  const bad = t.split(/\s+/).find((w) => /^(ip|nfsaddrs|nfsroot)=/.test(w))
  if (bad) {
    throw usage(`Refusing --append ${JSON.stringify(bad)}: the sandbox gives its NIC no address of another network; use loopback (127.0.0.0/8) or IPv6 link-local inside the guest.`, 'E_APPEND')
  }
  return t
}

/** Turn the harness's "no kernel" and "no qemu" failures into advice. */
export function explainSandboxError(error: unknown): unknown {
  const e = error as Error & {code?: string}
  if (e?.name === 'KernelNotFoundError' || e?.code === 'ENOKERNEL') {
    const detail = /\(([^\n]*)\)\.\n/.exec(e.message ?? '')?.[1]
    return new IopmemError(`No usable guest kernel with P2PDMA for the sandbox${detail ? `: ${detail}` : ''}.`, {
      code: 'E_NO_KERNEL',
      exit: Exit.UNSUPPORTED,
      suggestions: [
        'The repository carries its kernel in vm/kernel/: restore it with `git checkout -- vm/kernel`,',
        'or rebuild it byte for byte (about 15 min on 2 cores, Debian package linux-source-6.12): `iopmem sandbox build-kernel`,',
        'or point at another: `iopmem sandbox --kernel PATH` / IOPMEM_VM_KERNEL=PATH.',
        "Debian's stock kernel has no CONFIG_PCI_P2PDMA and keeps NVMe and 9p in modules, so it cannot serve here.",
      ],
      cause: error,
    })
  }
  if (/qemu-system-x86_64 not found/.test(e?.message ?? '')) {
    return new IopmemError('QEMU is not installed: the sandbox needs qemu-system-x86_64.', {
      code: 'E_NO_QEMU',
      exit: Exit.UNSUPPORTED,
      suggestions: ['Debian/Ubuntu: `sudo apt-get install qemu-system-x86 busybox-static` (or run scripts/install-deps.sh).'],
      cause: error,
    })
  }
  if (/busybox/i.test(e?.message ?? '') && /not found|missing/i.test(e?.message ?? '')) {
    return new IopmemError('busybox-static is not installed: the sandbox builds its initramfs from it.', {
      code: 'E_NO_BUSYBOX',
      exit: Exit.UNSUPPORTED,
      suggestions: ['`sudo apt-get install busybox-static`'],
      cause: error,
    })
  }
  if (e?.name === 'GuestError') {
    return new IopmemError(`The sandbox guest failed: ${e.message}`, {code: 'E_GUEST', exit: Exit.KERNEL, cause: error})
  }
  return error
}
