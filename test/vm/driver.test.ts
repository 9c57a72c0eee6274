/**
 * The iopmem kernel driver in a real kernel, on the ivshmem device whose BAR2
 * is a host file: every byte the guest writes through the driver is checked
 * on the host, at (physical address − BAR2 base) in that file.
 *
 * The module is built on the host against the guest kernel's external-module
 * build tree (../shared/vm/extmod-6.12-p2pdma.tar.xz, unpacked once into
 * ~/.cache/iopmem/extmod-RELEASE; IOPMEM_VM_KMOD_TREE names another tree) with
 * warnings as errors, handed to the guest with putFile and loaded there with
 * `iopmem driver load --ko`.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {bootGuest, diskPattern, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const MiB = 1024 * 1024
const PY = '/usr/bin/python3'

/** The extmod tree for the prebuilt guest kernel, unpacked into the cache on first use. */
function kmodTree(): string {
  if (process.env.IOPMEM_VM_KMOD_TREE) return process.env.IOPMEM_VM_KMOD_TREE
  const tarball = path.resolve(ROOT, '../shared/vm/extmod-6.12-p2pdma.tar.xz')
  const dir = path.join(os.homedir(), '.cache/iopmem/extmod-6.12-p2pdma')
  if (!fs.existsSync(path.join(dir, 'Module.symvers'))) {
    if (!fs.existsSync(tarball)) throw new Error(`No kernel build tree for the guest: set IOPMEM_VM_KMOD_TREE or provide ${tarball}`)
    fs.mkdirSync(dir, {recursive: true})
    execFileSync('tar', ['-xJf', tarball, '-C', dir])
  }
  return dir
}

describe('guest: the iopmem driver (p2pmem, blockdax, devdax) on ivshmem BAR2', function () {
  let vm: Guest
  let ko: string
  let bdf: string
  let bar2: bigint
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 120_000})
  const json = (r: RunResult): any => {
    try {
      return JSON.parse(r.stdout)
    } catch {
      throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
    }
  }
  const sh = async (script: string): Promise<string> => (await vm.sh(script, {check: true, timeoutMs: 120_000})).stdout
  const py = (code: string): Promise<string> => sh(`${PY} -c '${code}'`)
  const hostFind = async (needle: string | Buffer): Promise<number> =>
    (await vm.readIvshmem(0, vm.devices.ivshmem.size)).indexOf(typeof needle === 'string' ? Buffer.from(needle) : needle)
  const unbind = async () => expect((await iopmem(['unbind', bdf, '--yes'])).code).to.equal(0)

  before(async function () {
    this.timeout(600_000)
    resolveKernel()
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-kmod-'))
    try {
      // CI's build: the extmod tree, -Werror.
      execFileSync(process.execPath, [path.join(ROOT, 'bin/run.js'), 'driver', 'build', '--kdir', kmodTree(), '--out', out, '--werror'], {stdio: 'pipe'})
      vm = await bootGuest({topology: 'switch'})
      ko = await vm.putFile('iopmem.ko', fs.readFileSync(path.join(out, 'iopmem.ko')))
    } finally {
      fs.rmSync(out, {recursive: true, force: true})
    }
    bdf = vm.devices.ivshmem.bdf
    bar2 = BigInt((await sh(`cat /sys/bus/pci/devices/${bdf}/resource | sed -n 3p`)).split(' ')[0])
    console.log(`      guest ${vm.release}: ivshmem ${bdf}, BAR2 0x${bar2.toString(16)} (${vm.devices.ivshmem.size / MiB} MiB)`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  it('driver load loads the module; it claims no device; status reports version and parameters', async () => {
    const before = await iopmem(['driver', 'status', '--json'])
    expect(json(before).loaded).to.equal(false)
    const r = await iopmem(['driver', 'load', '--ko', ko, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    expect(json(r)).to.include({changed: true, how: 'insmod'})
    const s = json(await iopmem(['driver', 'status', '--json']))
    expect(s).to.include({loaded: true, version: '0.1.0'})
    expect(s.parameters).to.deep.equal({bar: '-1', cache: 'wb', mode: 'blockdax'})
    expect(s.devices).to.deep.equal([])
    expect(await sh(`readlink /sys/bus/pci/devices/${bdf}/driver || echo none`)).to.equal('none\n')
    expect(json(await iopmem(['driver', 'load', '--ko', ko, '--json']))).to.include({changed: false, how: 'already'})
  })

  it('p2pmem: bind makes BAR2 a published p2pmem provider; bytes written through p2pmem/allocate reach the BAR; unbind refused while mapped', async () => {
    const r = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'p2pmem', '--bar', '2', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    expect(json(r).iopmem).to.include({mode: 'p2pmem', bar: 2, node: 'p2pmem', size: vm.devices.ivshmem.size})
    expect(await sh(`cat /sys/bus/pci/devices/${bdf}/p2pmem/size /sys/bus/pci/devices/${bdf}/p2pmem/published`)).to.equal(`${vm.devices.ivshmem.size}\n1\n`)
    const p2p = `/sys/bus/pci/devices/${bdf}/p2pmem/allocate`
    await py(`import mmap,os; m=mmap.mmap(os.open("${p2p}",os.O_RDWR),65536); m[100:121]=b"IOPMEM-P2PMEM-BYTES-1"`)
    expect(await hostFind('IOPMEM-P2PMEM-BYTES-1')).to.be.at.least(0)
    // A process holding an allocation: the toolkit refuses to unbind.
    await sh(`${PY} -c 'import mmap,os,time; m=mmap.mmap(os.open("${p2p}",os.O_RDWR),65536); m[0]=1; time.sleep(60)' > /dev/null 2>&1 &
      echo $! > /tmp/p2p-holder.pid; sleep 6`)
    const refused = await iopmem(['unbind', bdf, '--yes', '--json'])
    expect(refused.code).to.equal(5)
    expect(json(refused).error.message).to.match(/in use/)
    await sh('kill $(cat /tmp/p2p-holder.pid); sleep 2')
    await unbind()
    expect(await sh(`ls /sys/bus/pci/devices/${bdf}/p2pmem 2>/dev/null | wc -l`)).to.equal('0\n')
  })

  it('blockdax: /dev/iopmem0 under the PCI function; ext4 mounts -o dax; file blocks and DAX mmap writes land in BAR2 at their physical offsets', async () => {
    const r = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'blockdax', '--bar', '2', '--cache', 'wb', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    expect(json(r).iopmem).to.include({mode: 'blockdax', node: 'iopmem0', path: '/dev/iopmem0', cache: 'wb'})
    expect(await sh('readlink -f /sys/block/iopmem0; cat /sys/block/iopmem0/queue/dax')).to.equal(`/sys/devices/pci0000:00/${bdf}/block/iopmem0\n1\n`)
    const st = json(await iopmem(['driver', 'status', '--json']))
    expect(st.devices).to.have.length(1)
    expect(st.devices[0]).to.include({bdf, mode: 'blockdax', bar: 2, path: '/dev/iopmem0'})
    await sh('mkfs.ext4 -q -F -b 4096 /dev/iopmem0 && mkdir -p /tmp/dax && mount -o dax /dev/iopmem0 /tmp/dax')
    expect(await sh('grep " /tmp/dax " /proc/mounts')).to.match(/dax=always/)
    // STATX_ATTR_DAX (0x00200000) on the file
    const text = 'IOPMEM-BLOCKDAX-FILE-'.repeat(400)
    await py(`open("/tmp/dax/f","w").write("${text}"); import os; os.sync()`)
    const attrs = /stat\.attributes = (0x[0-9a-f]+)/.exec(await sh(`xfs_io -c "statx -r" /tmp/dax/f`))
    expect(Number(attrs![1]) & 0x0020_0000, 'STATX_ATTR_DAX').to.not.equal(0)
    const frag = await sh('filefrag -v /tmp/dax/f')
    const m = /^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\./m.exec(frag)
    expect(m, frag).to.not.equal(null)
    const phys = bar2 + BigInt(m![1]) * 4096n // what `locate` reports: BAR2 base + block offset
    const off = Number(phys - bar2)
    expect((await vm.readIvshmem(off, text.length)).toString()).to.equal(text)
    // DAX mmap: CPU stores go straight to the BAR
    await py(`import mmap,os; m=mmap.mmap(os.open("/tmp/dax/f",os.O_RDWR),8192); m[4096:4116]=b"IOPMEM-DAX-MMAP-WRIT"`)
    expect((await vm.readIvshmem(off + 4096, 20)).toString()).to.equal('IOPMEM-DAX-MMAP-WRIT')
    // The seeds' P2P transfer: an NVMe O_DIRECT read into an mmap of the DAX file lands in the BAR.
    const nvme = vm.devices.cmb.namespace
    await py(
      `import mmap,os; open("/tmp/dax/g","wb").write(bytes(65536)); os.sync(); ` +
        `m=mmap.mmap(os.open("/tmp/dax/g",os.O_RDWR),65536); d=os.open("${nvme}",os.O_RDONLY|os.O_DIRECT); ` +
        `assert os.preadv(d,[m],0)==65536`,
    )
    const gm = /^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\./m.exec(await sh('filefrag -v /tmp/dax/g'))
    expect((await vm.readIvshmem(Number(gm![1]) * 4096, 65536)).equals(diskPattern('cmb', 0, 65536))).to.equal(true)
  })

  it('unbind is refused while /dev/iopmem0 is mounted; after umount it tears down and the device binds again', async () => {
    const refused = await iopmem(['unbind', bdf, '--yes', '--json'])
    expect(refused.code).to.equal(5)
    expect(json(refused).error.message).to.match(/iopmem0 is mounted on \/tmp\/dax/)
    await sh('umount /tmp/dax')
    await unbind()
    expect(await sh('ls /dev/iopmem* 2>/dev/null | wc -l')).to.equal('0\n')
    expect((await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'blockdax'])).code).to.equal(0)
    await sh('mount -o dax /dev/iopmem0 /tmp/dax && grep -c IOPMEM-BLOCKDAX-FILE /tmp/dax/f && umount /tmp/dax')
    await unbind()
  })

  it('blockdax survives a forced unbind under a mounted, mmapped DAX file: the fs shuts down, umount is clean, no oops', async () => {
    expect((await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'blockdax'])).code).to.equal(0)
    await sh('mount -o dax /dev/iopmem0 /tmp/dax')
    await sh(`${PY} -c 'import mmap,os,time; m=mmap.mmap(os.open("/tmp/dax/f",os.O_RDWR),8192); m[0:4]=b"xyzw"; time.sleep(8)' > /dev/null 2>&1 &
      sleep 4; echo ${bdf} > /sys/bus/pci/drivers/iopmem/unbind; wait; umount /tmp/dax`)
    expect(await sh('dmesg | grep -c -E "Oops|BUG:|WARNING:|Call Trace" || true')).to.equal('0\n')
    expect(await sh('ls /dev/iopmem* 2>/dev/null | wc -l')).to.equal('0\n')
    await sh(`echo > /sys/bus/pci/devices/${bdf}/driver_override`)
  })

  it('blockdax --cache wc: a plain (non-DAX) block device over a write-combining mapping; O_DIRECT writes reach the BAR', async () => {
    const r = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'blockdax', '--cache', 'wc', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    expect(await sh('cat /sys/block/iopmem0/queue/dax; grep -c "write-combining" /sys/kernel/debug/x86/pat_memtype_list')).to.match(/^0\n[1-9]/)
    await sh('printf IOPMEM-WC-BLOCK-WRITE | dd of=/dev/iopmem0 bs=4096 seek=256 conv=sync oflag=direct 2>/dev/null')
    expect((await vm.readIvshmem(MiB, 21)).toString()).to.equal('IOPMEM-WC-BLOCK-WRITE')
    expect((await vm.sh('mount -o dax /dev/iopmem0 /tmp/dax')).code).to.not.equal(0)
    await unbind()
  })

  it('devdax: /dev/dax64.0 over BAR2; a mapping of it reaches the BAR', async () => {
    const r = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'devdax', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const d = json(r).iopmem
    expect(d).to.include({mode: 'devdax', bar: 2})
    expect(d.node).to.match(/^dax\d+\.\d+$/)
    await py(`import mmap,os; m=mmap.mmap(os.open("/dev/${d.node}",os.O_RDWR),2<<20); m[(1<<20)+7:(1<<20)+7+17]=b"IOPMEM-DEVDAX-OK!"`)
    expect((await vm.readIvshmem(MiB + 7, 17)).toString()).to.equal('IOPMEM-DEVDAX-OK!')
    // A process mapping it: the toolkit refuses to unbind.
    await sh(`${PY} -c 'import mmap,os,time; m=mmap.mmap(os.open("/dev/${d.node}",os.O_RDWR),2<<20); m[0]=1; time.sleep(60)' > /dev/null 2>&1 &
      echo $! > /tmp/dax-holder.pid; sleep 6`)
    const refused = await iopmem(['unbind', bdf, '--yes', '--json'])
    expect(refused.code).to.equal(5)
    expect(json(refused).error.message).to.match(new RegExp(`maps /dev/${d.node}|has /dev/${d.node} open`))
    await sh('kill $(cat /tmp/dax-holder.pid); sleep 2')
    await unbind()
    expect(await sh('ls /dev/dax* 2>/dev/null | wc -l')).to.equal('0\n')
  })

  it('a BAR that cannot serve is refused with the reason, by the toolkit and by the driver itself', async () => {
    const small = await iopmem(['bind', bdf, '--driver', 'iopmem', '--bar', '0', '--json'])
    expect(small.code).to.equal(7)
    expect(json(small).error.message).to.match(/BAR 0 .* too small/)
    const none = await iopmem(['bind', bdf, '--driver', 'iopmem', '--bar', '3', '--json'])
    expect(json(none).error.message).to.match(/BAR 3 .* not implemented/)
    const cache = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'devdax', '--cache', 'uc', '--json'])
    expect(cache.code).to.equal(2)
    // The driver's own checks, past the toolkit.
    const D = '/sys/bus/pci/drivers/iopmem'
    const out = await vm.sh(`echo "${bdf} mode=blockdax bar=0" > ${D}/config; echo iopmem > /sys/bus/pci/devices/${bdf}/driver_override
      echo ${bdf} > ${D}/bind; echo "rc=$?"; cat ${D}/last_error; echo "${bdf}" > ${D}/config; echo > /sys/bus/pci/devices/${bdf}/driver_override`)
    expect(out.stdout).to.match(/rc=1\n.*BAR 0 is too small: 256 bytes, need at least 2 MiB/)
    expect(await sh(`readlink /sys/bus/pci/devices/${bdf}/driver || echo none`)).to.equal('none\n')
  })

  it('driver unload refuses while a device is bound, then unloads', async () => {
    const b = await iopmem(['bind', bdf, '--driver', 'iopmem', '--mode', 'p2pmem'])
    expect(b.code, b.stderr).to.equal(0)
    const refused = await iopmem(['driver', 'unload', '--json'])
    expect(refused.code).to.equal(5)
    expect(json(refused).error.message).to.include(bdf)
    await unbind()
    expect(json(await iopmem(['driver', 'unload', '--json']))).to.include({changed: true})
    expect(json(await iopmem(['driver', 'status', '--json'])).loaded).to.equal(false)
  })
})
