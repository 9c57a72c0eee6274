/**
 * Bad input to `iopmem check`: malformed and missing PCI addresses and
 * unknown flags fail with a clear message and their exit code, and nothing
 * is read past the arguments nor written (the fixture stays byte-identical).
 */
import {expect} from 'chai'

import {argsLabel, badInputTable} from '../helpers/bad-input.js'
import {checkMachine} from '../helpers/check-machines.js'
import {cli, cliProcess} from '../helpers/cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF} from '../helpers/machines.js'

interface Case {
  args: string[]
  exit: number
  message: RegExp
  code?: string
  spawn?: boolean
}

const BAD = /Invalid PCI address/
const cases: Case[] = [
  {args: ['check', 'zz:00.0'], exit: 2, message: BAD, code: 'E_BDF_SYNTAX'},
  {args: ['check', '0000:03:00'], exit: 2, message: BAD},
  {args: ['check', '03:00'], exit: 2, message: BAD},
  {args: ['check', '03:00.8'], exit: 2, message: /function number must be 0-7/},
  {args: ['check', '03:00.f'], exit: 2, message: /function number must be 0-7/},
  {args: ['check', '03:20.0'], exit: 2, message: /device number 0x20 is above 0x1f/},
  {args: ['check', '03:ff.0'], exit: 2, message: /device number 0xff is above 0x1f/},
  {args: ['check', '3:00.0'], exit: 2, message: BAD},
  {args: ['check', '003:00.0'], exit: 2, message: BAD},
  {args: ['check', '1:03:00.0'], exit: 2, message: BAD},
  {args: ['check', '123456789:03:00.0'], exit: 2, message: BAD},
  {args: ['check', '03.00.0'], exit: 2, message: BAD},
  {args: ['check', '03:00:0'], exit: 2, message: BAD},
  {args: ['check', '0000-03-00.0'], exit: 2, message: BAD},
  {args: ['check', '03:00.0.0'], exit: 2, message: BAD},
  {args: ['check', '03:00.-1'], exit: 2, message: BAD},
  {args: ['check', '../../../../etc/passwd'], exit: 2, message: BAD},
  {args: ['check', '0000:03:00.0/../../..'], exit: 2, message: BAD},
  {args: ['check', '/sys/bus/pci/devices/0000:03:00.0'], exit: 2, message: BAD},
  {args: ['check', '0000:03:00.0/config'], exit: 2, message: BAD},
  {args: ['check', 'pci0000:00'], exit: 2, message: BAD},
  {args: ['check', '0x03:00.0'], exit: 2, message: BAD},
  {args: ['check', '03:00.0', 'xyz'], exit: 2, message: /Invalid PCI address "xyz"/},
  {args: ['check', ''], exit: 2, message: BAD, spawn: true},
  {args: ['check', ' 03:00.0'], exit: 2, message: BAD, spawn: true},
  {args: ['check', '03:00.0 '], exit: 2, message: BAD, spawn: true},
  {args: ['check', '03:00.0\n'], exit: 2, message: BAD, spawn: true},
  {args: ['check', '03:00.0;04:00.0'], exit: 2, message: BAD, spawn: true},
  {args: ['check', '0000:99:00.0'], exit: 3, message: /No PCI function 0000:99:00.0/, code: 'E_NO_DEVICE'},
  {args: ['check', BDF.nvmeCmb, '0000:77:01.0'], exit: 3, message: /No PCI function 0000:77:01.0/},
  {args: ['check', '0001:03:00.0'], exit: 3, message: /No PCI function 0001:03:00.0/},
  {args: ['check', '--bogus'], exit: 2, message: /Nonexistent flag: --bogus/, code: 'E_USAGE'},
  {args: ['check', '--probe'], exit: 2, message: /Nonexistent flag: --probe/},
  {args: ['check', '--write', BDF.nvmeCmb], exit: 2, message: /Nonexistent flag: --write/},
  {args: ['check', '-s', '03:00.0'], exit: 2, message: /Nonexistent flag: -s/},
  // topo --probe: never against fixture roots (it moves real data), and its input checked first
  {args: ['topo', '--probe'], exit: 7, message: /runs only against the live kernel/, code: 'E_NOT_LIVE'},
  {args: ['topo', BDF.nvmeCmb, BDF.nvmePeer, '--probe'], exit: 7, message: /runs only against the live kernel/, code: 'E_NOT_LIVE'},
  {args: ['topo', BDF.nvmeCmb, '--probe'], exit: 7, message: /needs at least two functions/, code: 'E_TOO_FEW'},
  {args: ['topo', BDF.nvmeCmb, 'nvme0n1', '--probe'], exit: 2, message: BAD},
  {args: ['topo', BDF.nvmeCmb, '0000:55:00.0', '--probe'], exit: 3, message: /No PCI function 0000:55:00.0/},
  // topo --probe --write: the region flags are checked against each other before anything is read
  {args: ['topo', '--probe', '--write'], exit: 2, message: /--write needs the region it may overwrite/, code: 'E_NO_REGION'},
  {args: ['topo', '--probe', '--lba', '0'], exit: 2, message: /add --write/, code: 'E_FLAG_COMBO'},
  {args: ['topo', '--write', '--offset', '1M'], exit: 2, message: /use it with --probe/, code: 'E_FLAG_COMBO'},
  {args: ['topo', '--probe', '--write', '--offset', '1M', '--lba', '8'], exit: 2, message: /not both/, code: 'E_FLAG_COMBO'},
  {args: ['topo', '--probe', '--write', '--lba=-1'], exit: 2, message: /whole number of logical blocks/, code: 'E_LBA'},
  {args: ['topo', '--probe', '--write', '--lba', '99999999999999999999'], exit: 2, message: /whole number of logical blocks/, code: 'E_LBA'},
  {args: ['topo', '--probe', '--write', '--offset', '1Q'], exit: 2, message: /Invalid --offset/, code: 'E_SIZE_SYNTAX'},
  {args: ['topo', '--probe', '--write', '--offset', '1M', '--yes'], exit: 7, message: /runs only against the live kernel/, code: 'E_NOT_LIVE'},
]

badInputTable({
  title: `check and topo --probe: bad input (${cases.length} cases): clear message, meaningful exit code, nothing changed`,
  cases,
  atLeast: 30,
  label: (c) => argsLabel(c.args),
  arrange(c) {
    const fx = checkMachine()
    const core = new FakeDriverCore(fx)
    const before = fx.hash()
    return {
      args: c.args,
      run: (args) => (c.spawn ? cliProcess(args, fx) : cli(args, fx, {writer: core})),
      check(phase) {
        expect(fx.hash(), `fixture changed (${phase})`).to.equal(before)
        expect(core.log).to.deep.equal([])
      },
      cleanup: () => fx.cleanup(),
    }
  },
})
