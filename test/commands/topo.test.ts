import {expect} from 'chai'

import {cli, cliProcess} from '../helpers/cli.js'
import {BDF, standardMachine} from '../helpers/machines.js'

describe('iopmem topo', () => {
  const fx = standardMachine()
  after(() => fx.cleanup())

  it('prints the matrix with the legend and groups refused pairs by reason', async () => {
    const r = await cli(['topo', '--wide'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/03:00\.0\s+PHB 5 ✗.*X\s+PIX 4 ✓/)
    expect(r.stdout).to.contain('PIX  Connection traversing at most a single PCIe bridge')
    expect(r.stdout).to.contain("host bridge pci0000:00's 0000:00:00.0 (8086:29c0) is not on the kernel's P2PDMA whitelist")
    expect(r.stdout).to.contain('Host bridge pci0000:00: 0000:00:00.0 8086:29c0, not on the P2PDMA whitelist')
  })

  it('--json has every pair, the kernel distance and the kernel log lines', async () => {
    const r = await cli(['topo', BDF.nvmeCmb, BDF.nvmePeer, BDF.nvmeRoot, '--json'], fx)
    expect(r.exit).to.equal(0)
    expect(r.json.functions).to.deep.equal([BDF.nvmeCmb, BDF.nvmePeer, BDF.nvmeRoot])
    expect(r.json.pairs).to.have.length(3)
    const sw = r.json.pairs.find((p: any) => p.client === BDF.nvmePeer)
    expect(sw).to.deep.include({provider: BDF.nvmeCmb, pathClass: 'PIX', distance: 4, mapType: 'bus-addr', p2p: 'yes', commonUpstream: BDF.switchUp})
    const rc = r.json.pairs.find((p: any) => p.client === BDF.nvmeRoot && p.provider === BDF.nvmeCmb)
    expect(rc).to.deep.include({pathClass: 'PHB', distance: 5, mapType: 'not-supported', p2p: 'no', commonUpstream: null})
    expect(rc.reasons).to.include(
      'kernel: nvme 0000:00:03.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge',
    )
    expect(r.json.legend.PHB).to.be.a('string')
    expect(r.json.cpu).to.deep.equal({vendor: 'GenuineIntel', family: 6, p2pdmaCapable: false})
  })

  it('an AMD Zen CPU lets the root-complex pair through the host bridge', async () => {
    const amd = standardMachine().cpu('AuthenticAMD', 0x17)
    try {
      const r = await cli(['topo', BDF.nvmeCmb, BDF.nvmeRoot, '--json'], amd)
      expect(r.json.pairs[0]).to.deep.include({mapType: 'thru-host-bridge', p2p: 'yes'})
      // One number for the family: 23 in JSON, "family 23 (0x17)" on screen, as /proc/cpuinfo says it.
      expect(r.json.cpu.family).to.equal(23)
      const human = await cli(['topo', BDF.nvmeCmb, BDF.nvmeRoot], amd)
      expect(human.stdout).to.contain('CPU: AuthenticAMD family 23 (0x17)').and.not.match(/family 0x17/)
    } finally {
      amd.cleanup()
    }
  })

  it('without root (64 bytes of config space), ACS-dependent verdicts are unknown and say why', async () => {
    const user = standardMachine({configSize: 64})
    try {
      const r = await cli(['topo', BDF.nvmeCmb, BDF.nvmePeer, '--json'], user)
      expect(r.json.pairs[0].p2p).to.equal('unknown')
      expect(r.json.pairs[0].acsUnknown.length).to.be.greaterThan(0)
      expect(r.json.notes.join(' ')).to.match(/root/)
      const h = await cli(['topo', BDF.nvmeCmb, BDF.nvmePeer], user)
      expect(h.stdout).to.contain('cannot tell')
    } finally {
      user.cleanup()
    }
  })

  it('the provider is the function with p2pmem, whichever is named first; pairs without one are n/a', async () => {
    const r = await cli(['topo', BDF.nvmePeer, BDF.nvmeCmb, BDF.nvmeRoot, '--json'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    const sw = r.json.pairs.find((p: any) => [p.provider, p.client].includes(BDF.nvmePeer) && [p.provider, p.client].includes(BDF.nvmeCmb))
    expect(sw).to.deep.include({provider: BDF.nvmeCmb, client: BDF.nvmePeer, p2p: 'yes'})
    const none = r.json.pairs.find((p: any) => [p.provider, p.client].includes(BDF.nvmePeer) && [p.provider, p.client].includes(BDF.nvmeRoot))
    expect(none).to.deep.include({p2p: 'n/a', mapType: 'n/a'})
    expect(none.reasons.join(' ')).to.match(/Neither .* has memory to offer/)
    const h = await cli(['topo', BDF.nvmePeer, BDF.nvmeRoot], fx)
    expect(h.stdout).to.match(/PHB 5 n\/a/)
    // The matrix (header and two rows) has no verdict mark, and nothing is listed as refused.
    expect(h.stdout.split('\n').slice(0, 3).join('\n')).not.to.match(/[✓✗?]/)
    expect(h.stdout).not.to.match(/^refused/m)
  })

  it('never judges a device against its own upstream bridge or root port', async () => {
    const r = await cli(['topo', BDF.nvmeCmb, BDF.rootPort, '--json'], fx)
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.json.pairs[0]).to.deep.include({p2p: 'n/a', mapType: 'n/a'})
    expect(r.json.pairs[0].reasons[0]).to.match(/bridge upstream of 0000:03:00\.0/)
    const h = await cli(['topo', BDF.nvmeCmb, BDF.switchDown0], fx)
    expect(h.stdout).to.contain('n/a').and.not.to.match(/PIX \d ✓/)
  })

  it('one function named: a true message, exit 7 as docs/json-and-exit-codes.md says', async () => {
    const r = await cli(['topo', '03:00.0', '--json'], fx)
    expect(r.exit).to.equal(7)
    expect(r.json.error.message).to.equal('A P2P matrix needs at least two functions; only 0000:03:00.0 was named.')
    expect(r.json.error.suggestions[0]).to.match(/other functions? with device memory/)
  })

  it('fits $COLUMNS (80 when not a terminal): the matrix, or the pairs as a list when it is too wide; --wide shows the matrix', () => {
    for (const cols of ['80', '60', '50']) {
      const r = cliProcess(['topo'], fx, {COLUMNS: cols})
      expect(r.exit, r.stderr).to.equal(0)
      for (const l of r.stdout.split('\n')) expect([...l].length, `COLUMNS=${cols}: ${l}`).to.be.at.most(Number(cols))
    }
    const narrow = cliProcess(['topo'], fx, {COLUMNS: '50'})
    expect(narrow.stdout).to.match(/the matrix is wider than 50 columns/).and.to.match(/03:00\.0\s+04:00\.0\s+PIX\s+4\s+✓/)
    const wide = cliProcess(['topo', '--wide'], fx, {COLUMNS: '50'})
    expect(wide.stdout).to.match(/03:00\.0\s+PHB 5 ✗/)
    const piped = cliProcess(['topo'], fx, {COLUMNS: ''})
    for (const l of piped.stdout.split('\n')) expect([...l].length).to.be.at.most(80)
  })
})
