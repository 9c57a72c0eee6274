import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {applyPlan, parseP2pmem, planCreate, type TargetResult, TRANSPORTS, validateCreate, withDiskLocks, withNvmetLock} from '../../lib/nvmet/index.js'

export default class NvmetCreate extends BaseCommand {
  static summary = 'Export block devices as an NVMe-oF target: a subsystem, its namespaces and a port.'
  static description = `Makes the subsystem NQN (allowing --host NQNs, or any host when none is given), one namespace per --device (nsid 1, 2, …), and links it into a port (--transport tcp, rdma or loop; --address only from 127.0.0.0/8 or IPv6 link-local; --service, default 4420). An existing port with the same address is reused (--port-id names it); any other port id or address in use is refused.

--p2pmem puts a namespace's data buffers in device memory: auto picks, among the functions that publish p2pmem, the one nearest the namespace's NVMe and the port's RDMA NIC by the kernel's own distance (as \`iopmem topo\` computes it) and says why; a BDF names one, and one the kernel would refuse for that NVMe/NIC pair is refused here, with topo's reason, before configfs is touched; off (the default) uses none. Give it once for all devices or once per --device. Only an RDMA port with a PCI NIC makes the kernel use p2pmem: loop and tcp ports have no P2PDMA client, and soft-RoCE/soft-iWARP devices are not PCI devices — the result says so.

Refused before any change: a device that is mounted, stacked on, swapped to, open in a process or already exported; a subsystem that exists. If a step fails or a stop signal comes, everything this run made is removed again. Asks first on a terminal; without one, pass --yes.`

  static examples = examples(`
    sudo nqn.2026-11.io.iopmem:t1 --device /dev/nvme1n1 --transport loop --yes  # Over loop, for this machine
    sudo nqn.2026-11.io.iopmem:t1 --device /dev/nvme1n1 --transport tcp --address 127.0.0.1 --yes  # Over tcp on localhost
    sudo nqn.2026-11.io.iopmem:t1 --device nvme1n1 --transport rdma --address fe80::1%eth0 --p2pmem auto --yes  # p2pmem nearest the NVMe and the NIC
  `)

  static args = {
    nqn: Args.string({description: 'Subsystem NQN, e.g. nqn.2026-11.io.example:target1', required: true}),
  }

  static flags = {
    device: Flags.string({description: 'A block device to export as a namespace (repeat for more).', multiple: true, required: true}),
    transport: Flags.string({description: `Port transport: ${TRANSPORTS.join(', ')}.`, required: true, options: [...TRANSPORTS]}),
    address: Flags.string({description: 'tcp/rdma: the port address, in 127.0.0.0/8 or IPv6 link-local (fe80::/10, with %interface).'}),
    service: Flags.string({description: 'tcp/rdma: the service id (port number; default 4420).'}),
    'port-id': Flags.string({description: 'The nvmet port id (default: a free one, or the port already on this address).'}),
    host: Flags.string({description: 'A host NQN allowed to connect (repeat for more; none: any host).', multiple: true}),
    p2pmem: Flags.string({description: 'auto, off or a provider BDF: where the namespace\'s data buffers live (once, or once per --device).', multiple: true}),
    nic: Flags.string({description: 'rdma: the RDMA device (ib name or PCI BDF) behind the port, when there is more than one.'}),
    wait: Flags.boolean({description: 'If another iopmem is changing nvmet or a device, wait for it instead of refusing.'}),
    ...BaseCommand.confirmFlags,
  }

  async run(): Promise<TargetResult> {
    const {args, flags} = await this.parse(NvmetCreate)
    const opts = {
      nqn: args.nqn,
      devices: flags.device,
      transport: flags.transport,
      address: flags.address,
      service: flags.service,
      portId: flags['port-id'],
      hosts: flags.host,
      p2pmem: flags.p2pmem?.map((s) => parseP2pmem(s)),
      nic: flags.nic,
    }
    validateCreate(opts)
    return withNvmetLock(this.host, {wait: flags.wait}, async (guard) => {
      let plan = planCreate(this.host, opts)
      for (const w of plan.warnings) this.note(`note: ${w}`)
      const {describePlan} = await import('../../ui/render-nvmet.js')
      await this.confirmOrRefuse(`${describePlan(plan)}\nCreate it?`, flags.yes, `export ${opts.devices.join(', ')} over nvmet`)
      return withDiskLocks(this.host, plan.disks, {wait: flags.wait}, async () => {
        plan = planCreate(this.host, opts) // a person may have taken a while: check again
        const result = await applyPlan(this.host, plan, 'create', guard)
        await this.show(result)
        return result
      })
    })
  }

  private async show(result: TargetResult): Promise<void> {
    if (!this.jsonEnabled()) {
      const {renderTargetResult} = await import('../../ui/render-nvmet.js')
      this.log(renderTargetResult(result))
    }
    if (result.interrupted) this.stopInterrupted(result, `${result.signal}: stopped; ${result.rolledBack ? 'everything made was removed again' : `left: ${result.left?.join(', ')}`}.`)
  }
}
