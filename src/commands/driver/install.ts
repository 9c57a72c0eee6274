import * as Flags from '@oclif/core/flags'

import {BaseCommand, examples} from '../../base-command.js'
import {type DkmsInstallResult, dkmsInstall, driverEnv, validateSigning} from '../../lib/bind/index.js'

export default class DriverInstall extends BaseCommand {
  static summary = 'Install the iopmem kernel module through DKMS, so it is rebuilt for every new kernel.'
  static description = `Copies native/kmod to /usr/src/iopmem-VERSION and runs \`dkms add\`, \`dkms build\` and \`dkms install\` for the running kernel (or --kernel VERSION, whose headers must be installed); afterwards \`modprobe iopmem\` (and \`iopmem driver load\`, \`iopmem bind --driver iopmem\`) find it, and DKMS builds it again when a kernel is installed. DKMS signs the module: with --sign KEY --cert CERT, else with its own key (Debian: /var/lib/dkms/mok.key and mok.pub, made on first use); with Secure Boot on, enroll that certificate once (\`iopmem driver status\` shows the \`mokutil --import\` step). Needs root. A failed or interrupted step undoes what this run did (dkms remove of what it added, the source copy it made) and says so; loads nothing.`

  static examples = examples(`
                                               # For the running kernel, signed with DKMS's key
    --kernel 6.12.117+deb12-amd64              # For another installed kernel
    --sign /root/mok.key --cert /root/mok.der  # Signed with a key of one's own
  `)

  static flags = {
    kernel: Flags.string({description: 'Kernel release to build and install for (default: the running kernel, uname -r).'}),
    sign: Flags.string({description: 'Private key DKMS signs the module with (with --cert).'}),
    cert: Flags.string({description: 'The X.509 certificate (PEM or DER) of --sign\'s key.'}),
  }

  async run(): Promise<DkmsInstallResult> {
    const {flags} = await this.parse(DriverInstall)
    const sign = validateSigning(flags.sign, flags.cert)
    const r = await dkmsInstall(driverEnv(this.host), {kernel: flags.kernel, sign})
    if (!this.jsonEnabled()) {
      this.log(`iopmem ${r.version} installed through DKMS for ${r.kernel}${r.installed ? `: ${r.installed}` : ''}`)
      const s = r.signature
      if (s?.signed) this.log(`  signed by ${s.signer ?? '?'}${r.signedWith ? ` (certificate ${r.signedWith})` : ''}`)
      else if (s?.unreadable) this.log(`  signature: ${s.unreadable}`)
      else this.log('  not signed: a kernel that enforces signatures (Secure Boot) will refuse it')
      this.log('  load it: `sudo modprobe iopmem` or `sudo iopmem driver load`; `iopmem driver status` says whether Secure Boot needs the key enrolled')
    }
    return r
  }
}
