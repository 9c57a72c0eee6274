/**
 * Bad input for `iopmem driver …` and `bind --driver iopmem --as/--bar/--cache`:
 * each case fails with a clear message and a meaningful exit code, leaves the
 * fixture tree byte-identical, and never runs make/insmod/modprobe/rmmod (the
 * fixture host is not live, so the toolkit refuses to touch real modules).
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {cli, cliProcess} from '../helpers/cli.js'
import {argsLabel, badInputTable} from '../helpers/bad-input.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

interface Case {
  args: string[]
  exit: number
  message: RegExp
  code?: string
  setup?: (fx: SysfsFixture) => void
  uid?: number
  spawn?: boolean
}

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-bad-driver-'))
const EMPTY = path.join(TMP, 'empty')
const A_FILE = path.join(TMP, 'file')
const NO_SYMVERS = path.join(TMP, 'nosymvers')
const TEXT_KO = path.join(TMP, 'text.ko')
const OLD_KO = path.join(TMP, 'old.ko')
fs.mkdirSync(EMPTY)
fs.mkdirSync(NO_SYMVERS)
fs.writeFileSync(path.join(NO_SYMVERS, 'Makefile'), '')
fs.writeFileSync(A_FILE, '')
fs.writeFileSync(TEXT_KO, 'not a module\n')
fs.writeFileSync(OLD_KO, '\x7fELF\0vermagic=6.1.0-18-amd64 SMP mod_unload \0')

const withIopmem = (fx: SysfsFixture) => {
  fx.driver({name: 'iopmem'})
  fx.writeSys('bus/pci/drivers/iopmem/config', '')
}
const boundDevdax = (fx: SysfsFixture) => {
  withIopmem(fx)
  fx.bindLinks(BDF.ivshmem, 'iopmem')
  const a = path.join(fx.fnDir(BDF.ivshmem), 'iopmem')
  fs.mkdirSync(a)
  for (const [f, v] of Object.entries({mode: 'p2pmem', bar: '2', cache: 'wb', node: 'p2pmem'})) fs.writeFileSync(path.join(a, f), v + '\n')
}

const cases: Case[] = [
  // bind --driver iopmem: modes, BARs, cache modes
  {args: ['bind', BDF.ivshmem, '--as', 'fsdax', '--yes'], exit: 2, message: /Invalid mode "fsdax".*blockdax, p2pmem/, code: 'E_BAD_MODE'},
  {args: ['bind', BDF.ivshmem, '--as', 'BLOCKDAX', '--yes'], exit: 2, message: /Invalid mode/},
  {args: ['bind', BDF.ivshmem, '--as', '', '--yes'], exit: 2, message: /Invalid mode|expects a value/, spawn: true},
  {args: ['bind', BDF.ivshmem, '--as', 'blockdax;reboot', '--yes'], exit: 2, message: /Invalid mode/},
  {args: ['bind', BDF.ivshmem, '--cache', 'wp', '--yes'], exit: 2, message: /Invalid cache mode "wp": one of wb, wc, uc, wt/, code: 'E_BAD_CACHE'},
  {args: ['bind', BDF.ivshmem, '--cache', 'WB', '--yes'], exit: 2, message: /Invalid cache mode/},
  {args: ['bind', BDF.ivshmem, '--bar', '6', '--yes'], exit: 2, message: /Invalid BAR "6": a BAR index is 0-5/, code: 'E_BAD_BAR'},
  {args: ['bind', BDF.ivshmem, '--bar=-1', '--yes'], exit: 2, message: /Invalid BAR "-1"/},
  {args: ['bind', BDF.ivshmem, '--bar', '2x', '--yes'], exit: 2, message: /Invalid BAR "2x"/},
  {args: ['bind', BDF.ivshmem, '--bar', '0', '--yes'], exit: 7, message: /BAR 0 of 0000:00:04.0 cannot be used: it is too small \(256 B/, code: 'E_BAD_BAR', setup: withIopmem},
  {args: ['bind', BDF.ivshmem, '--bar', '1', '--yes'], exit: 7, message: /BAR 1 .* not implemented/, setup: withIopmem},
  {args: ['bind', BDF.ivshmem, '--as', 'p2pmem', '--cache', 'wc', '--yes'], exit: 2, message: /--cache wc is only for --as blockdax/, setup: withIopmem},
  {args: ['bind', BDF.ivshmem, '--as', 'devdax', '--yes'], exit: 2, message: /Invalid mode "devdax".*blockdax, p2pmem/, code: 'E_BAD_MODE'},
  {args: ['bind', BDF.ivshmem, '--as', 'p2pmem', '--cache', 'uc', '--yes'], exit: 2, message: /only for --as blockdax/, setup: withIopmem},
  {args: ['bind', BDF.ivshmem, '--driver', 'vfio-pci', '--as', 'p2pmem', '--yes'], exit: 2, message: /--as is for --driver iopmem only/, code: 'E_IOPMEM_ONLY'},
  {args: ['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--bar', '2', '--cache', 'wc', '--yes'], exit: 2, message: /--bar, --cache are for --driver iopmem only/},
  {args: ['bind', BDF.ivshmem, '--as', 'blockdax', '--yes'], exit: 3, message: /No PCI driver named "iopmem" is registered/, code: 'E_NO_DRIVER'},
  {args: ['bind', BDF.ivshmem, '--as', 'blockdax', '--yes'], exit: 5, message: /already bound to iopmem as p2pmem on BAR 2/, code: 'E_ALREADY_BOUND', setup: boundDevdax},
  // driver build: kernel trees
  {args: ['driver', 'build', '--kdir', path.join(TMP, 'nope')], exit: 3, message: /--kdir .*nope does not exist/, code: 'E_BAD_KDIR'},
  {args: ['driver', 'build', '--kdir', A_FILE], exit: 2, message: /is not a directory/},
  {args: ['driver', 'build', '--kdir', EMPTY], exit: 3, message: /is not a kernel build tree: it has no Makefile and no Module.symvers/},
  {args: ['driver', 'build', '--kdir', NO_SYMVERS], exit: 3, message: /it has no Module.symvers/},
  {args: ['driver', 'build', '--kdir', ''], exit: 2, message: /Invalid --kdir|expects a value/, spawn: true},
  {args: ['driver', 'build'], exit: 3, message: /No kernel build tree for the running kernel 6\.12\.117.*linux-headers-6\.12\.117/s, code: 'E_NO_HEADERS'},
  {args: ['driver', 'build', '--kdri', EMPTY], exit: 2, message: /Nonexistent flag/},
  // driver load / unload / status
  {args: ['driver', 'load', 'bogus=1'], exit: 2, message: /Invalid module parameter "bogus=1"/, code: 'E_BAD_PARAM'},
  {args: ['driver', 'load', 'mode=fsdax'], exit: 2, message: /Invalid mode "fsdax"/},
  {args: ['driver', 'load', 'cache=xx'], exit: 2, message: /Invalid cache mode/},
  {args: ['driver', 'load', 'bar=9'], exit: 2, message: /Invalid BAR "9"/},
  {args: ['driver', 'load', '--ko', path.join(TMP, 'missing.ko')], exit: 3, message: /No module file/, code: 'E_NO_MODULE'},
  {args: ['driver', 'load', '--ko', TEXT_KO], exit: 2, message: /is not a kernel module/, code: 'E_BAD_MODULE'},
  {args: ['driver', 'load', '--ko', OLD_KO], exit: 7, message: /built for kernel 6\.1\.0-18-amd64, but this kernel is 6\.12\.117/, code: 'E_WRONG_KERNEL'},
  {args: ['driver', 'load'], exit: 7, message: /Not running modprobe: the sysfs\/dev\/proc roots are not the live kernel's/, code: 'E_NOT_LIVE'},
  {args: ['driver', 'load', '--ko', OLD_KO], exit: 4, message: /needs root/, code: 'E_NOT_ROOT', uid: 1000},
  {args: ['driver', 'unload'], exit: 5, message: /Refusing to unload iopmem: a device is bound to it \(0000:00:04.0\)/, code: 'E_IN_USE', setup: boundDevdax},
  {args: ['driver', 'status', '--bogus'], exit: 2, message: /Nonexistent flag/},
]

const saved: Record<string, string | undefined> = {}
const env = {IOPMEM_MODULES_ROOT: EMPTY, IOPMEM_KERNEL_RELEASE: '6.12.117', XDG_CACHE_HOME: path.join(TMP, 'cache')}

badInputTable({
  title: `bad input for the iopmem driver (${cases.length} cases): clear message, meaningful exit code, nothing changed`,
  cases,
  atLeast: 20,
  before() {
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k]
      process.env[k] = v
    }
  },
  after() {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
    fs.rmSync(TMP, {recursive: true, force: true})
  },
  label: (c) => argsLabel(c.args) + (c.uid ? ` as uid ${c.uid}` : '') + (c.setup ? ' (with setup)' : ''),
  arrange(c) {
    const fx = standardMachine()
    const core = new FakeDriverCore(fx)
    c.setup?.(fx)
    const before = fx.hash()
    return {
      args: c.args,
      run: (args) => (c.spawn ? cliProcess(args, fx, env) : cli(args, fx, {writer: core, uid: c.uid})),
      check(phase) {
        if (phase !== 'plain') return
        expect(fx.hash(), 'fixture tree changed').to.equal(before)
        expect(core.log, 'nothing written').to.deep.equal([])
      },
      cleanup: () => fx.cleanup(),
    }
  },
})
