/**
 * The harness's other shape and its failure paths: topology 'root' (both NVMe on the
 * root complex, where the kernel refuses P2P), a boot that overruns its timeout, and
 * a guest that dies (kernel panic) in the middle of a command. In each failure QEMU
 * must be gone, the state removed, and the error must carry the serial log's tail.
 */
import {expect} from 'chai'
import {existsSync, readdirSync, readFileSync} from 'node:fs'

import {bootGuest, type Guest, GuestError, resolveKernel} from '../../src/lib/vm/index.js'

/** Host pids whose command line mentions `needle` (reads the host's /proc only). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'latin1').includes(needle)) pids.push(Number(e))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

async function gone(pid: number | undefined, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms
  while (pid !== undefined && existsSync(`/proc/${pid}`) && Date.now() < until) {
    // a zombie still has /proc/PID: look at its state
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return true
    } catch {
      return true
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return pid === undefined || !existsSync(`/proc/${pid}`)
}

describe('VM harness: topology "root" and failure handling', function () {
  let vm: Guest | undefined
  const keep = process.env.IOPMEM_VM_KEEP === '1'

  before(() => {
    resolveKernel() // fail loudly, never skip
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('a boot that overruns its timeout kills QEMU, removes the state and reports the serial log', async function () {
    this.timeout(60_000)
    let err: unknown
    try {
      await bootGuest({topology: 'switch', timeoutMs: 300})
    } catch (error) {
      err = error
    }
    expect(err).to.be.instanceOf(GuestError)
    const e = err as GuestError
    expect(e.message).to.match(/not ready after 300 ms: killed QEMU/)
    expect(e.message).to.include("last lines of the guest's serial console")
    expect(processesMentioning(e.stateDir), 'QEMU processes left').to.deep.equal([])
    if (!keep) expect(existsSync(e.stateDir), 'state dir removed').to.equal(false)
  })

  it('topology "root": both NVMe on the root bus, and P2P between them is refused (EREMOTEIO)', async function () {
    this.timeout(180_000)
    vm = await bootGuest({topology: 'root'})
    expect(vm.devices.cmb.bdf).to.match(/^0000:00:/)
    expect(vm.devices.peer.bdf).to.match(/^0000:00:/)
    expect(vm.devices.rc).to.equal(undefined)
    const r = await vm.run([vm.helper('p2p-odirect'), vm.devices.cmb.bdf, vm.devices.peer.namespace, '65536'])
    expect(JSON.parse(r.stdout), r.stdout + r.stderr).to.include({ok: false, errno: 121, code: 'EREMOTEIO'})
  })

  it('a guest that panics during a command rejects run() with the panic in the serial tail; QEMU is gone', async function () {
    this.timeout(120_000)
    const guest = vm!
    const pid = guest.pid
    let err: unknown
    try {
      await guest.run(['sh', '-c', 'echo c > /proc/sysrq-trigger'])
    } catch (error) {
      err = error
    }
    expect(err).to.be.instanceOf(GuestError)
    expect((err as Error).message).to.match(/QEMU exited while running/)
    expect((err as Error).message).to.match(/Kernel panic|sysrq/i)
    expect(guest.alive).to.equal(false)
    expect(await gone(pid), `QEMU pid ${pid} still running`).to.equal(true)
    if (!keep) expect(existsSync(guest.stateDir)).to.equal(false)
    await guest.shutdown() // idempotent after a failure
  })
})
