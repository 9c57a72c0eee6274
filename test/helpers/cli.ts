/**
 * Run iopmem commands in-process with @oclif/test's runCommand, against a
 * fixture tree. Commands run from dist/ (the build), so the host is
 * installed through dist's module, the one the commands read.
 */
import {runCommand} from '@oclif/test'
import {spawnSync} from 'node:child_process'
import * as path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import type {Host, SysfsWriter} from '../../src/lib/sys/host.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * A module of the build as the commands see it: the bundle's entry for it
 * (scripts/bundle.mjs lists these seams, as .cjs). An import() of it goes
 * through Node's CommonJS loader, which oclif's require of the commands uses
 * too, so that both see one instance.
 */
export function distModule(rel: string): string {
  return pathToFileURL(path.join(ROOT, 'dist/bundle', rel)).href
}

interface DistHostModule {
  Host: new (opts: {roots: {sysfs: string; dev: string; proc: string}; writer?: SysfsWriter; uid?: number}) => Host
  setHost(h: Host | undefined): void
}

async function distHost(): Promise<DistHostModule> {
  return (await import(distModule('lib/sys/host.cjs'))) as DistHostModule
}

export interface CliResult {
  stdout: string
  stderr: string
  exit: number
  /** Parsed stdout when it is JSON. */
  json?: any
}

export async function cli(args: string[], fx?: SysfsFixture, opts: {writer?: SysfsWriter; uid?: number} = {}): Promise<CliResult> {
  // The host must be dist's own Host class: its errors have to be dist's IopmemError.
  const mod = await distHost()
  mod.setHost(fx ? new mod.Host({roots: {sysfs: fx.sys, dev: fx.dev, proc: fx.proc}, writer: opts.writer, uid: opts.uid ?? 0}) : undefined)
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
    mod.setHost(undefined)
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

/**
 * Run bin/run.js as a child process against a fixture (no fake driver core:
 * the child writes files plainly). For argument lists runCommand would
 * re-split (empty strings, spaces, newlines) and for end-to-end checks.
 */
export function cliProcess(args: string[], fx?: SysfsFixture, env: Record<string, string> = {}, input?: string): CliResult {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/run.js'), ...args], {
    encoding: 'utf8',
    input,
    env: {...process.env, NO_COLOR: '1', CI: '1', ...(fx ? fx.env() : {}), ...env},
  })
  let json: any
  try {
    json = JSON.parse(r.stdout)
  } catch {
    json = undefined
  }
  return {stdout: r.stdout, stderr: r.stderr, exit: r.status ?? 128, json}
}
