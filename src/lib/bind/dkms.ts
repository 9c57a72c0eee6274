/** Installing the iopmem module through DKMS (add, build and install it for a kernel, so DKMS rebuilds it on kernel upgrades) and removing it again. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {Exit, IopmemError, type ProgramArg, type ProgramPath, type SignalGuard, usage, withLock} from '../sys/index.js'
import {type DriverEnv, fileSignature, kernelRelease, requireRoot, KMOD_SOURCES, kmodSourceDir, runArgs, type SigningKey, type RunResult} from './driver.js'
import type {ModuleSignature} from './modsig.js'

/**
 * DKMS keeps a module's source in SOURCE_TREE/iopmem-VERSION (/usr/src), its
 * builds in DKMS_TREE (/var/lib/dkms) and installs into INSTALL_TREE/KERNEL
 * (/lib/modules), under updates/dkms/. On the live system iopmem passes none
 * of these and DKMS uses its own. Under fixture roots (the tests) all three
 * are inside the fixture (beside its sys/: usr/src, var/lib/dkms, and the
 * host's modules root) and dkms gets --no-depmod, so nothing of the machine's
 * /lib/modules, /usr/src or /var/lib/dkms is written.
 *
 * DKMS signs what it builds (Debian's dkms: with /var/lib/dkms/mok.key and
 * mok.pub, made on first use, or framework.conf's mok_signing_key and
 * mok_certificate). --sign/--cert hand dkms a key of one's own through those
 * same variables; under fixture roots the default key lives in the fixture.
 */
export const DKMS_NAME = 'iopmem'

/** PACKAGE_VERSION of native/kmod/dkms.conf. */
export function dkmsVersion(src = kmodSourceDir()): string {
  const m = /^PACKAGE_VERSION="([0-9A-Za-z.+~-]+)"$/m.exec(fs.readFileSync(path.join(src, 'dkms.conf'), 'utf8'))
  if (!m) throw new Error('native/kmod/dkms.conf has no PACKAGE_VERSION')
  return m[1]
}

export interface DkmsTrees {
  source: string
  dkms: string
  install: string
  /** Whether the trees are the fixture's (then passed to dkms, with --no-depmod). */
  fixture: boolean
}

export function dkmsTrees(d: DriverEnv): DkmsTrees {
  if (d.host.isLive) return {source: '/usr/src', dkms: '/var/lib/dkms', install: '/lib/modules', fixture: false}
  const base = path.dirname(d.host.roots.sysfs)
  return {source: path.join(base, 'usr/src'), dkms: path.join(base, 'var/lib/dkms'), install: d.host.roots.modules, fixture: true}
}

const RELEASE_RE = /^[0-9][A-Za-z0-9._+~-]{0,63}$/

export function validateKernel(k: string): string {
  if (!RELEASE_RE.test(k)) throw usage(`Invalid --kernel ${JSON.stringify(k.slice(0, 70))}: a kernel release such as 6.1.0-56-amd64 (\`uname -r\`).`, 'E_BAD_KERNEL')
  return k
}

export interface DkmsStep {
  step: 'source' | 'add' | 'build' | 'install' | 'remove'
  /** What was done, for the state a failure or a signal leaves. */
  done: string
}

export interface DkmsInstallResult {
  module: string
  version: string
  kernel: string
  /** The installed module file (INSTALL_TREE/KERNEL/updates/dkms/iopmem.ko[.xz]). */
  installed: string | null
  signature: ModuleSignature | null
  /** Signed with --sign/--cert, else with DKMS's own key (or not at all when DKMS has no sign-file). */
  signedWith: string | null
  changed: boolean
  steps: DkmsStep[]
}

function treeArgs(d: DriverEnv, t: DkmsTrees): ProgramArg[] {
  if (!t.fixture) return []
  const h = d.host
  return [h.programPath(t.dkms, '--dkmstree='), h.programPath(t.source, '--sourcetree='), h.programPath(t.install, '--installtree=')]
}

/** The env that points DKMS's signing at a key: --sign/--cert, else under fixture roots a key kept in the fixture. */
function signingEnv(d: DriverEnv, t: DkmsTrees, ksrc: string, sign: SigningKey | undefined): Record<string, ProgramPath> {
  const h = d.host
  const env: Record<string, ProgramPath> = {}
  const signFile = path.join(ksrc, 'scripts/sign-file')
  if (fs.existsSync(signFile)) env.sign_file = h.programPath(signFile)
  if (sign) {
    env.mok_signing_key = h.programPath(sign.key)
    env.mok_certificate = h.programPath(sign.cert)
  } else if (t.fixture) {
    env.mok_signing_key = h.programPath(path.join(t.dkms, 'mok.key'))
    env.mok_certificate = h.programPath(path.join(t.dkms, 'mok.pub'))
  }
  return env
}

function dkmsError(what: string, r: RunResult, steps: DkmsStep[], rolledBack: string): IopmemError {
  const out = (r.stdout + r.stderr).trim().split('\n').slice(-15).join('\n')
  const hints = r.code === 127 ? ['Install DKMS: `apt install dkms` (Debian/Ubuntu), `dnf install dkms` (Fedora/RHEL, from EPEL).'] : ['A failed build leaves its log where dkms says (make.log under its tree, /var/lib/dkms/iopmem/VERSION/).']
  return new IopmemError(`dkms ${what} failed${r.code === 127 ? ' (dkms is not installed)' : ''}:\n${out}\n${rolledBack}`, {
    code: r.code === 127 ? 'E_NO_DKMS' : 'E_DKMS_FAILED',
    exit: r.code === 127 ? Exit.NOT_FOUND : Exit.FAILURE,
    suggestions: hints,
    details: {steps, exit: r.code},
  })
}

/** The module file DKMS installed for `kernel`, if any. */
export function dkmsInstalled(t: DkmsTrees, kernel: string): string | null {
  const dir = path.join(t.install, kernel, 'updates/dkms')
  const f = fs.existsSync(dir) ? fs.readdirSync(dir).find((n) => /^iopmem\.ko(\.(xz|gz|zst))?$/.test(n)) : undefined
  return f ? path.join(dir, f) : null
}

function sameSources(dir: string, src: string): boolean {
  return [...KMOD_SOURCES, 'Makefile', 'dkms.conf'].every((f) => {
    try {
      return fs.readFileSync(path.join(dir, f)).equals(fs.readFileSync(path.join(src, f)))
    } catch {
      return false
    }
  })
}

/**
 * Add, build and install the module through DKMS for `kernel` (default: the
 * running one). Everything is checked first (root, the kernel's headers, the
 * key); a failed or interrupted step undoes what this call did (dkms remove
 * of what it added, the source copy it made) and says so.
 */
export async function dkmsInstall(d: DriverEnv, opts: {kernel?: string; sign?: SigningKey} = {}): Promise<DkmsInstallResult> {
  const kernel = validateKernel(opts.kernel ?? kernelRelease(d))
  requireRoot(d.host, 'Installing the iopmem module through DKMS')
  const t = dkmsTrees(d)
  const ksrc = path.join(t.install, kernel, 'build')
  if (!fs.existsSync(path.join(ksrc, 'Makefile'))) {
    throw new IopmemError(`No kernel headers for ${kernel}: ${d.host.display(ksrc)} is missing.`, {
      code: 'E_NO_HEADERS',
      exit: Exit.NOT_FOUND,
      suggestions: [`Install them: \`apt install linux-headers-${kernel}\` (Debian/Ubuntu), \`dnf install kernel-devel-${kernel}\` (Fedora/RHEL).`],
    })
  }
  const version = dkmsVersion()
  const src = kmodSourceDir()
  const dest = path.join(t.source, `${DKMS_NAME}-${version}`)
  const mv = ['-m', DKMS_NAME, '-v', version]
  const trees = treeArgs(d, t)
  const env = signingEnv(d, t, ksrc, opts.sign)
  const kargs: ProgramArg[] = ['-k', kernel, d.host.programPath(ksrc, '--kernelsourcedir=')]
  return withLock(d.host, 'dkms-iopmem', 'the iopmem DKMS module', {}, async (guard: SignalGuard) => {
    const steps: DkmsStep[] = []
    let madeSource = false
    let added = false
    const undo = (): string => {
      const parts: string[] = []
      if (added) {
        const r = runArgs(d, 'dkms', ['remove', ...mv, '--all', ...trees, ...(t.fixture ? ['--no-depmod'] : [])])
        parts.push(r.code === 0 ? `dkms remove ${DKMS_NAME}/${version} undid the add` : `dkms remove ${DKMS_NAME}/${version} failed (exit ${r.code}): it is still added`)
      }
      if (madeSource) {
        fs.rmSync(dest, {recursive: true, force: true})
        parts.push(`${d.host.display(dest)} was removed`)
      }
      return parts.length > 0 ? `Rolled back: ${parts.join('; ')}.` : 'Nothing had been changed.'
    }
    const stopIfAsked = async (): Promise<void> => {
      if (await guard.checkpoint()) {
        const state = undo()
        throw new IopmemError(`${guard.signal}: stopped before the DKMS install finished. ${state}`, {
          code: 'E_INTERRUPTED',
          exit: Exit.INTERRUPTED,
          details: {interrupted: true, signal: guard.signal, steps},
        })
      }
    }
    // A Ctrl-C reaches dkms too (one process group): a step that failed then was interrupted, not broken.
    const failed = async (what: string, r: RunResult): Promise<never> => {
      await stopIfAsked()
      throw dkmsError(what, r, steps, undo())
    }

    // DKMS does not make its tree; the package does on a live system, the fixture's is made here.
    if (t.fixture) fs.mkdirSync(t.dkms, {recursive: true})
    // The sources: a copy of native/kmod, unless the same copy is already there.
    if (fs.existsSync(dest)) {
      if (!sameSources(dest, src)) {
        throw new IopmemError(`${d.host.display(dest)} exists and is not this iopmem's source: not overwriting it.`, {
          code: 'E_DKMS_SOURCE',
          exit: Exit.REFUSED,
          suggestions: ['`iopmem driver remove` removes an earlier install of the same version; or remove that directory by hand after `dkms remove iopmem/VERSION --all`.'],
        })
      }
      steps.push({step: 'source', done: `${d.host.display(dest)} already holds these sources`})
    } else {
      fs.mkdirSync(dest, {recursive: true, mode: 0o755})
      madeSource = true
      for (const f of [...KMOD_SOURCES, 'Makefile', 'dkms.conf']) fs.copyFileSync(path.join(src, f), path.join(dest, f))
      steps.push({step: 'source', done: `copied native/kmod to ${d.host.display(dest)}`})
    }
    await stopIfAsked()

    const status = runArgs(d, 'dkms', ['status', ...mv, ...trees])
    if (status.code === 127) throw dkmsError('status', status, steps, undo())
    if (!status.stdout.includes(`${DKMS_NAME}/${version}`)) {
      const r = runArgs(d, 'dkms', ['add', ...mv, ...trees])
      if (r.code !== 0) await failed('add', r)
      added = true
      steps.push({step: 'add', done: `dkms add ${DKMS_NAME}/${version}`})
    }
    await stopIfAsked()

    const installed = dkmsInstalled(t, kernel)
    const built = runArgs(d, 'dkms', ['build', ...mv, ...kargs, ...trees, ...(installed ? ['--force'] : [])], {env})
    if (built.code !== 0) await failed('build', built)
    steps.push({step: 'build', done: `dkms build for ${kernel}`})
    await stopIfAsked()

    const inst = runArgs(d, 'dkms', ['install', ...mv, ...kargs, ...trees, ...(t.fixture ? ['--no-depmod'] : []), '--force'], {env})
    if (inst.code !== 0) await failed('install', inst)
    steps.push({step: 'install', done: `dkms install for ${kernel}`})

    const file = dkmsInstalled(t, kernel)
    const signature = file ? fileSignature(d, file) : null
    const signedWith = opts.sign ? opts.sign.cert : env.mok_certificate ? d.host.display(d.host.argv([env.mok_certificate])[0]) : t.fixture ? null : '/var/lib/dkms/mok.pub'
    return {module: DKMS_NAME, version, kernel, installed: file && d.host.display(file), signature, signedWith, changed: true, steps}
  })
}

export interface DkmsRemoveResult {
  module: string
  version: string
  changed: boolean
  steps: DkmsStep[]
  /** Whether the module is still loaded (dkms remove does not unload it). */
  stillLoaded: boolean
}

/** dkms remove for every kernel, then the source copy `driver install` made. */
export async function dkmsRemove(d: DriverEnv): Promise<DkmsRemoveResult> {
  requireRoot(d.host, 'Removing the iopmem DKMS module')
  const t = dkmsTrees(d)
  const version = dkmsVersion()
  const mv = ['-m', DKMS_NAME, '-v', version]
  const trees = treeArgs(d, t)
  const dest = path.join(t.source, `${DKMS_NAME}-${version}`)
  return withLock(d.host, 'dkms-iopmem', 'the iopmem DKMS module', {}, async () => {
    const steps: DkmsStep[] = []
    const status = runArgs(d, 'dkms', ['status', ...mv, ...trees])
    if (status.code === 127) throw dkmsError('status', status, steps, 'Nothing was changed.')
    if (status.stdout.includes(`${DKMS_NAME}/${version}`)) {
      const r = runArgs(d, 'dkms', ['remove', ...mv, '--all', ...trees, ...(t.fixture ? ['--no-depmod'] : [])])
      if (r.code !== 0) throw dkmsError('remove', r, steps, 'Its source stays.')
      steps.push({step: 'remove', done: `dkms remove ${DKMS_NAME}/${version} --all`})
    }
    if (fs.existsSync(dest)) {
      if (!sameSources(dest, kmodSourceDir())) {
        steps.push({step: 'source', done: `${d.host.display(dest)} is not this iopmem's source: left alone`})
      } else {
        fs.rmSync(dest, {recursive: true, force: true})
        steps.push({step: 'source', done: `removed ${d.host.display(dest)}`})
      }
    }
    const stillLoaded = d.host.exists(d.host.sys('module', DKMS_NAME))
    return {module: DKMS_NAME, version, changed: steps.some((s) => s.done.startsWith('dkms remove') || s.done.startsWith('removed')), steps, stillLoaded}
  })
}
