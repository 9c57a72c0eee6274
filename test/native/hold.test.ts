/**
 * `map --hold`: the held mapping survives garbage collection.
 *
 * A Mapping's finalizer unmaps; the wait must keep the mapping reachable. The
 * control case shows this test sees a collection when one happens.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'

import {holdFor} from '../../src/lib/map/hold.js'
import {native} from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

describe('native: holding a mapping (map --hold)', function () {
  const n = native()
  const SIZE = 256 * 1024
  let fd: number

  before(() => {
    fd = n.memfd('iopmem-hold', SIZE)
  })
  after(() => n.closeFd(fd))

  /** Mappings of this memfd in /proc/self/maps. */
  const live = (): number =>
    readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => l.includes('/memfd:iopmem-hold')).length

  const collect = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      gc()
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  // Map inside an async function that then waits, as map's run() does: nothing
  // but the suspended frame references the mapping.
  const holder = async (wait: (m: unknown) => Promise<void>): Promise<void> => {
    const m = n.map(fd, {mode: 'wb'})
    try {
      await wait(m)
    } finally {
      m.unmap()
    }
  }

  it('control: a wait on a promise nothing references loses the mapping to the GC', async () => {
    const before = live()
    void holder(() => new Promise(() => {}))
    expect(live()).to.equal(before + 1)
    await collect()
    expect(live(), 'the finalizer unmapped it').to.equal(before)
  })

  it('holdFor(0) keeps the mapping through collections until aborted', async () => {
    const before = live()
    const ac = new AbortController()
    const held = holder((m) => holdFor(0, m, ac.signal))
    await collect()
    expect(live(), 'still mapped after GC').to.equal(before + 1)
    ac.abort()
    await held
    expect(live(), 'unmapped once the hold ends').to.equal(before)
  })

  it('holdFor(seconds) keeps it for the time asked, then returns', async () => {
    const before = live()
    const t0 = Date.now()
    // Long enough that the collections finish well inside it on a loaded machine (0.3 s raced them).
    const held = holder((m) => holdFor(2, m))
    await collect()
    expect(live()).to.equal(before + 1)
    await held
    expect(Date.now() - t0).to.be.at.least(1990)
    expect(live()).to.equal(before)
  })

  it('an already aborted signal returns at once', async () => {
    const ac = new AbortController()
    ac.abort()
    await holdFor(0, null, ac.signal)
  })
})
