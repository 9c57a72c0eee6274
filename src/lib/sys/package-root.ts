/** Where this package is installed: the folder with iopmem's package.json, found from wherever the running code sits. */
import {readFileSync} from 'node:fs'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

let found: string | undefined

/**
 * The package root (bin/, native/, package.json). The code runs from src/ (tsx),
 * dist/ (tsc) or dist/bundle/ and its chunks (esbuild), at different depths, so
 * the folder is found by walking up to the package.json named "iopmem" rather
 * than by counting levels.
 */
export function packageRoot(): string {
  if (found !== undefined) return found
  const start = path.dirname(fileURLToPath(import.meta.url))
  for (let dir = start; ; dir = path.dirname(dir)) {
    try {
      const pj = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {name?: unknown}
      if (pj.name === 'iopmem') return (found = dir)
    } catch {
      // no (readable) package.json here: go up
    }
    if (path.dirname(dir) === dir) throw new Error(`iopmem: no package.json named "iopmem" above ${start}`)
  }
}
