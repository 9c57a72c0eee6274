/**
 * Bad input for `iopmem sandbox`: every case fails before a guest is started
 * (or, for a missing QEMU/kernel, before QEMU runs), with a clear message and
 * a meaningful exit code, and leaves no QEMU and no state directory behind.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cliProcess} from '../helpers/cli.js'
import {argsLabel, badInputTable} from '../helpers/bad-input.js'

const KERNEL = path.resolve(import.meta.dirname, '../../vm/kernel/bzImage')

interface Case {
  args: string[]
  exit: number
  message: RegExp
  env?: Record<string, string>
}

const cases: Case[] = [
  {args: ['sandbox'], exit: 2, message: /Nothing to do: give an iopmem command after --/},
  {args: ['sandbox', '--topology', 'ring', '--', 'list'], exit: 2, message: /Unknown topology "ring": use switch, root or both/},
  {args: ['sandbox', '--topology', '', '--', 'list'], exit: 2, message: /Unknown topology|expects a value/},
  {args: ['sandbox', '--cmb', '0', '--', 'list'], exit: 2, message: /Invalid --cmb "0": must be between 1 MiB and 1024 MiB/},
  {args: ['sandbox', '--cmb', '48M', '--', 'list'], exit: 2, message: /must be a power of two/},
  {args: ['sandbox', '--cmb', '2G', '--', 'list'], exit: 2, message: /between 1 MiB and 1024 MiB/},
  {args: ['sandbox', '--cmb', '1.5M', '--', 'list'], exit: 2, message: /Invalid --cmb/},
  {args: ['sandbox', '--cmb', '4097K', '--', 'list'], exit: 2, message: /give whole MiB/},
  {args: ['sandbox', '--cmb', 'lots', '--', 'list'], exit: 2, message: /Invalid --cmb "lots"/},
  {args: ['sandbox', '--ivshmem', '3M', '--', 'list'], exit: 2, message: /Invalid --ivshmem "3M": must be a power of two/},
  {args: ['sandbox', '--ivshmem', '-1', '--', 'list'], exit: 2, message: /Invalid --ivshmem|expects a value/},
  {args: ['sandbox', '--memory', '512M', '--', 'list'], exit: 2, message: /Invalid --memory "512M": must be between 1792 MiB and 2816 MiB/},
  {args: ['sandbox', '--memory', '64G', '--', 'list'], exit: 2, message: /Invalid --memory/},
  {args: ['sandbox', '--boot-timeout', '0', '--', 'list'], exit: 2, message: /Invalid --boot-timeout 0/},
  {args: ['sandbox', '--boot-timeout', 'soon', '--', 'list'], exit: 2, message: /Expected an integer|boot-timeout/},
  {args: ['sandbox', '--timeout', '-5', '--', 'list'], exit: 2, message: /Invalid --timeout|timeout/},
  {args: ['sandbox', '--kernel', '/nonexistent/bzImage', '--', 'list'], exit: 3, message: /No kernel image at "\/nonexistent\/bzImage"/},
  {args: ['sandbox', '--kernel', '/tmp', '--', 'list'], exit: 3, message: /No kernel image at "\/tmp"/},
  {args: ['sandbox', '--bogus', '--', 'list'], exit: 2, message: /Nonexistent flag: --bogus/},
  {
    args: ['sandbox', '--', 'list'],
    exit: 7,
    message: /No usable guest kernel with P2PDMA for the sandbox: IOPMEM_VM_KERNEL names \/nonexistent\/bzImage, which does not exist[\s\S]*iopmem sandbox build-kernel/,
    env: {IOPMEM_VM_KERNEL: '/nonexistent/bzImage'},
  },
  {args: ['sandbox', '--nvme', '1', '--', 'list'], exit: 2, message: /Invalid --nvme 1: 2 to 6 NVMe controllers/},
  {args: ['sandbox', '--nvme', '7', '--', 'list'], exit: 2, message: /Invalid --nvme 7/},
  {args: ['sandbox', '--nvme', 'many', '--', 'list'], exit: 2, message: /Expected an integer|nvme/},
  {args: ['sandbox', '--pmem', '3M', '--', 'list'], exit: 2, message: /Invalid --pmem "3M": an even number of MiB/},
  {args: ['sandbox', '--pmem', '2G', '--', 'list'], exit: 2, message: /Invalid --pmem "2G": must be between 2 MiB and 1008 MiB/},
  {args: ['sandbox', '--pmem', '512M', '--memory', '1792M', '--', 'list'], exit: 2, message: /--pmem 512M needs guest RAM up to 2048 MiB below the PCI hole/},
  {args: ['sandbox', '--append', 'ip=10.0.0.2::10.0.0.1:255.255.255.0', '--', 'list'], exit: 2, message: /Refusing --append "ip=10\.0\.0\.2[^"]*": the sandbox gives its NIC no address of another network/},
  {args: ['sandbox', '--append', 'quiet\nip=dhcp', '--', 'list'], exit: 2, message: /Invalid --append .*one line of printable ASCII/},
  {args: ['sandbox', '--', 'list'], exit: 7, message: /QEMU is not installed[\s\S]*qemu-system-x86/, env: {IOPMEM_VM_KERNEL: KERNEL, IOPMEM_VM_QEMU: '/nonexistent/qemu'}},
  {args: ['sandbox', 'build-kernel', '--jobs', '0'], exit: 2, message: /jobs/},
  {args: ['sandbox', 'build-kernel', '--json'], exit: 2, message: /Nonexistent flag: --json/},
]

badInputTable({
  title: `bad input to sandbox (${cases.length} cases): clear message, exit code, nothing left behind`,
  cases,
  atLeast: 20,
  errorAnywhere: true,
  json: false,
  label: (c) => argsLabel(c.args) + (c.env ? ` with ${Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''),
  arrange(c) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-sbx-'))
    return {
      args: c.args,
      run: (args) => cliProcess(args, undefined, {TMPDIR: tmp, ...c.env}),
      check: () => expect(fs.readdirSync(tmp), 'state left behind').to.deep.equal([]),
      cleanup: () => fs.rmSync(tmp, {recursive: true, force: true}),
    }
  },
})

describe('sandbox build-kernel --check: exit codes as docs/json-and-exit-codes.md states', () => {
  it('a missing prerequisite is "not possible here" (7), not a bug (1)', function () {
    this.timeout(60_000)
    // A PATH like this machine's without flex and bison: the check must name them and exit 7.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-nobison-'))
    try {
      for (const dir of ['/usr/local/bin', '/usr/bin', '/bin']) {
        if (!fs.existsSync(dir)) continue
        for (const name of fs.readdirSync(dir)) {
          if (name === 'flex' || name === 'bison' || fs.existsSync(path.join(bin, name))) continue
          fs.symlinkSync(path.join(dir, name), path.join(bin, name))
        }
      }
      const r = cliProcess(['sandbox', 'build-kernel', '--check'], undefined, {PATH: bin})
      expect(r.exit, r.stderr).to.equal(7)
      expect(r.stderr).to.match(/missing Debian packages: .*bison.*flex|missing Debian packages: .*flex/)
    } finally {
      fs.rmSync(bin, {recursive: true, force: true})
    }
  })
})
