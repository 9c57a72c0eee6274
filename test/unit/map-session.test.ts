/**
 * The interactive `iopmem map` session with scripted prompts: peek, poke
 * (after allowing writes once), dump, fill, bad input reported without
 * ending the session, Ctrl-C ends it.
 */
import {expect} from 'chai'
import {Chalk} from 'chalk'

import type {MapFacts} from '../../src/lib/map/target.js'
import {loadNative} from '../../src/native/index.js'
import {mapSession, type SessionPrompts} from '../../src/ui/map-session.js'

/** Prompts that answer from a script: each entry is the answer, or an Error to throw. */
function scripted(answers: unknown[]): SessionPrompts & {asked: string[]} {
  const asked: string[] = []
  const next = async (message: string, validate?: (v: string) => boolean | string | Promise<boolean | string>) => {
    asked.push(message)
    if (answers.length === 0) throw Object.assign(new Error('script ran out'), {name: 'ExitPromptError'})
    const a = answers.shift()
    if (a instanceof Error) throw a
    if (validate && typeof a === 'string') {
      const ok = await validate(a)
      if (ok !== true) return `INVALID:${ok}`
    }
    return a
  }
  return {
    asked,
    select: (c) => next(c.message) as never,
    input: async (c) => {
      const v = (await next(c.message, c.validate)) as string
      if (v.startsWith('INVALID:')) throw Object.assign(new Error(v.slice(8)), {code: 'E_TEST_INVALID'})
      return v
    },
    confirm: (c) => next(c.message) as never,
  }
}

describe('map: interactive session', () => {
  const n = loadNative()
  const facts = (length: number): MapFacts => ({
    target: 'memfd',
    backend: 'file',
    path: 'memfd',
    bdf: null,
    driver: null,
    bar: null,
    offset: 0,
    length,
    mode: 'wc',
    modeAsked: 'auto',
    why: 'test',
    physStart: null,
    busStart: null,
    p2pmem: null,
    strategies: {copyIn: ['stream-store', 'exact64'], copyOut: ['stream-load', 'exact64']},
    writable: true,
    warnings: [],
    notes: [],
  })

  it('peeks, pokes after one confirmation, dumps and fills; quit ends it', async () => {
    const fd = n.memfd('session', 8192)
    const m = n.map(fd, {mode: 'wc'})
    const out: string[] = []
    try {
      const prompts = scripted([
        'poke', true, 4, '0x10', '0xdeadbeef',
        'peek', 2, '0x12',
        'poke', 1, '0x20', '0x7f',
        'dump', '0x10', '32',
        'fill', 'inc', '0x100', '16',
        'facts',
        'quit',
      ])
      const steps = await mapSession({native: n, mapping: m, facts: facts(8192), prompts, log: (s) => out.push(s), colors: new Chalk({level: 0})})
      expect(steps).to.equal(6)
      expect(prompts.asked.filter((a) => a.includes('Allow writes'))).to.have.length(1)
      expect(out).to.include('0x00000012: 0xdead')
      expect(n.read32(m, 0x10)).to.equal(0xdeadbeef)
      expect(n.read8(m, 0x20)).to.equal(0x7f)
      expect(out.join('\n')).to.contain('00000010  ef be ad de 00 00 00 00  00 00 00 00 00 00 00 00')
      expect([...n.readValues(m, 0x100, 1, 16)]).to.deep.equal([...Array(16).keys()])
      expect(out.join('\n')).to.match(/backend\s+file/)
    } finally {
      m.unmap()
      n.closeFd(fd)
    }
  })

  it('refused writes write nothing; bad input is reported and the session goes on; Ctrl-C ends it', async () => {
    const fd = n.memfd('session2', 4096)
    const m = n.map(fd, {mode: 'wc'})
    const out: string[] = []
    try {
      const ctrlC = Object.assign(new Error('User force closed the prompt'), {name: 'ExitPromptError'})
      const prompts = scripted(['poke', false, 'peek', 4, '0x1000', 'peek', 4, '0x0', ctrlC])
      let interrupts = 0
      const steps = await mapSession({native: n, mapping: m, facts: facts(4096), prompts, log: (s) => out.push(s), colors: new Chalk({level: 0}), onInterrupt: () => interrupts++})
      expect(steps).to.equal(2)
      expect(interrupts, 'Ctrl-C is reported, so `map` exits 130, not 0').to.equal(1)
      let quitCtrlC = 0
      await mapSession({native: n, mapping: m, facts: facts(4096), prompts: scripted(['quit']), log: () => {}, colors: new Chalk({level: 0}), onInterrupt: () => quitCtrlC++})
      expect(quitCtrlC, 'quit is not an interruption').to.equal(0)
      expect(out.join('\n')).to.contain('writes not allowed; nothing written')
      expect(out.join('\n')).to.match(/error: .*past the end of the mapping/)
      expect(out).to.include('0x00000000: 0x00000000')
    } finally {
      m.unmap()
      n.closeFd(fd)
    }
  })
})
