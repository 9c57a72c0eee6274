/** Small C helpers compiled for the guest with the host cc (cached by their source hash). */
import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'

const execFileP = promisify(execFile)

/** Guest-side helper programs, compiled on the host (the guest runs them from the host's root via the chroot). */
export const HELPERS = ['p2p-odirect'] as const
export type HelperName = (typeof HELPERS)[number]

/** Source of a helper inside the checkout: native/helpers/NAME.c */
export function helperSource(repoRoot: string, name: HelperName): string {
  return join(repoRoot, 'native', 'helpers', `${name}.c`)
}

/**
 * Compile native/helpers/NAME.c with the host's `cc` into cacheDir (keyed by the
 * source hash, so an edit rebuilds it). Returns the binary's path.
 */
export async function buildHelper(repoRoot: string, cacheDir: string, name: HelperName, cc = process.env.CC || 'cc'): Promise<string> {
  const src = helperSource(repoRoot, name)
  const code = readFileSync(src)
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 16)
  const out = join(cacheDir, `${name}-${hash}`)
  if (existsSync(out)) return out
  mkdirSync(cacheDir, {recursive: true})
  const tmp = `${out}.${process.pid}.tmp`
  try {
    await execFileP(cc, ['-O2', '-Wall', '-Wextra', '-o', tmp, src], {timeout: 120_000})
  } catch (error) {
    const e = error as NodeJS.ErrnoException & {stderr?: string}
    if (e.code === 'ENOENT') {
      throw new Error(`Cannot build ${name}: no C compiler "${cc}" (Debian: apt-get install -y gcc libc6-dev), or set CC`)
    }
    throw new Error(`Cannot build ${name} from ${src}:\n${e.stderr ?? e.message}`)
  }
  renameSync(tmp, out)
  // Drop builds of older sources.
  for (const f of readdirSync(cacheDir)) {
    if (f.startsWith(`${name}-`) && /-[0-9a-f]{16}$/.test(f) && join(cacheDir, f) !== out) rmSync(join(cacheDir, f), {force: true})
  }
  return out
}
