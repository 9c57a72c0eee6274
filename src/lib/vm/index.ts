/**
 * iopmem VM harness: boot a real Linux kernel under QEMU (TCG) with emulated
 * PCIe devices and run this checkout's commands inside it.
 *
 * ```ts
 * import {bootGuest} from '../../src/lib/vm/index.js'
 *
 * const vm = await bootGuest({topology: 'both'})          // ~5-10 s under TCG
 * const r = await vm.run(['node', 'bin/run.js', 'list', '--json'], {timeoutMs: 60_000})
 * r.code; r.stdout; r.stderr                                // exit code and output
 * await vm.sh('dmesg | tail')                               // host /bin/sh in the guest
 * vm.devices.cmb.bdf      // NVMe with a 64 MiB CMB published as p2pmem
 * vm.devices.peer.bdf     // NVMe beside it (same switch in 'switch'/'both', root bus in 'root')
 * vm.devices.rc?.bdf      // NVMe on the root complex ('both' only)
 * vm.devices.ivshmem      // {bdf, file, size}: BAR2 = the host file `file`
 * await vm.readIvshmem(off, n); await vm.writeIvshmem(off, buf)   // BAR2 bytes, host side
 * await vm.readGuestPhys(0x6000_0000, n)                    // guest RAM (/dev/pmem0), host side
 * await vm.run([vm.helper('p2p-odirect'), '--verify', cmbBdf, '/dev/nvme2n1', '65536'])
 * const p = await vm.putFile('in.json', data)               // a file the guest can read at p
 * await vm.shutdown()                                       // always, in after()
 * ```
 *
 * API: bootGuest(BootOptions) → Guest {devices, release, stateDir, xferDir, repoRoot, pid, alive,
 *   run(argv, {timeoutMs, cwd, env, input, check}) → {argv, code, stdout, stderr, timedOut,
 *   durationMs}, sh(script, opts), helper(name), putFile(name, data), dropCaches(),
 *   readIvshmem, writeIvshmem, readGuestPhys, physToRamOffset, bootLogTail(), shutdown()}.
 *   Errors: GuestError (guest died/hung; message has the serial tail), GuestCommandError (check),
 *   KernelNotFoundError. Also resolveKernel(), diskPattern(role, offset, length), qemuArgs().
 * Facts seen with the 6.12 kernel: the CMB's p2pmem/size is 64 MiB minus 128 KiB (the kernel puts
 * the SQs in the CMB); `-cpu max` under TCG reports AuthenticAMD family 15, which the kernel does
 * not whitelist, so root-bus pairs are refused.
 *
 * What the guest is:
 * - `qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2G`, q35, no reboot; RAM is the shared
 *   file `<stateDir>/ram` (guest physical A is at offset A below 2 GiB: see physToRamOffset);
 *   `memmap=256M!1536M` gives /dev/pmem0 at physical 0x60000000 (`pmemMiB: 512` makes it 512 MiB and
 *   grows RAM to 2304 MiB: mkfs.xfs needs 300 MB).
 * - Topology (all on q35 with fixed slots): 'switch' (default) = pcie-root-port(00:02.0) →
 *   x3130-upstream → two xio3130-downstream, NVMe "cmb" (cmb_size_mb=64) and NVMe "peer" behind
 *   them; 'root' = cmb (00:03.0) and peer (00:04.0) on pcie.0; 'both' = 'switch' + NVMe "rc" on
 *   pcie.0 (00:05.0). Always: ivshmem-plain at 00:06.0 backed by `<stateDir>/ivshmem`.
 *   BDFs are discovered in the guest (NVMe by serial through /sys/class/nvme/X/address, ivshmem
 *   by 1af4:1110): use `vm.devices`, never hard-code them.
 * - NVMe disks are sparse raw files `<stateDir>/nvme-<role>.img`; their first 4 MiB hold
 *   diskPattern(role, offset, length) so tests can check the bytes that arrived.
 * - /init is a busybox sh agent. The host root is shared read-only over 9p and used as a chroot
 *   with the guest's own /proc, /sys (+ /sys/kernel/debug), /dev (+pts, shm) and tmpfs on /tmp,
 *   /var/tmp, /run; the repo, node's prefix and `bindPaths` are bound back if they lie under
 *   those. So `node` and the checkout are the host's; `npm run build` first if commands need dist/.
 * - Commands travel through a second, writable 9p share (`<stateDir>/xfer`, mounted at the same
 *   path in the guest): the host drops q/ID/{script,timeout,stdin}; the agent runs it with
 *   `chroot /host /bin/sh` (env -i; PATH, HOME=/tmp, LANG, TERM=dumb, IOPMEM_IN_GUEST=1), cwd =
 *   repo root, and writes r/ID/{stdout,stderr,rc}. Commands may run concurrently.
 * - The host root is mounted with 9p cache=loose by default (hostCache): a host file changed while
 *   the guest runs may be seen stale; use vm.putFile() (xfer share, never cached), vm.dropCaches()
 *   or bootGuest({hostCache: "none"}).
 * - Persistence (`persistentDisk: FILE`): a raw image on virtio-blk (/dev/vda, made sparse and
 *   formatted ext4 in the guest when FILE does not exist) holds the guest's /etc (links to the
 *   host's entries, a real udev/rules.d) and /lib/modules across boots. `udevd: true` starts the
 *   host's systemd-udevd in the guest, triggers the PCI add events and waits for udev to settle
 *   before the guest is ready (its output: xfer/agent/udev.log).
 * - Helpers: native/helpers/p2p-odirect.c is compiled with the host's cc and put at
 *   `vm.helper('p2p-odirect')` (a path valid in the guest).
 * - Failure: a boot or command that overruns its timeout SIGKILLs QEMU and throws GuestError
 *   whose message ends with the tail of the serial console (`<stateDir>/serial.log`) and of
 *   `qemu.log`. The state dir is removed at shutdown unless `IOPMEM_VM_KEEP=1` (or `keep`).
 *   No QEMU outlives the process: exit/SIGINT/SIGTERM/SIGHUP hooks, and setpriv --pdeathsig.
 * - Kernel: `opts.kernel`, `$IOPMEM_VM_KERNEL`, else the repository's own vm/kernel/bzImage
 *   (scripts/build-kernel.sh rebuilds it byte for byte), which must match vm/kernel/SHA256SUMS;
 *   resolveKernel() throws KernelNotFoundError saying how to get one.
 *
 * Environment: IOPMEM_VM_KERNEL, IOPMEM_VM_KEEP=1, IOPMEM_VM_CACHE (initramfs + helpers cache,
 * default ~/.cache/iopmem/vm), IOPMEM_VM_QEMU, IOPMEM_VM_BUSYBOX, CC.
 */

export {
  bootGuest,
  Guest,
  GuestCommandError,
  GuestError,
  parseMemoryMiB,
  shellQuote,
  type BootOptions,
  type GuestDevices,
  type NvmeInfo,
  type PciFunction,
  type RunOptions,
  type RunResult,
} from './guest.js'
export {buildHelper, HELPERS, helperSource, type HelperName} from './helpers.js'
export {buildInitramfs, findBusybox, INIT_SCRIPT} from './initramfs.js'
export {installedStockReleases, type InitrdModule, moduleClosure, readModuleFile, STOCK_INITRD_MODULES, stockKernel, type StockKernel} from './stock.js'
export {
  bundledKernelDir,
  iopmemCacheDir,
  KernelNotFoundError,
  parseSha256Sums,
  readKernelInfo,
  resolveKernel,
  sha256File,
  type KernelInfo,
} from './kernel.js'
export {diskPattern, SECTOR} from './pattern.js'
export {DMA_TRACE_EVENTS, MAX_NVME, NIC_MAC, NIC_MODELS, nvmeLayout, nvmeSerial, qemuArgs, SLOTS, type NicModel, type NvmeRole, type QemuPlan, type Topology} from './qemu.js'
export {DMA_ENV, dmaCheckpoint, DmaServer, DmaTraceCounter, subtractTotals, ZERO_TOTALS, type DmaTotals} from './dma.js'
export {writeCpioNewc, type CpioEntry} from './cpio.js'
export * from './sandbox.js'
export * from './sandbox-run.js'
