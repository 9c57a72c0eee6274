/** Start iopmem as a child process on a shared fixture tree (fake-cli-main.ts), wait for a paused write, signal it, collect its result. */
import {type ChildProcess, spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {ROOT} from './cli.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export interface Child {
  proc: ChildProcess
  done: Promise<{exit: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; json?: any}>
  /** Path of the pause marker (set when the child was started with pauseAt). */
  marker?: string
}

export function startCli(fx: SysfsFixture, machine: 'standard' | 'dax' | 'nvmet', args: string[], opts: {pauseAt?: number; env?: Record<string, string>} = {}): Child {
  const marker = opts.pauseAt ? path.join(fx.root, `pause-${Math.random().toString(36).slice(2)}`) : undefined
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    NO_COLOR: '1',
    CI: '1',
    IOPMEM_FAKE_CLI: JSON.stringify({root: fx.root, machine}),
    ...(marker ? {IOPMEM_TEST_PAUSE_AT: String(opts.pauseAt), IOPMEM_TEST_PAUSE_FILE: marker} : {}),
    ...opts.env,
  }
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/fake-cli-main.ts'), ...args], {env, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  proc.stdout!.on('data', (b) => (stdout += b))
  proc.stderr!.on('data', (b) => (stderr += b))
  const done = new Promise<Awaited<Child['done']>>((resolve) => {
    proc.on('close', (exit, signal) => {
      let json: any
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({exit, signal, stdout, stderr, json})
    })
  })
  return {proc, done, marker}
}

/** Poll until `file` exists (or the child ended); true when it does. */
export async function waitForFile(file: string, child?: Child, ms = 60_000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (fs.existsSync(file)) return true
    if (child && child.proc.exitCode !== null) return fs.existsSync(file)
    await new Promise((r) => setTimeout(r, 20))
  }
  return false
}

/** Wait for the paused write, send `signal`, let the write finish, and return the child's result. */
export async function interruptAtPause(child: Child, signal: NodeJS.Signals): ReturnType<() => Child['done']> {
  if (!(await waitForFile(child.marker!, child))) throw new Error(`the child never reached the paused write: ${(await child.done).stderr}`)
  child.proc.kill(signal)
  fs.writeFileSync(child.marker + '.go', '')
  return child.done
}
