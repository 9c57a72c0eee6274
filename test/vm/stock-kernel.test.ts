/**
 * The iopmem driver on Debian 12's stock kernels, booted in the guest: the
 * package's /boot/vmlinuz-RELEASE, with the modules the agent needs (9p,
 * NVMe, ext4) taken from the package's /lib/modules into the initramfs.
 * The module is built on the host against the same kernel's headers
 * (linux-headers-RELEASE) with -Werror. These kernels have no PCI_P2PDMA:
 * blockdax works (bind → mkfs-dax → locate, every extent read back on the
 * host from the ivshmem file), p2pmem is refused by the driver with the reason.
 * One boot per kernel: Debian's 6.12 (linux-headers-6.12-amd64 brings its image)
 * and 6.1 (linux-image-amd64), both from scripts/install-deps.sh.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {bootGuest, type Guest, installedStockReleases, stockKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'
import {locateAndCheck} from '../helpers/guest-locate.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const MiB = 1024 * 1024
const SIZE = 128 * MiB

const KERNELS = [
  {name: 'Debian 6.12', re: /^6\.12\.[0-9]+\+deb12-amd64$/},
  {name: 'Debian 6.1', re: /^6\.1\.0-[0-9]+-amd64$/},
]

for (const k of KERNELS) {
  describe(`guest: the iopmem driver on ${k.name}'s stock kernel (no P2PDMA)`, function () {
    this.timeout(600_000)
    let vm: Guest
    let ko: string
    let bdf: string
    let bar2: bigint
    let release: string
    const iopmem = (args: string[]) => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 120_000})
    const sh = async (script: string): Promise<string> => (await vm.sh(script, {check: true, timeoutMs: 120_000})).stdout

    before(async function () {
      this.timeout(600_000)
      release = installedStockReleases(k.re).at(-1) ?? ''
      if (!release) throw new Error(`no ${k.name} kernel in /boot: run scripts/install-deps.sh`)
      const stock = stockKernel(release)
      if (!stock.headers) throw new Error(`no headers for ${release}: apt-get install linux-headers-${release}`)
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-stock-'))
      try {
        execFileSync(process.execPath, [path.join(ROOT, 'bin/run.js'), 'driver', 'build', '--kdir', stock.headers, '--out', out, '--werror'], {stdio: 'pipe'})
        vm = await bootGuest({kernel: stock.kernel, initrdModules: stock.modules, ivshmemMiB: SIZE / MiB, pmem: false, timeoutMs: 300_000})
        ko = await vm.putFile('iopmem.ko', fs.readFileSync(path.join(out, 'iopmem.ko')))
      } finally {
        fs.rmSync(out, {recursive: true, force: true})
      }
      bdf = vm.devices.ivshmem.bdf
      bar2 = BigInt((await sh(`cat /sys/bus/pci/devices/${bdf}/resource | sed -n 3p`)).split(' ')[0])
      console.log(`      guest ${vm.release} (${stock.modules.length} modules in the initramfs): ivshmem ${bdf}, BAR2 0x${bar2.toString(16)}`)
    })
    after(async () => {
      await vm?.shutdown()
    })

    it('boots the package\'s kernel; the module built against its headers loads; p2pmem is refused with the reason, blockdax → mkfs-dax → locate lands in BAR2', async () => {
      expect(vm.release).to.equal(release)
      expect(await sh('grep -c "CONFIG_PCI_P2PDMA=y" /boot/config-$(uname -r) || true')).to.equal('0\n')
      const l = await iopmem(['driver', 'load', '--ko', ko, '--json'])
      expect(l.code, l.stdout + l.stderr).to.equal(0)

      const p = await iopmem(['bind', bdf, '--driver', 'iopmem', '--as', 'p2pmem', '--yes', '--json'])
      expect(p.code, p.stdout).to.not.equal(0)
      expect(guestJson(p).error.message).to.contain(`mode=p2pmem needs a kernel with CONFIG_PCI_P2PDMA, and this one (${release}) has none`)
      expect(await sh(`readlink /sys/bus/pci/devices/${bdf}/driver || echo none`), 'left unbound').to.equal('none\n')

      const b = await iopmem(['bind', bdf, '--driver', 'iopmem', '--as', 'blockdax', '--yes', '--json'])
      expect(b.code, b.stdout + b.stderr).to.equal(0)
      expect(guestJson(b).iopmem).to.include({mode: 'blockdax', bar: 2})
      await sh('mkdir -p /tmp/dax')
      const mk = await iopmem(['mkfs-dax', '/dev/iopmem0', '--mount', '/tmp/dax', '--yes', '--json'])
      expect(mk.code, mk.stdout + mk.stderr).to.equal(0)
      expect(guestJson(mk).mount).to.include({daxConfirmed: true})
      await locateAndCheck(vm, {bdf, bar2, size: SIZE}, 'stock', '/tmp/dax/f', crypto.randomBytes(3 * MiB + 99))
      await sh('umount /tmp/dax')
      expect((await iopmem(['unbind', bdf, '--yes', '--json'])).code).to.equal(0)
      const u = await iopmem(['driver', 'unload', '--json'])
      expect(u.code, u.stdout + u.stderr).to.equal(0)
    })
  })
}
