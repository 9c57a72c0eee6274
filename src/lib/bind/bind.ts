/** Binding a PCI function to a driver and unbinding it, through driver_override and the driver core's sysfs files. */
import * as path from 'node:path'

import {normalizeBdf} from '../pci/index.js'
import {type BoundDevice, configLine, type DeviceSettings, deviceInfo, lastErrorFor, resolveSettings} from './driver.js'
import {type Effects, Exit, IopmemError, type LockOptions, realEffects, type SignalGuard, underGuard, usage, withLock} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {checkInUse, type UsageReport} from './inuse.js'
import {type PciFunction, PciScanner} from '../pci/index.js'

/**
 * Moving a PCI function between drivers the way driverctl and
 * dpdk-devbind do, through the driver core's sysfs files:
 *
 *   1. driver_override ← NAME   (only NAME may claim the device from now on)
 *   2. drivers/OLD/unbind ← BDF (if it has a driver)
 *   3. drivers/NAME/bind ← BDF  (probe; a failing probe returns its errno)
 *   4. verify the `driver` link
 *
 * Any failure restores the override and the driver that were there, and
 * the error says what the state is now.
 */

export const DEFAULT_DRIVER = 'iopmem'

/** Drivers that make sense for device memory work, in the order offered. */
export const CANDIDATE_DRIVERS = ['iopmem', 'uio_pci_generic', 'vfio-pci'] as const

const DRIVER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export function validateDriverName(name: string): string {
  if (!DRIVER_NAME_RE.test(name)) {
    throw usage(
      `Invalid driver name ${JSON.stringify(name.length > 64 ? name.slice(0, 64) + '…' : name)}: a driver name is letters, digits, '_', '-' or '.' (at most 64).`,
      'E_DRIVER_SYNTAX',
      ['Registered PCI drivers are listed in /sys/bus/pci/drivers.'],
    )
  }
  return name
}

export interface DriverCandidate {
  name: string
  registered: boolean
  /** Why it may not work for this device, or how to get it. */
  note?: string
}

export function driverRegistered(host: Host, name: string): boolean {
  return host.exists(host.sys('bus/pci/drivers', name))
}

export function vfioNoiommu(host: Host): boolean {
  const v = host.readTrim(host.sys('module/vfio/parameters/enable_unsafe_noiommu_mode'))
  return v === 'Y' || v === '1'
}

export function driverCandidates(host: Host, fn: PciFunction | undefined, original?: string | null): DriverCandidate[] {
  const names: string[] = [...CANDIDATE_DRIVERS]
  if (original && !names.includes(original)) names.push(original)
  return names.map((name) => {
    const registered = driverRegistered(host, name)
    let note: string | undefined
    if (name === 'iopmem') note = registered ? 'exposes a BAR as a DAX block device, device-dax or p2pmem' : 'not loaded: `iopmem driver load` (or `modprobe iopmem`)'
    else if (name === 'vfio-pci') {
      const group = fn?.iommuGroup ?? null
      if (group !== null) note = `IOMMU group ${group}`
      else note = vfioNoiommu(host) ? 'no IOMMU group: uses unsafe no-IOMMU mode (enabled)' : 'no IOMMU group: needs `modprobe vfio enable_unsafe_noiommu_mode=1`'
      if (!registered) note += '; not loaded: `modprobe vfio-pci`'
    } else if (!registered) note = `not loaded: \`modprobe ${name}\``
    if (name === original) note = `the device's driver before${note ? '; ' + note : ''}`
    return {name, registered, note}
  })
}

export interface BindStep {
  file: string
  value: string
  ok: boolean
  error?: string
}

export interface BindResult {
  bdf: string
  /** The driver bound now. */
  driver: string | null
  previousDriver: string | null
  previousOverride: string | null
  /** driver_override after the operation. */
  override: string | null
  changed: boolean
  steps: BindStep[]
  usage: UsageReport | null
  warnings: string[]
  /** For the iopmem driver: what it made of the device (mode, BAR, node). */
  iopmem?: BoundDevice
  /** The iopmem module, when bind had to load it first. */
  moduleLoaded?: {how: string; ko: string | null}
  /** A stop signal came during the writes: the fields above are the state it left (exit 130). */
  interrupted?: boolean
  signal?: string
  /** After an interruption: the writes were undone and the device is as it was. */
  rolledBack?: boolean
}

/** --as/--bar/--cache of `bind --driver iopmem`. */
export interface IopmemOptions {
  mode?: string
  bar?: string
  cache?: string
}

export interface BindPlan {
  fn: PciFunction
  driver: string
  usage: UsageReport | null
  /** Taking the device from a driver: a destructive step that needs confirmation. */
  destructive: boolean
  noop: boolean
  /** Settings handed to the iopmem driver through drivers/iopmem/config before the bind. */
  iopmem?: DeviceSettings
}

function refuseBridge(fn: PciFunction, force: boolean | undefined, verb: string): void {
  const hostBridge = fn.classCode.startsWith('0x0600')
  if (hostBridge || (fn.isBridge && !force)) {
    throw new IopmemError(
      `Refusing to ${verb} ${fn.bdf}: it is a ${hostBridge ? 'host bridge' : 'PCI bridge'} (${fn.className})${fn.driver ? ` bound to ${fn.driver}` : ''}; every device behind it depends on it.`,
      {
        code: 'E_BRIDGE',
        exit: Exit.REFUSED,
        suggestions: hostBridge ? ['Pick an endpoint: `iopmem list`.'] : ['Pick an endpoint (`iopmem list`), or pass --force if you really mean the bridge.'],
      },
    )
  }
}

function refuseInUse(report: UsageReport, force: boolean | undefined, verb: string): void {
  if (!report.inUse || force) return
  throw new IopmemError(`Refusing to ${verb} ${report.bdf}: it is in use.\n${report.reasons.map((r) => `  - ${r.detail}`).join('\n')}`, {
    code: 'E_IN_USE',
    exit: Exit.REFUSED,
    suggestions: ['Unmount its filesystems and stop the processes using it (or its p2pmem), or pass --force to take it anyway.'],
    details: {usage: report},
  })
}

/** Root is needed only to write the driver core's files: a dry run says so and goes on (Effects.requireRoot). */
function requireRoot(host: Host, verb: string, effects: Effects = realEffects()): void {
  effects.requireRoot(host, `${verb} needs root: it writes to the driver core's files in /sys/bus/pci.`)
}

/** `loadIopmem`: the iopmem module is not loaded yet and will be, after this plan and its confirmation (withModule). */
/** `forceCache`: accept a CPU-cached mapping as --force does, without --force's taking of a function in use (a recorded binding's force-cache). */
/** `effects`: a dry run's (every check runs; the root check only notes that the real run needs root). */
export function planBind(
  host: Host,
  bdfText: string,
  driverText: string | undefined,
  opts: {force?: boolean; forceCache?: boolean; loadIopmem?: boolean; effects?: Effects} & IopmemOptions = {},
): BindPlan {
  const bdf = normalizeBdf(bdfText)
  const driver = validateDriverName(driverText ?? DEFAULT_DRIVER)
  const given = (['mode', 'bar', 'cache'] as const).filter((k) => opts[k] !== undefined)
  if (driver !== 'iopmem' && given.length > 0) {
    // The option `mode` is the flag --as.
    const flags = given.map((k) => (k === 'mode' ? 'as' : k))
    throw usage(`--${flags.join(', --')} ${given.length === 1 ? 'is' : 'are'} for --driver iopmem only (not ${driver}).`, 'E_IOPMEM_ONLY')
  }
  const scanner = new PciScanner(host, {names: true})
  const fn = scanner.get(bdf)
  const iopmem = driver === 'iopmem' ? resolveSettings(fn, {...opts, force: opts.force || opts.forceCache}) : undefined
  if (iopmem && fn.driver === 'iopmem') {
    const now = deviceInfo(host, fn.bdf)
    if (now.mode === iopmem.mode && now.bar === iopmem.bar && now.cache === iopmem.cache) return {fn, driver, usage: null, destructive: false, noop: true, iopmem}
    throw new IopmemError(
      `${bdf} is already bound to iopmem as ${now.mode ?? '?'} on BAR ${now.bar ?? '?'} (cache ${now.cache ?? '?'}); unbind it first to change that.`,
      {code: 'E_ALREADY_BOUND', exit: Exit.REFUSED, suggestions: [`iopmem unbind ${bdf} --yes`]},
    )
  }
  if (!driverRegistered(host, driver) && !(driver === 'iopmem' && opts.loadIopmem)) {
    const cands = driverCandidates(host, fn, fn.driver)
    const load = driver === 'iopmem' ? '`iopmem driver load` (or `modprobe iopmem`)' : `\`modprobe ${driver}\``
    throw new IopmemError(`No PCI driver named ${JSON.stringify(driver)} is registered. Load it first: ${load}.`, {
      code: 'E_NO_DRIVER',
      exit: Exit.NOT_FOUND,
      suggestions: cands.map((c) => `${c.name}: ${c.registered ? 'registered' : 'not registered'}${c.note ? ` (${c.note})` : ''}`),
      details: {driver, candidates: cands},
    })
  }
  if (fn.driver === driver) return {fn, driver, usage: null, destructive: false, noop: true}
  refuseBridge(fn, opts.force, 'rebind')
  if (driver === 'vfio-pci' && fn.iommuGroup === null && !vfioNoiommu(host)) {
    throw new IopmemError(`${bdf} has no IOMMU group, so vfio-pci cannot take it unless unsafe no-IOMMU mode is on.`, {
      code: 'E_VFIO_NO_IOMMU',
      exit: Exit.UNSUPPORTED,
      suggestions: [
        'Enable the IOMMU (intel_iommu=on / amd_iommu=on), or',
        'accept no isolation: `echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode`, or use uio_pci_generic.',
      ],
    })
  }
  const report = fn.driver ? checkInUse(host, fn) : null
  if (report) refuseInUse(report, opts.force, `take ${bdf} from ${fn.driver}`)
  requireRoot(host, 'bind', opts.effects)
  return {fn, driver, usage: report, destructive: fn.driver !== null, noop: false, iopmem}
}

/** Every write of bind and unbind (and their rollbacks) goes through here, to the kernel or, in a dry run, to the list of steps. */
class Steps {
  readonly list: BindStep[] = []
  constructor(
    private host: Host,
    private effects: Effects = realEffects(),
  ) {}

  write(file: string, value: string): void {
    const step: BindStep = {file: this.host.display(file), value: value.replace(/\n$/, ''), ok: true}
    this.list.push(step)
    try {
      this.effects.write(this.host, file, value)
    } catch (error) {
      step.ok = false
      step.error = error instanceof IopmemError ? error.code : String(error)
      throw error
    }
  }
}

function currentDriver(host: Host, fn: PciFunction): string | null {
  return host.linkName(path.join(fn.sysfsPath, 'driver')) ?? null
}

function currentOverride(host: Host, fn: PciFunction): string | null {
  const v = host.readTrim(path.join(fn.sysfsPath, 'driver_override'))
  return v === undefined || v === '' || v === '(null)' ? null : v
}

/** What this process changed, so a rollback undoes that and nothing else. */
interface Changed {
  /** driver_override was written with this value. */
  override?: string
  /** The device was unbound from this driver. */
  unbound?: string
  /** A bind to this driver was written (it may have succeeded). */
  bound?: string
}

/**
 * Undo what this process changed, re-reading the device before each write:
 * a driver or an override that is not the one this process wrote (someone
 * else's) is left alone. Returns the driver the device ended with.
 */
function rollback(host: Host, steps: Steps, fn: PciFunction, changed: Changed, beforeOverride: string | null): string | null {
  const sys = (...p: string[]) => host.sys('bus/pci', ...p)
  const attempt = (f: () => void) => {
    try {
      f()
    } catch {
      /* keep going: report the end state */
    }
  }
  const now = currentDriver(host, fn)
  if (changed.bound !== undefined && now === changed.bound) attempt(() => steps.write(sys('drivers', now, 'unbind'), fn.bdf))
  if (changed.override !== undefined && currentOverride(host, fn) === changed.override) {
    attempt(() => steps.write(path.join(fn.sysfsPath, 'driver_override'), (beforeOverride ?? '') + '\n'))
  }
  if (changed.unbound !== undefined && currentDriver(host, fn) === null) {
    attempt(() => steps.write(sys('drivers', changed.unbound!, 'bind'), fn.bdf))
    if (currentDriver(host, fn) === null) attempt(() => steps.write(sys('drivers_probe'), fn.bdf))
  }
  return currentDriver(host, fn)
}

/**
 * Do the bind. Each write runs with SIGINT/SIGTERM/SIGHUP held back (see
 * SignalGuard); a signal that came during a write rolls back what was
 * written so far and returns the state with `interrupted: true`. A signal
 * during the last write finds the bind done: that is the state reported.
 */
export async function executeBind(host: Host, plan: BindPlan, guard?: SignalGuard, effects: Effects = realEffects()): Promise<BindResult> {
  return underGuard(guard, (g) => bindSteps(host, plan, g, effects))
}

async function bindSteps(host: Host, plan: BindPlan, guard: SignalGuard, effects: Effects): Promise<BindResult> {
  const {fn, driver} = plan
  const before = currentDriver(host, fn)
  const beforeOverride = currentOverride(host, fn)
  const steps = new Steps(host, effects)
  const result = (d: string | null, changed: boolean, warnings: string[] = []): BindResult => ({
    bdf: fn.bdf,
    driver: d,
    previousDriver: before,
    previousOverride: beforeOverride,
    override: currentOverride(host, fn),
    changed,
    steps: steps.list,
    usage: plan.usage,
    warnings,
    ...(plan.iopmem && d === 'iopmem' ? {iopmem: deviceInfo(host, fn.bdf)} : {}),
  })
  if (plan.noop) return result(before, false)

  const iopmemConfig = host.sys('bus/pci/drivers/iopmem/config')
  const forgetConfig = () => {
    if (plan.iopmem && host.exists(iopmemConfig)) {
      try {
        steps.write(iopmemConfig, fn.bdf + '\n') // forget the settings again
      } catch {
        /* the entry only matters for a later bind, which writes its own */
      }
    }
  }
  const changed: Changed = {}
  const writes: Array<() => void> = []
  if (plan.iopmem) writes.push(() => steps.write(iopmemConfig, configLine(fn.bdf, plan.iopmem!)))
  writes.push(() => {
    changed.override = driver
    steps.write(path.join(fn.sysfsPath, 'driver_override'), driver + '\n')
  })
  if (before !== null) {
    writes.push(() => {
      steps.write(host.sys('bus/pci/drivers', before, 'unbind'), fn.bdf)
      changed.unbound = before
    })
  }
  writes.push(() => {
    changed.bound = driver
    steps.write(host.sys('bus/pci/drivers', driver, 'bind'), fn.bdf)
  })

  // A signal that came while planning (or waiting for the lock) stops before the first write.
  if (await guard.checkpoint()) return {...result(before, false), interrupted: true, signal: guard.signal, rolledBack: true}
  let failure: IopmemError | undefined
  let stoppedAt: number | undefined
  for (const [i, w] of writes.entries()) {
    try {
      w()
    } catch (error) {
      failure = error instanceof IopmemError ? error : new IopmemError(String(error), {code: 'EIO', exit: Exit.KERNEL})
      break
    }
    if ((await guard.checkpoint()) && i < writes.length - 1) {
      stoppedAt = i + 1
      break
    }
  }
  if (effects.dryRun) {
    // What the kernel did with the writes decides the rest: a dry run cannot know it, and says what follows.
    const link = host.display(path.join(fn.sysfsPath, 'driver'))
    effects.then(`reads ${link}: it must name ${driver}; otherwise writes what undoes the steps above (the driver and driver_override it had) and fails (exit 6)`)
    if (plan.iopmem) effects.then(`reads what iopmem made of it from ${host.display(host.sys('bus/pci/devices', fn.bdf, 'iopmem'))}/ (mode, bar, cache, node: /dev/iopmemN or p2pmem)`)
    return result(before, false)
  }
  const now = currentDriver(host, fn)
  if (stoppedAt === undefined && !failure && now === driver) {
    return guard.interrupted ? {...result(now, true), interrupted: true, signal: guard.signal, rolledBack: false} : result(now, true)
  }

  const ended = rollback(host, steps, fn, changed, beforeOverride)
  const restored = ended === before && currentOverride(host, fn) === beforeOverride
  if (stoppedAt !== undefined && !failure) {
    forgetConfig()
    return {...result(ended, !restored), interrupted: true, signal: guard.signal, rolledBack: restored}
  }
  // The driver's own reason for a refused probe (a BAR that cannot serve, …).
  const lastError = plan.iopmem ? lastErrorFor(host, fn.bdf) : undefined
  const reason = lastError ? `: ${lastError}` : ''
  forgetConfig()
  const why = failure
    ? failure.code === 'ENODEV' && failure.path?.endsWith('/bind')
      ? `${driver} did not accept the device (ENODEV: the driver does not match it or its probe found no device)`
      : failure.message
    : `the driver link shows ${now ?? 'no driver'} after the bind`
  const probeErr = failure?.path?.endsWith(`drivers/${driver}/bind`) && failure.code !== 'ENODEV' ? ` (${driver}'s probe failed with ${failure.code})` : ''
  throw new IopmemError(
    `Binding ${fn.bdf} to ${driver} failed: ${why}${probeErr}${reason}. ` +
      (restored
        ? `Rolled back: ${before ? `the device is bound to ${before} again` : 'the device is unbound, as it was'}${beforeOverride ? ` with driver_override ${beforeOverride}` : ''}.`
        : `Rollback incomplete: the device is now ${ended ? `bound to ${ended}` : 'unbound'} (it was ${before ?? 'unbound'}); driver_override is ${currentOverride(host, fn) ?? '(null)'}.`),
    {
      code: restored ? 'E_BIND_FAILED' : 'E_ROLLBACK_FAILED',
      exit: failure?.exit === Exit.PERMISSION ? Exit.PERMISSION : Exit.KERNEL,
      errno: failure?.errno,
      syscall: failure?.syscall,
      path: failure?.path,
      suggestions: ['The kernel log says more: `dmesg | tail`.'],
      details: {steps: steps.list, previousDriver: before, driver: ended},
    },
  )
}

export interface UnbindPlan {
  fn: PciFunction
  usage: UsageReport | null
  noop: boolean
}

export function planUnbind(host: Host, bdfText: string, opts: {force?: boolean; effects?: Effects} = {}): UnbindPlan {
  const bdf = normalizeBdf(bdfText)
  const fn = new PciScanner(host).get(bdf)
  if (fn.driver === null && fn.driverOverride === null) return {fn, usage: null, noop: true}
  if (fn.driver !== null) refuseBridge(fn, opts.force, 'unbind')
  const report = fn.driver === null ? null : checkInUse(host, fn)
  if (report) refuseInUse(report, opts.force, `unbind ${bdf} from ${fn.driver}`)
  requireRoot(host, 'unbind', opts.effects)
  return {fn, usage: report, noop: false}
}

/**
 * Do the unbind: the driver's unbind, then clearing driver_override. A stop
 * signal during the first write binds the device back to its driver (the
 * override, untouched, still lets it) and returns that state with
 * `interrupted: true`; during the last one, the unbind is complete.
 */
export async function executeUnbind(host: Host, plan: UnbindPlan, guard?: SignalGuard, effects: Effects = realEffects()): Promise<BindResult> {
  return underGuard(guard, (g) => unbindSteps(host, plan, g, effects))
}

async function unbindSteps(host: Host, plan: UnbindPlan, guard: SignalGuard, effects: Effects): Promise<BindResult> {
  const {fn} = plan
  const before = currentDriver(host, fn)
  const beforeOverride = currentOverride(host, fn)
  const steps = new Steps(host, effects)
  const warnings: string[] = []
  const result = (): BindResult => ({
    bdf: fn.bdf,
    driver: currentDriver(host, fn),
    previousDriver: before,
    previousOverride: beforeOverride,
    override: currentOverride(host, fn),
    changed: steps.list.length > 0,
    steps: steps.list,
    usage: plan.usage,
    warnings,
    ...(guard.interrupted ? {interrupted: true, signal: guard.signal} : {}),
  })
  if (plan.noop) return result()
  if (await guard.checkpoint()) return {...result(), rolledBack: true}
  if (before !== null) {
    try {
      steps.write(host.sys('bus/pci/drivers', before, 'unbind'), fn.bdf)
    } catch (error) {
      const e = error as IopmemError
      throw new IopmemError(`Unbinding ${fn.bdf} from ${before} failed: ${e.message}. Nothing was changed.`, {
        code: 'E_UNBIND_FAILED',
        exit: e.exit === Exit.PERMISSION ? Exit.PERMISSION : Exit.KERNEL,
        errno: e.errno,
        path: e.path,
        details: {steps: steps.list},
      })
    }
    if ((await guard.checkpoint()) && beforeOverride !== null) {
      const ended = rollback(host, steps, fn, {unbound: before}, beforeOverride)
      return {...result(), rolledBack: ended === before}
    }
  }
  if (beforeOverride !== null) {
    try {
      steps.write(path.join(fn.sysfsPath, 'driver_override'), '\n')
    } catch (error) {
      warnings.push(`The device is unbound, but clearing driver_override (${beforeOverride}) failed: ${(error as Error).message}`)
    }
    await guard.checkpoint()
  }
  if (effects.dryRun) {
    if (before !== null) effects.then(`reads ${host.display(path.join(fn.sysfsPath, 'driver'))}: it must be gone (no driver); otherwise fails (exit 6)`)
    return result()
  }
  const now = currentDriver(host, fn)
  if (now !== null) {
    throw new IopmemError(`Unbinding ${fn.bdf} did not take: it is still bound to ${now}.`, {
      code: 'E_UNBIND_FAILED',
      exit: Exit.KERNEL,
      details: {steps: steps.list},
    })
  }
  return guard.interrupted ? {...result(), rolledBack: false} : result()
}

/**
 * Run `fn` holding the function's lock (two iopmem processes never change one
 * function at once; held from the in-use check to the last write) and a
 * SignalGuard (stop signals are held back from before the lock is taken
 * until `fn` returns, so the result is always printed). Both are let go
 * however `fn` ends, and the kernel drops the lock if the process dies.
 */
export async function withFunctionLock<T>(host: Host, bdfText: string, opts: LockOptions, fn: (guard: SignalGuard) => Promise<T>): Promise<T> {
  const bdf = normalizeBdf(bdfText)
  // The lock lives in /run/lock, which only root may write: say what a normal user lacks
  // (E_NOT_ROOT, as planning would) rather than fail on the lock file. A dry run takes no lock.
  if (host.isLive) requireRoot(host, `Changing the driver of ${bdf}`, opts.effects)
  return withLock(host, `pci-${bdf}`, `PCI function ${bdf}`, opts, fn)
}

/** After the confirmation: the fresh plan, refused when the device changed hands while a person was asked (the in-use check ran again in planning). */
export function recheckBind(asked: BindPlan, now: BindPlan): BindPlan {
  if (now.fn.driver !== asked.fn.driver) throw changedWhileAsked(asked.fn.bdf, asked.fn.driver, now.fn.driver)
  return now
}

export function recheckUnbind(asked: UnbindPlan, now: UnbindPlan): UnbindPlan {
  if (now.fn.driver !== asked.fn.driver) throw changedWhileAsked(asked.fn.bdf, asked.fn.driver, now.fn.driver)
  return now
}

function changedWhileAsked(bdf: string, was: string | null, now: string | null): IopmemError {
  return new IopmemError(`${bdf} changed while you were asked: it was bound to ${was ?? 'no driver'}, now to ${now ?? 'no driver'}. Nothing was changed.`, {
    code: 'E_CHANGED',
    exit: Exit.REFUSED,
    suggestions: ['Look again (`iopmem list`) and run the command again.'],
  })
}

/** What an interrupted bind or unbind left, in one sentence. */
export function interruptedMessage(r: BindResult): string {
  const state = `${r.bdf} is ${r.driver ? `bound to ${r.driver}` : 'unbound'}, driver_override ${r.override ?? '(null)'}`
  if (r.steps.length === 0) return `Interrupted (${r.signal}) before the first write; nothing was changed: ${state}.`
  if (r.rolledBack) return `Interrupted (${r.signal}); rolled back: ${state}, as it was.`
  if (r.rolledBack === false && r.changed && r.steps.every((s) => s.ok)) return `Interrupted (${r.signal}) after the last step; the change is complete: ${state}.`
  return `Interrupted (${r.signal}); ${state}.`
}
