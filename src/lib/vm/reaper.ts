/**
 * Makes sure no QEMU outlives the Node process that started it: every live
 * guest is registered here; on process exit and on SIGINT/SIGTERM/SIGHUP each is
 * SIGKILLed (and its temporary state removed unless kept). QEMU is also started
 * under `setpriv --pdeathsig KILL` where available, which covers a SIGKILLed Node.
 */

export interface Reapable {
  /** Synchronous: kill the guest now and drop its temporary files. */
  reapSync(): void
}

const live = new Set<Reapable>()
let installed = false
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

function reapAll(): void {
  for (const g of [...live]) {
    try {
      g.reapSync()
    } catch {
      // best effort while exiting
    }
    live.delete(g)
  }
}

function onSignal(signal: NodeJS.Signals): void {
  reapAll()
  // If nobody else handles the signal, restore the default action and re-raise it.
  if (process.listenerCount(signal) === 1) {
    for (const s of SIGNALS) process.removeListener(s, onSignal)
    process.kill(process.pid, signal)
  }
}

function install(): void {
  if (installed) return
  installed = true
  process.on('exit', reapAll)
  for (const s of SIGNALS) process.on(s, onSignal)
}

export function register(g: Reapable): void {
  install()
  live.add(g)
}

export function unregister(g: Reapable): void {
  live.delete(g)
}

export function liveGuests(): number {
  return live.size
}
