import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../base-command.js'
import {describeLoss, executeMkfsDax, FS_TYPES, type FsType, type MkfsResult, planMkfsDax, recheckMkfs, withBlockLock} from '../lib/dax/index.js'
import {dryRunResult, type DryRunResult, Effects} from '../lib/sys/index.js'

export default class MkfsDax extends BaseCommand {
  static summary = 'Make a DAX filesystem (ext4 or xfs) on device memory, and optionally mount it with -o dax.'
  static description = `For DAX-capable block devices: an iopmem disk (a PCI BAR), fsdax pmem, or a partition of one.

Before writing anything it checks that the device can do DAX (queue/dax), is not mounted, held (device-mapper, md), used as swap or open by a process, and carries no filesystem or partition-table signature (wipefs -n). A signature is refused with what was found; --force erases it (wipefs -a) and goes on. Being in use is never overridden.

The filesystem suits DAX: block size = page size, and a 2 MiB stripe so extents are 2 MiB aligned and huge (PMD) faults are possible:
  ext4: mkfs.ext4 -b 4096 -E stride=512,stripe_width=512
  xfs:  mkfs.xfs -b size=4096 -d su=2m,sw=1 -m reflink=0   (agcount=2 below 1 GiB; xfs needs at least 300 MiB)

With --mount DIR (an existing empty directory) it mounts with -o dax and proves DAX is in force with statx (STATX_ATTR_DAX) on a probe file; if it is not, the filesystem is unmounted again and the error says so. Any failure after the first write states what the device holds.

Asks before writing on a terminal; without one, pass --yes. Needs root and the e2fsprogs / xfsprogs / util-linux / mount packages.

--dry-run (-n) prints the commands (wipefs, mkfs, blkid, mount) the real run would make, in order, and changes nothing: every check runs and refuses as the real run would (so it needs root too: the checks read the device and every process's open files), and nothing is asked.`

  static examples = examples(`
    sudo /dev/pmem1 --mount /mnt/dax          # ext4 on fsdax pmem, mounted with DAX
    sudo /dev/iopmem0 --mount /mnt/bar --yes  # ext4 on a PCI BAR (iopmem driver), from a script
    sudo /dev/pmem1 --fs xfs --yes --json     # xfs (it needs 300 MiB or more), as JSON
    sudo /dev/pmem0p1 --force --yes --json    # Overwrite an old filesystem on a partition
    sudo /dev/pmem1 --force --mount /mnt/dax -n # What it would run (wipefs, mkfs, blkid, mount); nothing changed
  `)

  static args = {
    device: Args.string({description: 'DAX-capable block device, e.g. /dev/pmem0, /dev/iopmem0, /dev/pmem0p1', required: true}),
  }

  static flags = {
    fs: Flags.string({description: 'Filesystem to make.', options: [...FS_TYPES], default: 'ext4'}),
    mount: Flags.string({char: 'm', description: 'Mount it here with -o dax (an existing empty directory) and confirm DAX.'}),
    force: Flags.boolean({char: 'f', description: 'Overwrite existing filesystem or partition-table signatures (wipefs -a first); also skips the confirmation.'}),
    wait: Flags.boolean({description: 'If another iopmem is using this device, wait for it instead of refusing.'}),
    ...BaseCommand.confirmFlags,
    ...BaseCommand.dryRunFlag(),
  }

  async run(): Promise<MkfsResult | DryRunResult> {
    const {args, flags} = await this.parse(MkfsDax)
    const opts = {fs: flags.fs as FsType, mount: flags.mount, force: flags.force}
    const effects = new Effects(flags['dry-run'])
    return withBlockLock(this.host, args.device, {wait: flags.wait, effects}, async (guard) => {
      const asked = await planMkfsDax(this.host, args.device, opts)
      if (effects.dryRun) {
        const r = await executeMkfsDax(this.host, asked, undefined, guard, effects)
        const out = dryRunResult('mkfs-dax', effects, {device: r.device, disk: r.disk, kind: r.kind, size: r.size, filesystem: r.filesystem, pageSize: r.pageSize, alignment: r.alignment, signatures: asked.signatures, mount: r.mount?.target ?? null, warnings: r.warnings, notes: r.notes})
        const {renderDryRun} = await import('../ui/render-dryrun.js')
        if (!this.jsonEnabled()) this.log(renderDryRun(out, `mkfs-dax ${r.filesystem} on ${describeLoss(asked)}`, await this.colors(), [...r.warnings.map((w) => `warning: ${w}`), ...r.notes]))
        return out
      }
      await this.confirmOrRefuse(`Make ${asked.fs} on ${describeLoss(asked)}? Everything on it will be lost.`, flags.yes || flags.force, `make a filesystem on ${asked.target.node}`)
      // Time passed while a person was asked: check the device again (in use, signatures).
      const plan = flags.yes || flags.force ? asked : recheckMkfs(asked, await planMkfsDax(this.host, args.device, opts))
      const result = await executeMkfsDax(this.host, plan, undefined, guard)
      if (!this.jsonEnabled()) {
        const {renderMkfsResult} = await import('../ui/render-mkfs.js')
        this.log(renderMkfsResult(result, await this.colors()))
      }
      return result
    })
  }
}
