/**
 * A small fake of the Linux driver core acting on a SysfsFixture, so bind
 * logic and rollback can be tested without a kernel. It reacts to writes the
 * way drivers/base/bus.c and drivers/pci/pci-driver.c do:
 *
 * - `driver_override`: stored; an empty write clears it (reads back "(null)").
 * - `drivers/NAME/unbind BDF`: ENODEV unless the device is bound to NAME.
 * - `drivers/NAME/bind BDF`: ENODEV if the device is absent, already bound, or
 *   does not match (driver_override set to another name, or no ID-table match);
 *   otherwise probes, and a failing probe returns its errno.
 * - `bus/pci/drivers_probe BDF`: ENODEV if absent; if unbound, tries each
 *   matching driver in turn; a failing probe is not reported to the writer
 *   (the kernel only logs it), exactly like device_attach().
 *
 * Writes can also be made to fail outright with failWrite(), e.g. EACCES.
 *
 * Pause hook (for signal tests in child processes, see fake-cli.ts): with
 * IOPMEM_TEST_PAUSE_AT=N and IOPMEM_TEST_PAUSE_FILE=F in the environment, the
 * Nth write (1-based) first writes F (the write's sysfs path) and then blocks
 * until F.go exists, so a test can send a signal while that write is in
 * progress and then let it finish.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import type {SysfsWriter} from '../../src/lib/sys/host.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export interface WriteRecord {
  file: string
  value: string
}

function sysErr(code: string, file: string): Error {
  const errno = (os.constants.errno as Record<string, number>)[code] ?? 5
  return Object.assign(new Error(`${code}: write ${file}`), {code, errno: -errno, syscall: 'write', path: file})
}

/**
 * The pause hook of a child process's fake kernel: when this is write number
 * IOPMEM_TEST_PAUSE_AT, write what it is to IOPMEM_TEST_PAUSE_FILE and wait (at most 20 s)
 * for that file's `.go` twin, so the test can send a signal while the write is in progress.
 */
export function pauseAtWrite(n: number, what: string): void {
  const at = Number(process.env.IOPMEM_TEST_PAUSE_AT)
  const marker = process.env.IOPMEM_TEST_PAUSE_FILE
  if (!marker || n !== at) return
  fs.writeFileSync(marker, what + '\n')
  const nap = new Int32Array(new SharedArrayBuffer(4))
  const until = Date.now() + 20_000
  while (!fs.existsSync(marker + '.go') && Date.now() < until) Atomics.wait(nap, 0, 0, 10)
}

export class FakeDriverCore implements SysfsWriter {
  readonly log: WriteRecord[] = []
  private failures: Array<{match: RegExp; code: string; times: number}> = []

  constructor(readonly fx: SysfsFixture) {}

  /** Make writes whose sysfs-relative path matches fail with `code` (the next `times` writes). */
  failWrite(match: RegExp, code: string, times = Number.POSITIVE_INFINITY): this {
    this.failures.push({match, code, times})
    return this
  }

  write(file: string, value: string): void {
    const rel = path.relative(this.fx.sys, file)
    this.log.push({file: rel, value})
    this.pauseHook(rel)
    const f = this.failures.find((x) => x.times > 0 && x.match.test(rel))
    if (f) {
      f.times--
      throw sysErr(f.code, file)
    }
    const arg = value.replace(/\n$/, '')
    let m: RegExpExecArray | null
    if ((m = /^bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(rel))) {
      if (m[2] === 'unbind') return this.unbind(m[1], arg, file)
      return this.bind(m[1], arg, file)
    }
    if (rel === 'bus/pci/drivers_probe') return this.probe(arg, file)
    if (/(^|\/)driver_override$/.test(rel)) {
      if (!fs.existsSync(file)) throw sysErr('ENOENT', file)
      fs.writeFileSync(file, (arg === '' ? '(null)' : arg) + '\n')
      return
    }
    if (!fs.existsSync(file)) throw sysErr('ENOENT', file)
    fs.writeFileSync(file, value)
  }

  private pauseHook(rel: string): void {
    pauseAtWrite(this.log.length, rel)
  }

  private exists(bdf: string): boolean {
    return this.fx.fns.has(bdf)
  }

  private matches(driver: string, bdf: string): boolean {
    const override = this.fx.override(bdf)
    if (override !== undefined) return override === driver
    const spec = this.fx.drivers.get(driver)
    const fn = this.fx.fns.get(bdf)!
    return Boolean(spec?.classes?.includes(fn.class) || spec?.ids?.some(([v, d]) => v === fn.vendor && d === fn.device))
  }

  private unbind(driver: string, bdf: string, file: string): void {
    if (!this.exists(bdf) || this.fx.currentDriver(bdf) !== driver) throw sysErr('ENODEV', file)
    this.fx.unbindLinks(bdf)
  }

  private tryProbe(driver: string, bdf: string): string | undefined {
    const err = this.fx.drivers.get(driver)?.probe?.(bdf)
    if (err === undefined) this.fx.bindLinks(bdf, driver)
    return err
  }

  private bind(driver: string, bdf: string, file: string): void {
    if (!this.exists(bdf) || this.fx.currentDriver(bdf) !== undefined || !this.matches(driver, bdf)) throw sysErr('ENODEV', file)
    const err = this.tryProbe(driver, bdf)
    if (err !== undefined) throw sysErr(err, file)
  }

  private probe(bdf: string, file: string): void {
    if (!this.exists(bdf)) throw sysErr('ENODEV', file)
    if (this.fx.currentDriver(bdf) !== undefined) return
    for (const name of this.fx.drivers.keys()) {
      if (this.matches(name, bdf) && this.tryProbe(name, bdf) === undefined) return
    }
  }
}
