/**
 * A binding recorded with `bind --persist` survives a real reboot: two boots of
 * the guest kernel share one persistent disk (the guest's /etc and
 * /lib/modules); the second runs systemd-udevd (the host's Debian udev), whose
 * coldplug of the PCI functions runs 89-iopmem.rules, i.e. `iopmem persist
 * apply BDF`, which loads the module (modprobe: installed under /lib/modules
 * in boot 1) and binds ivshmem to iopmem with the recorded mode, BAR and
 * cache. Checked through sysfs in the guest and, through /dev/iopmem0, in the
 * host's ivshmem file.
 */
import {expect} from 'chai'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {bootGuest, type Guest, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'
import {buildGuestModule} from '../helpers/kmod.js'

describe('guest: bind --persist survives a reboot (persistent /etc, udevd)', function () {
  this.timeout(1_200_000)
  let dir: string
  let ko: string
  let vm: Guest | undefined
  const sh = async (script: string): Promise<string> => (await vm!.sh(script, {check: true, timeoutMs: 180_000})).stdout
  const iopmem = async (args: string[]): Promise<any> => {
    const r = await vm!.run(['node', 'bin/run.js', ...args, '--json'], {timeoutMs: 180_000})
    expect(r.code, `iopmem ${args.join(' ')}: ${r.stdout}${r.stderr}`).to.equal(0)
    return guestJson(r)
  }

  before(function () {
    resolveKernel()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-persist-'))
    ko = buildGuestModule(dir)
  })

  after(async () => {
    await vm?.shutdown()
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('boot 1: bind --persist to iopmem (blockdax, cache wc); boot 2: udev binds it again as recorded', async () => {
    const t0 = Date.now()
    const disk = path.join(dir, 'persist.img')
    vm = await bootGuest({topology: 'root', persistentDisk: disk, helpers: false})
    const bdf = vm.devices.ivshmem.bdf
    // The module installed for the running kernel, as a package (or DKMS) would: modprobe finds it.
    const koIn = await vm.putFile('iopmem.ko', fs.readFileSync(ko))
    await sh(`d=/lib/modules/$(uname -r)/extra && mkdir -p $d && cp ${koIn} $d/iopmem.ko && depmod $(uname -r)`)
    const b = await iopmem(['bind', bdf, '--as', 'blockdax', '--cache', 'wc', '--persist'])
    expect(b).to.deep.include({driver: 'iopmem', changed: true})
    expect(b.moduleLoaded).to.deep.equal({how: 'modprobe', ko: null})
    expect(b.persist).to.deep.include({file: `/etc/iopmem/bind.d/${bdf}.conf`, rule: '/etc/udev/rules.d/89-iopmem.rules', ruleAction: 'written'})
    expect(await sh(`grep -v '^#' /etc/iopmem/bind.d/${bdf}.conf`)).to.equal('driver=iopmem\nmode=blockdax\nbar=2\ncache=wc\n')
    expect(await sh('cat /etc/udev/rules.d/89-iopmem.rules')).to.match(/RUN\+="\/\S+\/node \/\S+\/bin\/run\.js persist apply \$kernel --kmsg"/)
    await vm.shutdown()
    const boot1 = Date.now() - t0

    // Boot 2: nothing of iopmem runs but what udev runs.
    const t1 = Date.now()
    vm = await bootGuest({topology: 'root', persistentDisk: disk, udevd: true, helpers: false, timeoutMs: 600_000})
    expect(vm.devices.ivshmem.bdf).to.equal(bdf)
    const dev = `/sys/bus/pci/devices/${bdf}`
    expect(await sh(`basename $(readlink ${dev}/driver)`)).to.equal('iopmem\n')
    expect(await sh(`cat ${dev}/driver_override ${dev}/iopmem/mode ${dev}/iopmem/bar ${dev}/iopmem/cache ${dev}/iopmem/node`)).to.equal('iopmem\nblockdax\n2\nwc\niopmem0\n')
    expect(await sh('test -d /sys/module/iopmem && echo loaded')).to.equal('loaded\n')
    // The rule's apply said what it did in the kernel log.
    expect(await sh('dmesg')).to.contain(`iopmem: persist apply ${bdf}: applied, bound to iopmem`)
    const list = await iopmem(['persist', 'list'])
    expect(list.records).to.have.length(1)
    expect(list.records[0]).to.deep.include({bdf, state: 'applied', driver: 'iopmem'})
    // Applying again (as a second add event would) changes nothing.
    expect(await iopmem(['persist', 'apply', bdf])).to.deep.include({outcome: 'already'})
    // Host side: bytes written through the recreated /dev/iopmem0 are in the ivshmem file (BAR2).
    const data = crypto.randomBytes(64 * 1024)
    const src = await vm.putFile('pattern.bin', data)
    await sh(`dd if=${src} of=/dev/iopmem0 bs=64k count=1 oflag=direct conv=notrunc status=none && sync`)
    expect((await vm.readIvshmem(0, data.length)).equals(data), 'the host sees the bytes in the ivshmem file').to.equal(true)
    await vm.shutdown()
    vm = undefined
    console.log(`      two boots: boot 1 (bind --persist) ${(boot1 / 1000).toFixed(0)} s, boot 2 (udev, checks) ${((Date.now() - t1) / 1000).toFixed(0)} s, ${((Date.now() - t0) / 1000).toFixed(0)} s in all`)
  })
})
