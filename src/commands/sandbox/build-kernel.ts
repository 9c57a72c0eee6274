import * as Flags from '@oclif/core/flags'
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {BaseCommand, examples} from '../../base-command.js'
import {Exit, IopmemError} from '../../lib/sys/index.js'

export default class SandboxBuildKernel extends BaseCommand {
  static summary = "Rebuild the sandbox's guest kernel (vm/kernel/) byte for byte: Linux 6.12 with PCI P2PDMA (about 15 minutes on 2 cores)."
  static description = `Runs scripts/build-kernel.sh: Debian's linux-source-6.12 at the version pinned in vm/kernel/SOURCE, with x86_64_defconfig, kvm_guest.config and vm/kernel/guest.config (P2PDMA, ZONE_DEVICE, DAX, NVMe and the NVMe-oF target, soft-RoCE and soft-iWARP, intel-iommu, kmemleak, signed modules; all built in). The repository already carries the result (vm/kernel/bzImage, config, extmod.tar.xz and SHA256SUMS), so you need this only to check it or to change the configuration: --verify builds into a scratch directory and compares with the committed sums; without it the results replace vm/kernel/. The build's own output is the progress.`

  static examples = examples(`
    --verify # Rebuild and check it is byte for byte the committed kernel
    --check  # Only check the prerequisites
    --jobs 4 # Rebuild vm/kernel/ with 4 jobs
  `)

  static enableJsonFlag = false

  static flags = {
    jobs: Flags.integer({char: 'j', description: 'Parallel make jobs (default: the number of CPUs).', min: 1, max: 256}),
    verify: Flags.boolean({description: 'Build into a scratch directory and compare with vm/kernel/SHA256SUMS (exit 8 on a difference).'}),
    check: Flags.boolean({description: 'Check the prerequisites only (exit 7 when one is missing).'}),
    'config-only': Flags.boolean({description: 'Stop after writing and checking the .config (about a minute).'}),
    'install-deps': Flags.boolean({description: 'apt-get install the missing Debian packages first (needs root).'}),
    'dry-run': Flags.boolean({char: 'n', description: 'Print what would be done.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(SandboxBuildKernel)
    const script = path.join(this.config.root, 'scripts', 'build-kernel.sh')
    if (!fs.existsSync(script)) {
      throw new IopmemError(`The kernel build script is missing: ${script}.`, {
        code: 'E_NO_SCRIPT',
        exit: Exit.NOT_FOUND,
        suggestions: ['It ships with the iopmem source tree: run this from a checkout.'],
      })
    }
    const args = [script]
    if (flags.jobs !== undefined) args.push('--jobs', String(flags.jobs))
    for (const f of ['verify', 'check', 'config-only', 'install-deps', 'dry-run'] as const) if (flags[f]) args.push(`--${f}`)
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn('bash', args, {stdio: 'inherit'})
      child.on('error', reject)
      child.on('exit', (c, sig) => resolve(c ?? (sig === 'SIGINT' ? 130 : 1)))
    })
    if (code !== 0) this.exit(code)
  }
}
