import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {type BuildResult, buildModule, driverEnv, validateSigning} from '../../lib/bind/index.js'

export default class DriverBuild extends BaseCommand {
  static summary = 'Build the iopmem kernel module against a kernel build tree.'
  static description = `Compiles native/kmod (the iopmem driver) with the kernel's own build system: \`make -C KDIR M=OUT modules\`. KDIR is the running kernel's /lib/modules/$(uname -r)/build (the linux-headers package) unless --kdir names another tree. The sources are copied to OUT first (default ~/.cache/iopmem/kmod/RELEASE), so the package directory stays untouched; \`iopmem driver load\` finds the module there. With --sign KEY --cert CERT the module is then signed by the tree's own scripts/sign-file with the kernel's CONFIG_MODULE_SIG_HASH (checked before anything is built), so a kernel that enforces signatures (Secure Boot, module.sig_enforce=1) loads it once the certificate is trusted (enrolled as a MOK: \`mokutil --import CERT.der\`).`

  static examples = examples(`
                                  # For the running kernel
    --kdir ~/linux --werror       # Against another tree, warnings as errors
    --sign mok.key --cert mok.der # Signed with one's own key
  `)

  static flags = {
    kdir: Flags.string({description: 'Kernel build tree (default /lib/modules/$(uname -r)/build).'}),
    out: Flags.string({description: 'Where to build (default ~/.cache/iopmem/kmod/RELEASE).'}),
    werror: Flags.boolean({description: 'Treat compiler warnings as errors (CI).'}),
    sign: Flags.string({description: 'Private key to sign the module with (with --cert), by the tree\'s scripts/sign-file.'}),
    cert: Flags.string({description: 'The X.509 certificate (PEM or DER) of --sign\'s key.'}),
  }

  async run(): Promise<BuildResult> {
    const {flags} = await this.parse(DriverBuild)
    const sign = validateSigning(flags.sign, flags.cert)
    const r = buildModule(driverEnv(this.host), {kdir: flags.kdir, out: flags.out, werror: flags.werror, sign})
    if (!this.jsonEnabled()) {
      const sig = r.signature.signed ? `signed by ${r.signature.signer ?? '?'}` : 'not signed'
      this.log(`built ${r.ko}\n  for ${r.vermagic ?? r.release ?? '?'}\n  from ${r.kdir}\n  ${sig}`)
    }
    return r
  }
}
