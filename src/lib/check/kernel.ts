/** `check`'s kernel items: the release, the options P2PDMA needs in its config, lockdown, and the iopmem module. */
import * as os from 'node:os'
import * as path from 'node:path'
import {gunzipSync} from 'node:zlib'

import {enrolledAsMok, mokImportStep, moduleSignature, moduleVermagic, type SecureBootState, secureBootState} from '../bind/index.js'
import type {Host} from '../sys/index.js'
import type {CheckItem, Verdict} from './types.js'

/** The kernel's configuration: option → value (`y`, `m`, a string or number), null for "is not set". */
export interface KernelConfig {
  /** Where it was read: /proc/config.gz or /boot/config-RELEASE. */
  source: string
  options: Map<string, string | null>
}

/** Parse a .config: `CONFIG_X=value` and `# CONFIG_X is not set`. */
export function parseKernelConfig(text: string, source: string): KernelConfig {
  const options = new Map<string, string | null>()
  for (const line of text.split('\n')) {
    const set = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line)
    if (set) {
      options.set(set[1], set[2].replace(/^"(.*)"$/, '$1'))
      continue
    }
    const unset = /^# CONFIG_([A-Za-z0-9_]+) is not set$/.exec(line)
    if (unset) options.set(unset[1], null)
  }
  return {source, options}
}

/** The running kernel's release: /proc/sys/kernel/osrelease, or uname when the roots are the live ones. */
export function readKernelRelease(host: Host): string | null {
  const r = host.readTrim(host.proc('sys/kernel/osrelease'))
  if (r) return r
  return host.isLive ? os.release() : null
}

/** /proc/config.gz (CONFIG_IKCONFIG_PROC), else /boot/config-RELEASE; null when neither can be read. */
export function readKernelConfig(host: Host, release: string | null): KernelConfig | null {
  const gz = host.readBytes(host.proc('config.gz'))
  if (gz && gz.length > 0) {
    try {
      return parseKernelConfig(gunzipSync(gz).toString('utf8'), '/proc/config.gz')
    } catch {
      // a damaged file: try /boot
    }
  }
  if (release && !release.includes('/')) {
    const file = host.boot(`config-${release}`)
    const text = host.read(file)
    if (text !== undefined) return parseKernelConfig(text, path.join('/boot', `config-${release}`))
  }
  return null
}

/** The options `check` looks at, with what each means for P2P and the verdict when it is off. */
const OPTIONS: Array<{name: string; off: Verdict; on: Verdict; why: string; fixOff?: string; fixOn?: string}> = [
  {name: 'PCI_P2PDMA', off: 'fail', on: 'pass', why: 'the kernel P2PDMA core (p2pmem, peer DMA mapping)', fixOff: 'Use a kernel built with CONFIG_PCI_P2PDMA=y.'},
  {name: 'ZONE_DEVICE', off: 'fail', on: 'pass', why: 'struct pages for device memory (P2PDMA and DAX need it)', fixOff: 'Use a kernel built with CONFIG_ZONE_DEVICE=y.'},
  {name: 'FS_DAX', off: 'warn', on: 'pass', why: 'DAX filesystems on device memory (mkfs-dax, locate)', fixOff: 'For DAX filesystems use a kernel with CONFIG_FS_DAX=y.'},
  {name: 'DEV_DAX', off: 'warn', on: 'pass', why: 'device-dax (/dev/daxX.Y) over device memory', fixOff: 'For /dev/dax use a kernel with CONFIG_DEV_DAX=y or =m.'},
  {
    name: 'IO_STRICT_DEVMEM',
    off: 'pass',
    on: 'warn',
    why: 'when set, user space may not map a BAR a driver has claimed (resourceN of a bound NVMe, its CMB registers)',
    fixOn: 'Unbind the driver before mapping its BARs, or boot with iomem=relaxed.',
  },
]

export function configItems(cfg: KernelConfig | null, cmdline: string[]): CheckItem[] {
  return OPTIONS.map((o) => {
    const base = {id: `kernel.config.${o.name}`, area: 'kernel' as const, title: o.name}
    if (!cfg) {
      return {
        ...base,
        verdict: 'unknown' as const,
        found: 'kernel config not readable (no /proc/config.gz, no /boot/config-RELEASE)',
        fix: 'modprobe configs (CONFIG_IKCONFIG_PROC) or install the kernel package with its /boot/config.',
      }
    }
    const v = cfg.options.get(o.name)
    const on = v !== undefined && v !== null && v !== 'n'
    let verdict = on ? o.on : o.off
    let found = `${on ? `=${v}` : 'not set'} in ${cfg.source}: ${o.why}`
    // iomem=relaxed on the command line lifts IO_STRICT_DEVMEM.
    if (o.name === 'IO_STRICT_DEVMEM' && on && cmdline.includes('iomem=relaxed')) {
      verdict = 'pass'
      found += '; lifted by iomem=relaxed'
    }
    return {...base, verdict, found, fix: verdict === 'pass' ? null : (on ? o.fixOn : o.fixOff) ?? null, details: {value: v ?? null, source: cfg.source}}
  })
}

/** /sys/kernel/security/lockdown: `[none] integrity confidentiality`, the bracketed one active. */
export function lockdownItem(host: Host, cfg: KernelConfig | null): CheckItem {
  const base = {id: 'kernel.lockdown', area: 'kernel' as const, title: 'lockdown'}
  const text = host.readTrim(host.sys('kernel/security/lockdown'))
  const mode = text ? (/\[(\w+)\]/.exec(text)?.[1] ?? null) : null
  if (mode === null) {
    const built = cfg?.options.get('SECURITY_LOCKDOWN_LSM')
    if (cfg && (built === null || built === undefined)) return {...base, verdict: 'pass', found: 'lockdown LSM not built into this kernel', fix: null, details: {mode: null}}
    return {
      ...base,
      verdict: 'unknown',
      found: 'no /sys/kernel/security/lockdown (securityfs not mounted, or no lockdown LSM)',
      fix: 'mount -t securityfs securityfs /sys/kernel/security',
      details: {mode: null},
    }
  }
  if (mode === 'none') return {...base, verdict: 'pass', found: 'none', fix: null, details: {mode}}
  return {
    ...base,
    verdict: 'fail',
    found: `${mode}: mapping BARs through sysfs resourceN is refused and only signed modules load`,
    fix: 'Disable Secure Boot (or `mokutil --disable-validation`) to lift lockdown.',
    details: {mode},
  }
}

/** What Secure Boot and the kernel demand of a module: a valid signature, or nothing. */
function signatureRequired(host: Host, cfg: KernelConfig | null, lockdown: string | null, sb: SecureBootState): {required: boolean | null; why: string} {
  const enforce = host.readTrim(host.sys('module/module/parameters/sig_enforce'))
  if (enforce === 'Y') return {required: true, why: 'module.sig_enforce=Y'}
  if (sb.secureBoot === 'on') return {required: true, why: 'Secure Boot is on (EFI SecureBoot variable)'}
  if (cfg?.options.get('MODULE_SIG_FORCE') === 'y') return {required: true, why: 'CONFIG_MODULE_SIG_FORCE=y'}
  if (lockdown && lockdown !== 'none') return {required: true, why: `lockdown=${lockdown}`}
  if (enforce === 'N') return {required: false, why: 'module.sig_enforce=N'}
  return {required: null, why: 'sig_enforce not readable'}
}

/** The iopmem module: built for this kernel (modules.dep or `driver build`'s cache), loaded, signed when it must be. */
export function moduleItem(host: Host, release: string | null, cfg: KernelConfig | null, buildCache: string | null): CheckItem {
  const base = {id: 'kernel.iopmem-module', area: 'kernel' as const, title: 'iopmem module'}
  const loaded = host.exists(host.sys('module', 'iopmem'))
  const lockdownText = host.readTrim(host.sys('kernel/security/lockdown'))
  const lockdown = lockdownText ? (/\[(\w+)\]/.exec(lockdownText)?.[1] ?? null) : null
  const sb = secureBootState(host)
  const sig = signatureRequired(host, cfg, lockdown, sb)
  let ko: string | null = null
  if (release) {
    const dep = host.read(host.modules(release, 'modules.dep')) ?? ''
    const line = dep.split('\n').find((l) => /(^|\/)iopmem\.ko(\.[gx]z|\.zst)?:/.test(l))
    if (line) ko = host.modules(release, line.split(':')[0])
  }
  if (!ko && buildCache && host.exists(buildCache)) {
    const magic = moduleVermagic(buildCache)
    if (magic && release && magic.split(' ')[0] === release) ko = buildCache
  }
  const data = ko ? host.readBytes(ko) : undefined
  const signature = ko && data ? moduleSignature(data, ko) : null
  // A compressed module's signature is inside the compression: unknown here (`iopmem driver status` asks modinfo).
  const signed = signature ? (signature.unreadable && !signature.signed ? null : signature.signed) : null
  const enrolled = signature ? enrolledAsMok(signature, sb) : null
  const taint = loaded ? host.readTrim(host.sys('module/iopmem/taint')) : undefined
  const details = {loaded, module: ko, signed, signer: signature?.signer ?? null, signatureRequired: sig.required, secureBoot: sb.secureBoot, enrolled, ...(loaded ? {verified: taint !== undefined && !taint.includes('E')} : {})}
  if (loaded) {
    const version = host.readTrim(host.sys('module/iopmem/version'))
    const unverified = taint?.includes('E') ? ', signature not verified (taint E)' : ''
    return {...base, verdict: 'pass', found: `loaded${version ? `, version ${version}` : ''}${unverified}`, fix: null, details}
  }
  // kernel.modules_disabled=1 is one-way until reboot: no insmod or modprobe succeeds.
  if (host.readTrim(host.proc('sys/kernel/modules_disabled')) === '1') {
    return {
      ...base,
      verdict: 'fail',
      found: 'not loaded, and module loading is disabled until the next boot (kernel.modules_disabled=1)',
      fix: 'Reboot without setting kernel.modules_disabled (sysctl.d), load iopmem first, or build it into the kernel.',
      details: {...details, modulesDisabled: true},
    }
  }
  if (!ko) {
    return {
      ...base,
      verdict: 'warn',
      found: `not loaded, and not built for ${release ?? 'this kernel'} (needed for BARs without a driver of their own: iopmem bind)`,
      fix: 'iopmem driver build && sudo iopmem driver load',
      details,
    }
  }
  if (sig.required && !signed) {
    return {
      ...base,
      verdict: 'fail',
      found: `built (${host.display(ko)}) but unsigned, and the kernel wants signed modules (${sig.why})`,
      fix: 'Sign it: `iopmem driver build --sign KEY --cert CERT`, or install it through DKMS (`sudo iopmem driver install`, which signs it); then enroll the certificate as a MOK.',
      details,
    }
  }
  if (sig.required && signed && enrolled === false) {
    return {
      ...base,
      verdict: 'fail',
      found: `built (${host.display(ko)}), signed by ${signature!.signer ?? '?'}, but that key is not an enrolled MOK, and the kernel wants trusted signatures (${sig.why})`,
      fix: mokImportStep('CERT (the certificate of the signing key; DKMS: /var/lib/dkms/mok.pub)'),
      details,
    }
  }
  const how = signed ? `, signed${signature!.signer ? ` by ${signature!.signer}` : ''}` : signature?.unreadable ? `, signature not read here (${signature.unreadable})` : ''
  return {...base, verdict: 'pass', found: `built for ${release}${how}, not loaded`, fix: null, details}
}

export function releaseItem(release: string | null): CheckItem {
  return release
    ? {id: 'kernel.release', area: 'kernel', title: 'kernel', verdict: 'pass', found: release, fix: null, details: {release}}
    : {id: 'kernel.release', area: 'kernel', title: 'kernel', verdict: 'unknown', found: 'no /proc/sys/kernel/osrelease', fix: null, details: {release: null}}
}
