/**
 * `iopmem nvmet` on the real kernel, in one boot (topology 'both': the CMB NVMe, a peer NVMe
 * and an e1000e NIC behind one switch, an NVMe on the root complex). The guest is both the
 * target and the host: nvme-cli (the Debian package, from the host root) connects to it
 * over loop, over tcp on 127.0.0.1 and over soft-RoCE on the NIC's IPv6 link-local address.
 *
 *  - the kernel accepts the p2pmem provider `--p2pmem auto` picks (the CMB beside the
 *    namespace's NVMe) at enable, and refuses (ENODEV) a function with no p2pmem, as iopmem
 *    does before touching configfs; a provider topo refuses (the root-complex NVMe's
 *    namespace) is refused with nothing left in configfs;
 *  - a failing kernel step (a tcp port whose address another socket holds) rolls back everything made;
 *  - I/O through the fabric namespace is byte-exact against the backing device, both ways;
 *  - the honest finding: loop, tcp and rxe give nvmet no P2PDMA client, so p2pmem `available`
 *    stays where it was during fabric I/O and the kernel never logs "using p2pmem";
 *  - `bench p2p --dst` the fabric namespace: bounce verified; p2p refused by the kernel with
 *    EREMOTEIO (a fabric namespace's queue does not take P2PDMA pages; only nvme-pci's does).
 */
import {expect} from 'chai'
import {createHash} from 'node:crypto'

import {bootGuest, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const MiB = 1024 * 1024
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5b2f5c1e-7d0a-4c55-9a3e-2f1d6c0b9e44'
const HOSTID = '5b2f5c1e-7d0a-4c55-9a3e-2f1d6c0b9e44'
const NQN = (n: string) => `nqn.2026-11.io.iopmem:${n}`

describe('guest: nvmet targets over loop, tcp and soft-RoCE, connected from the same guest', function () {
  this.timeout(400_000)
  let vm: Guest
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 240_000})
  const sh = async (script: string): Promise<string> => (await vm.sh(script, {check: true, timeoutMs: 240_000})).stdout
  const json = guestJson
  const cfs = '/sys/kernel/config/nvmet'
  const configfsTree = () => sh(`find ${cfs}/subsystems ${cfs}/ports ${cfs}/hosts -mindepth 1 | sort`)
  const available = async (bdf: string) => Number((await sh(`cat /sys/bus/pci/devices/${bdf}/p2pmem/available`)).trim())
  /** The block device nvme-cli's connect made for `nqn`. */
  const fabricDisk = async (nqn: string): Promise<string> => {
    const out = await sh(`for c in /sys/class/nvme/nvme*; do [ "$(cat $c/subsysnqn)" = "${nqn}" ] && ls -d $c/nvme*n* 2>/dev/null; done; true`)
    const ns = out.split('\n').find((l) => l.trim() !== '')
    expect(ns, `no namespace of ${nqn} after connect`).to.not.equal(undefined)
    return '/dev/' + ns!.trim().split('/').pop()!.replace(/c\d+n/, 'n')
  }
  const sha = async (dev: string, offMiB: number, mib: number) => (await sh(`dd if=${dev} bs=1M skip=${offMiB} count=${mib} iflag=direct status=none | sha256sum`)).split(' ')[0]

  /** Byte-exact both ways: the fabric reads what the backing device holds, and a write through the fabric lands there. */
  const checkIo = async (fabric: string, backing: string, seed: string) => {
    expect(await sha(fabric, 0, 4), `${fabric} reads the first 4 MiB of ${backing}`).to.equal(await sha(backing, 0, 4))
    const data = Buffer.alloc(8 * MiB)
    for (let off = 0, i = 0; off < data.length; off += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(data, off)
    const src = await vm.putFile(`${seed}.bin`, data)
    await sh(`dd if=${src} of=${fabric} bs=1M seek=16 oflag=direct conv=fsync status=none`)
    const want = createHash('sha256').update(data).digest('hex')
    expect(await sha(backing, 16, 8), `a write through ${fabric} is on ${backing}`).to.equal(want)
    expect(await sha(fabric, 16, 8)).to.equal(want)
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel()
    vm = await bootGuest({topology: 'both', nic: 'e1000e', pmem: false})
    await sh('mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config')
    console.log(`      guest ${vm.release}: cmb ${vm.devices.cmb.bdf}, peer ${vm.devices.peer.bdf}, rc ${vm.devices.rc!.bdf}, nic ${vm.devices.nic!.bdf} (${vm.devices.nic!.interface})`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('refusals before configfs: a provider topo refuses for the root-complex namespace, a function with no p2pmem; the kernel agrees (ENODEV)', async () => {
    const before = await configfsTree()
    const r = await iopmem(['nvmet', 'create', NQN('rc'), '--device', vm.devices.rc!.namespace, '--transport', 'loop', '--p2pmem', vm.devices.cmb.bdf, '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(5)
    expect(json(r).error.code).to.equal('E_P2P_REFUSED')
    const none = await iopmem(['nvmet', 'create', NQN('rc'), '--device', vm.devices.peer.namespace, '--transport', 'loop', '--p2pmem', vm.devices.peer.bdf, '--yes', '--json'])
    expect(json(none).error.code).to.equal('E_NO_P2PMEM')
    expect(await configfsTree()).to.equal(before)
    // The kernel's own answer to the same value, in a scratch namespace made by hand (printf: the
    // kernel looks the BDF up as written, so a trailing newline would be "No such PCI device").
    const scratch = `${cfs}/subsystems/${NQN('scratch')}`
    const k = await vm.sh(`mkdir ${scratch} ${scratch}/namespaces/1 && printf %s ${vm.devices.peer.bdf} > ${scratch}/namespaces/1/p2pmem; rc=$?; rmdir ${scratch}/namespaces/1 ${scratch}; exit $rc`)
    expect(k.code, 'the kernel refuses a function without p2pmem').to.not.equal(0)
    expect(await sh('dmesg | tail -5')).to.match(/PCI device has no peer-to-peer memory/)
    expect(await configfsTree()).to.equal(before)
    console.log(`      refused: ${json(r).error.message.split('\n')[1]?.trim()}`)
  })

  it('a kernel failure late in create (the tcp port\'s address taken by another socket) leaves nothing in configfs', async () => {
    const before = await configfsTree()
    // Something else listens on 127.0.0.1:4421: the kernel refuses the port's subsystem link (EADDRINUSE).
    const listen = `import socket,time; s=socket.socket(); s.bind(('127.0.0.1', 4421)); s.listen(); time.sleep(120)`
    const r = await vm.sh(
      `python3 -c "${listen}" </dev/null >/dev/null 2>&1 & p=$!; sleep 2; node bin/run.js nvmet create ${NQN('taken')} --device ${vm.devices.peer.namespace} --transport tcp --address 127.0.0.1 --service 4421 --yes --json; rc=$?; kill $p; exit $rc`,
      {timeoutMs: 240_000},
    )
    expect(r.code, r.stdout + r.stderr).to.equal(6)
    expect(json(r).error.message).to.match(/symlink .*EADDRINUSE[\s\S]*Everything this run made was removed again/)
    expect(await configfsTree()).to.equal(before)
  })

  it('loop with --p2pmem auto: the CMB is picked and the kernel enables it; connect, byte-exact I/O; p2pmem unused (no client)', async () => {
    const c = await iopmem(['nvmet', 'create', NQN('loop'), '--device', vm.devices.peer.namespace, '--transport', 'loop', '--p2pmem', 'auto', '--yes', '--json'])
    expect(c.code, c.stdout + c.stderr).to.equal(0)
    const d = json(c).namespaces[0].p2pmem
    expect(d.provider).to.equal(vm.devices.cmb.bdf)
    expect((await sh(`cat ${cfs}/subsystems/${NQN('loop')}/namespaces/1/p2pmem ${cfs}/subsystems/${NQN('loop')}/namespaces/1/enable`)).split('\n').slice(0, 2)).to.deep.equal([vm.devices.cmb.bdf, '1'])
    const avail0 = await available(vm.devices.cmb.bdf)
    await sh(`nvme connect -t loop -n ${NQN('loop')} --hostnqn ${HOSTNQN} --hostid ${HOSTID}`)
    const disk = await fabricDisk(NQN('loop'))
    await checkIo(disk, vm.devices.peer.namespace, 'loop')
    expect(await available(vm.devices.cmb.bdf), 'no P2PDMA client over loop: no buffer in p2pmem').to.equal(avail0)
    // bench p2p with the fabric namespace as --dst: a bounce through RAM works as on a local disk; the p2p
    // copy is refused by the kernel (EREMOTEIO): only nvme-pci queues take P2PDMA pages (BLK_FEAT_PCI_P2PDMA).
    const bench = (mode: string, off: string) => iopmem(['bench', 'p2p', '--src', vm.devices.cmb.namespace, '--dst', disk, '--dst-offset', off, '--via', vm.devices.cmb.bdf, '--buffer', mode, '--size', '1M', '--verify', '--yes', '--json'])
    const bounce = await bench('bounce', '64M')
    expect(bounce.code, bounce.stdout + bounce.stderr).to.equal(0)
    expect(json(bounce).results.map((x: any) => [x.mode, x.verify?.ok])).to.deep.equal([['bounce', true]])
    const p2p = await bench('p2p', '66M')
    expect(p2p.code, p2p.stdout + p2p.stderr).to.equal(6)
    expect(json(p2p).error).to.deep.include({code: 'EREMOTEIO', errno: 121, path: disk})
    console.log(`      bench p2p --dst ${disk} (the fabric namespace): bounce verified at ${json(bounce).results[0].gbps ?? '?'} GB/s; p2p refused by the kernel: ${json(p2p).error.message}`)
    const human = await iopmem(['nvmet', 'list'])
    console.log(human.stdout.split('\n').map((l) => `        ${l}`).join('\n'))
    await sh(`nvme disconnect -n ${NQN('loop')}`)
    const list = json(await iopmem(['nvmet', 'list', '--json']))
    expect(list.subsystems.find((s: any) => s.nqn === NQN('loop')).namespaces[0]).to.include({p2pmem: vm.devices.cmb.bdf, enabled: true})
    const rm = await iopmem(['nvmet', 'remove', NQN('loop'), '--yes', '--json'])
    expect(rm.code, rm.stdout + rm.stderr).to.equal(0)
    console.log(`      loop: ${disk} ↔ ${vm.devices.peer.namespace} byte-exact; p2pmem ${d.provider} (${d.why}); available ${avail0} before and during`)
  })

  it('tcp on 127.0.0.1: save, remove, restore, connect, byte-exact I/O, remove', async () => {
    const c = await iopmem(['nvmet', 'create', NQN('tcp'), '--device', vm.devices.cmb.namespace, '--transport', 'tcp', '--address', '127.0.0.1', '--service', '4420', '--host', HOSTNQN, '--yes', '--json'])
    expect(c.code, c.stdout + c.stderr).to.equal(0)
    const tree = await configfsTree()
    await sh('mkdir -p /tmp/nvmet')
    expect((await iopmem(['nvmet', 'save', '/tmp/nvmet/t.json'])).code).to.equal(0)
    expect((await iopmem(['nvmet', 'remove', NQN('tcp'), '--yes'])).code).to.equal(0)
    expect(await configfsTree()).to.equal('')
    const r = await iopmem(['nvmet', 'restore', '/tmp/nvmet/t.json', '--yes', '--json'])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(await configfsTree()).to.equal(tree)
    await sh(`nvme connect -t tcp -a 127.0.0.1 -s 4420 -n ${NQN('tcp')} --hostnqn ${HOSTNQN} --hostid ${HOSTID}`)
    const disk = await fabricDisk(NQN('tcp'))
    await checkIo(disk, vm.devices.cmb.namespace, 'tcp')
    await sh(`nvme disconnect -n ${NQN('tcp')}`)
    expect((await iopmem(['nvmet', 'remove', NQN('tcp'), '--yes'])).code).to.equal(0)
    expect(await configfsTree()).to.equal('')
    console.log(`      tcp 127.0.0.1:4420: ${disk} ↔ ${vm.devices.cmb.namespace} byte-exact, after save → remove → restore`)
  })

  it('soft-RoCE on the NIC: iopmem says rxe0 is not a PCI device; connected over rdma, the kernel uses no p2pmem', async () => {
    const nic = vm.devices.nic!.interface
    await sh(`rdma link add rxe0 type rxe netdev ${nic}`)
    let addr = ''
    for (let i = 0; i < 50 && !addr; i++) {
      addr = (await sh(`ip -6 -o addr show dev ${nic} scope link | grep -v tentative | sed -n 's/.*inet6 \\(fe80[^/]*\\).*/\\1/p' | head -1`)).trim()
      if (!addr) await sh('sleep 0.2')
    }
    expect(addr, 'the NIC has a usable link-local address').to.match(/^fe80:/)
    expect(await sh('readlink -f /sys/class/infiniband/rxe0')).to.match(/devices\/virtual\/infiniband\/rxe0/)
    const c = await iopmem(['nvmet', 'create', NQN('rdma'), '--device', vm.devices.peer.namespace, '--transport', 'rdma', '--address', `${addr}%${nic}`, '--p2pmem', vm.devices.cmb.bdf, '--yes', '--json'])
    expect(c.code, c.stdout + c.stderr).to.equal(0)
    const j = json(c)
    expect(j.warnings.join('\n')).to.match(/rxe0 is not a PCI device/)
    const avail0 = await available(vm.devices.cmb.bdf)
    await sh(`nvme connect -t rdma -a ${addr}%${nic} -s 4420 -n ${NQN('rdma')} --hostnqn ${HOSTNQN} --hostid ${HOSTID}`)
    const disk = await fabricDisk(NQN('rdma'))
    await checkIo(disk, vm.devices.peer.namespace, 'rdma')
    expect(await available(vm.devices.cmb.bdf), 'rxe is no P2PDMA client: no buffer in p2pmem').to.equal(avail0)
    await sh(`nvme disconnect -n ${NQN('rdma')}`)
    const dmesg = await sh(`dmesg | grep -E 'nvmet|p2p|peer-to-peer|rxe' | tail -20; true`)
    expect(dmesg).to.not.match(/using p2pmem on/)
    expect((await iopmem(['nvmet', 'remove', NQN('rdma'), '--yes'])).code).to.equal(0)
    await sh('rdma link delete rxe0')
    expect(await configfsTree()).to.equal('')
    console.log(`      rdma over rxe0 (${addr}%${nic}): ${disk} ↔ ${vm.devices.peer.namespace} byte-exact; p2pmem available ${avail0} unchanged; dmesg has no "using p2pmem"`)
    console.log(dmesg.split('\n').map((l) => `        ${l}`).join('\n'))
  })
})
