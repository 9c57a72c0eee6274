import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {type BuildResult, buildModule, driverEnv} from '../../lib/bind/index.js'

export default class DriverBuild extends BaseCommand {
  static summary = 'Build the iopmem kernel module against a kernel build tree.'
  static description = `Compiles native/kmod (the iopmem driver) with the kernel's own build system: \`make -C KDIR M=OUT modules\`. KDIR is the running kernel's /lib/modules/$(uname -r)/build (the linux-headers package) unless --kdir names another tree. The sources are copied to OUT first (default ~/.cache/iopmem/kmod/RELEASE), so the package directory stays untouched; \`iopmem driver load\` finds the module there.`

  static examples = examples(`
                            # For the running kernel
    --kdir ~/linux --werror # Against another tree, warnings as errors
  `)

  static flags = {
    kdir: Flags.string({description: 'Kernel build tree (default /lib/modules/$(uname -r)/build).'}),
    out: Flags.string({description: 'Where to build (default ~/.cache/iopmem/kmod/RELEASE).'}),
    werror: Flags.boolean({description: 'Treat compiler warnings as errors (CI).'}),
  }

  async run(): Promise<BuildResult> {
    const {flags} = await this.parse(DriverBuild)
    const r = buildModule(driverEnv(this.host), {kdir: flags.kdir, out: flags.out, werror: flags.werror})
    if (!this.jsonEnabled()) this.log(`built ${r.ko}\n  for ${r.vermagic ?? r.release ?? '?'}\n  from ${r.kdir}`)
    return r
  }
}
