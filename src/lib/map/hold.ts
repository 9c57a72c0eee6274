/**
 * Keeping something alive while waiting: `iopmem map --hold`.
 *
 * A promise that nothing can resolve is garbage, and so is the suspended async
 * function awaiting it, with every object only that frame references. A
 * native Mapping's finalizer unmaps, so `map --hold 0` that awaited a bare
 * never-resolving promise lost its mapping at the first full GC, while still
 * saying "holding the mapping" (seen in the guest suite: the PAT entry of the
 * uncached holder was gone). Here the timer, an active handle of the event
 * loop, closes over `keep` and `resolve`, so both live as long as the wait.
 */

/**
 * Wait `seconds` (0: until the process is ended by a signal, or `signal`
 * aborts), keeping `keep` reachable all the while.
 */
export function holdFor(seconds: number, keep: unknown, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const pin = (): unknown => keep
    const timer = seconds === 0 ? setInterval(pin, 1 << 30) : setTimeout(() => done(), seconds * 1000)
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      pin()
      resolve()
    }
    if (signal?.aborted) done()
    else signal?.addEventListener('abort', done, {once: true})
  })
}
