/** One harness guest: boot it, run commands in it, collect its output and shut it down. */
import {type ChildProcess, spawn} from 'node:child_process'
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  copyFileSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs'
import {mkdir, open, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'

import {packageRoot, seamValue} from '../sys/index.js'
import {privateDir} from './statedir.js'
import {buildHelper, type HelperName} from './helpers.js'
import {buildInitramfs, findBusybox} from './initramfs.js'
import {iopmemCacheDir, type KernelInfo, resolveKernel} from './kernel.js'
import {diskPattern} from './pattern.js'
import {DMA_ENV, DmaServer, DmaTraceCounter, type DmaTotals} from './dma.js'
import {MAX_NVME, NIC_MAC, type NicModel, type NvmePlan, type NvmeRole, nvmeLayout, nvmeSerial, qemuArgs, type Topology} from './qemu.js'
import {register, unregister} from './reaper.js'

export interface BootOptions {
  /** Boots to try when the kernel panics before the agent is up (default 2). */
  bootAttempts?: number
  /** bzImage path; default `$IOPMEM_VM_KERNEL`, else the repository's vm/kernel/bzImage, checked against its SHA256SUMS (see resolveKernel). */
  kernel?: string
  /** Modules /init loads first, in this order (a distribution kernel's 9p, NVMe, ext4: see stock.ts). */
  initrdModules?: ReadonlyArray<{name: string; data: Buffer}>
  /** 'switch' (default): cmb + peer NVMe behind one PCIe switch; 'root': both on the root complex;
   * 'both': 'switch' plus an 'rc' NVMe on the root complex. Every topology has an ivshmem-plain device. */
  topology?: Topology
  /** Per-run state directory (disk images, RAM and ivshmem files, logs, the xfer share).
   * Default: a fresh `$TMPDIR/iopmem-vm-XXXXXX`, removed at shutdown unless kept. */
  stateDir?: string
  /** Cache for the initramfs and the compiled helpers; default `$IOPMEM_VM_CACHE`, else `~/.cache/iopmem/vm`. */
  cacheDir?: string
  /** Guest RAM: MiB as a number, or "2G" / "2048M". Default 2 GiB. */
  memory?: number | string
  smp?: number
  /** QEMU -cpu; default "max". "max,vendor=AuthenticAMD,family=23,model=1" makes the kernel allow P2P through the host bridge. */
  cpu?: string
  /** Boot timeout (until the agent is ready); default 120 s. */
  timeoutMs?: number
  /** Default per-command timeout for run(); default 120 s. */
  commandTimeoutMs?: number
  /** Appended to the kernel command line. */
  extraAppend?: string
  /** NVMe controllers side by side (cmb, peer, peer2, …): 2 (default) to 6. */
  nvmeCount?: number
  /** QEMU's intel-iommu with interrupt remapping, and `intel_iommu=on`: real IOMMU groups and
   * DMA translation (ACS then shapes the groups and the P2P paths). Default false. */
  iommu?: boolean
  /** A NIC beside the CMB NVMe, with no host network backend (no packet leaves QEMU): true is
   * 'e1000e'. The agent brings it up with its IPv6 link-local address only. Default none. */
  nic?: boolean | NicModel
  /** Trace every NVMe data pointer (QEMU's pci_nvme_map_addr* events) and answer the guest's
   * checkpoints (dma.ts); default true, except under `iommu`, where the trace shows IO virtual
   * addresses that cannot be told apart as RAM or device memory. */
  dmaTrace?: boolean
  /** ivshmem BAR2 size in MiB (a power of two); default 64. */
  ivshmemMiB?: number
  /** CMB of the 'cmb' NVMe in MiB; default 64. */
  cmbMiB?: number
  /** Size of each NVMe disk image in MiB (sparse); default 128. */
  diskMiB?: number
  /** How many leading bytes of each disk carry diskPattern(role, ...); default 4 MiB. */
  patternBytes?: number
  /** Add `memmap=<pmemMiB>M!1536M` (legacy pmem /dev/pmem0 at 0x60000000); default true. */
  pmem?: boolean
  /** Size of that legacy pmem in MiB (default 256; at most 1008). Above 256 the default guest RAM
   * grows to 1792 + pmemMiB MiB, so the region stays in low RAM below the PCI hole and 1.75 GiB
   * remain usable (mkfs.xfs needs a device of at least 300 MB: use 512). */
  pmemMiB?: number
  /** Keep the state directory after shutdown; default `IOPMEM_VM_KEEP=1`. */
  keep?: boolean
  /** The checkout to run commands in (cwd of run()); default the repository holding this file. */
  repoRoot?: string
  /** Host paths that must stay visible in the guest although they lie under /tmp, /var/tmp or /run
   * (which the guest covers with tmpfs). The repo root and node's prefix are added automatically. */
  bindPaths?: string[]
  /** 9p cache mode of the read-only host root in the guest. Default 'loose': node starts about 3x
   * faster under TCG, but a host file changed after the guest read it may be seen stale (call
   * vm.dropCaches(), pass data through vm.putFile(), or choose 'none' for always-current reads).
   * The xfer share (commands, outputs, putFile) is never cached. */
  hostCache?: 'none' | 'loose' | 'readahead' | 'mmap'
  /** Build the guest helpers (native/helpers/*.c) with the host's cc; default true. */
  helpers?: boolean
  /** A host file holding a disk image the guest keeps its /etc and /lib/modules on, across boots
   * (a virtio-blk disk, ext4): created (sparse, 64 MiB) and formatted by the guest when the file
   * does not exist, reused as it is otherwise. Its /etc starts as links to the host's entries, with
   * a real udev/rules.d; what the guest writes there stays on the disk. The caller removes it. */
  persistentDisk?: string
  /** Start systemd-udevd (the host's Debian udev package) in the guest, replay the PCI functions'
   * add events and wait for udev to settle, before the guest is ready. Default false. */
  udevd?: boolean
  qemu?: string
  busybox?: string
  extraQemuArgs?: string[]
}

export interface NvmeInfo {
  role: NvmeRole
  /** Guest PCI address, e.g. "0000:03:00.0". */
  bdf: string
  /** Controller name in the guest, e.g. "nvme0". */
  controller: string
  /** Namespace block device in the guest, e.g. "/dev/nvme0n1". */
  namespace: string
  serial: string
  /** Host path of the raw disk image (its first patternBytes hold diskPattern(role, ...)). */
  image: string
  placement: 'switch' | 'root'
  /** CMB size in MiB asked of QEMU (0 when none). */
  cmbMiB: number
}

export interface PciFunction {
  bdf: string
  vendor: number
  device: number
  class: number
}

export interface GuestDevices {
  cmb: NvmeInfo
  peer: NvmeInfo
  /** Only in topology 'both'. */
  rc?: NvmeInfo
  nvme: NvmeInfo[]
  ivshmem: {bdf: string; file: string; size: number}
  /** Legacy pmem made by memmap= (when enabled). */
  pmem?: {device: string; physAddr: number; size: number}
  /** The NIC (bootGuest({nic})): its PCI address, interface name and MAC. */
  nic?: {bdf: string; interface: string; mac: string; model: NicModel}
  /** Every PCI function the guest enumerated. */
  pci: PciFunction[]
}

export interface RunOptions {
  /** Killed (SIGKILL) in the guest after this; default the guest's commandTimeoutMs. */
  timeoutMs?: number
  /** Default: the repo root. */
  cwd?: string
  /** Added to the base environment (PATH, HOME=/tmp, LANG=C.UTF-8, TERM=dumb, IOPMEM_IN_GUEST=1);
   * undefined removes a variable. */
  env?: Record<string, string | undefined>
  input?: string | Buffer
  /**
   * Called with each new chunk of the command's stdout / stderr while it runs
   * (the agent writes them to the xfer share as they come; the host polls).
   */
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
  /** Throw GuestCommandError when the exit code is not 0. */
  check?: boolean
}

export interface RunResult {
  argv: string[]
  code: number
  stdout: string
  stderr: string
  /** True when the guest killed the command at its timeout. */
  timedOut: boolean
  durationMs: number
}

/** The guest failed (boot, hang, crash): the message carries the tail of the serial log. */
export class GuestError extends Error {
  constructor(
    message: string,
    readonly stateDir: string,
    readonly bootLogTail: string,
    readonly kept = false,
  ) {
    super(`${message}\n--- state: ${stateDir} (${kept ? 'kept' : 'removed; IOPMEM_VM_KEEP=1 keeps it'})\n--- last lines of the guest's serial console and QEMU's log:\n${bootLogTail}`)
    this.name = 'GuestError'
  }
}

export class GuestCommandError extends Error {
  constructor(readonly result: RunResult) {
    super(
      `guest command failed with exit code ${result.code}${result.timedOut ? ' (timed out)' : ''}: ${result.argv.join(' ')}\n` +
        `--- stdout:\n${result.stdout}\n--- stderr:\n${result.stderr}`,
    )
    this.name = 'GuestCommandError'
  }
}

const GRACE_MS = 30_000

/** The bytes of `file` from `offset` on; empty when it does not exist (yet). */
async function readFrom(file: string, offset: number): Promise<Buffer> {
  let fh
  try {
    fh = await open(file, 'r')
  } catch {
    return Buffer.alloc(0)
  }
  try {
    const {size} = await fh.stat()
    if (size <= offset) return Buffer.alloc(0)
    const buf = Buffer.alloc(size - offset)
    const {bytesRead} = await fh.read(buf, 0, buf.length, offset)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}
const POLL_MS = 50
const COVERED_DIRS = ['/tmp', '/var/tmp', '/run']
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Single-quote for a POSIX shell. */
export function shellQuote(s: string): string {
  if (s.includes('\0')) throw new Error('NUL byte in a guest command argument')
  return `'${s.replaceAll("'", `'\\''`)}'`
}

export function parseMemoryMiB(m: number | string | undefined): number {
  if (m === undefined) return 2048
  if (typeof m === 'number') return m
  const r = /^(\d+)\s*([MG]?)i?B?$/i.exec(m.trim())
  if (!r) throw new Error(`bad memory size ${JSON.stringify(m)} (use e.g. 2048, "2048M" or "2G")`)
  return Number(r[1]) * (r[2].toUpperCase() === 'G' ? 1024 : 1)
}

function findInPath(cmd: string): string | undefined {
  if (cmd.includes('/')) return existsSync(cmd) ? cmd : undefined
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (!d) continue
    const p = join(d, cmd)
    try {
      accessSync(p, fsConstants.X_OK)
      return p
    } catch {
      // next
    }
  }
  return undefined
}

function underAny(p: string, dirs: string[]): boolean {
  return dirs.some((d) => p === d || p.startsWith(d + '/'))
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return p
  }
}

function tailOf(path: string, maxBytes = 16_384): string {
  try {
    const fd = openSync(path, 'r')
    try {
      const size = statSync(path).size
      const n = Math.min(size, maxBytes)
      const buf = Buffer.alloc(n)
      readSync(fd, buf, 0, n, size - n)
      return buf.toString('utf8')
    } finally {
      closeSync(fd)
    }
  } catch {
    return ''
  }
}

function makeDisk(path: string, sizeMiB: number, role: string, patternBytes: number): void {
  const fd = openSync(path, 'w')
  try {
    ftruncateSync(fd, sizeMiB * 1024 * 1024)
    const chunk = 1 << 20
    for (let off = 0; off < patternBytes; off += chunk) {
      const n = Math.min(chunk, patternBytes - off)
      writeSync(fd, diskPattern(role, off, n), 0, n, off)
    }
  } finally {
    closeSync(fd)
  }
}

/** A booted guest. Create with bootGuest(); always call shutdown() (a test's after() hook). */
export class Guest {
  /** Guest PCI functions by role. */
  devices!: GuestDevices
  /** `uname -r` of the guest. */
  release = ''
  /** Guest paths of the helper programs (the same path on the host: the xfer dir is bound there). */
  readonly helpers: Partial<Record<HelperName, string>> = {}
  readonly xferDir: string
  readonly serialLog: string
  readonly qemuLog: string
  readonly ramFile: string
  readonly memoryMiB: number
  /** The NVMe data-pointer trace and its checkpoint server (undefined when not traced). */
  dma?: DmaServer
  /** Booted with QEMU's intel-iommu and intel_iommu=on. */
  iommu = false
  /** The kernel command line the guest booted with. */
  append = ''
  private child?: ChildProcess
  private exited?: {code: number | null; signal: NodeJS.Signals | null}
  private spawnError?: Error
  private seq = 0
  private finished = false
  private dmaTimer?: NodeJS.Timeout

  constructor(
    readonly stateDir: string,
    private readonly ownsStateDir: boolean,
    readonly keep: boolean,
    readonly kernel: KernelInfo,
    readonly topology: Topology,
    readonly repoRoot: string,
    memoryMiB: number,
    private readonly commandTimeoutMs: number,
    private readonly basePath: string,
  ) {
    this.xferDir = join(stateDir, 'xfer')
    this.serialLog = join(stateDir, 'serial.log')
    this.qemuLog = join(stateDir, 'qemu.log')
    this.ramFile = join(stateDir, 'ram')
    this.memoryMiB = memoryMiB
  }

  /** Host pid of QEMU (undefined before start). */
  get pid(): number | undefined {
    return this.child?.pid
  }

  /** Is QEMU still running? */
  get alive(): boolean {
    return !!this.child && !this.exited && !this.finished
  }

  /** The last lines of the serial console (the boot log) and QEMU's own log. */
  bootLogTail(lines = 60): string {
    const serial = tailOf(this.serialLog).split('\n').slice(-lines).join('\n')
    const qemu = tailOf(this.qemuLog, 4096).trim()
    return `${serial}${qemu ? `\n--- qemu.log:\n${qemu}` : ''}`
  }

  /** @internal */
  start(cmd: string, args: string[]): void {
    const fd = openSync(this.qemuLog, 'w')
    try {
      this.child = spawn(cmd, args, {stdio: ['ignore', fd, fd]})
    } finally {
      closeSync(fd)
    }
    this.child.on('error', (e) => {
      this.spawnError = e
      this.exited ??= {code: null, signal: null}
    })
    this.child.on('exit', (code, signal) => {
      this.exited = {code, signal}
    })
    this.child.unref()
    register(this)
    // Checkpoints are answered whenever the guest asks, not only while run() polls: a test
    // that drives the guest through other means (or sits between two runs) still gets them.
    if (this.dma) {
      this.dmaTimer = setInterval(() => this.dma?.serve(), POLL_MS)
      this.dmaTimer.unref()
    }
  }

  /** @internal Wait for agent/ready and read agent/devices. */
  async waitReady(timeoutMs: number, plans: NvmePlan[], ivshmemFile: string, ivshmemMiB: number, pmemMiB: number, nic?: NicModel): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const agent = join(this.xferDir, 'agent')
    for (;;) {
      if (existsSync(join(agent, 'ready'))) break
      if (existsSync(join(agent, 'failed'))) {
        const why = readFileSync(join(agent, 'failed'), 'utf8').trim()
        throw await this.fail(`guest agent failed during set-up: ${why}`)
      }
      if (this.exited) throw await this.fail(this.exitDescription('before the agent was ready'))
      if (Date.now() > deadline) throw await this.fail(`guest not ready after ${timeoutMs} ms: killed QEMU`)
      await sleep(POLL_MS * 2)
    }
    const lines = readFileSync(join(agent, 'devices'), 'utf8').split('\n')
    const pci: PciFunction[] = []
    const ctrls: Array<{controller: string; bdf: string; serial: string; namespaces: string[]}> = []
    const nets: Array<{interface: string; bdf: string; mac: string}> = []
    for (const line of lines) {
      const f = line.trim().split(/\s+/)
      if (f[0] === 'release') this.release = f[1] ?? ''
      else if (f[0] === 'pci' && f.length >= 5) {
        pci.push({bdf: f[1], vendor: Number(f[2]), device: Number(f[3]), class: Number(f[4])})
      } else if (f[0] === 'nvme' && f.length >= 4) {
        ctrls.push({controller: f[1], bdf: f[2], serial: f[3], namespaces: f.slice(4)})
      } else if (f[0] === 'net' && f.length >= 4) {
        nets.push({interface: f[1], bdf: f[2], mac: f[3]})
      }
    }
    const nvme: NvmeInfo[] = []
    for (const p of plans) {
      const c = ctrls.find((x) => x.serial === p.serial)
      if (!c || c.namespaces.length === 0) {
        throw await this.fail(
          `NVMe "${p.role}" (serial ${p.serial}) not found in the guest; it reported: ${JSON.stringify(ctrls)}`,
        )
      }
      nvme.push({
        role: p.role,
        bdf: c.bdf,
        controller: c.controller,
        namespace: `/dev/${c.namespaces[0]}`,
        serial: p.serial,
        image: p.image,
        placement: p.placement,
        cmbMiB: p.cmbMiB ?? 0,
      })
    }
    const ivsh = pci.find((x) => x.vendor === 0x1af4 && x.device === 0x1110)
    if (!ivsh) throw await this.fail('ivshmem (1af4:1110) not found in the guest')
    const byRole = (r: NvmeRole) => nvme.find((n) => n.role === r)
    let nicInfo: GuestDevices['nic']
    if (nic) {
      const n = nets.find((x) => x.mac.toLowerCase() === NIC_MAC)
      if (!n) throw await this.fail(`the ${nic} NIC (MAC ${NIC_MAC}) not found in the guest; it reported: ${JSON.stringify(nets)}`)
      nicInfo = {...n, model: nic}
    }
    this.devices = {
      cmb: byRole('cmb')!,
      peer: byRole('peer')!,
      rc: byRole('rc'),
      nvme,
      ivshmem: {bdf: ivsh.bdf, file: ivshmemFile, size: ivshmemMiB * 1024 * 1024},
      pmem: pmemMiB > 0 ? {device: '/dev/pmem0', physAddr: 0x6000_0000, size: pmemMiB * 1024 * 1024} : undefined,
      nic: nicInfo,
      pci,
    }
  }

  private exitDescription(when: string): string {
    if (this.spawnError) return `cannot start QEMU: ${this.spawnError.message}`
    const e = this.exited
    return `QEMU exited ${when} (${e?.signal ? `signal ${e.signal}` : `exit code ${e?.code}`})`
  }

  /** Kill QEMU, capture the log tail, drop the state and build the error. */
  private async fail(message: string): Promise<GuestError> {
    await this.kill()
    const tail = this.bootLogTail()
    this.finish()
    return new GuestError(message, this.stateDir, tail, this.keep)
  }

  private async kill(): Promise<void> {
    if (!this.child || this.exited) return
    this.child.kill('SIGKILL')
    const until = Date.now() + 10_000
    while (!this.exited && Date.now() < until) await sleep(POLL_MS)
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    if (this.dmaTimer) clearInterval(this.dmaTimer)
    unregister(this)
    this.removeState()
  }

  private removeState(): void {
    if (this.keep) return
    if (this.ownsStateDir) {
      rmSync(this.stateDir, {recursive: true, force: true})
      return
    }
    for (const f of ['ram', 'ivshmem', 'xfer', 'dma.trace']) rmSync(join(this.stateDir, f), {recursive: true, force: true})
    // By name, not from this.devices: a boot that failed before the devices were read
    // has created its disk images all the same.
    let names: string[] = []
    try {
      names = readdirSync(this.stateDir)
    } catch {
      return
    }
    for (const n of names) if (/^nvme-[a-z0-9-]+\.img$/.test(n)) rmSync(join(this.stateDir, n), {force: true})
  }

  /** @internal Synchronous kill + cleanup, for process exit. */
  reapSync(): void {
    if (this.child && !this.exited) this.child.kill('SIGKILL')
    this.finish()
  }

  private script(argv: string[], opts: RunOptions): string {
    const env: Record<string, string | undefined> = {
      PATH: this.basePath,
      HOME: '/tmp',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      IOPMEM_IN_GUEST: '1',
      ...(this.dma ? {[DMA_ENV]: this.dma.dir} : {}),
      ...opts.env,
    }
    const lines = ['# generated by src/lib/vm/guest.ts', `cd -- ${shellQuote(opts.cwd ?? this.repoRoot)} || exit 126`]
    for (const [k, v] of Object.entries(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad environment variable name ${JSON.stringify(k)}`)
      if (v !== undefined) lines.push(`export ${k}=${shellQuote(v)}`)
    }
    lines.push(`exec ${argv.map(shellQuote).join(' ')}`, '')
    return lines.join('\n')
  }

  /**
   * Run argv in the guest (chroot onto the host's root, cwd = repo root, IOPMEM_IN_GUEST=1).
   * Resolves with the exit code and output; a hung or dead guest rejects with a GuestError
   * (and QEMU is killed).
   */
  async run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    if (!this.alive) throw new Error(`the guest is not running (state: ${this.stateDir})`)
    if (argv.length === 0) throw new Error('run: empty argv')
    const id = `c${String(++this.seq).padStart(5, '0')}`
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000))
    const tmp = join(this.xferDir, 'q', `${id}.tmp`)
    await mkdir(tmp, {recursive: true})
    await writeFile(join(tmp, 'script'), this.script(argv, opts))
    await writeFile(join(tmp, 'timeout'), `${seconds}\n`)
    if (opts.input !== undefined) await writeFile(join(tmp, 'stdin'), opts.input)
    const start = Date.now()
    await rename(tmp, join(this.xferDir, 'q', id))
    const r = join(this.xferDir, 'r', id)
    const deadline = start + seconds * 1000 + GRACE_MS
    const streams = [
      {file: join(r, 'stdout'), sink: opts.onStdout, done: 0},
      {file: join(r, 'stderr'), sink: opts.onStderr, done: 0},
    ].filter((x) => x.sink)
    const pump = async () => {
      for (const st of streams) {
        const chunk = await readFrom(st.file, st.done)
        if (chunk.length > 0) {
          st.done += chunk.length
          st.sink!(chunk)
        }
      }
    }
    while (!existsSync(join(r, 'rc'))) {
      if (this.exited || !this.child) throw await this.fail(this.exitDescription(`while running: ${argv.join(' ')}`))
      if (Date.now() > deadline) {
        throw await this.fail(`guest did not finish "${argv.join(' ')}" within ${seconds} s (+${GRACE_MS / 1000} s grace): killed QEMU`)
      }
      await pump()
      await sleep(POLL_MS)
    }
    await pump()
    const durationMs = Date.now() - start
    const [rc, stdout, stderr] = await Promise.all([
      readFile(join(r, 'rc'), 'utf8'),
      readFile(join(r, 'stdout'), 'utf8').catch(() => ''),
      readFile(join(r, 'stderr'), 'utf8').catch(() => ''),
    ])
    if (!this.keep) await rm(r, {recursive: true, force: true})
    const code = Number.parseInt(rc.trim(), 10)
    const result: RunResult = {
      argv,
      code: Number.isNaN(code) ? -1 : code,
      stdout,
      stderr,
      timedOut: code === 137 && durationMs >= seconds * 1000,
      durationMs,
    }
    if (opts.check && result.code !== 0) throw new GuestCommandError(result)
    return result
  }

  /** Run a shell snippet with the host's /bin/sh in the guest. */
  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.run(['/bin/sh', '-c', script], opts)
  }

  /** Drop the guest's page and dentry caches, so it re-reads host files changed since (hostCache 'loose'). */
  async dropCaches(): Promise<void> {
    await this.run(['/bin/sh', '-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], {check: true})
  }

  /** Put a file in the (never cached) xfer share; returns its path, valid in the guest and on the host. */
  async putFile(name: string, data: string | Buffer, mode = 0o644): Promise<string> {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new Error(`putFile: bad name ${JSON.stringify(name)}`)
    await mkdir(join(this.xferDir, 'files'), {recursive: true})
    const path = join(this.xferDir, 'files', name)
    await writeFile(path, data, {mode})
    return path
  }

  /** Path of a helper in the guest (throws if helpers were not built). */
  helper(name: HelperName): string {
    const p = this.helpers[name]
    if (!p) throw new Error(`helper ${name} was not built (bootGuest({helpers: false})?)`)
    return p
  }

  /** Read bytes of the ivshmem BAR2 as the host sees them (its backing file). */
  async readIvshmem(offset: number, length: number): Promise<Buffer> {
    return this.readFileRange(this.devices.ivshmem.file, offset, length)
  }

  /** Write bytes into the ivshmem BAR2 from the host side. */
  async writeIvshmem(offset: number, data: Buffer): Promise<void> {
    const fh = await open(this.devices.ivshmem.file, 'r+')
    try {
      await fh.write(data, 0, data.length, offset)
    } finally {
      await fh.close()
    }
  }

  /**
   * Guest RAM as q35 lays it out: [0, low) and [4 GiB, 4 GiB + ram - low), with `low` 2 GiB
   * once RAM reaches 2.75 GiB. Both ranges map to one backing file, the high one after the low.
   */
  private ramLayout(): {low: number; highEnd: number} {
    const ram = this.memoryMiB * 1024 * 1024
    const low = ram >= 0xb000_0000 ? 0x8000_0000 : ram
    return {low, highEnd: 0x1_0000_0000 + (ram - low)}
  }

  /** File offset in the RAM backing file of a guest physical address (q35 layout). */
  physToRamOffset(addr: number): number {
    const {low, highEnd} = this.ramLayout()
    if (addr >= 0 && addr < low) return addr
    if (addr >= 0x1_0000_0000 && addr < highEnd) return low + (addr - 0x1_0000_0000)
    throw new RangeError(`0x${addr.toString(16)} is not guest RAM`)
  }

  /** Is guest physical `addr` in guest RAM? (Called per DMA trace line: no exceptions.) */
  isRam(addr: number | bigint): boolean {
    const a = Number(addr)
    const {low, highEnd} = this.ramLayout()
    return (a >= 0 && a < low) || (a >= 0x1_0000_0000 && a < highEnd)
  }

  /** The NVMe DMA totals so far, read from QEMU's trace on the host (undefined when not traced). */
  dmaTotals(): DmaTotals | undefined {
    return this.dma?.counter.update()
  }

  /** Read guest physical memory from the host (RAM is a shared file). */
  async readGuestPhys(addr: number, length: number): Promise<Buffer> {
    return this.readFileRange(this.ramFile, this.physToRamOffset(addr), length)
  }

  private async readFileRange(path: string, offset: number, length: number): Promise<Buffer> {
    const fh = await open(path, 'r')
    try {
      const buf = Buffer.alloc(length)
      const {bytesRead} = await fh.read(buf, 0, length, offset)
      return buf.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  }

  /** Power the guest off (agent → poweroff -f), SIGKILL after 15 s; remove the state unless kept. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.finished) return
    if (this.child && !this.exited) {
      try {
        await mkdir(join(this.xferDir, 'ctl'), {recursive: true})
        await writeFile(join(this.xferDir, 'ctl', 'poweroff'), '1\n')
      } catch {
        // fall through to the kill
      }
      const until = Date.now() + 15_000
      while (!this.exited && Date.now() < until) await sleep(POLL_MS)
      await this.kill()
    }
    this.finish()
  }
}

/**
 * Boot a guest and wait until its agent is ready to run commands.
 *
 * A guest whose kernel panics before its agent is up is booted once more:
 * under a loaded host, multi-threaded TCG has been seen to execute a
 * half-patched instruction while the kernel rewrites its text at boot
 * (sched_clock_idle_wakeup_event+0x5, a static-key site). It was seen once
 * in several dozen boots here; a second panic is reported as it is.
 */
export async function bootGuest(opts: BootOptions = {}): Promise<Guest> {
  const attempts = Math.max(1, opts.bootAttempts ?? 2)
  for (let i = 1; ; i++) {
    try {
      return await bootOnce(opts)
    } catch (error) {
      const panicked = error instanceof GuestError && /Kernel panic/.test(error.message)
      if (!panicked || i >= attempts) throw error
      process.stderr.write(`iopmem vm: the guest kernel panicked while booting (attempt ${i} of ${attempts}); booting it again\n`)
    }
  }
}

async function bootOnce(opts: BootOptions): Promise<Guest> {
  const kernel = resolveKernel(opts.kernel)
  const topology = opts.topology ?? 'switch'
  if (!['switch', 'root', 'both'].includes(topology)) throw new Error(`unknown topology ${JSON.stringify(topology)}`)
  const nvmeCount = opts.nvmeCount ?? 2
  if (!Number.isInteger(nvmeCount) || nvmeCount < 2 || nvmeCount > MAX_NVME) throw new Error(`nvmeCount must be 2 to ${MAX_NVME}`)
  const nic: NicModel | undefined = opts.nic === true ? 'e1000e' : opts.nic || undefined
  const iommu = opts.iommu ?? false
  const dmaTrace = opts.dmaTrace ?? !iommu
  // A given state directory (a hostile one is refused before anything else is looked for): created 0700,
  // or an empty one the user owns; its files are created, truncated and removed, so nothing else may be in it.
  const givenStateDir = opts.stateDir ? privateDir(opts.stateDir, {mustBeEmpty: true}).dir : undefined
  const qemu = findInPath(opts.qemu ?? seamValue('IOPMEM_VM_QEMU') ?? 'qemu-system-x86_64')
  if (!qemu) throw new Error('qemu-system-x86_64 not found (Debian: apt-get install -y qemu-system-x86), or set IOPMEM_VM_QEMU')
  const busybox = findBusybox(opts.busybox)
  const repoRoot = resolve(opts.repoRoot ?? packageRoot())
  const keep = opts.keep ?? process.env.IOPMEM_VM_KEEP === '1'
  const pmem = opts.pmem ?? true
  const pmemMiB = opts.pmemMiB ?? 256
  if (!Number.isInteger(pmemMiB) || pmemMiB <= 0 || pmemMiB % 2 !== 0 || pmemMiB > 1008) {
    throw new Error('pmemMiB must be an even number of MiB from 2 to 1008')
  }
  const memoryMiB = parseMemoryMiB(opts.memory ?? (pmem && pmemMiB > 256 ? 1792 + pmemMiB : undefined))
  // q35 keeps RAM below 4 GiB linear up to 2 GiB when RAM is 2.75 GiB or more, else all of it.
  const lowMiB = memoryMiB >= 2816 ? 2048 : memoryMiB
  if (pmem && lowMiB < 1536 + pmemMiB) {
    throw new Error(`pmem (memmap=${pmemMiB}M!1536M) needs low guest RAM up to ${1536 + pmemMiB} MiB (guest RAM ${memoryMiB} MiB)`)
  }
  const ivshmemMiB = opts.ivshmemMiB ?? 64
  if (ivshmemMiB <= 0 || (ivshmemMiB & (ivshmemMiB - 1)) !== 0) throw new Error('ivshmemMiB must be a power of two')

  const ownsStateDir = !opts.stateDir
  const stateDir = givenStateDir ?? safeRealpath(mkdtempSync(join(tmpdir(), 'iopmem-vm-')))
  // The cache: the user's (IOPMEM_VM_CACHE, else $XDG_CACHE_HOME or ~/.cache/iopmem/vm) when it is theirs
  // and private; else one inside this run's state directory. Never a predictable name in /tmp.
  let cacheDir: string
  try {
    cacheDir = privateDir(opts.cacheDir ?? process.env.IOPMEM_VM_CACHE ?? join(iopmemCacheDir(), 'vm'), {mustBeEmpty: false, what: 'the cache directory'}).dir
    accessSync(cacheDir, fsConstants.W_OK)
  } catch {
    cacheDir = privateDir(join(stateDir, 'cache'), {mustBeEmpty: false, what: 'the cache directory'}).dir
  }
  for (const ch of ['\n', '\r', '\0']) if (stateDir.includes(ch) || repoRoot.includes(ch)) throw new Error('unsupported character in a path')

  const nodeBin = dirname(process.execPath)
  const basePath = [nodeBin, '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':')
  const guest = new Guest(
    stateDir,
    ownsStateDir,
    keep,
    kernel,
    topology,
    repoRoot,
    memoryMiB,
    opts.commandTimeoutMs ?? 120_000,
    basePath,
  )

  try {
    const xfer = guest.xferDir
    rmSync(xfer, {recursive: true, force: true})
    for (const d of ['agent', 'q', 'r', 'ctl', 'bin', 'dma']) mkdirSync(join(xfer, d), {recursive: true})

    const initrd = buildInitramfs(cacheDir, busybox, opts.initrdModules)
    if (opts.helpers ?? true) {
      const built = await buildHelper(repoRoot, cacheDir, 'p2p-odirect')
      const dest = join(xfer, 'bin', 'p2p-odirect')
      copyFileSync(built, dest)
      guest.helpers['p2p-odirect'] = dest
    }

    const cmbMiB = opts.cmbMiB ?? 64
    const diskMiB = opts.diskMiB ?? 128
    const patternBytes = Math.min(opts.patternBytes ?? 4 * 1024 * 1024, diskMiB * 1024 * 1024)
    const plans: NvmePlan[] = nvmeLayout(topology, nvmeCount).map(({role, placement}) => ({
      role,
      placement,
      serial: nvmeSerial(role),
      image: join(stateDir, `nvme-${role}.img`),
      cmbMiB: role === 'cmb' ? cmbMiB : undefined,
    }))
    for (const p of plans) makeDisk(p.image, diskMiB, p.role, patternBytes)
    const ivshmemFile = join(stateDir, 'ivshmem')
    const ivfd = openSync(ivshmemFile, 'w')
    ftruncateSync(ivfd, ivshmemMiB * 1024 * 1024)
    closeSync(ivfd)
    rmSync(guest.ramFile, {force: true})
    rmSync(guest.serialLog, {force: true})

    // Paths the guest covers with tmpfs but that commands need: bind them back.
    const nodePrefix = dirname(dirname(safeRealpath(process.execPath)))
    const wanted = [repoRoot, safeRealpath(repoRoot), nodeBin, nodePrefix, ...(opts.bindPaths ?? []).map((p) => resolve(p))]
    const bindBack = [...new Set(wanted)].filter((p) => underAny(p, COVERED_DIRS))
    for (const p of bindBack) if (p.includes('\n')) throw new Error(`unsupported path ${JSON.stringify(p)}`)
    await writeFile(join(xfer, 'agent', 'tmpfs.list'), COVERED_DIRS.join('\n') + '\n')
    await writeFile(join(xfer, 'agent', 'bind.list'), bindBack.join('\n') + (bindBack.length ? '\n' : ''))
    let persistFormat = 0
    if (opts.persistentDisk !== undefined && !existsSync(opts.persistentDisk)) {
      const fd = openSync(opts.persistentDisk, 'wx', 0o600)
      ftruncateSync(fd, 64 * 1024 * 1024)
      closeSync(fd)
      persistFormat = 1
    }
    await writeFile(
      join(xfer, 'agent', 'config'),
      `XFER=${shellQuote(safeRealpath(xfer))}\nNVME_COUNT=${plans.length}\nHOST_CACHE=${opts.hostCache ?? 'loose'}\n` +
        `PERSIST_DISK=${opts.persistentDisk === undefined ? 0 : 1}\nPERSIST_FORMAT=${persistFormat}\nUDEVD=${opts.udevd ? 1 : 0}\n`,
    )

    const append = [
      'console=ttyS0',
      'quiet',
      'panic=-1',
      'rdinit=/init',
      // QEMU's NVMe refuses (status 0x12, Invalid Use of CMB) a command whose SGL list is in
      // RAM while its data is in the controller's own CMB; Linux uses such SGLs for merged
      // multi-segment requests, so a p2p copy through an NVMe's own CMB failed with EIO now
      // and then. PRPs (sgl_threshold=0) carry the same I/O and QEMU accepts them.
      'nvme.sgl_threshold=0',
      ...(pmem ? [`memmap=${pmemMiB}M!1536M`] : []),
      ...(iommu ? ['intel_iommu=on'] : []),
      ...(opts.extraAppend ? [opts.extraAppend] : []),
    ].join(' ')
    const args = qemuArgs({
      kernel: kernel.path,
      initrd,
      append,
      memoryMiB,
      smp: opts.smp ?? 2,
      cpu: opts.cpu ?? 'max',
      ramFile: guest.ramFile,
      ivshmemFile,
      ivshmemMiB,
      xferDir: xfer,
      serialLog: guest.serialLog,
      nvme: plans,
      topology,
      iommu,
      nic,
      dmaTraceFile: dmaTrace ? join(stateDir, 'dma.trace') : undefined,
      persistentDisk: opts.persistentDisk === undefined ? undefined : resolve(opts.persistentDisk),
      extraArgs: opts.extraQemuArgs,
    })
    guest.iommu = iommu
    guest.append = append
    if (dmaTrace) {
      rmSync(join(stateDir, 'dma.trace'), {force: true})
      guest.dma = new DmaServer(join(safeRealpath(xfer), 'dma'), new DmaTraceCounter(join(stateDir, 'dma.trace'), (addr) => guest.isRam(addr)))
    }
    await writeFile(join(stateDir, 'qemu.cmdline'), [qemu, ...args].map(shellQuote).join(' ') + '\n')

    // setpriv --pdeathsig KILL: QEMU dies with us even if Node is SIGKILLed.
    const setpriv = findInPath('setpriv')
    if (setpriv) guest.start(setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...args])
    else guest.start(qemu, args)

    await guest.waitReady(opts.timeoutMs ?? 120_000, plans, ivshmemFile, ivshmemMiB, pmem ? pmemMiB : 0, nic)
    return guest
  } catch (error) {
    guest.reapSync()
    throw error
  }
}
