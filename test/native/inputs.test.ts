/**
 * No input from JavaScript can abort the process: a table of bad arguments
 * (huge, negative, NaN, fractional, BigInt out of range, wrong types) for
 * every addon entry point, run in a child process so that an abort (V8's
 * "Allocation failed", std::bad_alloc under -fno-exceptions) shows as a
 * failed test rather than a dead test runner. Each call must throw an error
 * with the expected code (or, for raw system-call wrappers, return -errno).
 */
import {expect} from 'chai'
import * as path from 'node:path'

import {ROOT, tsxChild} from './helpers.js'

// Runs in the child: `n` the loaded addon, `raw` its binding, `m` a 64 KiB
// anonymous mapping, `big` a 1 TiB mapping of a sparse memfd (nothing is
// allocated for it), `ctl` an IoControl. Each row: [label, call, expected].
// Expected: an error code, or 'errno' for a negative number returned.
const TABLE = String.raw`
const KiB = 1024
const bad = {huge: 2 ** 53, over: 1.8e19, neg: -1, nan: NaN, frac: 1.5, inf: Infinity, str: '1', nul: null, undef: undefined, obj: {}, big: 2n ** 64n, bigneg: -1n, bigger: 2n ** 200n}
const rows = []
const row = (label, fn, ...codes) => rows.push([label, fn, codes])
// Sizes that would be allocated before the checks on old builds.
row('readValues 2^40 bytes of a 1 TiB mapping', () => n.readValues(big, 0, 1, 2 ** 40), 'ERANGE')
row('readValues 2^37 x 8 bytes', () => n.readValues(big, 0, 8, 2 ** 37), 'ERANGE')
row('readValues 1 GiB + 1 values', () => n.readValues(big, 0, 1, 2 ** 30 + 1), 'ERANGE')
row('writeValues a sparse Array of 2^32-1 u64', () => n.writeValues(big, 0, 8, new Array(2 ** 32 - 1)), 'ERANGE')
row('writeValues a sparse Array of 2^32-1 bytes', () => n.writeValues(big, 0, 1, new Array(2 ** 32 - 1)), 'ERANGE')
row('writeValues a sparse Array past a small mapping', () => n.writeValues(m, 0, 4, new Array(2 ** 31)), 'ERANGE')
for (const [k, v] of Object.entries(bad)) {
  const offCode = typeof v === 'number' || typeof v === 'bigint' ? 'ERANGE' : 'E_ARG'
  row('readValues count ' + k, () => n.readValues(m, 0, 4, v), typeof v === 'number' || typeof v === 'bigint' ? 'ERANGE' : 'E_ARG')
  row('readValues offset ' + k, () => n.readValues(m, v, 4, 1), offCode)
  row('readValues width ' + k, () => n.readValues(m, 0, v, 1), 'E_ARG', 'ERANGE')
  row('writeValues offset ' + k, () => n.writeValues(m, v, 4, [1]), offCode)
  row('writeValues element ' + k, () => n.writeValues(m, 0, 4, [v]), 'E_VALUE')
  row('writeValues values ' + k, () => n.writeValues(m, 0, 4, v), 'E_ARG')
  row('read32 offset ' + k, () => n.read32(m, v), offCode)
  row('read32 handle ' + k, () => raw.read32(v, 0), 'E_HANDLE')
  row('write32 value ' + k, () => n.write32(m, 0, v), 'E_VALUE')
  row('write64 value ' + k, () => n.write64(m, 0, v), 'E_VALUE')
  row('write8 offset ' + k, () => n.write8(m, v, 0), offCode)
  row('copyTo offset ' + k, () => n.copyTo(m, v, Buffer.alloc(8)), offCode)
  row('copyFrom src ' + k, () => n.copyFrom(m, 0, v), 'E_ARG')
  row('copyTo strategy ' + k, () => n.copyTo(m, 0, Buffer.alloc(8), v), 'E_ARG', 'E_STRATEGY', 'OK')
  row('flush length ' + k, () => n.flush(m, 0, v), typeof v === 'number' || typeof v === 'bigint' ? 'ERANGE' : 'E_ARG')
  row('unmap handle ' + k, () => raw.unmap(v), 'E_HANDLE')
  row('mmap offset ' + k, () => raw.mmap(fd, v, 4096, true, 0, 'wb', 'f'), typeof v === 'number' || typeof v === 'bigint' ? 'ERANGE' : 'E_ARG')
  row('mmap length ' + k, () => raw.mmap(fd, 0, v, true, 0, 'wb', 'f'), typeof v === 'number' || typeof v === 'bigint' ? 'ERANGE' : 'E_ARG', 'errno')
  row('mmap fd ' + k, () => raw.mmap(v, 0, 4096, true, 0, 'wb', 'f'), 'ERANGE', 'E_ARG')
  row('mmap flags ' + k, () => raw.mmap(fd, 0, 4096, true, v, 'wb', 'f'), 'ERANGE', 'E_ARG')
  row('mapAnonymous length ' + k, () => raw.mapAnonymous(v), 'ERANGE', 'E_ARG', 'errno')
  row('ioRun length ' + k, () => raw.ioRun({src: '/nonexistent', length: v, bs: 4096}), 'ERANGE', 'E_ARG')
  row('ioRun bs ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: v}), 'ERANGE', 'E_ARG')
  row('ioRun qd ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, qd: v}), 'ERANGE', 'E_ARG', 'OK')
  row('ioRun jobs ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, jobs: v}), 'ERANGE', 'E_ARG', 'OK')
  row('ioRun srcOffset ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, srcOffset: v}), 'ERANGE', 'E_ARG', 'OK')
  row('ioRun durationMs ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, durationMs: v}), 'ERANGE', 'E_ARG', 'OK')
  row('ioRun bufferSlot ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, bufferSlot: v}), 'E_HANDLE', 'OK')
  row('ioRun control ' + k, () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096}, v), 'E_ARG', 'OK')
  row('memProbe bytes ' + k, () => raw.memProbe(ctl, v), 'ERANGE', 'E_ARG')
  row('fiemap batch ' + k, () => raw.fiemap(fd, 0, 4096, 0, v), 'ERANGE', 'E_ARG')
  row('ftruncate size ' + k, () => raw.ftruncate(fd2, v), 'ERANGE', 'E_ARG', 'errno')
  row('setIsaLimit ' + k, () => raw.setIsaLimit(v), 'E_ARG')
  for (const f of ['readMany', 'readManyAsync']) {
    row(f + ' kinds ' + k, () => raw[f](v, ['/'], Uint32Array.of(1)), 'E_ARG')
    row(f + ' paths ' + k, () => raw[f](Uint8Array.of(0), v, Uint32Array.of(1)), 'E_ARG')
    row(f + ' a path ' + k, () => raw[f](Uint8Array.of(0), [v], Uint32Array.of(1)), typeof v === 'string' ? 'OK' : 'E_ARG')
    row(f + ' sizes ' + k, () => raw[f](Uint8Array.of(0), ['/'], v), 'E_ARG')
  }
}
row('ioRun options not an object', () => raw.ioRun(42), 'E_ARG')
row('ioRun a bigger buffer than the mapping', () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 64 * KiB, qd: 2, bufferSlot: m.slot}), 'ERANGE')
row('ioRun srcOffset 2^63 - 1 + length', () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096, srcOffset: 2n ** 63n - 1n}), 'ERANGE')
row('ioRun control a Float64Array', () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096}, new Float64Array(3)), 'E_ARG')
row('ioRun control a Mapping', () => raw.ioRun({src: '/nonexistent', length: 4096, bs: 4096}, m), 'E_ARG')
row('mmap MAP_PRIVATE', () => raw.mmap(fd, 0, 4096, true, 0x02, 'wb', 'f'), 'E_ARG')
row('mmap unknown flags', () => raw.mmap(fd, 0, 4096, true, 0x40000000, 'wb', 'f'), 'E_ARG')
row('mmap mode', () => raw.mmap(fd, 0, 4096, true, 0, 'xx', 'f'), 'E_MODE')
row('mmap length 2^64 - 1', () => raw.mmap(fd, 0, 2n ** 64n - 1n, true, 0, 'wb', 'f'), 'errno')
row('mapAnonymous 2^53 - 1 bytes', () => raw.mapAnonymous(2 ** 53 - 1), 'errno')
const long = 'x'.repeat(1 << 20)
row('ioRun src 1 MiB long', () => raw.ioRun({src: long, length: 4096, bs: 4096}), 'ERANGE')
row('mmap path 1 MiB long', () => raw.mmap(fd, 0, 4096, true, 0, 'wb', long), 'ERANGE')
row('open path 1 MiB long', () => raw.open(long, 0), 'ERANGE')
row('memfdCreate name 1 MiB long', () => raw.memfdCreate(long), 'ERANGE')
row('memProbe control a Float64Array', () => raw.memProbe(new Float64Array(3), 1 << 20), 'E_ARG')
// readMany: every request is checked before the first read; nothing it is given makes it allocate without bound.
const many = (n, kind = 0, size = 16) => [new Uint8Array(n).fill(kind), new Array(n).fill('/nonexistent'), new Uint32Array(n).fill(size)]
// readManyAsync checks as readMany does, before it queues anything.
for (const f of ['readMany', 'readManyAsync']) {
  row(f + ' 65537 requests', () => raw[f](...many(65537)), 'ERANGE')
  row(f + ' 65536 requests of 1 MiB (64 GiB of answers)', () => raw[f](...many(65536, 0, 1 << 20)), 'ERANGE')
  row(f + ' 65536 paths of 64 KiB (4 GiB of paths)', () => raw[f](new Uint8Array(65536).fill(4), new Array(65536).fill('/'.repeat(1 << 16)), new Uint32Array(65536)), 'ERANGE')
  row(f + ' a path 1 MiB long', () => raw[f](Uint8Array.of(0), [long], Uint32Array.of(1)), 'ERANGE')
  row(f + ' a path with a NUL', () => raw[f](Uint8Array.of(0), ['/etc/hostname\0/x'], Uint32Array.of(16)), 'E_ARG')
  row(f + ' kind 5', () => raw[f](Uint8Array.of(5), ['/'], Uint32Array.of(1)), 'E_ARG')
  row(f + ' size 0 for text', () => raw[f](Uint8Array.of(0), ['/'], Uint32Array.of(0)), 'ERANGE')
  row(f + ' size 1 MiB + 1', () => raw[f](Uint8Array.of(1), ['/'], Uint32Array.of((1 << 20) + 1)), 'ERANGE')
  row(f + ' lengths differ', () => raw[f](Uint8Array.of(0, 0), ['/'], Uint32Array.of(1, 1)), 'E_ARG')
  row(f + ' sizes an Int32Array', () => raw[f](Uint8Array.of(0), ['/'], Int32Array.of(1)), 'E_ARG')
  row(f + ' paths a sparse Array of 2^32-1', () => raw[f](Uint8Array.of(0), new Array(2 ** 32 - 1), Uint32Array.of(1)), 'E_ARG')
  row(f + ' a path with a toString', () => raw[f](Uint8Array.of(0), [{toString: () => '/'}], Uint32Array.of(1)), 'E_ARG')
  row(f + ' a paths getter that throws', () => {
    const paths = ['/']
    Object.defineProperty(paths, 0, {get() { throw Object.assign(new Error('getter'), {code: 'E_GETTER'}) }})
    return raw[f](Uint8Array.of(0), paths, Uint32Array.of(1))
  }, 'E_GETTER')
}
row('open a path with a NUL', () => raw.open('/etc/hostname\0/x', 0), 'E_ARG')
row('statx a path with a NUL', () => raw.statx(-100, '/etc\0/x', 0, 0x7ff), 'E_ARG')
row('mmap a path with a NUL', () => raw.mmap(fd, 0, 4096, true, 0, 'wb', 'f\0g'), 'E_ARG')

const out = []
for (const [label, fn, codes] of rows) {
  let got
  try {
    const r = fn()
    if (r && typeof r.then === 'function') r.catch(() => {})
    got = typeof r === 'number' && r < 0 ? 'errno' : 'OK'
  } catch (e) {
    got = e && typeof e.code === 'string' ? e.code : 'uncoded: ' + String(e)
  }
  out.push({label, got, want: codes})
}
console.log(JSON.stringify(out))
`

describe('native: no input from JS can abort the process', function () {
  this.timeout(60_000)

  it('every entry point answers a table of bad arguments with a clean error', () => {
    const r = tsxChild(`const {loadNative} = await import(${JSON.stringify(path.join(ROOT, 'src/native/index.ts'))})
      const n = loadNative()
      const raw = n.raw
      const m = n.mapAnonymous(64 * 1024)
      const fd = n.memfd('inputs', 2 ** 40)
      const fd2 = n.memfd('inputs2', 4096)
      const big = n.map(fd, {mode: 'wb'})
      const ctl = n.ioControl()
      ${TABLE}`)
    expect(r.signal, `the child died: ${r.stderr.slice(-2000)}`).to.equal(null)
    expect(r.status, r.stderr.slice(-2000)).to.equal(0)
    const rows = JSON.parse(r.stdout.trim().split('\n').pop()!) as {label: string; got: string; want: string[]}[]
    expect(rows.length).to.be.greaterThan(400)
    const wrong = rows.filter((x) => !x.want.includes(x.got)).map((x) => `${x.label}: got ${x.got}, want ${x.want.join(' or ')}`)
    expect(wrong, wrong.join('\n')).to.deep.equal([])
  })
})
