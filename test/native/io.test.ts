/**
 * The I/O engine (native/src/io.cc) on temp files: bounce copies through
 * io_uring and pread/pwrite, every option path (seq/random, qd, jobs, odd tail,
 * offsets, buffered, registered or not, a caller's buffer (pinned: no unmap
 * while in flight), duration mode, progress and stop through an IoControl),
 * --verify catching a corrupted byte (and an O_DIRECT tail not block-sized), the
 * fallback when io_uring is unavailable, errors with partial results, and the
 * DRAM probe. Nothing here touches /sys, /dev or a PCI device.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import type {IoRunOptions, IoRunResult, Mapping} from '../../src/native/index.js'
import {devShm, native, randomBytes, realFsDir, ROOT, throwsCode} from './helpers.js'

const KiB = 1024
const MiB = 1024 * KiB

async function rejectsCode(p: Promise<unknown>, code: string): Promise<Error & {code: string; syscall?: string; partial?: IoRunResult; offset?: number}> {
  try {
    await p
  } catch (err) {
    const e = err as Error & {code: string}
    expect(e.code, e.message).to.equal(code)
    return e
  }
  expect.fail(`expected a rejection with code ${code}`)
}

describe('native: the I/O engine (ioRun)', function () {
  this.timeout(60_000)
  const n = native()
  let scratch: ReturnType<typeof realFsDir>
  let src: string
  let dst: string
  let data: Buffer
  const SIZE = 4 * MiB + 64 * KiB

  before(() => {
    scratch = realFsDir('iopmem-io')
    src = path.join(scratch.dir, 'src')
    dst = path.join(scratch.dir, 'dst')
    data = randomBytes(SIZE)
    fs.writeFileSync(src, data)
  })
  beforeEach(() => fs.writeFileSync(dst, Buffer.alloc(SIZE)))
  after(() => scratch?.cleanup())

  const copyOk = async (opts: Partial<IoRunOptions>, expectEngine?: string): Promise<IoRunResult> => {
    const length = opts.length ?? SIZE
    const r = await n.ioRun({src, dst, length, bs: 64 * KiB, qd: 4, verify: true, ...opts})
    if (expectEngine) expect(r.engine).to.equal(expectEngine)
    expect(r.bytes).to.equal(length)
    expect(r.verify?.ok, JSON.stringify(r.verify)).to.equal(true)
    expect(r.verify?.srcHash).to.equal(r.verify?.dstHash)
    const got = fs.readFileSync(dst)
    const so = opts.srcOffset ?? 0
    const dOff = opts.dstOffset ?? 0
    expect(got.subarray(dOff, dOff + length).equals(data.subarray(so, so + length)), 'dst holds the source bytes').to.equal(true)
    expect(got.subarray(0, dOff).every((b) => b === 0), 'bytes before the range untouched').to.equal(true)
    return r
  }

  it('io_uring with a registered buffer and files copies a file exactly', async () => {
    const r = await copyOk({}, 'io_uring')
    expect(r.registeredBuffers).to.equal(true)
    expect(r.registeredFiles).to.equal(true)
    expect(r.buffer).to.equal('anonymous')
    expect(r.ops).to.equal(SIZE / (64 * KiB))
    expect(r.latency.count).to.equal(r.ops)
    expect(r.latency.p50Us).to.be.greaterThan(0)
    expect(r.latency.p99Us).to.be.at.least(r.latency.p50Us)
    expect(r.latency.p999Us).to.be.at.least(r.latency.p99Us)
    expect(r.latency.maxUs).to.be.at.least(r.latency.p999Us)
    expect(r.cpu.processUserS + r.cpu.processSysS).to.be.at.least(0)
    expect(r.seconds).to.be.greaterThan(0)
    expect(r.stopped).to.equal(false)
  })

  it('without registering the buffer (plain READ/WRITE)', async () => {
    const r = await copyOk({registerBuffers: false}, 'io_uring')
    expect(r.registeredBuffers).to.equal(false)
    expect(r.registerError).to.equal('not asked for')
  })

  it('pread/pwrite when asked for', async () => {
    const r = await copyOk({engine: 'psync'}, 'psync')
    expect(r.fallbackReason).to.equal(undefined)
    expect(r.registeredBuffers).to.equal(false)
  })

  for (const qd of [1, 3, 32]) for (const jobs of [1, 3]) it(`qd ${qd} × ${jobs} jobs`, () => copyOk({qd, jobs}, 'io_uring'))

  it('a length that is not a multiple of bs (short last block)', () => copyOk({length: SIZE - 4096, bs: 1 * MiB}))
  it('a block size larger than the whole range', () => copyOk({length: 64 * KiB, bs: 1 * MiB}))
  it('source and destination offsets', () => copyOk({srcOffset: 128 * KiB, dstOffset: 512 * KiB, length: 2 * MiB}))
  it('4 KiB blocks at queue depth 64', () => copyOk({bs: 4 * KiB, qd: 64, length: 1 * MiB}))
  it('buffered I/O (direct: false)', () => copyOk({direct: false, bs: 4096 + 512}))
  it('random order covers as many blocks as the range holds', async () => {
    const r = await n.ioRun({src, dst, length: SIZE, bs: 64 * KiB, qd: 8, random: true, fsync: false})
    expect(r.ops).to.equal(SIZE / (64 * KiB))
  })

  it('a caller-mapped buffer (as p2p mode passes a p2pmem chunk)', async () => {
    const m = n.mapAnonymous(8 * 64 * KiB)
    try {
      const r = await copyOk({buffer: m, qd: 8})
      expect(r.buffer).to.equal('caller')
      expect(r.registeredBuffers).to.equal(true)
    } finally {
      m.unmap()
    }
  })

  it('a buffer in use cannot be unmapped (E_BUSY), and a new mapping never receives its I/O', async () => {
    const len = 4 * 64 * KiB
    const m = n.mapAnonymous(len)
    const ctl = n.ioControl()
    // Unregistered buffer, buffered reads: the kernel copies to the buffer's
    // virtual address on each read, so whatever is mapped there gets the data.
    const p = n.ioRun({src, length: SIZE, bs: 64 * KiB, qd: 4, durationMs: 20_000, direct: false, registerBuffers: false, buffer: m}, ctl)
    let fresh: Mapping | undefined
    try {
      while (ctl.bytes === 0) await new Promise((r) => setTimeout(r, 5))
      throwsCode(() => m.unmap(), 'E_BUSY')
      throwsCode(() => n.unmap(m), 'E_BUSY')
      expect(m.mapped).to.equal(true)
      expect(n.liveMappings().map((x) => x.id)).to.include(m.id)
      // Where the buffer would be free again had the unmap gone through.
      fresh = n.mapAnonymous(len)
      const seen = ctl.bytes
      while (ctl.bytes < seen + 8 * len) await new Promise((r) => setTimeout(r, 5))
      const got = Buffer.alloc(len)
      n.copyFrom(fresh, 0, got)
      expect(got.equals(Buffer.alloc(len)), 'the new mapping is untouched').to.equal(true)
    } finally {
      ctl.stop()
      const r = await p
      expect(r.bytes).to.be.greaterThan(0)
    }
    // Settled: the pin is gone.
    expect(m.unmap()).to.equal(true)
    fresh?.unmap()
  })

  it('refuses a read-only buffer mapping (the I/O reads into it)', async () => {
    const f = path.join(scratch.dir, 'ro-buffer')
    fs.writeFileSync(f, Buffer.alloc(64 * KiB))
    const m = n.map(f, {readOnly: true, mode: 'wb'})
    try {
      throwsCode(() => n.raw.ioRun({src, length: 64 * KiB, bs: 64 * KiB, bufferSlot: m.slot}), 'E_READONLY')
      throwsCode(() => n.raw.ioRun({src, length: 64 * KiB, bs: 64 * KiB, bufferSlot: 12345.5}), 'E_HANDLE')
    } finally {
      m.unmap()
    }
  })

  it('verify reads an O_DIRECT range whose length is not a whole number of blocks', async () => {
    fs.writeFileSync(dst, data)
    const length = MiB + 100
    const v = await n.ioRun({src, dst, length, bs: 64 * KiB, verifyOnly: true})
    expect(v.verify?.errno ?? null, v.verify?.syscall).to.equal(null)
    expect(v.verify?.ok).to.equal(true)
    // ... and still compares the tail byte for byte.
    const fd = fs.openSync(dst, 'r+')
    fs.writeSync(fd, Buffer.from([data[MiB + 99] ^ 1]), 0, 1, MiB + 99)
    fs.closeSync(fd)
    const bad = await n.ioRun({src, dst, length, bs: 64 * KiB, verifyOnly: true})
    expect(bad.verify?.mismatchAt).to.equal(MiB + 99)
    // A range that ends at the end of both files.
    const tail = 4 * KiB + 100
    const src2 = path.join(scratch.dir, 'tail-src')
    const dst2 = path.join(scratch.dir, 'tail-dst')
    fs.writeFileSync(src2, data.subarray(0, tail))
    fs.writeFileSync(dst2, data.subarray(0, tail))
    const end = await n.ioRun({src: src2, dst: dst2, length: tail, bs: 4 * KiB, verifyOnly: true})
    expect(end.verify?.ok, JSON.stringify(end.verify)).to.equal(true)
  })

  it('refuses a buffer that is too small or unmapped', async () => {
    const m = n.mapAnonymous(64 * KiB)
    try {
      await rejectsCode(n.ioRun({src, dst, length: SIZE, bs: 64 * KiB, qd: 2, buffer: m}), 'ERANGE')
    } finally {
      m.unmap()
    }
    await rejectsCode(n.ioRun({src, dst, length: SIZE, bs: 64 * KiB, buffer: m}), 'E_UNMAPPED')
  })

  it('read-only runs for a duration, wrapping around, and report progress', async () => {
    const ctl = n.ioControl()
    const r = await n.ioRun({src, length: SIZE, bs: 4 * KiB, qd: 16, random: true, durationMs: 300}, ctl)
    expect(r.seconds).to.be.within(0.25, 5)
    expect(r.ops).to.be.greaterThan(SIZE / (4 * KiB))
    expect(ctl.bytes).to.equal(r.bytes)
    expect(ctl.ops).to.equal(r.ops)
    // A second run adds to the running totals.
    const r2 = await n.ioRun({src, length: 64 * KiB, bs: 4 * KiB}, ctl)
    expect(ctl.bytes).to.equal(r.bytes + r2.bytes)
  })

  it('progress never goes backwards while jobs race to update it', async () => {
    const ctl = n.ioControl()
    const p = n.ioRun({src, length: SIZE, bs: 4 * KiB, qd: 8, jobs: 4, random: true, durationMs: 600, direct: false}, ctl)
    let settled = false
    void p.finally(() => (settled = true))
    let last = 0
    let samples = 0
    let back = 0
    while (!settled) {
      const b = ctl.bytes
      if (b < last) back++
      last = b
      samples++
      await new Promise((r) => setImmediate(r))
    }
    const r = await p
    expect(samples).to.be.greaterThan(10)
    expect(back, 'samples where progress went back').to.equal(0)
    expect(ctl.bytes).to.equal(r.bytes)
  })

  it('stops when control.stop() is called, with partial counts', async () => {
    const ctl = n.ioControl()
    const p = n.ioRun({src, length: SIZE, bs: 4 * KiB, qd: 4, durationMs: 20_000}, ctl)
    // Stop once it is running (a fixed sleep was not enough on a loaded machine).
    while (ctl.bytes === 0) await new Promise((r) => setTimeout(r, 10))
    ctl.stop()
    expect(ctl.stopRequested).to.equal(true)
    const r = await p
    expect(r.stopped).to.equal(true)
    expect(r.seconds).to.be.lessThan(10)
    expect(r.bytes).to.be.greaterThan(0)
  })

  it('verify catches one corrupted byte and says where', async () => {
    const r = await n.ioRun({src, dst, length: MiB, bs: 64 * KiB, qd: 4, verify: true})
    expect(r.verify?.ok).to.equal(true)
    const fd = fs.openSync(dst, 'r+')
    fs.writeSync(fd, Buffer.from([data[777_777] ^ 0x10]), 0, 1, 777_777)
    fs.closeSync(fd)
    for (const engine of ['io_uring', 'psync'] as const) {
      const v = await n.ioRun({src, dst, length: MiB, bs: 64 * KiB, verify: true, verifyOnly: true, engine})
      expect(v.ops, 'verifyOnly copies nothing').to.equal(0)
      expect(v.verify?.ok).to.equal(false)
      expect(v.verify?.mismatchAt).to.equal(777_777)
      expect(v.verify?.srcHash).to.not.equal(v.verify?.dstHash)
    }
    // Outside the corrupted range, the same files verify.
    const ok = await n.ioRun({src, dst, length: 512 * KiB, bs: 64 * KiB, verify: true, verifyOnly: true})
    expect(ok.verify?.ok).to.equal(true)
  })

  it('falls back to pread/pwrite without io_uring, and says so (IOPMEM_NO_IO_URING)', () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', `
        import('${path.join(ROOT, 'src/native/index.ts')}').then(async ({loadNative}) => {
          const n = loadNative()
          const r = await n.ioRun({src: ${JSON.stringify(src)}, dst: ${JSON.stringify(dst)}, length: ${MiB}, bs: 65536, qd: 8, jobs: 2, verify: true})
          let forced = 'none'
          try { await n.ioRun({src: ${JSON.stringify(src)}, length: 65536, bs: 65536, engine: 'io_uring'}) } catch (e) { forced = e.code }
          console.log(JSON.stringify({engine: r.engine, reason: r.fallbackReason, ok: r.verify.ok, probe: n.ioUring(), forced}))
        })`],
      {cwd: ROOT, env: {...process.env, IOPMEM_NO_IO_URING: '1'}, encoding: 'utf8'},
    )
    expect(r.status, r.stderr).to.equal(0)
    const v = JSON.parse(r.stdout.trim())
    expect(v.engine).to.equal('psync')
    expect(v.reason).to.match(/io_uring disabled/)
    expect(v.ok).to.equal(true)
    expect(v.probe).to.deep.equal({available: false, reason: 'io_uring disabled by IOPMEM_NO_IO_URING'})
    expect(v.forced).to.equal('ENOSYS')
    expect(fs.readFileSync(dst).subarray(0, MiB).equals(data.subarray(0, MiB))).to.equal(true)
  })

  // A fatal io_uring_enter error with reads really in flight: the source is a
  // FIFO nobody writes to, so every read waits in the kernel until the drain
  // cancels it. IOPMEM_FAULT_IO_URING_ENTER (read by the addon at each run)
  // fails the job's first wait for completions after its reads went in.
  const faultRun = (mode: 'once' | 'always') => {
    const fifo = path.join(scratch.dir, `fifo-${mode}`)
    fs.rmSync(fifo, {force: true})
    const mk = spawnSync('mkfifo', [fifo])
    expect(mk.status, String(mk.stderr)).to.equal(0)
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', `
        import('${path.join(ROOT, 'src/native/index.ts')}').then(async ({loadNative}) => {
          const fs = await import('node:fs')
          const n = loadNative()
          // Our own writer end (O_RDWR: opening does not wait, and the FIFO never reads as ended).
          const w = fs.openSync(${JSON.stringify(fifo)}, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)
          const m = n.mapAnonymous(4 * 4096)
          const mark = Buffer.alloc(4 * 4096, 0xab)
          n.copyTo(m, 0, mark)
          let err
          try { await n.ioRun({src: ${JSON.stringify(fifo)}, length: 1 << 20, bs: 4096, qd: 4, direct: false, buffer: m}) } catch (e) { err = e }
          // Settled. Bytes written to the FIFO now must stay there: no read of the run may still be waiting for them.
          const sent = Buffer.alloc(8192, 0x5a)
          fs.writeSync(w, sent)
          await new Promise((r) => setTimeout(r, 200))
          const back = Buffer.alloc(16384)
          let got = 0
          try { got = fs.readSync(w, back) } catch (e) { got = -1 }
          const now = Buffer.alloc(4 * 4096)
          n.copyFrom(m, 0, now)
          let unmap
          try { unmap = m.unmap() } catch (e) { unmap = e.code }
          console.log(JSON.stringify({code: err?.code, syscall: err?.syscall, bytes: err?.partial?.bytes, kept: err?.partial?.error?.bufferKept ?? false,
            fifoKept: got === sent.length && back.subarray(0, got).equals(sent), bufferUntouched: now.equals(mark), unmap}))
        })`],
      {cwd: ROOT, env: {...process.env, IOPMEM_FAULT_IO_URING_ENTER: mode}, encoding: 'utf8', timeout: 30_000},
    )
    expect(r.status, r.stderr).to.equal(0)
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!)
  }

  it('a fatal io_uring_enter error: the reads in flight are cancelled and reaped before the run settles', () => {
    const v = faultRun('once')
    expect(v.code).to.equal('EIO')
    expect(v.syscall).to.equal('io_uring_enter')
    expect(v.bytes).to.equal(0)
    expect(v.kept, 'the drain reaped every read').to.equal(false)
    expect(v.fifoKept, 'data sent after the run is still in the FIFO: no read was left waiting').to.equal(true)
    expect(v.bufferUntouched).to.equal(true)
    expect(v.unmap, 'the pin is released').to.equal(true)
  })

  it('a fatal io_uring_enter error the drain cannot reap either: the buffer stays mapped and pinned (bufferKept)', () => {
    const v = faultRun('always')
    expect(v.code).to.equal('EIO')
    expect(v.syscall).to.equal('io_uring_enter')
    expect(v.kept).to.equal(true)
    expect(v.unmap, 'unmap refused: the kernel may still write into it').to.equal('E_BUSY')
    expect(v.bufferUntouched).to.equal(true)
  })

  it('an I/O error rejects with the errno, syscall and partial result', async () => {
    // O_DIRECT with a misaligned block size: the kernel answers EINVAL on the first read.
    const e = await rejectsCode(n.ioRun({src, dst, length: MiB, bs: 1000, qd: 2}), 'EINVAL')
    expect(e.message).to.match(/io_uring read|pread/)
    expect(e.partial?.bytes).to.equal(0)
    expect(e.offset).to.equal(0)
    await rejectsCode(n.ioRun({src: path.join(scratch.dir, 'missing'), length: MiB, bs: 4096}), 'ENOENT')
    await rejectsCode(n.ioRun({src, dst: path.join(scratch.dir, 'missing'), length: MiB, bs: 4096}), 'ENOENT')
    // Reading past the end: EOF is an error, not a silent short copy.
    const eof = await rejectsCode(n.ioRun({src, dst, length: SIZE + 64 * KiB, bs: 64 * KiB}), 'EIO')
    expect(eof.partial?.bytes).to.equal(SIZE)
    // ... and says it was an end of file, not the device's EIO.
    expect(eof.syscall).to.equal(eof.partial?.engine === 'psync' ? 'pread (0 bytes: end of file)' : 'io_uring read (0 bytes: end of file)')
    const eofPsync = await rejectsCode(n.ioRun({src, dst, length: SIZE + 64 * KiB, bs: 64 * KiB, engine: 'psync'}), 'EIO')
    expect(eofPsync.syscall).to.equal('pread (0 bytes: end of file)')
  })

  it('argument errors throw before any I/O', () => {
    const raw = n.raw
    throwsCode(() => raw.ioRun({src, length: 0, bs: 4096}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 0}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, qd: 0}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, qd: 5000}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, jobs: 0}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, engine: 'spdk' as never}), 'E_ARG')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, verify: true}), 'E_ARG')
    throwsCode(() => raw.ioRun({length: 4096, bs: 4096} as never), 'E_ARG')
    throwsCode(() => raw.ioRun({src, length: -1, bs: 4096}), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, direct: 'yes' as never}), 'E_ARG')
    // The control is an IoControl, never JS memory the engine's threads would write into.
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096}, new Float64Array(3) as never), 'E_ARG')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096}, n.mapAnonymous(4096) as never), 'E_ARG')
    throwsCode(() => raw.memProbe(n.ioControl(), 1024), 'ERANGE')
    throwsCode(() => raw.memProbe(new Float64Array(3) as never, 1 << 20), 'E_ARG')
    // offset + length must stay a valid off_t (-1 would mean "the current position" to io_uring).
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, srcOffset: 2n ** 63n - 1n} as never), 'ERANGE')
    throwsCode(() => raw.ioRun({src, dst, length: 4096, bs: 4096, dstOffset: 2n ** 64n - 1n} as never), 'ERANGE')
    throwsCode(() => raw.ioRun({src, length: 4096, bs: 4096, durationMs: 2 ** 53} as never), 'ERANGE')
  })

  it('O_DIRECT on tmpfs works (Linux ≥ 6.6) where there is one', async function () {
    const shm = devShm()
    if (!shm) this.skip()
    const f = path.join(shm!, `iopmem-io-${process.pid}`)
    fs.writeFileSync(f, data.subarray(0, MiB))
    try {
      const r = await n.ioRun({src: f, length: MiB, bs: 128 * KiB, qd: 8})
      expect(r.bytes).to.equal(MiB)
    } catch (err) {
      expect((err as {code: string}).code, 'only an old kernel may refuse').to.equal('EINVAL')
    } finally {
      fs.rmSync(f, {force: true})
    }
  })

  it('the DRAM probe measures a copy loop until stopped', async () => {
    const ctl = n.ioControl()
    const p = n.memProbe(ctl, 8 * MiB)
    await new Promise((r) => setTimeout(r, 100))
    ctl.stop()
    const r = await p
    // At least one whole pass over both buffers (read + write counted), however early the stop.
    expect(r.bytes).to.be.at.least(2 * 8 * MiB)
    expect(r.seconds).to.be.greaterThan(0)
    expect(r.bytes / r.seconds / 1e9).to.be.greaterThan(0.1)
  })
})
