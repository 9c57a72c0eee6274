/** The text of one persistent binding (/etc/iopmem/bind.d/BDF.conf) and of the udev rule that re-applies them: writing them, and reading them back strictly. */
import {type CacheMode, type DeviceSettings, type Mode, validateBarIndex, validateCache, validateDriverName, validateMode} from '../bind/index.js'
import {isBdfName} from '../pci/index.js'
import {Exit, IopmemError} from '../sys/index.js'

/**
 * A record is a few `key=value` lines, like driverctl's one-word files in
 * /etc/driverctl.d but with room for the iopmem driver's settings:
 *
 *   # comment lines and blank lines are ignored
 *   driver=iopmem
 *   mode=blockdax        (iopmem only: blockdax or p2pmem)
 *   bar=2                (iopmem only: the BAR resolved at bind time)
 *   cache=wb             (iopmem only: wb, wc, uc or wt)
 *   force-cache=yes      (iopmem only, optional: the --force that accepted a CPU-cached mapping)
 *
 * Reading is strict, because root acts on it at every boot: every key known,
 * none twice, every value checked by the validators `bind` uses, the iopmem
 * keys all present for iopmem and absent for other drivers. Anything else is
 * an error that names the file and the line.
 */

export const RECORD_MAX_BYTES = 4096

export interface PersistRecord {
  bdf: string
  driver: string
  /** For the iopmem driver: the settings it is bound with. */
  iopmem?: DeviceSettings
}

export function formatRecord(r: PersistRecord): string {
  const lines = [
    `# iopmem: ${r.bdf} is bound to ${r.driver} at boot, when udev adds it (89-iopmem.rules runs \`iopmem persist apply ${r.bdf}\`).`,
    `# Written by \`iopmem bind --persist\`; \`iopmem unbind ${r.bdf} --persist\` or \`iopmem persist remove ${r.bdf}\` removes it.`,
    `driver=${r.driver}`,
  ]
  if (r.iopmem) {
    lines.push(`mode=${r.iopmem.mode}`, `bar=${r.iopmem.bar}`, `cache=${r.iopmem.cache}`)
    if (r.iopmem.force) lines.push('force-cache=yes')
  }
  return lines.join('\n') + '\n'
}

const KEYS = ['driver', 'mode', 'bar', 'cache', 'force-cache'] as const
type Key = (typeof KEYS)[number]

/** Parse a record's text (`file` names it in errors); `bdf` is the function its file name gives. */
export function parseRecord(bdf: string, text: string, file: string): PersistRecord {
  const bad = (why: string, line?: number): never => {
    throw new IopmemError(`${file}${line === undefined ? '' : `, line ${line}`}: ${why}; the binding it records is not applied.`, {
      code: 'E_BAD_RECORD',
      exit: Exit.REFUSED,
      path: file,
      suggestions: [`Fix or remove it: \`iopmem persist remove ${bdf}\`, then record the binding again with \`iopmem bind ${bdf} … --persist\`.`],
    })
  }
  if (!isBdfName(bdf)) bad('the file name is not a PCI function (DDDD:BB:DD.F.conf)')
  const got = new Map<Key, string>()
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(raw)) bad('it holds control characters', i + 1)
    const m = /^([a-z-]+)=(.*)$/.exec(line)
    if (!m) bad(`${JSON.stringify(line.slice(0, 60))} is not key=value`, i + 1)
    const key = m![1] as Key
    if (!(KEYS as readonly string[]).includes(key)) bad(`unknown key ${JSON.stringify(key.slice(0, 40))} (known: ${KEYS.join(', ')})`, i + 1)
    if (got.has(key)) bad(`${key} is given twice`, i + 1)
    got.set(key, m![2])
    try {
      if (key === 'driver') validateDriverName(m![2])
      else if (key === 'mode') validateMode(m![2])
      else if (key === 'bar') validateBarIndex(m![2])
      else if (key === 'cache') validateCache(m![2])
      else if (m![2] !== 'yes') bad('force-cache can only be yes', i + 1)
    } catch (error) {
      if (error instanceof IopmemError && error.code !== 'E_BAD_RECORD') bad(error.message.replace(/\.$/, ''), i + 1)
      throw error
    }
  }
  const driver = got.get('driver') ?? bad('it has no driver= line')
  const settings = KEYS.filter((k) => k !== 'driver' && got.has(k))
  if (driver !== 'iopmem') {
    if (settings.length > 0) bad(`${settings.join(', ')} ${settings.length === 1 ? 'is' : 'are'} for driver=iopmem only`)
    return {bdf, driver}
  }
  const missing = (['mode', 'bar', 'cache'] as const).filter((k) => !got.has(k))
  if (missing.length > 0) bad(`driver=iopmem needs ${missing.join(', ')}`)
  const mode = got.get('mode') as Mode
  const cache = got.get('cache') as CacheMode
  if (mode === 'p2pmem' && cache !== 'wb') bad('cache is only for mode=blockdax (p2pmem keeps cache=wb)')
  const iopmem: DeviceSettings = {mode, bar: Number(got.get('bar')), cache}
  if (got.has('force-cache')) iopmem.force = true
  return {bdf, driver, iopmem}
}

/** The marker that says a rules file is iopmem's own (anything else in its place is never overwritten). */
export const RULE_MARKER = '# iopmem persistent bindings:'

/** udev substitutes `$` and `%` and splits RUN on spaces: a program path with any of these (or a quote) cannot stand in a rule. */
export function ruleSafePath(p: string): boolean {
  return p.startsWith('/') && /^[A-Za-z0-9/_.+@:,=-]+$/.test(p)
}

/**
 * The rule, as driverctl's 89-driverctl.rules: on `add` of a PCI function
 * that has a record, run the re-apply entry point for it. `program` is the
 * argv before `persist apply` (node and iopmem's bin/run.js, absolute).
 */
export function formatRule(recordDir: string, program: string[]): string {
  return [
    `${RULE_MARKER} re-applies the bindings recorded in ${recordDir} when udev adds the PCI function.`,
    '# Written by `iopmem bind --persist`, removed with the last record; `iopmem persist list` shows them.',
    `ACTION=="add", SUBSYSTEM=="pci", TEST=="${recordDir}/$kernel.conf", RUN+="${program.join(' ')} persist apply $kernel --kmsg"`,
    '',
  ].join('\n')
}
