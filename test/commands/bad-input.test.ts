/**
 * Bad input across list, topo, bind and unbind: each case must fail with a
 * clear message, a non-zero exit code that means what the README says, and
 * leave the fixture tree byte-identical (every path, link and byte).
 */
import {expect} from 'chai'
import * as fs from 'node:fs'

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
  setup?: (fx: SysfsFixture, core: FakeDriverCore) => void
  uid?: number
  /** Run as a child process (argument lists runCommand would re-split; no fake driver core). */
  spawn?: boolean
}

const inUseMount = (fx: SysfsFixture) => fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/mnt/data', fstype: 'ext4'})
const daxMount = (fx: SysfsFixture) => fx.mount({dev: '259:0', source: '/dev/nvme0n1', target: '/mnt/dax', fstype: 'xfs', options: 'rw,dax=always'})
const withMappedP2p = (fx: SysfsFixture) => fx.process({pid: 777, comm: 'p2ptest', maps: [fx.kernelPath(BDF.nvmeCmb, 'p2pmem/allocate')]})
const withOpenBar = (fx: SysfsFixture) => fx.process({pid: 778, comm: 'pcimem', fds: [fx.kernelPath(BDF.nvmeCmb, 'resource2')]})
const withOpenDisk = (fx: SysfsFixture) => fx.process({pid: 779, comm: 'fio', fds: ['/dev/nvme1n1']})
const withHolder = (fx: SysfsFixture) => fs.mkdirSync(fx.fnDir(BDF.nvmePeer) + '/nvme/nvme1/nvme1n1/holders/dm-0', {recursive: true})

const BAD_BDF = /Invalid PCI address/
const cases: Case[] = [
  // list
  {args: ['list', 'zz:00.0'], exit: 2, message: BAD_BDF, code: 'E_BDF_SYNTAX'},
  {args: ['list', '0000:03:00'], exit: 2, message: BAD_BDF},
  {args: ['list', '03:00.8'], exit: 2, message: /function number must be 0-7/},
  {args: ['list', '03:20.0'], exit: 2, message: /device number 0x20 is above 0x1f/},
  {args: ['list', '../../../../etc/passwd'], exit: 2, message: BAD_BDF},
  {args: ['list', '0000:03:00.0/../../..'], exit: 2, message: BAD_BDF},
  {args: ['list', ''], exit: 2, message: BAD_BDF, spawn: true},
  {args: ['list', ' 03:00.0'], exit: 2, message: BAD_BDF, spawn: true},
  {args: ['list', '03:00.0\n'], exit: 2, message: BAD_BDF, spawn: true},
  {args: ['list', '1:03:00.0'], exit: 2, message: BAD_BDF},
  {args: ['list', '0000:99:00.0'], exit: 3, message: /No PCI function 0000:99:00.0/, code: 'E_NO_DEVICE'},
  {args: ['list', '03:00.0', '0000:77:01.0'], exit: 3, message: /No PCI function 0000:77:01.0/},
  {args: ['list', '--bogus'], exit: 2, message: /Nonexistent flag: --bogus/, code: 'E_USAGE'},
  // topo
  {args: ['topo', 'x'], exit: 2, message: BAD_BDF},
  {args: ['topo', '03:00.0'], exit: 7, message: /needs at least two functions; only 0000:03:00.0 was named/, code: 'E_TOO_FEW'},
  {args: ['topo', '03:00.0', '03:00.0'], exit: 7, message: /needs at least two functions; only 0000:03:00.0 was named/},
  {args: ['topo', '03:00.0', '0000:42:00.0'], exit: 3, message: /No PCI function 0000:42:00.0/},
  {args: ['topo', '03:00.0', '/sys/bus/pci/devices/0000:04:00.0'], exit: 2, message: BAD_BDF},
  {args: ['topo', '--all'], exit: 2, message: /Nonexistent flag: --all/},
  // bind
  {args: ['bind'], exit: 2, message: /Missing the PCI function to bind/, code: 'E_MISSING_BDF'},
  {args: ['bind', 'xyz', '--yes'], exit: 2, message: BAD_BDF},
  {args: ['bind', '../../../../dev/mem', '--yes'], exit: 2, message: BAD_BDF},
  {args: ['bind', '0000:99:00.0', '--driver', 'vfio-pci', '--yes'], exit: 3, message: /No PCI function 0000:99:00.0/},
  {args: ['bind', BDF.nvmeCmb, '--driver', '../../x', '--yes'], exit: 2, message: /Invalid driver name/, code: 'E_DRIVER_SYNTAX'},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'a b', '--yes'], exit: 2, message: /Invalid driver name/, spawn: true},
  {args: ['bind', BDF.nvmeCmb, '--driver', '', '--yes'], exit: 2, message: /Invalid driver name|expects a value/, spawn: true},
  {args: ['bind', BDF.nvmeCmb, '--yes'], exit: 3, message: /No PCI driver named "iopmem" is registered.*iopmem driver load/s, code: 'E_NO_DRIVER'},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'nosuchdrv', '--yes'], exit: 3, message: /modprobe nosuchdrv/},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci'], exit: 5, message: /without confirmation: not on a terminal/, code: 'E_CONFIRM'},
  {args: ['bind', BDF.nvmePeer, '--driver', 'vfio-pci', '--yes'], exit: 5, message: /in use[\s\S]*nvme1n1p1 is mounted on \/mnt\/data/, code: 'E_IN_USE', setup: inUseMount},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes'], exit: 5, message: /nvme0n1 is mounted on \/mnt\/dax \(xfs, dax=always\)/, setup: daxMount},
  {args: ['bind', BDF.nvmePeer, '--driver', 'uio_pci_generic', '--yes'], exit: 5, message: /fio \(pid 779\) has \/dev\/nvme1n1 open/, setup: withOpenDisk},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'uio_pci_generic', '--yes'], exit: 5, message: /p2ptest \(pid 777\) maps .*p2pmem\/allocate/, setup: withMappedP2p},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'uio_pci_generic', '--yes'], exit: 5, message: /pcimem \(pid 778\) has .*resource2 open/, setup: withOpenBar},
  {args: ['bind', BDF.nvmePeer, '--driver', 'uio_pci_generic', '--yes'], exit: 5, message: /dm-0 is stacked on nvme1n1/, setup: withHolder},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes'], exit: 4, message: /bind needs root/, code: 'E_NOT_ROOT', uid: 1000},
  {args: ['bind', BDF.ivshmem, '--driver', 'vfio-pci', '--yes'], exit: 7, message: /no IOMMU group/, code: 'E_VFIO_NO_IOMMU'},
  {args: ['bind', BDF.switchDown0, '--driver', 'vfio-pci', '--yes'], exit: 5, message: /it is a PCI bridge/, code: 'E_BRIDGE'},
  {args: ['bind', BDF.hostBridge, '--driver', 'vfio-pci', '--force'], exit: 5, message: /it is a host bridge/},
  {args: ['bind', BDF.nvmeCmb, '--driver', 'vfio-pci', '--yes', '--bogus'], exit: 2, message: /Nonexistent flag: --bogus/},
  {args: ['bind', BDF.nvmeCmb, BDF.nvmePeer, '--yes'], exit: 2, message: /Unexpected argument/},
  {
    args: ['bind', BDF.nvmeCmb, '--driver', 'uio_pci_generic', '--yes'],
    exit: 4,
    message: /Binding 0000:03:00.0 to uio_pci_generic failed.*EACCES.*Rolled back/s,
    setup: (_fx, core) => core.failWrite(/drivers\/uio_pci_generic\/bind$/, 'EACCES'),
  },
  {
    args: ['bind', BDF.ivshmem, '--driver', 'nvme', '--yes'],
    exit: 6,
    message: /nvme did not accept the device.*Rolled back: the device is unbound, as it was/s,
    code: 'E_BIND_FAILED',
    setup: (fx) => {
      fx.drivers.get('nvme')!.probe = (b) => (b === BDF.ivshmem ? 'ENODEV' : undefined)
    },
  },
  {
    args: ['bind', BDF.nvmePeer, '--driver', 'vfio-pci', '--yes'],
    exit: 6,
    message: /vfio-pci's probe failed with EINVAL.*bound to nvme again/s,
    setup: (fx) => {
      fx.drivers.get('vfio-pci')!.probe = () => 'EINVAL'
    },
  },
  // unbind
  {args: ['unbind'], exit: 2, message: /Missing the PCI function to unbind/},
  {args: ['unbind', 'abc', '--yes'], exit: 2, message: BAD_BDF},
  {args: ['unbind', '0000:99:00.0', '--yes'], exit: 3, message: /No PCI function/},
  {args: ['unbind', BDF.nvmeCmb], exit: 5, message: /without confirmation/},
  {args: ['unbind', BDF.nvmePeer, '--yes'], exit: 5, message: /nvme1n1p1 is mounted on \/mnt\/data/, setup: inUseMount},
  {args: ['unbind', BDF.nvmeCmb, '--yes'], exit: 5, message: /p2ptest \(pid 777\)/, setup: withMappedP2p},
  {args: ['unbind', BDF.nvmeCmb, '--yes'], exit: 4, message: /unbind needs root/, uid: 1000},
  {args: ['unbind', BDF.rootPort, '--yes'], exit: 5, message: /it is a PCI bridge/},
  {args: ['unbind', BDF.nvmeCmb, '--driver', 'x'], exit: 2, message: /Nonexistent flag/},
  {
    args: ['unbind', BDF.nvmeRoot, '--yes'],
    exit: 6,
    message: /Unbinding 0000:00:03.0 from nvme failed.*Nothing was changed/s,
    code: 'E_UNBIND_FAILED',
    setup: (_fx, core) => core.failWrite(/nvme\/unbind$/, 'EBUSY'),
  },
]

badInputTable({
  title: `bad input (${cases.length} cases): clear message, meaningful exit code, nothing changed`,
  cases,
  atLeast: 40,
  label: (c) => argsLabel(c.args) + (c.uid ? ` as uid ${c.uid}` : '') + (c.setup ? ' (with setup)' : ''),
  arrange(c) {
    const fx = standardMachine()
    const core = new FakeDriverCore(fx)
    c.setup?.(fx, core)
    const before = fx.hash()
    return {
      args: c.args,
      run: (args) => (c.spawn ? cliProcess(args, fx) : cli(args, fx, {writer: core, uid: c.uid})),
      check: (phase) => expect(fx.hash(), phase === 'json' ? 'fixture tree changed (--json)' : 'fixture tree changed').to.equal(before),
      cleanup: () => fx.cleanup(),
    }
  },
})
