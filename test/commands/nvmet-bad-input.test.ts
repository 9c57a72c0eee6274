/**
 * Bad input for `iopmem nvmet`: every case fails with its exit code and message (and the
 * error envelope under --json), leaves the fixture machine and its nvmet configfs
 * byte-identical, and makes no configfs call at all (the fake configfs logs each one).
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {cli} from '../helpers/cli.js'
import {argsLabel, badInputTable} from '../helpers/bad-input.js'
import {FakeConfigfs} from '../helpers/fake-configfs.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {addRdma} from '../helpers/nvmet.js'

const NQN = 'nqn.2026-11.io.iopmem:t1'
const loop = ['--transport', 'loop', '--yes']
const tcp = ['--transport', 'tcp', '--yes']

interface Case {
  args: (file: string) => string[]
  exit: number
  message: RegExp
  code?: string
  setup?: (fx: SysfsFixture, file: string) => void
  uid?: number
  /** A target made (through the command) before the case. */
  existing?: string[]
  noNvmet?: boolean
}

const create = (...a: string[]) => () => ['nvmet', 'create', ...a]
const saved = (o: unknown) => (fx: SysfsFixture, file: string) => fs.writeFileSync(file, typeof o === 'string' ? o : JSON.stringify(o))
const goodSaved = (patch: (o: any) => void) => {
  const o: any = {
    hosts: [],
    ports: [{addr: {adrfam: 'ipv4', traddr: '127.0.0.1', trsvcid: '4420', trtype: 'tcp'}, portid: 1, referrals: [], subsystems: [NQN]}],
    subsystems: [{nqn: NQN, allowed_hosts: [], attr: {allow_any_host: '1'}, namespaces: [{nsid: 1, enable: 1, device: {path: '/dev/nvme1n1'}}]}],
    iopmem: {version: 1, p2pmem: []},
  }
  patch(o)
  return saved(o)
}

const cases: Case[] = [
  // NQNs
  {args: create('nqn', '--device', 'nvme1n1', ...loop), exit: 2, message: /Invalid subsystem NQN "nqn"/, code: 'E_NQN_SYNTAX'},
  {args: create('iqn.2026-11.io.example:t', '--device', 'nvme1n1', ...loop), exit: 2, message: /Invalid subsystem NQN/, code: 'E_NQN_SYNTAX'},
  {args: create('nqn.2026-13.io.example:t', '--device', 'nvme1n1', ...loop), exit: 2, message: /nqn\.YYYY-MM/, code: 'E_NQN_SYNTAX'},
  {args: create('nqn.2026-11.io.example:a/b', '--device', 'nvme1n1', ...loop), exit: 2, message: /no spaces or '\/'/, code: 'E_NQN_SYNTAX'},
  {args: create('nqn.2026-11.io.example:a\u00e9', '--device', 'nvme1n1', ...loop), exit: 2, message: /Invalid subsystem NQN/, code: 'E_NQN_SYNTAX'},
  {args: create('nqn.2026-11.io.example:' + 'x'.repeat(220), '--device', 'nvme1n1', ...loop), exit: 2, message: /at most 223 bytes/, code: 'E_NQN_SYNTAX'},
  {args: create('nqn.2014-08.org.nvmexpress.discovery', '--device', 'nvme1n1', ...loop), exit: 2, message: /discovery subsystem/, code: 'E_NQN_SYNTAX'},
  {args: create(NQN, '--device', 'nvme1n1', '--host', 'nqn.bad', ...loop), exit: 2, message: /Invalid host NQN/, code: 'E_NQN_SYNTAX'},
  // transports, addresses, services, ports
  {args: create(NQN, '--device', 'nvme1n1', '--transport', 'fc', '--yes'), exit: 2, message: /Expected --transport=fc to be one of/, code: 'E_USAGE'},
  {args: create(NQN, '--device', 'nvme1n1', ...tcp), exit: 2, message: /needs --address/, code: 'E_ADDRESS'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '10.0.0.1', ...tcp), exit: 2, message: /Refusing address "10\.0\.0\.1"/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '192.168.1.5', ...tcp), exit: 2, message: /only sets up targets on 127\.0\.0\.0\/8/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '0.0.0.0', ...tcp), exit: 2, message: /Refusing address/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '::1', ...tcp), exit: 2, message: /Refusing address "::1"/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', 'fec0::1', ...tcp), exit: 2, message: /Refusing address/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '2001:db8::1', ...tcp), exit: 2, message: /Refusing address/, code: 'E_ADDRESS_RANGE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '127.0.0.256', ...tcp), exit: 2, message: /Invalid address/, code: 'E_ADDRESS'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', 'localhost', ...tcp), exit: 2, message: /Invalid address/, code: 'E_ADDRESS'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', 'fe80::1%eth0/x', ...tcp), exit: 2, message: /Invalid address/, code: 'E_ADDRESS'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '127.0.0.1', '--service', '0', ...tcp), exit: 2, message: /Invalid service id "0"/, code: 'E_SERVICE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '127.0.0.1', '--service', '65536', ...tcp), exit: 2, message: /Invalid service id/, code: 'E_SERVICE'},
  {args: create(NQN, '--device', 'nvme1n1', '--address', '127.0.0.1', ...loop), exit: 2, message: /loop port has no address/, code: 'E_ADDRESS'},
  {args: create(NQN, '--device', 'nvme1n1', '--port-id', '0', ...loop), exit: 2, message: /Invalid port id "0"/, code: 'E_PORT_ID'},
  {args: create(NQN, '--device', 'nvme1n1', '--port-id', '1x', ...loop), exit: 2, message: /Invalid port id/, code: 'E_PORT_ID'},
  {args: create(NQN, '--device', 'nvme1n1', '--nic', 'mlx_0', ...loop), exit: 2, message: /--nic is for rdma ports/, code: 'E_NIC'},
  // ports in use, targets that exist
  {
    args: create(NQN + 'b', '--device', 'nvme0n1', '--address', '127.0.0.1', ...tcp),
    existing: ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.1', '--yes'],
    exit: 5,
    message: /tcp 127\.0\.0\.1:4420 is in use by port 1/,
    code: 'E_ADDRESS_IN_USE',
  },
  {
    args: create(NQN + 'b', '--device', 'nvme0n1', '--port-id', '1', ...loop),
    existing: ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.1', '--yes'],
    exit: 5,
    message: /Port 1 is in use with another address/,
    code: 'E_PORT_IN_USE',
  },
  {args: create(NQN, '--device', 'nvme0n1', ...loop), existing: ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--yes'], exit: 5, message: /exists already/, code: 'E_EXISTS'},
  {
    args: create(NQN + 'b', '--device', 'nvme1n1', ...loop),
    existing: ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--yes'],
    exit: 5,
    message: /already exported by nvmet/,
    code: 'E_IN_USE',
  },
  // devices
  {args: create(NQN, ...loop), exit: 2, message: /Missing required flag device/, code: 'E_USAGE'},
  {args: create(NQN, '--device', '/dev/nvme9n1', ...loop), exit: 3, message: /No device \/dev\/nvme9n1/, code: 'E_NO_DEVICE'},
  {args: create(NQN, '--device', '../etc/passwd', ...loop), exit: 2, message: /Invalid device/, code: 'E_DEVICE_SYNTAX'},
  {args: create(NQN, '--device', 'nvme1n1', '--device', '/dev/nvme1n1', ...loop), exit: 2, message: /given twice/, code: 'E_DUPLICATE'},
  {
    args: create(NQN, '--device', 'nvme1n1', ...loop),
    setup: (fx) => fx.mount({dev: '259:2', source: '/dev/nvme1n1p1', target: '/mnt/data', fstype: 'ext4'}),
    exit: 5,
    message: /nvme1n1p1 is mounted on \/mnt\/data/,
    code: 'E_IN_USE',
  },
  {args: create(NQN, '--device', 'nvme1n1', ...loop), setup: (fx) => fx.process({pid: 4242, comm: 'fio', fds: ['/dev/nvme1n1']}), exit: 5, message: /process fio \(pid 4242\)/, code: 'E_IN_USE'},
  // p2pmem
  {args: create(NQN, '--device', 'nvme1n1', '--p2pmem', 'maybe', ...loop), exit: 2, message: /Invalid --p2pmem "maybe"/, code: 'E_P2PMEM_SYNTAX'},
  {args: create(NQN, '--device', 'nvme1n1', '--p2pmem', '0000:0a:00.0', ...loop), exit: 3, message: /No PCI function 0000:0a:00\.0/, code: 'E_NO_DEVICE'},
  {args: create(NQN, '--device', 'nvme1n1', '--p2pmem', BDF.ivshmem, ...loop), exit: 5, message: /has no peer-to-peer memory/, code: 'E_NO_P2PMEM'},
  {args: create(NQN, '--device', 'nvme2n1', '--p2pmem', BDF.nvmeCmb, ...loop), exit: 5, message: /host bridge/, code: 'E_P2P_REFUSED'},
  {args: create(NQN, '--device', 'nvme2n1', '--p2pmem', 'auto', ...loop), exit: 5, message: /No peer-to-peer memory is available/, code: 'E_NO_P2PMEM'},
  {args: create(NQN, '--device', 'nvme1n1', '--device', 'nvme0n1', '--device', 'nvme2n1', '--p2pmem', 'auto', '--p2pmem', 'off', ...loop), exit: 2, message: /given 2 times for 3 devices/, code: 'E_P2PMEM_COUNT'},
  {
    args: create(NQN, '--device', 'nvme1n1', '--address', 'fe80::1%eth0', '--p2pmem', BDF.nvmeCmb, '--transport', 'rdma', '--yes'),
    setup: (fx) => addRdma(fx, 'pci'),
    exit: 5,
    message: /NIC 0000:00:02\.0: .*host bridge/s,
    code: 'E_P2P_REFUSED',
  },
  {args: create(NQN, '--device', 'nvme1n1', '--address', 'fe80::1%eth0', '--nic', 'mlx9', '--transport', 'rdma', '--yes'), setup: (fx) => addRdma(fx, 'pci'), exit: 3, message: /No RDMA device "mlx9"/, code: 'E_NO_NIC'},
  // the machine
  {args: create(NQN, '--device', 'nvme1n1', ...loop), noNvmet: true, exit: 7, message: /nvmet is not loaded/, code: 'E_NVMET_MISSING'},
  {args: create(NQN, '--device', 'nvme1n1', ...loop), uid: 1000, exit: 4, message: /needs root/, code: 'E_NOT_ROOT'},
  // remove, save, restore
  {args: () => ['nvmet', 'remove', NQN, '--yes'], exit: 3, message: /No nvmet subsystem/, code: 'E_NO_SUBSYSTEM'},
  {args: () => ['nvmet', 'remove', 'nqn..x', '--yes'], exit: 2, message: /Invalid subsystem NQN/, code: 'E_NQN_SYNTAX'},
  {
    args: () => ['nvmet', 'remove', NQN, '--yes'],
    existing: ['nvmet', 'create', NQN, '--device', 'nvme1n1', '--transport', 'loop', '--yes'],
    setup: (fx) => fs.mkdirSync(path.join(fx.sys, 'kernel/debug/nvmet', NQN, 'ctrl1'), {recursive: true}),
    exit: 5,
    message: /1 connected host controller/,
    code: 'E_IN_USE',
  },
  {args: (f) => ['nvmet', 'save', path.dirname(f)], exit: 2, message: /is a directory/, code: 'E_NOT_REGULAR'},
  {args: (f) => ['nvmet', 'restore', f + '.missing', '--yes'], exit: 3, message: /Cannot read/, code: 'E_NO_FILE'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: saved('{"hosts": ['), exit: 2, message: /not JSON/, code: 'E_SAVED_FORMAT'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.ports[0].addr.traddr = '10.1.2.3')), exit: 2, message: /Refusing address "10\.1\.2\.3"/, code: 'E_ADDRESS_RANGE'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.subsystems[0].nqn = 'bad')), exit: 2, message: /Invalid subsystem NQN "bad"/, code: 'E_NQN_SYNTAX'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.subsystems[0].namespaces[0].device.path = '/dev/nvme7n1')), exit: 3, message: /No device \/dev\/nvme7n1/, code: 'E_NO_DEVICE'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.subsystems[0].namespaces[0].nsid = 0)), exit: 2, message: /Invalid namespace id "0"/, code: 'E_NSID'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.ports[0].subsystems = ['nqn.2026-11.io.iopmem:other'])), exit: 2, message: /a subsystem the file does not have/, code: 'E_SAVED_FORMAT'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.iopmem.p2pmem = [{subsystem: NQN, nsid: 1, p2pmem: '0000:0b:00.0'}])), exit: 3, message: /No PCI function 0000:0b:00\.0/, code: 'E_NO_DEVICE'},
  {args: (f) => ['nvmet', 'restore', f, '--yes'], setup: goodSaved((o) => (o.subsystems[0].allowed_hosts = ['nqn.2026-11.io.iopmem:h'])), exit: 2, message: /which is not in "hosts"/, code: 'E_SAVED_FORMAT'},
]

badInputTable<Case>({
  title: 'nvmet: bad input changes nothing',
  cases,
  atLeast: 30,
  label: (c) => argsLabel(c.args('FILE')),
  async arrange(c) {
    const fx = standardMachine()
    const cfs = new FakeConfigfs(fx)
    if (c.noNvmet) fs.rmSync(path.join(fx.sys, 'kernel/config'), {recursive: true})
    const file = path.join(fx.root, 'saved.json')
    if (c.existing) {
      const r = await cli(c.existing, fx, {writer: cfs})
      expect(r.exit, r.stderr).to.equal(0)
    }
    c.setup?.(fx, file)
    const before = fx.hash()
    cfs.log.length = 0
    return {
      args: c.args(file),
      run: (args) => cli(args, fx, {writer: cfs, uid: c.uid}),
      check() {
        expect(fx.hash(), 'the fixture changed').to.equal(before)
        expect(cfs.log, 'configfs was touched').to.deep.equal([])
      },
      cleanup: () => fx.cleanup(),
    }
  },
})
