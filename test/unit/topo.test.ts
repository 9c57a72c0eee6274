import {expect} from 'chai'

import {PciScanner} from '../../src/lib/pci/sysfs.js'
import {PCI_ACS_EC, PCI_ACS_RR} from '../../src/lib/pci/config-space.js'
import {analyzePair, analyzeTopology, kernelAcsList, PATH_CLASS_LEGEND, readCpuInfo, type PathClass} from '../../src/lib/pci/topo.js'
import {SysfsFixture} from '../helpers/sysfs-fixture.js'
import {ACS_REDIRECT, E5, SKX, TOPO, setAcs, skylakeMachine, topoMachine, xeonE5Machine} from '../helpers/topo-machines.js'

const scan = (fx: SysfsFixture) => new PciScanner(fx.host(), {names: false, storage: false})

const Q35_REFUSE = (client: string, provider: string, drv = 'nvme') =>
  `kernel: ${drv} ${client}: cannot be used for peer-to-peer DMA as the client and provider (${provider}) do not share an upstream bridge or whitelisted host bridge`

describe('topo: P2PDMA route rules (calc_map_type_and_dist)', () => {
  const fixtures: SysfsFixture[] = []
  const track = (fx: SysfsFixture) => {
    fixtures.push(fx)
    return fx
  }

  after(() => {
    for (const fx of fixtures) fx.cleanup()
  })

  describe('standard q35 machine (host bridge 8086:29c0, Intel CPU), config readable', () => {
    let fx: SysfsFixture
    before(() => {
      fx = track(topoMachine())
    })

    it('two endpoints under two downstream ports of one switch: dist 4, bus-addr, PIX', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmePeer)
      expect(p).to.include({provider: TOPO.nvmeCmb, client: TOPO.nvmePeer, distance: 4, mapType: 'bus-addr', p2p: 'yes', pathClass: 'PIX'})
      expect(p.commonUpstream).to.equal(TOPO.switchUp)
      expect(p.acsRedirect).to.deep.equal([])
      expect(p.acsUnknown).to.deep.equal([])
      expect(p.hint).to.equal(undefined)
    })

    it('the same function: X, dist 0, bus-addr', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeCmb)
      expect(p).to.include({pathClass: 'X', distance: 0, mapType: 'bus-addr', p2p: 'yes', commonUpstream: TOPO.nvmeCmb})
    })

    it('two functions of one device below a bridge: dist 2, PIX, common bridge is the port', () => {
      const p = analyzePair(scan(fx), TOPO.nvmePeer, TOPO.nvmePeerFn1)
      expect(p).to.include({pathClass: 'PIX', distance: 2, mapType: 'bus-addr', p2p: 'yes', commonUpstream: TOPO.switchDown1})
    })

    it('accepts short BDFs and reports them canonically', () => {
      const p = analyzePair(scan(fx), '03:00.0', '04:00.0')
      expect(p.provider).to.equal(TOPO.nvmeCmb)
      expect(p.client).to.equal(TOPO.nvmePeer)
    })

    it('an endpoint below a cascaded switch: PXB (two switches, no host bridge)', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeDeep)
      expect(p).to.include({pathClass: 'PXB', distance: 6, mapType: 'bus-addr', p2p: 'yes', commonUpstream: TOPO.switchUp})
    })

    it('root-bus NVMe vs switch NVMe with an Intel CPU: not-supported with the kernel warning', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeRoot)
      expect(p).to.include({pathClass: 'PHB', mapType: 'not-supported', p2p: 'no', commonUpstream: null})
      // 4 functions from 03:00.0 up to the root bus, plus 1 for 00:03.0.
      expect(p.distance).to.equal(5)
      expect(p.reasons).to.include(Q35_REFUSE(TOPO.nvmeRoot, TOPO.nvmeCmb))
      expect(p.reasons.join('\n')).to.include('8086:29c0').and.to.include('not on the kernel')
      // ACS is not consulted on the host bridge route.
      expect(p.acsRedirect).to.deep.equal([])
      expect(p.acsUnknown).to.deep.equal([])
      expect(p.hint).to.equal(undefined)
    })

    it('two functions of one device directly on the root bus share no upstream bridge: PHB, dist 2, through the host bridge', () => {
      const p = analyzePair(scan(fx), TOPO.ivshmem, TOPO.ivshmemFn1)
      expect(p).to.include({pathClass: 'PHB', distance: 2, commonUpstream: null, mapType: 'not-supported', p2p: 'no'})
      expect(p.reasons).to.include(Q35_REFUSE(TOPO.ivshmemFn1, TOPO.ivshmem, 'pci'))
      expect(p.reasons.join('\n')).to.include('both sit directly on a root bus')
    })

    it('siblings on the root bus (no bridge between them) are PHB too', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeRoot, TOPO.ivshmem)
      expect(p).to.include({pathClass: 'PHB', distance: 2, commonUpstream: null, mapType: 'not-supported'})
    })

    it('throws E_NO_DEVICE for a function that is not there', () => {
      expect(() => analyzePair(scan(fx), TOPO.nvmeCmb, '0000:09:00.0')).to.throw().with.property('code', 'E_NO_DEVICE')
    })
  })

  describe('CPU rule (cpu_supports_p2pdma)', () => {
    it('AMD family 0x17 allows the root-bus NVMe / switch NVMe pair through the host bridge', () => {
      const fx = track(topoMachine())
      fx.cpu('AuthenticAMD', 0x17)
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeRoot)
      expect(p).to.include({mapType: 'thru-host-bridge', p2p: 'yes', distance: 5, pathClass: 'PHB'})
      expect(p.reasons.join('\n')).to.include('AMD Zen')
      expect(p.reasons.some((r) => r.startsWith('kernel:'))).to.equal(false)
    })

    it('AMD family 0x16 is refused', () => {
      const fx = track(topoMachine())
      fx.cpu('AuthenticAMD', 0x16)
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeRoot)
      expect(p).to.include({mapType: 'not-supported', p2p: 'no'})
      expect(p.reasons).to.include(Q35_REFUSE(TOPO.nvmeRoot, TOPO.nvmeCmb))
    })

    it('readCpuInfo reads vendor and family of the first CPU; Hygon and non-x86 do not qualify', () => {
      const fx = track(new SysfsFixture())
      expect(readCpuInfo(fx.host())).to.deep.equal({vendor: 'GenuineIntel', family: 6, p2pdmaCapable: false})
      fx.cpu('AuthenticAMD', 0x19)
      expect(readCpuInfo(fx.host())).to.deep.equal({vendor: 'AuthenticAMD', family: 0x19, p2pdmaCapable: true})
      fx.cpu('HygonGenuine', 0x18)
      expect(readCpuInfo(fx.host()).p2pdmaCapable).to.equal(false)
    })
  })

  describe('host bridge whitelist (pci_host_bridge_dev / __host_bridge_whitelist)', () => {
    let fx: SysfsFixture
    before(() => {
      fx = track(skylakeMachine())
    })

    it('a Skylake-E root port (8086:2030) at devfn 00.0 whitelists its host bridge: two root ports → thru-host-bridge', () => {
      const p = analyzePair(scan(fx), SKX.nvme18, SKX.nvme1b)
      expect(p).to.include({pathClass: 'PHB', mapType: 'thru-host-bridge', p2p: 'yes', commonUpstream: null})
      // 18:00.0 → 17:00.0 (2) + 1b:00.0 → 1a:00.0 → 19:00.0 → 17:01.0 (4)
      expect(p.distance).to.equal(6)
      expect(p.reasons.join('\n')).to.include('whitelist')
    })

    it('a root port that is the first device on its root bus counts even when not at 00.0 (NODE across host bridges)', () => {
      const p = analyzePair(scan(fx), SKX.nvme18, SKX.nvme3b)
      expect(p).to.include({pathClass: 'NODE', mapType: 'thru-host-bridge', p2p: 'yes'})
      const t = analyzeTopology(scan(fx), [SKX.nvme18, SKX.nvme3b])
      const hb = t.hostBridges.find((h) => h.name === 'pci0000:3a')
      expect(hb).to.include({rootDevice: SKX.rp3a, whitelisted: true, requiresSameHostBridge: false, deviceId: '0x2032'})
    })

    it('a first device that is neither 00.0 nor a root port hides a whitelisted root port behind it', () => {
      const p = analyzePair(scan(fx), SKX.nvme18, SKX.nvme5e)
      expect(p).to.include({pathClass: 'NODE', mapType: 'not-supported', p2p: 'no'})
      expect(p.reasons).to.include(Q35_REFUSE(SKX.nvme5e, SKX.nvme18))
      expect(p.reasons.join('\n')).to.include('pci0000:5d has neither a devfn 00.0 device nor a PCIe Root Port')
      const t = analyzeTopology(scan(fx), [SKX.nvme5e])
      expect(t.hostBridges[0]).to.include({name: 'pci0000:5d', rootDevice: null, whitelisted: false, firstDevice: SKX.vtd5d})
    })

    it('without root the root-port check cannot be made: unknown only for pairs that need that host bridge', () => {
      const fx64 = track(skylakeMachine({configSize: 64}))
      const p = analyzePair(scan(fx64), SKX.nvme18, SKX.nvme3b)
      expect(p).to.include({mapType: 'unknown', p2p: 'unknown'})
      expect(p.reasons.join('\n')).to.include('could not be read')
      // 17:00.0 is at devfn 00.0: no port type needed.
      const q = analyzePair(scan(fx64), SKX.nvme18, SKX.nvme1b)
      expect(q).to.include({mapType: 'thru-host-bridge', p2p: 'yes'})
      const r = analyzePair(scan(fx64), SKX.nvme18, SKX.nvme5e)
      expect(r).to.include({mapType: 'not-supported', p2p: 'no'})
    })

    it('REQ_SAME_HOST_BRIDGE (Xeon E5 8086:3c00): allowed behind one host bridge, refused across two (SYS across NUMA nodes)', () => {
      const e5 = track(xeonE5Machine())
      const same = analyzePair(scan(e5), E5.nvme02, E5.nvme03)
      expect(same).to.include({pathClass: 'PHB', mapType: 'thru-host-bridge', p2p: 'yes', distance: 4})
      const cross = analyzePair(scan(e5), E5.nvme02, E5.nvme81)
      expect(cross).to.include({pathClass: 'SYS', mapType: 'not-supported', p2p: 'no', distance: 4})
      expect(cross.reasons.join('\n')).to.include('REQ_SAME_HOST_BRIDGE')
      expect(cross.reasons).to.include(Q35_REFUSE(E5.nvme81, E5.nvme02))
      const t = analyzeTopology(scan(e5), [E5.nvme02, E5.nvme81])
      expect(t.hostBridges.map((h) => [h.name, h.whitelisted, h.requiresSameHostBridge])).to.deep.equal([
        ['pci0000:00', true, true],
        ['pci0000:80', true, true],
      ])
      expect(t.notes.join('\n')).to.include('REQ_SAME_HOST_BRIDGE')
    })

    it('the same cross-socket pair on an AMD Zen CPU is allowed whatever the whitelist says', () => {
      const e5 = track(xeonE5Machine())
      e5.cpu('AuthenticAMD', 0x19)
      expect(analyzePair(scan(e5), E5.nvme02, E5.nvme81)).to.include({pathClass: 'SYS', mapType: 'thru-host-bridge', p2p: 'yes'})
    })
  })

  describe('ACS redirect (pci_bridge_has_acs_redir)', () => {
    it('RR/CR on both downstream ports: thru-host-bridge, refused on q35, with the disable_acs_redir hint in kernel order', () => {
      const fx = track(topoMachine())
      setAcs(fx, TOPO.switchDown0, ACS_REDIRECT)
      setAcs(fx, TOPO.switchDown1, PCI_ACS_RR)
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmePeer)
      expect(p).to.include({mapType: 'not-supported', p2p: 'no', distance: 4, pathClass: 'PIX', commonUpstream: TOPO.switchUp})
      expect(p.acsRedirect).to.deep.equal([TOPO.switchDown0, TOPO.switchDown1])
      expect(p.hint).to.equal('add the kernel parameter pci=disable_acs_redir=0000:02:00.0;0000:02:01.0')
      expect(p.reasons).to.include(`kernel: nvme ${TOPO.nvmePeer}: ACS redirect is set between the client and provider (${TOPO.nvmeCmb})`)
      expect(p.reasons).to.include(
        `kernel: nvme ${TOPO.nvmePeer}: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:02:00.0;0000:02:01.0`,
      )
      // warn = acs_redirects: the whitelist miss is logged on this route.
      expect(p.reasons).to.include('kernel: pci 0000:00:00.0: Host bridge not in P2PDMA whitelist: 8086:29c0')
      expect(p.reasons).to.include(Q35_REFUSE(TOPO.nvmePeer, TOPO.nvmeCmb))
    })

    it('the provider side is checked up to and including the common bridge, the client side below it', () => {
      const fx = track(topoMachine())
      setAcs(fx, TOPO.switchDown0, PCI_ACS_RR)
      setAcs(fx, TOPO.switchUp, PCI_ACS_EC)
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmePeer)
      expect(p.acsRedirect).to.deep.equal([TOPO.switchDown0, TOPO.switchUp])
      expect(p.hint).to.equal('add the kernel parameter pci=disable_acs_redir=0000:02:00.0;0000:01:00.0')
      // Seen from the other side the client path stops below 01:00.0, but the provider path reaches it.
      const q = analyzePair(scan(fx), TOPO.nvmePeer, TOPO.nvmeCmb)
      expect(q.acsRedirect).to.deep.equal([TOPO.switchUp, TOPO.switchDown0])
    })

    it('the ACS check starts at the provider itself: a function with RR set goes through the host bridge even to itself', () => {
      const fx = track(topoMachine())
      setAcs(fx, TOPO.nvmePeer, PCI_ACS_RR)
      const p = analyzePair(scan(fx), TOPO.nvmePeer, TOPO.nvmePeer)
      expect(p).to.include({pathClass: 'X', distance: 0, mapType: 'not-supported', p2p: 'no'})
      expect(p.acsRedirect).to.deep.equal([TOPO.nvmePeer])
      fx.cpu('AuthenticAMD', 0x17)
      expect(analyzePair(scan(fx), TOPO.nvmePeer, TOPO.nvmePeer)).to.include({mapType: 'thru-host-bridge', p2p: 'yes'})
    })

    it('ACS redirect below a whitelisted host bridge: thru-host-bridge, allowed', () => {
      const fx = track(skylakeMachine())
      setAcs(fx, SKX.swDown0, ACS_REDIRECT)
      setAcs(fx, SKX.swDown1, ACS_REDIRECT)
      const p = analyzePair(scan(fx), SKX.nvme1b, SKX.nvme1c)
      expect(p).to.include({mapType: 'thru-host-bridge', p2p: 'yes', distance: 4, pathClass: 'PIX', commonUpstream: SKX.swUp})
      expect(p.hint).to.equal(`add the kernel parameter pci=disable_acs_redir=${SKX.swDown0};${SKX.swDown1}`)
      expect(p.reasons.some((r) => r.includes('Host bridge not in P2PDMA whitelist'))).to.equal(false)
    })

    it('the kernel prints the ACS list from a 128-byte buffer', () => {
      const bdfs = Array.from({length: 11}, (_, i) => `0000:${(i + 1).toString(16).padStart(2, '0')}:00.0`)
      expect(kernelAcsList(bdfs.slice(0, 2))).to.equal('0000:01:00.0;0000:02:00.0')
      expect(kernelAcsList(bdfs.slice(0, 9))).to.have.length(9 * 13 - 1)
      const cut = kernelAcsList(bdfs)
      expect(cut).to.have.length(127)
      expect(cut.endsWith(';0000:0a:00')).to.equal(true)
    })
  })

  describe('ACS unreadable (non-root: 64 bytes of config space)', () => {
    let fx: SysfsFixture
    before(() => {
      fx = track(topoMachine({configSize: 64}))
    })

    it('a pair whose verdict depends on ACS is unknown, with the reason', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmePeer)
      expect(p).to.include({mapType: 'unknown', p2p: 'unknown', distance: 4, pathClass: 'PIX'})
      expect(p.acsUnknown).to.deep.equal([TOPO.nvmeCmb, TOPO.switchDown0, TOPO.switchUp, TOPO.nvmePeer, TOPO.switchDown1])
      expect(p.reasons.join('\n')).to.include('run as root to check ACS')
    })

    it('a pair that goes through the host bridge anyway does not depend on ACS', () => {
      const p = analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeRoot)
      expect(p).to.include({mapType: 'not-supported', p2p: 'no'})
      expect(p.acsUnknown).to.deep.equal([])
    })

    it('on an AMD Zen CPU either route is allowed: p2p yes, map type unknown', () => {
      const amd = track(topoMachine({configSize: 64}))
      amd.cpu('AuthenticAMD', 0x17)
      expect(analyzePair(scan(amd), TOPO.nvmeCmb, TOPO.nvmePeer)).to.include({mapType: 'unknown', p2p: 'yes'})
    })

    it('switches are still recognised without port types (PIX / PXB)', () => {
      expect(analyzePair(scan(fx), TOPO.nvmeCmb, TOPO.nvmeDeep).pathClass).to.equal('PXB')
      expect(analyzePair(scan(fx), TOPO.nvmePeer, TOPO.nvmePeerFn1).pathClass).to.equal('PIX')
    })

    it('analyzeTopology notes that ACS needs root', () => {
      const t = analyzeTopology(scan(fx), [TOPO.nvmeCmb, TOPO.nvmePeer])
      expect(t.notes.join('\n')).to.include('limited to 64 bytes for non-root').and.to.include('run as root to check ACS')
    })
  })

  describe('analyzeTopology', () => {
    it('analyses every unordered pair once, memoises reads and explains the rules it applied', () => {
      const fx = track(topoMachine())
      const scanner = scan(fx)
      const reads = new Map<string, number>()
      const orig = scanner.read.bind(scanner)
      scanner.read = (bdf: string) => {
        reads.set(bdf, (reads.get(bdf) ?? 0) + 1)
        return orig(bdf)
      }
      const bdfs = [TOPO.nvmeCmb, TOPO.nvmePeer, TOPO.nvmeRoot, '00:04.0', TOPO.nvmeCmb]
      const t = analyzeTopology(scanner, bdfs)
      expect(t.functions).to.deep.equal([TOPO.nvmeCmb, TOPO.nvmePeer, TOPO.nvmeRoot, TOPO.ivshmem])
      expect(t.pairs).to.have.length(6)
      expect(t.pairs.map((p) => `${p.provider}>${p.client}`)).to.include(`${TOPO.nvmeCmb}>${TOPO.nvmePeer}`)
      expect(t.pairs.every((p) => p.provider !== p.client)).to.equal(true)
      expect([...reads.values()].every((n) => n === 1)).to.equal(true)
      expect(t.cpu).to.include({vendor: 'GenuineIntel', p2pdmaCapable: false})
      expect(t.hostBridges).to.have.length(1)
      expect(t.hostBridges[0]).to.include({name: 'pci0000:00', rootDevice: '0000:00:00.0', vendorId: '0x8086', deviceId: '0x29c0', whitelisted: false})
      const notes = t.notes.join('\n')
      expect(notes).to.include('not AMD Zen').and.to.include('8086:29c0) is not on the P2PDMA whitelist')
      expect(notes).not.to.include('run as root')
    })

    it('names every path class in the legend', () => {
      const classes: PathClass[] = ['X', 'PIX', 'PXB', 'PHB', 'NODE', 'SYS']
      for (const c of classes) expect(PATH_CLASS_LEGEND[c]).to.be.a('string').and.not.equal('')
      expect(PATH_CLASS_LEGEND.PIX).to.include('switch')
    })
  })
})
