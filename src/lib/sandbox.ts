/**
 * `iopmem sandbox`: a real Linux kernel with emulated P2P hardware (QEMU/TCG),
 * built on the guest harness in ./vm. Validation of the user's choices lives
 * here so it can be tested without booting anything.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, usage} from './errors.js'
import {parseSize} from './units.js'

export const TOPOLOGIES = ['switch', 'root', 'both'] as const
export type SandboxTopology = (typeof TOPOLOGIES)[number]

export interface SandboxOptions {
  kernel?: string
  topology: SandboxTopology
  cmbMiB: number
  ivshmemMiB: number
  memoryMiB: number
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
        suggestions: ['Build one: `iopmem sandbox build-kernel` (Linux 6.12 with P2PDMA, cached in ~/.cache/iopmem).'],
      })
    }
  }
  const bootTimeout = flags['boot-timeout'] ?? 180
  const timeout = flags.timeout ?? 600
  if (!Number.isInteger(bootTimeout) || bootTimeout < 1 || bootTimeout > 3600) throw usage(`Invalid --boot-timeout ${bootTimeout}: 1 to 3600 seconds.`, 'E_TIMEOUT')
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400) throw usage(`Invalid --timeout ${timeout}: 1 to 86400 seconds.`, 'E_TIMEOUT')
  const memoryMiB = sizeMiB(flags.memory, 2048, '--memory', 1792, 2816, false)
  return {
    kernel: flags.kernel === undefined ? undefined : path.resolve(flags.kernel),
    topology,
    cmbMiB: sizeMiB(flags.cmb, 64, '--cmb', 1, 1024, true),
    ivshmemMiB: sizeMiB(flags.ivshmem, 64, '--ivshmem', 1, 1024, true),
    memoryMiB,
    bootTimeoutMs: bootTimeout * 1000,
    commandTimeoutMs: timeout * 1000,
    keep: Boolean(flags.keep),
    stateDir: flags['state-dir'] === undefined ? undefined : path.resolve(flags['state-dir']),
  }
}

/** Turn the harness's "no kernel" and "no qemu" failures into advice. */
export function explainSandboxError(error: unknown): unknown {
  const e = error as Error & {code?: string}
  if (e?.name === 'KernelNotFoundError' || e?.code === 'ENOKERNEL') {
    return new IopmemError('No guest kernel with P2PDMA for the sandbox.', {
      code: 'E_NO_KERNEL',
      exit: Exit.UNSUPPORTED,
      suggestions: [
        'Build one (about 25 min on 2 cores, Debian package linux-source-6.12): `iopmem sandbox build-kernel`',
        'or point at one: `iopmem sandbox --kernel PATH` / IOPMEM_VM_KERNEL=PATH.',
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
