import {expect} from 'chai'

import {cli} from '../helpers/cli.js'
import {checkMachine} from '../helpers/check-machines.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF} from '../helpers/machines.js'
import {trackFixtures} from '../helpers/sysfs-fixture.js'
import {ACS_REDIRECT, setAcs} from '../helpers/topo-machines.js'

/** Run with $COLUMNS set (the renderer fits it). */
async function withColumns<T>(cols: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.COLUMNS
  process.env.COLUMNS = cols
  try {
    return await fn()
  } finally {
    if (saved === undefined) delete process.env.COLUMNS
    else process.env.COLUMNS = saved
  }
}

describe('iopmem check', () => {
  const track = trackFixtures()

  it('a ready machine: exit 0, grouped areas, a summary line; nothing written', async () => {
    const fx = track(checkMachine())
    const core = new FakeDriverCore(fx)
    const before = fx.hash()
    const r = await cli(['check'], fx, {writer: core})
    expect(r.exit, r.stderr).to.equal(0)
    for (const area of ['KERNEL', 'IOMMU', 'PATH', 'MEMORY', 'PROVIDERS', 'DRIVERS']) expect(r.stdout).to.match(new RegExp(`^${area}$`, 'm'))
    expect(r.stdout).to.match(/^ {2}✓ PCI_P2PDMA {9}=y in \/proc\/config.gz/m)
    expect(r.stdout).to.match(/^ {2}✓ NVMe CMB 03:00.0 {3}64 MiB in BAR2/m)
    expect(r.stdout).to.match(/\d+ pass, \d+ warn, 0 fail, \d+ unknown: nothing fails; read the warnings\.$/m)
    expect(core.log).to.deep.equal([])
    expect(fx.hash()).to.equal(before)
  })

  for (const cols of ['80', '60']) {
    it(`every line fits ${cols} columns`, async () => {
      const fx = track(checkMachine({cmdline: 'ro pci=disable_acs_redir=0000:02:01.0 intel_iommu=on iommu=pt'}))
      setAcs(fx, BDF.switchDown0, ACS_REDIRECT)
      const r = await withColumns(cols, () => cli(['check'], fx))
      const long = r.stdout.split('\n').filter((l) => [...l].length > Number(cols))
      expect(long, long.join('\n')).to.deep.equal([])
    })
  }

  it('a failing item: exit 9, the fix under it, and the summary says P2P will not work', async () => {
    const fx = track(checkMachine())
    setAcs(fx, BDF.switchDown0, ACS_REDIRECT)
    const r = await cli(['check', BDF.nvmeCmb, BDF.nvmePeer], fx)
    expect(r.exit).to.equal(9)
    expect(r.stdout).to.match(/✗ ACS on bridges {5}ACS redirect \(RR\/CR\/EC\) set on 02:00.0/)
    expect(r.stdout).to.match(/→ Boot with pci=disable_acs_redir=0000:02:00.0/)
    expect(r.stdout).to.match(/2 fail, \d+ unknown: P2P will not work until the failures are\s+fixed\.$/m)
  })

  it('--json: the report (schemaVersion 1) on stdout, exit 9 when an item fails, exit 0 otherwise', async () => {
    const fx = track(checkMachine({config: {where: 'proc', options: {PCI_P2PDMA: null}}}))
    const r = await cli(['check', '--json'], fx)
    expect(r.exit).to.equal(9)
    expect(r.json.error).to.equal(undefined)
    expect(r.json).to.include({schemaVersion: 1, ok: false})
    expect(r.json.summary.fail).to.equal(1)
    const p2p = r.json.items.find((i: any) => i.id === 'kernel.config.PCI_P2PDMA')
    expect(p2p).to.deep.include({area: 'kernel', verdict: 'fail', fix: 'Use a kernel built with CONFIG_PCI_P2PDMA=y.'})

    const ok = await cli(['check', BDF.nvmeCmb, BDF.nvmePeer, '--json'], track(checkMachine()))
    expect(ok.exit).to.equal(0)
    expect(ok.json).to.include({schemaVersion: 1, ok: true})
    expect(ok.json.functions).to.deep.equal([BDF.nvmeCmb, BDF.nvmePeer])
    // Addresses as "0x" + 16 hex digits, sizes as numbers of bytes.
    const bars = ok.json.items.find((i: any) => i.id === 'memory.bars').details.bars
    expect(bars[0]).to.deep.include({start: '0x0000000880000000', size: 64 * 1024 * 1024})
  })

  it('as a normal user: ACS and the CMB registers are unknown and say to run as root; still exit 0', async () => {
    const fx = track(checkMachine({configSize: 64}))
    const r = await cli(['check', BDF.nvmePeer, BDF.nvmeCmb], fx, {uid: 1000})
    expect(r.exit).to.equal(0)
    expect(r.stdout).to.match(/not root: some items need root/)
    expect(r.stdout).to.match(/\? ACS on bridges {5}ACS not readable on 4 of 4 bridges/)
    expect(r.stdout).to.match(/→ Run as root \(sudo iopmem check\) to read ACS\./)
  })
})
