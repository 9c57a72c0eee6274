/**
 * Interruption and locking against a real kernel, in one boot: a SIGINT sent
 * once bind holds ivshmem's lock (signals are held back from then on) ends in exit 130 with the state printed,
 * and that state is what sysfs shows; two binds of ivshmem started together
 * end with one change, the other refused naming the holder (or, with --wait,
 * finding the work done), and sysfs agrees with every report.
 */
import {expect} from 'chai'

import {bootGuest, type Guest, resolveKernel} from '../../src/lib/vm/index.js'

describe('guest: bind under SIGINT and two concurrent binds (ivshmem)', function () {
  let vm: Guest
  let b: string
  const state = async (): Promise<{driver: string | null; override: string | null}> => {
    const r = await vm.sh(`echo "d=$(readlink /sys/bus/pci/devices/${b}/driver)"; echo "o=$(cat /sys/bus/pci/devices/${b}/driver_override)"`)
    const link = /^d=(.*)$/m.exec(r.stdout)![1].trim()
    const ov = /^o=(.*)$/m.exec(r.stdout)![1].trim()
    return {driver: link === '' ? null : link.split('/').pop()!, override: ov === '(null)' || ov === '' ? null : ov}
  }
  const parseDocs = async (text: string, prefix: string): Promise<any[]> => {
    try {
      return text.split('%%').map((s) => JSON.parse(s))
    } catch {
      const err = (await vm.sh(`cat /tmp/${prefix}1.err /tmp/${prefix}2.err; true`)).stdout
      return expect.fail(`not two JSON documents:\n${text}\nstderr:\n${err}`)
    }
  }
  const reset = async () => {
    const r = await vm.run(['node', 'bin/run.js', 'unbind', b, '--yes', '--json'], {timeoutMs: 300_000})
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(await state()).to.deep.equal({driver: null, override: null})
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'root'})
    b = vm.devices.ivshmem.bdf
    console.log(`      guest ${vm.release}: ivshmem ${b}`)
  })
  after(async () => {
    await vm?.shutdown()
  })

  it('SIGINT while bind holds the function: exit 130, "interrupted": true, and the state printed is the state sysfs shows', async function () {
    this.timeout(900_000)
    await reset()
    // Send SIGINT as soon as the bind has taken the lock (its pid is in the lock file): from then on
    // signals are held back, so the bind is interrupted somewhere between its planning and its last write.
    const lock = `/run/lock/iopmem/pci-${b}.lock`
    const r = await vm.sh(
      `node bin/run.js bind ${b} --driver uio_pci_generic --yes --json >/tmp/bind.out 2>/tmp/bind.err & p=$!
       while [ -d /proc/$p ] && ! grep -qx "$p" ${lock} 2>/dev/null; do :; done
       kill -INT $p; wait $p; echo "exit=$?"; cat /tmp/bind.out`,
      {timeoutMs: 600_000},
    )
    const exit = Number(/exit=(\d+)/.exec(r.stdout)![1])
    const out = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n') + 1))
    expect(exit, r.stdout + r.stderr).to.equal(130)
    expect(out).to.include({interrupted: true, signal: 'SIGINT'})
    expect(await state()).to.deep.equal({driver: out.driver, override: out.override})
    if (out.rolledBack) expect(out.driver).to.equal(null)
    console.log(`      interrupted after ${out.steps.length} write(s): ${out.driver ?? 'unbound'}, rolled back ${out.rolledBack}`)
  })

  it('two binds at once: one binds, the other is refused naming its pid or finds it done; with --wait both succeed', async function () {
    this.timeout(900_000)
    await reset()
    const r = await vm.sh(
      `for i in 1 2; do node bin/run.js bind ${b} --driver uio_pci_generic --yes --json >/tmp/c$i.out 2>/tmp/c$i.err & eval p$i=$!; done
       wait $p1; e1=$?; wait $p2; e2=$?; echo "$e1 $e2"; cat /tmp/c1.out; echo '%%'; cat /tmp/c2.out`,
      {timeoutMs: 600_000},
    )
    const [head, ...rest] = r.stdout.split('\n')
    const exits = head.split(' ').map(Number)
    const docs = await parseDocs(rest.join('\n'), 'c')
    const changed = docs.filter((d, i) => exits[i] === 0 && d.changed === true)
    expect(changed, r.stdout).to.have.length(1)
    for (const [i, d] of docs.entries()) {
      if (d.changed) continue
      if (exits[i] === 5) expect(d.error.code).to.equal('E_LOCKED')
      else expect(d, r.stdout).to.include({changed: false, driver: 'uio_pci_generic'})
    }
    expect(await state()).to.deep.equal({driver: 'uio_pci_generic', override: 'uio_pci_generic'})

    await reset()
    const w = await vm.sh(
      `for i in 1 2; do node bin/run.js bind ${b} --driver uio_pci_generic --yes --json --wait >/tmp/w$i.out 2>/tmp/w$i.err & eval p$i=$!; done
       wait $p1; e1=$?; wait $p2; e2=$?; echo "$e1 $e2"; cat /tmp/w1.out; echo '%%'; cat /tmp/w2.out`,
      {timeoutMs: 600_000},
    )
    const [wh, ...wrest] = w.stdout.split('\n')
    expect(wh.trim(), w.stdout).to.equal('0 0')
    const wdocs = await parseDocs(wrest.join('\n'), 'w')
    expect(wdocs.map((d) => d.changed).sort()).to.deep.equal([false, true])
    expect(await state()).to.deep.equal({driver: 'uio_pci_generic', override: 'uio_pci_generic'})
    await reset()
  })
})
