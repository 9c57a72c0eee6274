/**
 * Run iopmem commands in-process with @oclif/test's runCommand, against a
 * fixture tree. Commands run from dist/ (the build), so the host is
 * installed through dist's module, the one the commands read.
 */
import {runCommand} from '@oclif/test'
import * as path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import type {Host, SysfsWriter} from '../../src/lib/host.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * dist's host module, loaded the way oclif loads commands (a native dynamic
 * import of a file URL), so that both see one module instance.
 */
async function distSetHost(host: Host | undefined): Promise<void> {
  const mod = (await import(pathToFileURL(path.join(ROOT, 'dist/lib/host.js')).href)) as {setHost(h: Host | undefined): void}
  mod.setHost(host)
}

export interface CliResult {
  stdout: string
  stderr: string
  exit: number
  /** Parsed stdout when it is JSON. */
  json?: any
}

export async function cli(args: string[], fx?: SysfsFixture, opts: {writer?: SysfsWriter; uid?: number} = {}): Promise<CliResult> {
  await distSetHost(fx ? fx.host({writer: opts.writer, uid: opts.uid}) : undefined)
  const saved = {NO_COLOR: process.env.NO_COLOR, CI: process.env.CI}
  process.env.NO_COLOR = '1'
  process.env.CI = '1'
  try {
    const r = await runCommand(args, {root: ROOT}, {stripAnsi: true})
    const exit = r.error ? ((r.error as {oclif?: {exit?: number}}).oclif?.exit ?? 1) : 0
    let json: any
    try {
      json = JSON.parse(r.stdout)
    } catch {
      json = undefined
    }
    return {stdout: r.stdout, stderr: r.stderr, exit, json}
  } finally {
    await distSetHost(undefined)
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}
