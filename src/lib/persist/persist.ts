/** Bindings that survive a reboot: the records in /etc/iopmem/bind.d, the udev rule that re-applies them, listing them with what stands in their way, and applying one. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {type BindPlan, type BindResult, canLoadModule, type DriverEnv, driverRegistered, deviceInfo, executeBind, planBind, withModule} from '../bind/index.js'
import {normalizeBdf} from '../pci/index.js'
import {acquireLock, checkEtcDir, type Effects, Exit, IopmemError, lockFile, readEtcFile, realEffects, realStat, type SignalGuard, TEMP_RE, trustedOwner, untrustedReason} from '../sys/index.js'
import type {Host} from '../sys/index.js'
import {formatRecord, formatRule, parseRecord, type PersistRecord, RECORD_MAX_BYTES, RULE_MARKER, ruleSafePath} from './record.js'

/**
 * Layout (under the host's etc root: /etc, or IOPMEM_ETC_ROOT, or `etc`
 * beside a fixture's sys):
 *
 *   iopmem/bind.d/DDDD:BB:DD.F.conf   one record per function (record.ts)
 *   udev/rules.d/89-iopmem.rules      one rule for all of them, while any exists
 *   driverctl.d/pci-DDDD:BB:DD.F      driverctl's override, if any: iopmem defers to it
 *
 * Every change to these files (a record and the rule with it) is made under
 * the lock `persist` (after the function's own lock, never before), through
 * checkEtcDir/writeEtcFile/removeEtcFile (etcfile.ts): checked directories,
 * atomic replacement, no symlink followed.
 */
export const RULE_FILE = '89-iopmem.rules'

export interface PersistPaths {
  /** Where the records are. */
  dir: string
  rule: string
  driverctlDir: string
}

export function persistPaths(host: Host): PersistPaths {
  return {dir: host.etc('iopmem', 'bind.d'), rule: host.etc('udev', 'rules.d', RULE_FILE), driverctlDir: host.etc('driverctl.d')}
}

export function recordFile(host: Host, bdf: string): string {
  return path.join(persistPaths(host).dir, `${bdf}.conf`)
}

/** driverctl's saved override for the function (its /etc/driverctl.d/pci-BDF), if it has one. */
export function driverctlOverride(host: Host, bdf: string): {file: string; driver: string | null} | undefined {
  const file = path.join(persistPaths(host).driverctlDir, `pci-${bdf}`)
  if (fs.lstatSync(file, {throwIfNoEntry: false}) === undefined) return undefined
  let driver: string | null = null
  try {
    driver = (readEtcFile(file, trustedOwner(host), 256) ?? '').trim() || null
  } catch {
    driver = null // odd, but driverctl's: it still owns the function
  }
  return {file, driver}
}

function driverctlRefusal(bdf: string, dc: {file: string; driver: string | null}): IopmemError {
  return new IopmemError(
    `driverctl keeps an override for ${bdf} (${dc.file}${dc.driver ? `: ${dc.driver}` : ''}) and re-applies it at every boot; iopmem does not record a second one that would fight it.`,
    {
      code: 'E_DRIVERCTL',
      exit: Exit.REFUSED,
      suggestions: [
        `Keep using driverctl for it (\`driverctl set-override ${bdf} DRIVER\`), or`,
        `hand it to iopmem: \`driverctl unset-override ${bdf}\`, then \`iopmem bind ${bdf} … --persist\`.`,
      ],
      details: {driverctl: dc},
    },
  )
}

/** The record of a function, checked and parsed; undefined when there is none. */
export function readRecord(host: Host, bdf: string): PersistRecord | undefined {
  const file = recordFile(host, bdf)
  if (!checkEtcDir(persistPaths(host).dir, trustedOwner(host), false)) return undefined
  const text = readEtcFile(file, trustedOwner(host), RECORD_MAX_BYTES)
  return text === undefined ? undefined : parseRecord(bdf, text, file)
}

/** The argv before `persist apply` in the rule: node and this package's bin/run.js, real paths, checked as a program root runs at boot. */
export function ruleProgram(host: Host, packageRoot: string, node = process.execPath): string[] {
  const owner = trustedOwner(host)
  return [node, path.join(packageRoot, 'bin', 'run.js')].map((p) => {
    let real: string
    let st: fs.Stats
    try {
      ;({real, st} = realStat(p))
    } catch (error) {
      throw new IopmemError(`Cannot record a binding: ${p}, which the udev rule would run, cannot be read (${(error as Error).message}).`, {code: 'E_RULE_PROGRAM', exit: Exit.NOT_FOUND})
    }
    const why = !st.isFile() ? 'it is not a regular file' : !ruleSafePath(real) ? 'its path has characters a udev rule cannot carry (spaces, quotes, $ or %)' : untrustedReason(st, real, st.uid === 0 ? 0 : owner)
    if (why) {
      throw new IopmemError(`Cannot record a binding: the udev rule would make root run ${real} at every boot, but ${why}.`, {
        code: 'E_RULE_PROGRAM',
        exit: Exit.REFUSED,
        suggestions: ['Install iopmem where only root can change it (e.g. `sudo npm install -g`, into /usr/local/lib) and run it from there.'],
        details: {program: real},
      })
    }
    return real
  })
}

export interface PersistPlan {
  record: PersistRecord
  file: string
  rule: {path: string; text: string}
}

/**
 * Check everything a record needs before any change: driverctl has no
 * override for the function, the directories are usable, an existing
 * record (being replaced) and a rules file in the rule's place are files
 * iopmem may replace (a foreign rules file is never overwritten).
 */
export function planPersist(host: Host, record: PersistRecord, program: string[]): PersistPlan {
  const p = persistPaths(host)
  const dc = driverctlOverride(host, record.bdf)
  if (dc) throw driverctlRefusal(record.bdf, dc)
  const owner = trustedOwner(host)
  for (const dir of [p.dir, path.dirname(p.rule)]) {
    // The deepest directory that exists must be usable; the rest is made at save time.
    let d = dir
    while (!checkEtcDir(d, owner, false)) d = path.dirname(d)
  }
  // A record being replaced must be a plain file iopmem may replace (a malformed one is: the new one fixes it).
  readEtcFile(recordFile(host, record.bdf), owner, RECORD_MAX_BYTES)
  const text = formatRule(p.dir, program)
  const existing = readEtcFile(p.rule, owner, 64 * 1024)
  if (existing !== undefined && !existing.startsWith(RULE_MARKER)) {
    throw new IopmemError(`${p.rule} exists and is not iopmem's (it does not start with "${RULE_MARKER}"); not overwriting it.`, {
      code: 'E_RULE_FOREIGN',
      exit: Exit.REFUSED,
      path: p.rule,
      suggestions: ['Move that file to another name; iopmem keeps its rule in 89-iopmem.rules.'],
    })
  }
  return {record, file: recordFile(host, record.bdf), rule: {path: p.rule, text}}
}

export interface PersistChange {
  file: string
  /** The record was written (bind) or removed (unbind, persist remove). */
  changed: boolean
  rule: string
  /** What happened to the udev rule. */
  ruleAction: 'written' | 'kept' | 'removed' | 'none'
}

const PERSIST_LOCK = ['persist', 'the persistent bindings'] as const

/** Run `fn` holding the lock `persist` (waiting for it); a dry run lists the lock and takes none. */
async function underPersistLock<T>(host: Host, effects: Effects, fn: () => T): Promise<T> {
  if (effects.dryRun) {
    effects.lock(lockFile(host, PERSIST_LOCK[0]), PERSIST_LOCK[1])
    return fn()
  }
  const lock = await acquireLock(host, ...PERSIST_LOCK, {wait: true})
  try {
    return fn()
  } finally {
    lock.release()
  }
}

/**
 * Write the record and (when missing or different) the rule, each atomically; the record first, so a rule never points at nothing new.
 * Every change goes through `effects`: a dry run lists the directories it would make and each file with its exact content.
 */
export async function savePersist(host: Host, plan: PersistPlan, opts: {beforeRename?: (temp: string) => void; effects?: Effects} = {}): Promise<PersistChange> {
  const effects = opts.effects ?? realEffects()
  return underPersistLock(host, effects, () => {
    const owner = trustedOwner(host)
    effects.etcDir(host, path.dirname(plan.file), owner)
    const text = formatRecord(plan.record)
    let old: string | undefined
    try {
      old = readEtcFile(plan.file, owner, RECORD_MAX_BYTES)
    } catch {
      old = undefined // planPersist allowed replacing it
    }
    if (old !== text) effects.writeEtcFile(host, plan.file, text, {beforeRename: opts.beforeRename})
    effects.etcDir(host, path.dirname(plan.rule.path), owner)
    const rule = readEtcFile(plan.rule.path, owner, 64 * 1024)
    if (rule !== undefined && !rule.startsWith(RULE_MARKER)) throw new IopmemError(`${plan.rule.path} is not iopmem's; not overwriting it.`, {code: 'E_RULE_FOREIGN', exit: Exit.REFUSED})
    if (rule !== plan.rule.text) effects.writeEtcFile(host, plan.rule.path, plan.rule.text)
    return {file: plan.file, changed: old !== text, rule: plan.rule.path, ruleAction: rule === plan.rule.text ? 'kept' : 'written'}
  })
}

/** Before `unbind --persist` changes anything: the directories are usable, so removing the record afterwards cannot trip over them. */
export function planRemove(host: Host, bdfText: string): void {
  const p = persistPaths(host)
  const owner = trustedOwner(host)
  if (checkEtcDir(p.dir, owner, false)) checkEtcDir(path.dirname(p.rule), owner, false)
  normalizeBdf(bdfText)
}

/** Remove the function's record, and the rule with the last one; through `effects` (a dry run lists the removals). */
export async function removePersist(host: Host, bdfText: string, effects: Effects = realEffects()): Promise<PersistChange> {
  const bdf = normalizeBdf(bdfText)
  const p = persistPaths(host)
  const file = recordFile(host, bdf)
  return underPersistLock(host, effects, () => {
    const owner = trustedOwner(host)
    const dirThere = checkEtcDir(p.dir, owner, false)
    const changed = dirThere ? effects.removeEtcFile(host, file) : false
    // The records left once this one is gone (a dry run has not removed it).
    const left = dirThere ? fs.readdirSync(p.dir).filter((f) => f.endsWith('.conf') && f !== path.basename(file)) : []
    let ruleAction: PersistChange['ruleAction'] = 'kept'
    if (left.length === 0) {
      ruleAction = 'none'
      if (checkEtcDir(path.dirname(p.rule), owner, false)) {
        const rule = readEtcFile(p.rule, owner, 64 * 1024)
        if (rule !== undefined && rule.startsWith(RULE_MARKER) && effects.removeEtcFile(host, p.rule)) ruleAction = 'removed'
      }
    }
    return {file, changed, rule: p.rule, ruleAction}
  })
}

/** A bind or unbind result with what --persist did to the records. */
export type PersistedBindResult = BindResult & {persist?: PersistChange}

/** Whether a record file exists for the function (valid or not). */
export function hasRecord(host: Host, bdf: string): boolean {
  return fs.lstatSync(recordFile(host, bdf), {throwIfNoEntry: false}) !== undefined
}

export type RecordState = 'applied' | 'pending' | 'device-missing' | 'driver-missing' | 'deferred' | 'invalid'

export interface RecordStatus {
  bdf: string
  file: string
  record: PersistRecord | null
  /**
   * applied: the function is bound as recorded; pending: it is there but not
   * bound so (the next `add`, or `iopmem persist apply`, binds it);
   * device-missing: no such function now; driver-missing: its driver is not
   * registered (for iopmem: the module is not loaded: apply loads it when it
   * can); deferred: driverctl has an override for it, which wins; invalid:
   * the file cannot be used (`detail` says why).
   */
  state: RecordState
  detail: string
  /** The function's driver now (null: unbound or missing). */
  driver: string | null
}

export interface PersistList {
  dir: string
  rule: {path: string; installed: boolean}
  records: RecordStatus[]
  /** Temporary files interrupted writes left in the directory (ignored; the next write removes them). */
  leftovers: string[]
}

export function recordState(host: Host, bdf: string, record: PersistRecord): Omit<RecordStatus, 'file' | 'record'> {
  const dc = driverctlOverride(host, bdf)
  const devDir = host.sys('bus/pci/devices', bdf)
  const driver = host.linkName(path.join(devDir, 'driver')) ?? null
  const out = (state: RecordState, detail: string) => ({bdf, state, detail, driver})
  if (dc) return out('deferred', `driverctl has an override for it (${dc.file}${dc.driver ? `: ${dc.driver}` : ''}); driverctl's wins and iopmem leaves it alone`)
  if (!host.exists(devDir)) return out('device-missing', `no PCI function ${bdf} is present (removed, moved to another slot, or its bus renumbered?)`)
  if (driver === record.driver) {
    if (!record.iopmem) return out('applied', `bound to ${driver}`)
    const now = deviceInfo(host, bdf)
    const want = record.iopmem
    if (now.mode === want.mode && now.bar === want.bar && now.cache === want.cache) return out('applied', `bound to iopmem as ${want.mode} on BAR ${want.bar}, cache ${want.cache}${now.path ? ` (${now.path})` : ''}`)
    return out('pending', `bound to iopmem as ${now.mode ?? '?'} on BAR ${now.bar ?? '?'} (cache ${now.cache ?? '?'}), not the recorded ${want.mode} on BAR ${want.bar} (cache ${want.cache})`)
  }
  if (!driverRegistered(host, record.driver)) {
    const load = record.driver === 'iopmem' ? '`iopmem driver load` (apply loads it itself when the module is built or installed)' : `\`modprobe ${record.driver}\``
    return out('driver-missing', `the driver ${record.driver} is not registered: load it with ${load}`)
  }
  return out('pending', `${driver ? `bound to ${driver}` : 'not bound'}; \`iopmem persist apply ${bdf}\` (or the next boot) binds it to ${record.driver}`)
}

/** Every record, with its state; a file that cannot be used is listed as invalid with the reason, never skipped. */
export function listPersistent(host: Host): PersistList {
  const p = persistPaths(host)
  const owner = trustedOwner(host)
  const rule = {path: p.rule, installed: fs.lstatSync(p.rule, {throwIfNoEntry: false}) !== undefined}
  if (!checkEtcDir(p.dir, owner, false)) return {dir: p.dir, rule, records: [], leftovers: []}
  const records: RecordStatus[] = []
  const leftovers: string[] = []
  for (const name of fs.readdirSync(p.dir).sort()) {
    const file = path.join(p.dir, name)
    if (TEMP_RE.test(name)) {
      leftovers.push(file)
      continue
    }
    const bdf = name.endsWith('.conf') ? name.slice(0, -5) : name
    if (!name.endsWith('.conf')) {
      records.push({bdf, file, record: null, state: 'invalid', detail: `${file} is not a record (records are named DDDD:BB:DD.F.conf); it is ignored`, driver: null})
      continue
    }
    try {
      const record = readRecord(host, bdf)!
      records.push({file, record, ...recordState(host, bdf, record)})
    } catch (error) {
      if (!(error instanceof IopmemError)) throw error
      records.push({bdf, file, record: null, state: 'invalid', detail: error.message, driver: null})
    }
  }
  return {dir: p.dir, rule, records, leftovers}
}

export interface ApplyResult {
  bdf: string
  record: PersistRecord
  /** applied: bound now; already: it was bound as recorded (nothing written); deferred: driverctl's override wins. */
  outcome: 'applied' | 'already' | 'deferred'
  detail: string
  bind?: BindResult
  moduleLoaded?: {how: string; ko: string | null}
}

/**
 * Bind a function as its record says: the udev rule's entry point, and
 * `iopmem persist apply`. Idempotent (a function bound as recorded is left
 * alone), refuses what bind refuses (a function in use, a BAR that cannot
 * serve), loads the iopmem module as bind does, and never touches a
 * function driverctl has an override for. A missing record, device or
 * driver is an error that says which.
 */
export async function applyPersistent(host: Host, d: DriverEnv, bdfText: string, guard: SignalGuard): Promise<ApplyResult> {
  const bdf = normalizeBdf(bdfText)
  const record = readRecord(host, bdf)
  if (!record) {
    throw new IopmemError(`No binding is recorded for ${bdf} (${recordFile(host, bdf)}).`, {
      code: 'E_NO_RECORD',
      exit: Exit.NOT_FOUND,
      suggestions: ['`iopmem persist list` shows the recorded ones; `iopmem bind BDF … --persist` records one.'],
    })
  }
  const dc = driverctlOverride(host, bdf)
  if (dc) return {bdf, record, outcome: 'deferred', detail: `driverctl has an override for ${bdf} (${dc.file}); left to driverctl`}
  if (!host.exists(host.sys('bus/pci/devices', bdf))) {
    throw new IopmemError(`The binding recorded for ${bdf} cannot be applied: no such PCI function is present.`, {
      code: 'E_NO_DEVICE',
      exit: Exit.NOT_FOUND,
      suggestions: ['`iopmem list` shows the functions; if it moved, record it again under its new address and `iopmem persist remove` the old one.'],
    })
  }
  const load = record.driver === 'iopmem' && !driverRegistered(host, 'iopmem') && canLoadModule(d)
  const s = record.iopmem
  const plan: BindPlan = planBind(host, bdf, record.driver, {...(s ? {mode: s.mode, bar: String(s.bar), cache: s.cache, forceCache: s.force} : {}), loadIopmem: load})
  if (plan.noop) return {bdf, record, outcome: 'already', detail: `already bound to ${record.driver} as recorded`}
  const {result, loaded} = await withModule(d, load, () => executeBind(host, plan, guard), (r) => !r.interrupted)
  const out: ApplyResult = {bdf, record, outcome: 'applied', detail: `bound to ${result.driver}`, bind: result}
  if (loaded?.changed) out.moduleLoaded = {how: loaded.how, ko: loaded.ko ?? null}
  return out
}

/** The PATH a program udev runs gets when it has none (udev passes none): systemd's default. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/**
 * One line in the kernel log (/dev/kmsg under the host's dev root), where a boot-time
 * apply run by udev can be read afterwards (`dmesg`, the journal); level 3 error, 5 notice.
 * Best effort: no kmsg, or a kmsg that is not a character device (a fixture's may be a file), is skipped.
 */
export function kmsg(host: Host, level: 3 | 5, text: string): void {
  let fd: number | undefined
  try {
    fd = fs.openSync(host.dev('kmsg'), fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_APPEND)
    const st = fs.fstatSync(fd)
    if (st.isCharacterDevice() || (!host.isLive && st.isFile())) fs.writeSync(fd, `<${level}>iopmem: ${text.replaceAll('\n', ' ').slice(0, 900)}\n`)
  } catch {
    /* the log is a convenience; the exit code and output say the same */
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** The record `bind --persist` writes for a plan (the iopmem settings as resolved for the function). */
export function recordFor(plan: BindPlan): PersistRecord {
  return plan.driver === 'iopmem' && plan.iopmem ? {bdf: plan.fn.bdf, driver: 'iopmem', iopmem: plan.iopmem} : {bdf: plan.fn.bdf, driver: plan.driver}
}
