/** Critical sections for multi-step changes: SIGINT, SIGTERM and SIGHUP are held back across each step, forwarded to running child programs, and reported between steps. */
import type {ChildProcess} from 'node:child_process'

import {Exit, IopmemError} from './errors.js'

/**
 * The signals a person or a service manager uses to stop a command. While a
 * SignalGuard is open they do not kill the process: they are recorded (the
 * first one wins), forwarded to the child programs the process is running
 * (mkfs, wipefs, …) so that none outlives it, and the code asks between its
 * steps (`await guard.checkpoint()`) whether to roll back or stop.
 *
 * Node delivers a signal to its listeners on the event loop, never in the
 * middle of synchronous code, so a sysfs write (one write(2)) always
 * completes; checkpoint() yields one turn of the loop so that a signal that
 * arrived during the write is seen before the next one starts.
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
export type StopSignal = (typeof STOP_SIGNALS)[number]

const children = new Set<ChildProcess>()
let openGuards = 0

/**
 * Run child programs under the guard's protection: while a guard is open a
 * stop signal is passed on to every child registered here. Returns the
 * function that unregisters it (call it when the child has exited).
 */
export function trackChild(child: ChildProcess): () => void {
  children.add(child)
  return () => children.delete(child)
}

export class SignalGuard {
  /** The first stop signal received while the guard was open. */
  signal: StopSignal | undefined
  private readonly listeners = new Map<StopSignal, () => void>()
  private closed = false

  constructor() {
    openGuards++
    for (const sig of STOP_SIGNALS) {
      const on = () => {
        this.signal ??= sig
        for (const c of children) {
          if (c.exitCode === null && c.signalCode === null) c.kill(sig)
        }
      }
      this.listeners.set(sig, on)
      process.on(sig, on)
    }
  }

  get interrupted(): boolean {
    return this.signal !== undefined
  }

  /**
   * Let a signal that arrived during synchronous work reach its listener, then
   * say whether one came. Node reads signals in the poll phase of its loop; an
   * immediate set from a poll callback runs before the next poll, so wait for
   * two: the second runs after a poll has happened.
   */
  async checkpoint(): Promise<boolean> {
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((resolve) => {
        setImmediate(resolve)
      })
    }
    return this.interrupted
  }

  /** Close the guard: signals act as usual again. Idempotent. */
  release(): void {
    if (this.closed) return
    this.closed = true
    openGuards--
    for (const [sig, on] of this.listeners) process.off(sig, on)
  }
}

/** Run `fn` inside a guard that is released however it ends. */
export async function withSignalGuard<T>(fn: (guard: SignalGuard) => Promise<T>): Promise<T> {
  const guard = new SignalGuard()
  try {
    return await fn(guard)
  } finally {
    guard.release()
  }
}

/** True while some guard is open (for code that would otherwise install its own handlers). */
export function signalsGuarded(): boolean {
  return openGuards > 0
}

/**
 * The error a command stopped by a signal ends with: exit 130, and in
 * details `interrupted: true`, the signal and the state it left behind.
 */
export function interruptedError(message: string, signal: StopSignal | undefined, details: Record<string, unknown> = {}): IopmemError {
  return new IopmemError(message, {
    code: 'E_INTERRUPTED',
    exit: Exit.INTERRUPTED,
    details: {interrupted: true, signal: signal ?? null, ...details},
  })
}

/**
 * Run one synchronous kernel change (an insmod, an rmmod: a child the process waits for)
 * with the stop signals held back, and say afterwards which one came, so the caller can
 * report the state the change left instead of dying half-way through telling it.
 */
export async function heldBack<T>(work: () => T): Promise<{result: T; signal?: StopSignal}> {
  const guard = new SignalGuard()
  try {
    const result = work()
    await guard.checkpoint()
    return {result, signal: guard.signal}
  } finally {
    guard.release()
  }
}

/** Run `work` under `guard`, or under a guard of its own (released after) when none is given. */
export async function underGuard<T>(guard: SignalGuard | undefined, work: (guard: SignalGuard) => Promise<T>): Promise<T> {
  const own = guard ?? new SignalGuard()
  try {
    return await work(own)
  } finally {
    if (!guard) own.release()
  }
}
