/**
 * `iopmem check` on fixture trees: the matrix of kernel configs, command
 * lines, IOMMU states and CPU vendors the guest cannot produce, the CMB
 * decode against QEMU's cmb_size_mb, and ACS as root and as a normal user.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {decodeCmb, kernelCmbOutcome, parseKernelConfig, parseMtrr, parseResizeMask, readCmdline, runCheck, iommuParams, type CheckItem, type CheckReport} from '../../src/lib/check/index.js'
import {Host} from '../../src/lib/sys/host.js'
import {BDF, GiB, MiB} from '../helpers/machines.js'
import {boot, checkMachine, modules, qemuCmbsz, RELEASE, setKernel, setNvmeRegisters} from '../helpers/check-machines.js'
import {type SysfsFixture, trackFixtures} from '../helpers/sysfs-fixture.js'
import {ACS_REDIRECT, setAcs, SKX, skylakeMachine} from '../helpers/topo-machines.js'

const item = (r: CheckReport, id: string, subject?: string): CheckItem => {
  const it = r.items.find((i) => i.id === id && (subject === undefined || i.subject === subject))
  if (!it) throw new Error(`no item ${id}${subject ? ` for ${subject}` : ''} in ${r.items.map((i) => i.id).join(', ')}`)
  return it
}

describe('check: gatherers on fixture trees', () => {
  const track = trackFixtures()
  const check = (fx: SysfsFixture, bdfs: string[] = [], uid = 0) => runCheck(fx.host({uid}), bdfs)

  describe('the P2P-ready q35 machine (switch, CMB NVMe, no IOMMU), as root', () => {
    let r: CheckReport
    before(() => {
      r = check(track(checkMachine()))
    })

    it('has schemaVersion 1, the release, and chooses the non-bridge functions with device memory', () => {
      expect(r.schemaVersion).to.equal(1)
      expect(r.machine).to.deep.equal({kernelRelease: RELEASE, root: true, live: false})
      expect(r.functions).to.deep.equal([BDF.vga, BDF.nic, BDF.nvmeRoot, BDF.ivshmem, BDF.nvmeCmb, BDF.nvmePeer])
    })

    it('nothing fails: ok, and the summary counts the items', () => {
      expect(r.items.filter((i) => i.verdict === 'fail')).to.deep.equal([])
      expect(r.ok).to.equal(true)
      const n = r.summary.pass + r.summary.warn + r.summary.fail + r.summary.unknown
      expect(n).to.equal(r.items.length)
    })

    it('kernel: config from /proc/config.gz, lockdown none', () => {
      expect(item(r, 'kernel.config.PCI_P2PDMA')).to.include({verdict: 'pass'})
      expect(item(r, 'kernel.config.PCI_P2PDMA').found).to.match(/=y in \/proc\/config.gz/)
      expect(item(r, 'kernel.config.IO_STRICT_DEVMEM').verdict).to.equal('pass')
      expect(item(r, 'kernel.lockdown')).to.include({verdict: 'pass', found: 'none'})
    })

    it('path: Intel CPU and q35 host bridge 8086:29c0 not whitelisted → warn; ACS read, no redirect', () => {
      expect(item(r, 'path.host-bridge').verdict).to.equal('warn')
      expect(item(r, 'path.host-bridge').found).to.match(/8086:29c0 not whitelisted/)
      const acs = item(r, 'path.acs')
      expect(acs.verdict).to.equal('pass')
      expect((acs.details!.bridges as Array<{bdf: string}>).map((b) => b.bdf)).to.deep.equal([BDF.rootPort, BDF.switchUp, BDF.switchDown0, BDF.switchDown1])
    })

    it('pairs: the CMB NVMe with its switch peer allowed, with root-bus functions refused → warn', () => {
      const p = item(r, 'path.pairs')
      expect(p.verdict).to.equal('warn')
      const pairs = p.details!.pairs as Array<{provider: string; client: string; p2p: string}>
      expect(pairs.every((x) => x.provider === BDF.nvmeCmb)).to.equal(true)
      expect(pairs.find((x) => x.client === BDF.nvmePeer)!.p2p).to.equal('yes')
      expect(pairs.find((x) => x.client === BDF.nvmeRoot)!.p2p).to.equal('no')
    })

    it('providers: p2pmem published, and the CMB decoded as QEMU cmb_size_mb=64 sets it', () => {
      expect(item(r, 'providers.p2pmem').verdict).to.equal('pass')
      const cmb = item(r, 'providers.cmb', BDF.nvmeCmb)
      expect(cmb.verdict).to.equal('pass')
      expect(cmb.found).to.match(/^64 MiB in BAR2 at \+0 B, SQS LISTS RDS WDS: RDS and WDS set: registered and published/)
      expect(cmb.details!.cmb).to.include({size: 64 * MiB, bar: 2, offset: 0, rds: true, wds: true, cqs: false, capCmbs: true})
      // The NVMe without a CMB is a client, not a failure.
      expect(item(r, 'providers.cmb', BDF.nvmePeer)).to.include({verdict: 'pass'})
      expect(item(r, 'providers.cmb', BDF.nvmePeer).found).to.match(/no CMB \(CMBSZ = 0\)/)
    })

    it('memory: BAR placement judged only on BARs of 2 MiB or more; low ones named with their MTRR', () => {
      const bars = item(r, 'memory.bars')
      const rows = bars.details!.bars as Array<{bdf: string; start: string; above4G: boolean; mtrr: string | null}>
      expect(rows.map((x) => x.bdf)).to.deep.equal([BDF.vga, BDF.ivshmem, BDF.nvmeCmb])
      expect(rows[2]).to.include({start: '0x0000000880000000', above4G: true})
      expect(rows[0]).to.include({above4G: false, mtrr: 'default type (no variable MTRR)'})
      expect(bars.verdict).to.equal('warn')
      expect(bars.found).to.match(/00:01.0 BAR0 16 MiB 32-bit, below 4 GiB, MTRR default/)
    })

    it('drivers: uio_pci_generic registered, vfio-pci registered; PAT from the CPU flags; hugepages none with THP madvise', () => {
      expect(item(r, 'drivers.uio_pci_generic').verdict).to.equal('pass')
      expect(item(r, 'memory.pat').verdict).to.equal('pass')
      expect(item(r, 'drivers.hugepages')).to.include({verdict: 'pass'})
    })
  })

  describe('kernel configs', () => {
    const cases: Array<{name: string; spec: Parameters<typeof setKernel>[1]; id: string; verdict: string; found?: RegExp}> = [
      {name: 'PCI_P2PDMA not set → fail', spec: {config: {where: 'proc', options: {PCI_P2PDMA: null}}}, id: 'kernel.config.PCI_P2PDMA', verdict: 'fail', found: /not set in \/proc\/config.gz/},
      {name: 'ZONE_DEVICE not set → fail', spec: {config: {where: 'proc', options: {ZONE_DEVICE: null}}}, id: 'kernel.config.ZONE_DEVICE', verdict: 'fail'},
      {name: 'DEV_DAX=m → pass', spec: {config: {where: 'proc', options: {DEV_DAX: 'm'}}}, id: 'kernel.config.DEV_DAX', verdict: 'pass', found: /=m/},
      {name: 'FS_DAX absent from the file → warn', spec: {config: {where: 'proc', options: {FS_DAX: null}}}, id: 'kernel.config.FS_DAX', verdict: 'warn'},
      {name: 'IO_STRICT_DEVMEM=y → warn', spec: {config: {where: 'proc', options: {IO_STRICT_DEVMEM: 'y'}}}, id: 'kernel.config.IO_STRICT_DEVMEM', verdict: 'warn'},
      {
        name: 'IO_STRICT_DEVMEM=y lifted by iomem=relaxed → pass',
        spec: {config: {where: 'proc', options: {IO_STRICT_DEVMEM: 'y'}}, cmdline: 'ro iomem=relaxed'},
        id: 'kernel.config.IO_STRICT_DEVMEM',
        verdict: 'pass',
        found: /lifted by iomem=relaxed/,
      },
      {name: 'only /boot/config-RELEASE', spec: {config: {where: 'boot'}}, id: 'kernel.config.PCI_P2PDMA', verdict: 'pass', found: new RegExp(`in /boot/config-${RELEASE}`)},
      {name: 'no config anywhere → unknown', spec: {config: {where: 'none'}}, id: 'kernel.config.PCI_P2PDMA', verdict: 'unknown', found: /not readable/},
      {name: 'lockdown integrity → fail', spec: {lockdown: 'none [integrity] confidentiality'}, id: 'kernel.lockdown', verdict: 'fail', found: /^integrity/},
      {name: 'no lockdown file, LSM built → unknown', spec: {lockdown: null}, id: 'kernel.lockdown', verdict: 'unknown'},
      {name: 'no lockdown file, LSM not built → pass', spec: {lockdown: null, config: {where: 'proc', options: {SECURITY_LOCKDOWN_LSM: null}}}, id: 'kernel.lockdown', verdict: 'pass', found: /not built/},
      {name: 'nopat → PAT fail', spec: {cmdline: 'ro nopat'}, id: 'memory.pat', verdict: 'fail'},
      {name: 'CPU without pat → PAT fail', spec: {cpuFlags: 'fpu vme'}, id: 'memory.pat', verdict: 'fail'},
      {name: 'vfio-pci registered, whatever modules.builtin says → pass', spec: {modulesBuiltin: []}, id: 'drivers.vfio-pci', verdict: 'pass'},
      {name: '2 MiB hugepages reserved → pass', spec: {meminfo: 'HugePages_Total:     512\nHugePages_Free:      500\nHugepagesize:       2048 kB\n'}, id: 'drivers.hugepages', verdict: 'pass', found: /500 of 512 × 2 MiB free/},
    ]
    for (const c of cases) {
      it(c.name, () => {
        const fx = track(checkMachine(c.spec))
        const it = item(check(fx), c.id)
        expect(it.verdict, it.found).to.equal(c.verdict)
        if (c.found) expect(it.found).to.match(c.found)
      })
    }

    it('a damaged /proc/config.gz falls back to /boot/config-RELEASE', () => {
      const fx = track(checkMachine({config: {where: 'boot'}}))
      fs.writeFileSync(path.join(fx.proc, 'config.gz'), 'not gzip')
      expect(item(check(fx), 'kernel.config.PCI_P2PDMA').found).to.match(/boot\/config-/)
    })

    it('a failing item makes ok false (exit 9 in the command)', () => {
      const fx = track(checkMachine({config: {where: 'proc', options: {PCI_P2PDMA: null}}}))
      const r = check(fx)
      expect(r.ok).to.equal(false)
      expect(r.summary.fail).to.equal(1)
    })

    it('vfio-pci: not registered and nowhere in /lib/modules → warn; uio_pci_generic as a module → pass', () => {
      const fx = track(checkMachine({modulesBuiltin: []}))
      fs.rmSync(path.join(fx.sys, 'bus/pci/drivers/vfio-pci'), {recursive: true})
      fs.rmSync(path.join(fx.sys, 'bus/pci/drivers/uio_pci_generic'), {recursive: true})
      const r = check(fx)
      expect(item(r, 'drivers.vfio-pci')).to.include({verdict: 'warn'})
      expect(item(r, 'drivers.uio_pci_generic')).to.include({verdict: 'pass', found: 'module available, not loaded'})
    })

    it('iopmem module: in modules.dep but unsigned with sig_enforce=Y → fail; signed → pass', () => {
      const fx = track(checkMachine({modulesDep: ['updates/iopmem.ko:']}))
      fs.mkdirSync(modules(fx, RELEASE, 'updates'), {recursive: true})
      fs.writeFileSync(modules(fx, RELEASE, 'updates/iopmem.ko'), 'ELF…vermagic=' + RELEASE + ' SMP\0')
      fx.writeSys('module/module/parameters/sig_enforce', 'Y\n')
      expect(item(check(fx), 'kernel.iopmem-module')).to.include({verdict: 'fail'})
      fs.appendFileSync(modules(fx, RELEASE, 'updates/iopmem.ko'), 'sig…~Module signature appended~\n')
      expect(item(check(fx), 'kernel.iopmem-module').found).to.match(/signed, not loaded/)
      fx.writeSys('module/iopmem/version', '0.1.0\n')
      expect(item(check(fx), 'kernel.iopmem-module')).to.include({verdict: 'pass', found: 'loaded, version 0.1.0'})
    })

    it('iopmem module: kernel.modules_disabled=1 and not loaded → fail (no load can work until reboot); loaded → still pass', () => {
      const fx = track(checkMachine({modulesDep: ['updates/iopmem.ko:']}))
      fs.mkdirSync(modules(fx, RELEASE, 'updates'), {recursive: true})
      fs.writeFileSync(modules(fx, RELEASE, 'updates/iopmem.ko'), 'ELF…vermagic=' + RELEASE + ' SMP\0')
      expect(item(check(fx), 'kernel.iopmem-module').verdict).to.equal('pass')
      fs.mkdirSync(path.join(fx.proc, 'sys/kernel'), {recursive: true})
      fs.writeFileSync(path.join(fx.proc, 'sys/kernel/modules_disabled'), '1\n')
      const it = item(check(fx), 'kernel.iopmem-module')
      expect(it).to.include({verdict: 'fail'})
      expect(it.found).to.match(/module loading is disabled until the next boot/)
      expect(it.details).to.include({modulesDisabled: true})
      fx.writeSys('module/iopmem/version', '0.1.0\n')
      expect(item(check(fx), 'kernel.iopmem-module')).to.include({verdict: 'pass', found: 'loaded, version 0.1.0'})
    })

    it('boot and modules roots: the live ones with the live /sys, the env\'s, else beside a fixture\'s sys', () => {
      expect(new Host().roots).to.include({boot: '/boot', modules: '/lib/modules'})
      expect(Host.fromEnv({IOPMEM_SYSFS_ROOT: '/x/sys', IOPMEM_BOOT_ROOT: '/b'}).roots).to.include({boot: '/b', modules: '/x/lib/modules'})
      expect(Host.fromEnv({IOPMEM_MODULES_ROOT: '/m'}).roots).to.include({boot: '/boot', modules: '/m'})
    })

    it('boot and modules are looked up beside the fixture, never in the host /boot', () => {
      const fx = track(checkMachine({config: {where: 'none'}}))
      expect(fx.host().roots.boot).to.equal(boot(fx))
      expect(fx.host().roots.modules).to.equal(modules(fx))
    })
  })

  describe('command lines', () => {
    it('splits words, keeps quotes, drops what follows -- (init\'s)', () => {
      const fx = track(checkMachine({cmdline: 'ro "dyndbg=file p2pdma.c +p" iommu=pt -- intel_iommu=on'}))
      const words = readCmdline(fx.host())
      expect(words).to.deep.equal(['ro', 'dyndbg=file p2pdma.c +p', 'iommu=pt'])
    })

    it('reads the IOMMU and ACS parameters, pci= options split at commas', () => {
      const p = iommuParams(['intel_iommu=on,sm_on', 'iommu=pt', 'pci=noats,disable_acs_redir=0000:02:00.0;0000:02:01.0', 'pci=config_acs=xx1x@0000:01:00.0', 'amd_iommu=off'])
      expect(p).to.deep.equal({
        intel_iommu: 'on,sm_on',
        iommu: 'pt',
        'pci=noats': '',
        'pci=disable_acs_redir': '0000:02:00.0;0000:02:01.0',
        'pci=config_acs': 'xx1x@0000:01:00.0',
        amd_iommu: 'off',
      })
    })

    it('iommu.present names the parameters given', () => {
      const fx = track(checkMachine({cmdline: 'ro intel_iommu=on iommu=pt'}))
      expect(item(check(fx), 'iommu.present').found).to.match(/command line: intel_iommu=on iommu=pt/)
    })
  })

  describe('IOMMU states', () => {
    it('no IOMMU: groups pass, vfio warns; unsafe no-IOMMU mode makes vfio pass', () => {
      const fx = track(checkMachine())
      const r = check(fx)
      expect(item(r, 'iommu.present').found).to.match(/^none/)
      expect(item(r, 'iommu.vfio').verdict).to.equal('warn')
      fx.writeSys('module/vfio/parameters/enable_unsafe_noiommu_mode', 'Y\n')
      expect(item(check(fx), 'iommu.vfio').verdict).to.equal('pass')
    })

    for (const [type, verdict] of [
      ['identity', 'pass'],
      ['DMA', 'pass'],
      ['DMA-FQ', 'pass'],
      ['unmanaged', 'pass'],
      ['blocked', 'fail'],
      [null, 'unknown'],
    ] as const) {
      it(`group type ${type ?? '(no type file)'} → ${verdict}`, () => {
        const fx = track(checkMachine({iommu: type}))
        const g = item(check(fx, [BDF.nvmeCmb, BDF.nvmePeer]), 'iommu.groups')
        expect(g.verdict).to.equal(verdict)
        expect(g.found).to.include(`5: ${type ?? '?'} (03:00.0)`)
        expect(g.details!.groups).to.have.length(2)
      })
    }

    it('a function without a group under an IOMMU → warn', () => {
      const fx = track(checkMachine({iommu: 'DMA'}))
      expect(item(check(fx, [BDF.ivshmem]), 'iommu.groups')).to.include({verdict: 'warn'})
    })

    it('vfio: a group shared with a function bound to another driver → warn, naming it', () => {
      const fx = track(checkMachine({iommu: 'DMA'}))
      // The NIC (e1000e) joins the CMB NVMe's group 5.
      fs.symlinkSync(path.relative(path.join(fx.sys, 'kernel/iommu_groups/5/devices'), fx.fnDir(BDF.nic)), path.join(fx.sys, 'kernel/iommu_groups/5/devices', BDF.nic))
      const v = item(check(fx, [BDF.nvmeCmb]), 'iommu.vfio')
      expect(v.verdict).to.equal('warn')
      expect(v.found).to.match(/0000:00:02.0 \(e1000e\)/)
    })
  })

  describe('CPU vendors and host bridges', () => {
    for (const [vendor, family, verdict] of [
      ['AuthenticAMD', 0x17, 'pass'],
      ['AuthenticAMD', 0x19, 'pass'],
      ['AuthenticAMD', 0x15, 'warn'],
      ['HygonGenuine', 0x18, 'warn'],
      ['GenuineIntel', 6, 'warn'],
    ] as const) {
      it(`${vendor} family 0x${family.toString(16)} on q35 → ${verdict}`, () => {
        const fx = track(checkMachine())
        fx.cpu(vendor, family)
        setKernel(fx)
        const r = check(fx)
        expect(item(r, 'path.host-bridge').verdict).to.equal(verdict)
        // AMD Zen+ lets the root-complex NVMe and the switch NVMe pair up: every pair allowed.
        expect(item(r, 'path.pairs').verdict).to.equal(verdict === 'pass' ? 'pass' : 'warn')
      })
    }

    it('Skylake-SP: every host bridge of the chosen functions whitelisted → pass', () => {
      const fx = track(skylakeMachine())
      setKernel(fx)
      expect(item(check(fx, [SKX.nvme18, SKX.nvme1b]), 'path.host-bridge').verdict).to.equal('pass')
    })
  })

  describe('ACS', () => {
    it('as a normal user (64 bytes of config space) → unknown, saying root is needed; the CMB registers too', () => {
      const fx = track(checkMachine({configSize: 64}))
      const r = check(fx, [], 1000)
      expect(r.machine.root).to.equal(false)
      expect(item(r, 'path.acs')).to.include({verdict: 'unknown'})
      expect(item(r, 'path.acs').found).to.match(/needs root/)
      expect(item(r, 'providers.cmb', BDF.nvmeCmb)).to.include({verdict: 'pass'})
      expect(item(r, 'providers.cmb', BDF.nvmeCmb).found).to.match(/not read: reading BAR0 registers needs root/)
      expect(item(r, 'providers.cmb', BDF.nvmePeer)).to.include({verdict: 'unknown'})
    })

    it('redirect on a switch downstream port, Intel q35 → fail with the parameter that fixes it', () => {
      const fx = track(checkMachine())
      setAcs(fx, BDF.switchDown0, ACS_REDIRECT)
      const a = item(check(fx, [BDF.nvmeCmb, BDF.nvmePeer]), 'path.acs')
      expect(a.verdict).to.equal('fail')
      expect(a.fix).to.equal('Boot with pci=disable_acs_redir=0000:02:00.0')
      const br = (a.details!.bridges as Array<{bdf: string; ctrl: string[]}>).find((b) => b.bdf === BDF.switchDown0)!
      expect(br.ctrl).to.deep.equal(['RR', 'CR'])
    })

    it('redirect on the root port above the switch (what the kernel sets under an IOMMU) is not on the switch pair\'s path → pass, and said', () => {
      const fx = track(checkMachine())
      setAcs(fx, BDF.rootPort, ACS_REDIRECT)
      const a = item(check(fx, [BDF.nvmeCmb, BDF.nvmePeer]), 'path.acs')
      expect(a.verdict).to.equal('pass')
      expect(a.found).to.match(/redirect on 00:1c.0, above the pairs' common bridges \(not consulted\)/)
      expect(a.details!.redirectOffPath).to.deep.equal([BDF.rootPort])
    })

    it('redirect with an AMD Zen CPU → warn (through the host bridge, allowed)', () => {
      const fx = track(checkMachine())
      fx.cpu('AuthenticAMD', 0x19)
      setKernel(fx)
      setAcs(fx, BDF.switchDown1, ACS_REDIRECT)
      expect(item(check(fx, [BDF.nvmeCmb, BDF.nvmePeer]), 'path.acs').verdict).to.equal('warn')
    })

    it('a disable_acs_redir that does not cover the port is said', () => {
      const fx = track(checkMachine({cmdline: 'ro pci=disable_acs_redir=0000:02:01.0'}))
      setAcs(fx, BDF.switchDown0, ACS_REDIRECT)
      expect(item(check(fx, [BDF.nvmeCmb, BDF.nvmePeer]), 'path.acs').found).to.match(/pci=disable_acs_redir=0000:02:01.0 is on the command line but does not cover them/)
    })
  })

  describe('NVMe CMB', () => {
    it('decodes QEMU cmb_size_mb=64: CMBSZ 0x0004021d, CMBLOC 0x2', () => {
      const d = decodeCmb(0x2, qemuCmbsz(64), 1 << 25)!
      expect(d).to.include({cmbsz: '0x0004021d', cmbloc: '0x00000002', unit: MiB, size: 64 * MiB, offset: 0, bar: 2, sqs: true, cqs: false, lists: true, rds: true, wds: true, capCmbs: true})
      expect(decodeCmb(0x2, 0)).to.equal(null)
    })

    it('size units: 4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB, 4 GiB, 64 GiB', () => {
      for (let szu = 0; szu <= 6; szu++) expect(decodeCmb(0, (1 << 12) | (szu << 8) | 0x18)!.unit).to.equal(4096 * 16 ** szu)
      expect(decodeCmb(0x3000 | 4, (2 << 12) | (5 << 8))!).to.include({size: 8 * GiB, offset: 12 * GiB, bar: 4})
    })

    it('the kernel publishes only with RDS and WDS, registers a 2 MiB-aligned CMB, trims it to the BAR', () => {
      const bar = {start: 0x880000000n, size: 64 * MiB}
      expect(kernelCmbOutcome(decodeCmb(2, qemuCmbsz(64))!, bar)).to.include({registered: true, published: true, size: 64 * MiB})
      expect(kernelCmbOutcome(decodeCmb(2, qemuCmbsz(64, 0x11))!, bar)).to.include({registered: true, published: false})
      expect(kernelCmbOutcome(decodeCmb(2, qemuCmbsz(64, 0x11))!, bar).why).to.match(/RDS missing/)
      expect(kernelCmbOutcome(decodeCmb(2, qemuCmbsz(128))!, bar)).to.include({size: 64 * MiB, published: true})
      expect(kernelCmbOutcome(decodeCmb(2, qemuCmbsz(64))!, {start: 0x880100000n, size: 64 * MiB})).to.include({registered: false})
      expect(kernelCmbOutcome(decodeCmb(2 | (65 << 12), qemuCmbsz(64))!, bar)).to.include({registered: false})
      expect(kernelCmbOutcome(decodeCmb(3, qemuCmbsz(64))!, undefined).why).to.match(/BAR3, which is not there/)
    })

    it('a CMB without RDS → warn, it cannot be a provider', () => {
      const fx = track(checkMachine())
      setNvmeRegisters(fx, BDF.nvmeCmb, {cmbloc: 2, cmbsz: qemuCmbsz(64, 0x15)})
      const c = item(check(fx, [BDF.nvmeCmb]), 'providers.cmb', BDF.nvmeCmb)
      expect(c.verdict).to.equal('warn')
      expect(c.found).to.match(/SQS LISTS WDS: registered as P2PDMA memory but not published: RDS missing/)
    })

    it('a CMB the kernel would publish but sysfs shows unpublished → warn', () => {
      const fx = track(checkMachine())
      fx.writeSys(path.relative(fx.sys, path.join(fx.fnDir(BDF.nvmeCmb), 'p2pmem/published')), '0\n')
      const c = item(check(fx, [BDF.nvmeCmb]), 'providers.cmb', BDF.nvmeCmb)
      expect(c.verdict).to.equal('warn')
      expect(c.found).to.match(/yet sysfs shows it unpublished/)
      expect(item(check(fx, [BDF.nvmeCmb]), 'providers.p2pmem').verdict).to.equal('warn')
    })
  })

  describe('parsers', () => {
    it('kernel config lines', () => {
      const c = parseKernelConfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_D=0x10\n# comment\n', 's')
      expect([...c.options]).to.deep.equal([
        ['A', 'y'],
        ['B', null],
        ['C', 'x y'],
        ['D', '0x10'],
      ])
    })

    it('/proc/mtrr', () => {
      const m = parseMtrr('reg00: base=0x000000000 (    0MB), size= 2048MB, count=1: write-back\nreg01: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable\nreg02: base=0x100000000 ( 4096MB), size=    4GB, count=1: write-back\n')
      expect(m.map((r) => [r.reg, r.base, r.size, r.type])).to.deep.equal([
        [0, 0n, 2048n * 1024n * 1024n, 'write-back'],
        [1, 0xc0000000n, 1024n * 1024n * 1024n, 'uncachable'],
        [2, 0x100000000n, 4n * 1024n ** 3n, 'write-back'],
      ])
    })

    it('resourceN_resize: bit n is 1 MiB << n', () => {
      expect(parseResizeMask('0000000000003ff0\n')).to.deep.equal([4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
      expect(parseResizeMask('zz')).to.deep.equal([])
    })

    it('Resizable BAR that can grow → warn with the write that grows it', () => {
      const fx = track(checkMachine())
      fx.writeSys(path.relative(fx.sys, path.join(fx.fnDir(BDF.nvmeCmb), 'resource2_resize')), '0000000000003ff0\n')
      const rb = item(check(fx, [BDF.nvmeCmb]), 'memory.rebar')
      expect(rb.verdict).to.equal('warn')
      expect(rb.found).to.equal('03:00.0 BAR2 64 MiB, can grow to 8 GiB')
      expect(rb.fix).to.equal('With the driver unbound: echo 13 > /sys/bus/pci/devices/0000:03:00.0/resource2_resize')
    })
  })
})

describe('topo --probe rendering', () => {
  it('puts the mismatches first and fits 80 columns', async () => {
    const {renderProbe} = await import('../../src/ui/render-probe.js')
    const {Chalk} = await import('chalk')
    const pair = (client: string, kernel: 'yes' | 'no', result: 'ok' | 'corrupt' | 'refused', agrees: boolean) => ({
      provider: BDF.nvmeCmb,
      client,
      device: '/dev/nvme0n1',
      kernel,
      read: {result, bytes: result === 'refused' ? 0 : 65536, ...(result === 'corrupt' ? {mismatchAt: 0} : {}), ...(result === 'refused' ? {errno: 'EREMOTEIO'} : {})},
      agrees,
    })
    const pairs = [pair(BDF.nvmeCmb, 'yes', 'ok', true), pair(BDF.nvmePeer, 'yes', 'corrupt', false), pair(BDF.nvmeRoot, 'no', 'refused', true)]
    const out = renderProbe({schemaVersion: 1, bytes: 65536, write: null, pairs, mismatches: [pairs[1]]}, new Chalk({level: 0}), 80)
    const lines = out.split('\n')
    for (const l of lines) expect([...l].length, l).to.be.at.most(80)
    const mis = lines.findIndex((l) => l.startsWith('MISMATCH: 1 pair'))
    expect(mis).to.be.greaterThan(0)
    expect(lines[mis + 1]).to.match(/04:00.0 → 03:00.0: kernel rules say yes, the read succeeded but byte 0/)
    expect(out).to.match(/00:03.0 \/dev\/nvme0n1 → 03:00.0 {2}kernel no {6}read refused \(EREMOTEIO\)/)
  })
})

describe('topo --probe --write rendering', () => {
  it('shows each direction, and a region that was not restored loudly', async () => {
    const {renderProbe} = await import('../../src/ui/render-probe.js')
    const {Chalk} = await import('chalk')
    const ok = {result: 'ok' as const, bytes: 65536}
    const good = {provider: BDF.nvmeCmb, client: BDF.nvmePeer, device: '/dev/nvme1n1', kernel: 'yes' as const, read: ok, write: {...ok, restored: true}, agrees: true}
    const lost = {...good, client: BDF.nvmeRoot, device: '/dev/nvme2n1', write: {result: 'corrupt' as const, bytes: 65536, mismatchAt: 7, restored: false}, agrees: true}
    const write = {bytes: 131072, disks: [{name: 'nvme1n1', node: '/dev/nvme1n1', offset: 0}, {name: 'nvme2n1', node: '/dev/nvme2n1', offset: 0}]}
    const out = renderProbe({schemaVersion: 1, bytes: 65536, write, pairs: [good, lost], mismatches: [lost]}, new Chalk({level: 0}), 80)
    const flat = out.replaceAll(/\s+/g, ' ')
    expect(flat).to.match(/and a write of 64 KiB from p2pmem to each disk/)
    expect(out).to.match(/04:00.0 \/dev\/nvme1n1 → 03:00.0 {2}kernel yes {5}read ok {2}write ok$/m)
    expect(out).to.match(/MISMATCH: 1 pair/)
    expect(flat).to.match(/the write succeeded but byte 7 differs/)
    expect(flat).to.match(/NOT RESTORED/)
    for (const l of out.split('\n')) expect([...l].length, l).to.be.at.most(80)
  })
})
