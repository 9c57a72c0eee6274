/**
 * `iopmem map` against a real kernel (topology 'switch'): the ivshmem BAR2 is
 * a file on the host, so every byte the guest writes through a uc or wc
 * mapping is checked on the host, at its offset; reads go back through
 * streaming loads; a p2pmem chunk of the NVMe CMB is taken and given back
 * (munmap, SIGTERM, SIGKILL) as the kernel's `available` shows; the PAT
 * table and the wc refusal of a non-prefetchable BAR are the kernel's own.
 */
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {parsePattern} from '../../src/lib/map/ops.js'
import {bootGuest, type Guest, type RunResult, resolveKernel} from '../../src/lib/vm/index.js'
import {guestJson} from '../helpers/guest.js'

const KiB = 1024
const MiB = 1024 * KiB

const expected = (spec: string, offset: number, size: number): Buffer => {
  const b = Buffer.alloc(size)
  parsePattern(spec).generate(b, offset)
  return b
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('guest: iopmem map on Linux (ivshmem BAR2 checked on the host, NVMe CMB p2pmem)', function () {
  let vm: Guest
  let ivs: string
  let cmb: string
  const iopmem = (args: string[]): Promise<RunResult> => vm.run(['node', 'bin/run.js', ...args], {timeoutMs: 180_000})
  const json = guestJson
  const ok = (r: RunResult): any => {
    expect(r.code, `${r.argv.join(' ')}\n${r.stdout}\n${r.stderr}`).to.equal(0)
    return json(r)
  }
  const available = async (): Promise<number> => Number((await vm.run(['cat', `/sys/bus/pci/devices/${cmb}/p2pmem/available`], {check: true})).stdout.trim())
  /** Poll p2pmem/available until `pred` holds (node starts slowly under TCG). */
  const waitAvailable = async (pred: (n: number) => boolean, what: string, timeoutMs = 90_000): Promise<number> => {
    const end = Date.now() + timeoutMs
    let n = await available()
    while (!pred(n)) {
      if (Date.now() > end) throw new Error(`p2pmem/available stayed ${n}: ${what}`)
      await sleep(500)
      n = await available()
    }
    return n
  }

  before(async function () {
    this.timeout(300_000)
    resolveKernel() // no kernel: the suite fails with instructions, it never skips
    vm = await bootGuest({topology: 'switch'})
    ivs = vm.devices.ivshmem.bdf
    cmb = vm.devices.cmb.bdf
    console.log(`      guest ${vm.release}: ivshmem ${ivs} (BAR2 ${vm.devices.ivshmem.size / MiB} MiB = ${vm.devices.ivshmem.file}), cmb ${cmb}`)
  })

  after(async () => {
    await vm?.shutdown()
  })

  for (const [mode, base] of [
    ['uc', 0x10_0000],
    ['wc', 0x20_0000],
  ] as const) {
    it(`BAR2 ${mode}: values of every width land at their offsets in the host file`, async () => {
      const writes: Array<[number, number, string[], Buffer]> = [
        [8, base + 0x01, ['0x11', '0x22', '0x33'], Buffer.from([0x11, 0x22, 0x33])],
        [16, base + 0x12, ['0xa1b2', '0xc3d4'], Buffer.from([0xb2, 0xa1, 0xd4, 0xc3])],
        [32, base + 0x24, ['0xdeadbeef', '0x01020304'], Buffer.from('efbeadde04030201', 'hex')],
        [64, base + 0x38, ['0x0123456789abcdef', '0xfedcba9876543210'], Buffer.from('efcdab89674523011032547698badcfe', 'hex')],
      ]
      for (const [w, off, values, bytes] of writes) {
        const j = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--write', '0x' + off.toString(16), '--value', values.join(','), '--width', String(w), '--yes', '--json']))
        expect(j.mapping).to.include({mode, backend: 'bar', writable: true})
        expect(j.mapping.path).to.match(new RegExp(`/${ivs}/resource2${mode === 'wc' ? '_wc' : ''}$`))
        const host = await vm.readIvshmem(off - 1, bytes.length + 2)
        console.log(`      ${mode} ${w}-bit × ${values.length} at 0x${off.toString(16)}: host file holds ${host.subarray(1, -1).toString('hex')}`)
        expect(host.subarray(1, -1).toString('hex')).to.equal(bytes.toString('hex'))
        expect(host[0], 'byte before untouched').to.equal(0)
        expect(host[host.length - 1], 'byte after untouched').to.equal(0)
      }
      // Read them back, one access per value, and compare with the host's bytes.
      const r = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--read', '0x' + (base + 0x38).toString(16), '--width', '64', '--count', '2', '--json']))
      const host = await vm.readIvshmem(base + 0x38, 16)
      expect(r.op.values).to.deep.equal(['0x' + host.readBigUInt64LE(0).toString(16).padStart(16, '0'), '0x' + host.readBigUInt64LE(8).toString(16).padStart(16, '0')])
      console.log(`      ${mode} read back 2 × 64-bit: ${r.op.values.join(' ')} = host`)
    })

    it(`BAR2 ${mode}: bulk fills and a file copy with each strategy land exactly; streaming loads read them back`, async () => {
      const strategies = mode === 'wc' ? ['stream-store', 'exact64'] : ['exact64', 'stream-store']
      // Two fills side by side, one per strategy, of one position-dependent pattern; odd sizes and
      // offsets exercise the small accesses at both ends. Then one verify over both.
      const spec = `random:${mode === 'uc' ? 0x100 : 0x200}`
      const size = 64 * KiB + 5
      const first = base + 0x1000 + 3
      for (const [i, strategy] of strategies.entries()) {
        const off = first + i * size
        const j = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--fill', spec, '--offset', '0x' + off.toString(16), '--size', String(size), '--strategy', strategy, '--yes', '--json']))
        expect(j.op).to.include({strategy, size})
        const host = await vm.readIvshmem(off, size)
        expect(host.equals(expected(spec, off, size)), `${mode} ${strategy} fill`).to.equal(true)
        console.log(`      ${mode} fill ${spec} ${size} B at 0x${off.toString(16)} with ${strategy}: host file matches (${j.op.gbps} GB/s under TCG)`)
      }
      const around = await vm.readIvshmem(first - 3, 3 + 2 * size + 3)
      expect(around.subarray(0, 3).toString('hex') + around.subarray(-3).toString('hex'), 'bytes just outside the fills').to.equal('000000000000')
      const v = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--verify', spec, '--offset', '0x' + first.toString(16), '--size', String(2 * size), '--strategy', 'stream-load', '--json']))
      expect(v.op).to.include({strategy: 'stream-load', mismatches: 0, size: 2 * size})
      console.log(`      ${mode} verify of both through stream-load: ${2 * size} B match`)
      // A file in, with the default strategy for the mode.
      const data = randomBytes(100 * KiB + 7)
      const src = await vm.putFile(`in-${mode}.bin`, data)
      const at = base + 0x8_0000 + 1
      const c = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--copy-in', src, '--offset', '0x' + at.toString(16), '--yes', '--json']))
      expect(c.op.strategy).to.equal(mode === 'wc' ? 'stream-store' : 'exact64')
      expect((await vm.readIvshmem(at, data.length)).equals(data)).to.equal(true)
      console.log(`      ${mode} copy-in ${data.length} B at 0x${at.toString(16)} (${c.op.strategy}): host file matches`)
      // Bytes the host puts there, read through streaming loads into a file the host reads.
      const hostBytes = randomBytes(48 * KiB + 1)
      const hostAt = base + 0xc_0000 + 5
      await vm.writeIvshmem(hostAt, hostBytes)
      const out = join(vm.xferDir, `out-${mode}.bin`)
      const o = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--copy-out', out, '--offset', '0x' + hostAt.toString(16), '--size', String(hostBytes.length), '--strategy', 'stream-load', '--json']))
      expect(o.op.strategy).to.equal('stream-load')
      expect(readFileSync(out).equals(hostBytes), 'copy-out through stream-load = what the host wrote').to.equal(true)
      const d = ok(await iopmem(['map', ivs, '--bar', '2', '--cache', mode, '--dump', '0x' + (hostAt - 5).toString(16), '--size', '64', '--json']))
      expect(d.op.hex).to.equal((await vm.readIvshmem(hostAt - 5, 64)).toString('hex'))
      console.log(`      ${mode} host wrote ${hostBytes.length} B at 0x${hostAt.toString(16)}: copy-out (stream-load) and dump read exactly them`)
    })
  }

  it('wc of the non-prefetchable BAR0 fails, saying why; wc of BAR2 is confirmed by the PAT table', async () => {
    const r = await iopmem(['map', ivs, '--bar', '0', '--cache', 'wc', '--json'])
    expect(r.code).to.equal(7)
    const e = json(r).error
    expect(e.code).to.equal('E_WC_NOT_PREFETCHABLE')
    expect(e.message).to.match(/BAR0 of .* is not prefetchable, so write-combining is impossible/)
    console.log(`      BAR0 --cache wc: exit 7, ${e.code}`)
    const f = ok(await iopmem(['map', ivs, '--json']))
    expect(f.mapping).to.include({mode: 'wc', modeAsked: 'auto'})
    const pat = await vm.sh('cat /sys/kernel/debug/x86/pat_memtype_list | wc -lc')
    console.log(`      auto → ${f.mapping.mode} (${f.mapping.why}); notes: ${f.mapping.notes.join(' | ') || '-'}; pat list (lines, bytes): ${pat.stdout.trim()}`)
    expect(f.mapping.notes.join(' ')).to.match(/PAT confirms write-combining/)
  })

  it('PAT: while another process holds BAR2 uncached, wc is refused and auto says it got uc', async () => {
    const holder = vm.sh(`node bin/run.js map ${ivs} --bar 2 --cache uc --hold 0 >/tmp/pat-hold.out 2>&1 & echo $! >/tmp/pat-hold.pid; wait $!`, {timeoutMs: 300_000})
    try {
      // Wait until the holder says it holds, then for its uc mapping in the PAT table.
      for (let i = 0; i < 180 && !(await vm.sh('cat /tmp/pat-hold.out 2>/dev/null')).stdout.includes('holding'); i++) await sleep(500)
      const holding = (await vm.sh('cat /tmp/pat-hold.out')).stdout
      expect(holding, 'the uc holder is up').to.contain('holding the mapping')
      const start = BigInt(/BAR2\s+\S+ MiB\s+(0x[0-9a-f]+)-/.exec(holding)![1])
      let listed = ''
      for (let i = 0; i < 120; i++) {
        listed = (await vm.sh(`grep -i 'mem 0x0*${start.toString(16)}-' /sys/kernel/debug/x86/pat_memtype_list || true`)).stdout.trim()
        if (listed.includes('uncached-minus')) break
        await sleep(500)
      }
      console.log(`      PAT entry of the holder: ${listed || '(none)'}`)
      if (!listed.includes('uncached-minus')) {
        // Seen once in CI, when map --hold 0 lost its mapping to the GC (src/lib/map/hold.ts).
        // Should it recur, say everything the guest knows about the holder's mapping.
        const why = await vm.sh(
          'echo "holder output:"; cat /tmp/pat-hold.out; p=$(cat /tmp/pat-hold.pid); echo "holder $p alive: $(kill -0 $p 2>&1 && echo yes)";' +
            ' echo "its BAR mappings:"; grep -i resource /proc/$p/maps; echo "PAT list:"; cat /sys/kernel/debug/x86/pat_memtype_list',
        )
        expect.fail(`no uncached-minus PAT entry at 0x${start.toString(16)} while the holder holds BAR2:\n${why.stdout}${why.stderr}`)
      }
      const wc = await iopmem(['map', ivs, '--bar', '2', '--cache', 'wc', '--read', '0', '--json'])
      console.log(`      --cache wc while held uc: exit ${wc.code}, ${json(wc).error?.code}: ${json(wc).error?.message}`)
      expect(wc.code).to.equal(6)
      expect(json(wc).error.code).to.equal('E_PAT_CONFLICT')
      const auto = ok(await iopmem(['map', ivs, '--json']))
      console.log(`      auto while held uc → ${auto.mapping.mode}: ${auto.mapping.why}`)
      expect(auto.mapping.mode).to.equal('uc')
      expect(auto.mapping.why).to.match(/uncached-minus in the PAT table/)
    } finally {
      await vm.sh('kill -TERM $(cat /tmp/pat-hold.pid)')
      const h = await holder
      expect(h.code, `the holder ended by SIGTERM: ${(await vm.sh('cat /tmp/pat-hold.out')).stdout}`).to.equal(143)
    }
  })

  it('p2pmem: a 1 MiB chunk lowers available by 1 MiB; munmap gives it back', async () => {
    const script = `
const [repo, bdf] = process.argv.slice(2)
const fs = await import('node:fs')
const {loadNative} = await import('file://' + repo + '/dist/native/index.js')
const n = loadNative()
const dir = '/sys/bus/pci/devices/' + bdf + '/p2pmem'
const avail = () => Number(fs.readFileSync(dir + '/available', 'utf8'))
const before = avail()
const m = n.map(dir + '/allocate', {length: 1 << 20, mode: 'uc'})
n.write32(m, 0x100, 0x12345678)
const v = n.read32(m, 0x100)
const during = avail()
m.unmap()
let after = avail()
for (let i = 0; i < 20 && after !== before; i++) { await new Promise((r) => setTimeout(r, 100)); after = avail() }
console.log(JSON.stringify({before, during, after, v}))
`
    const file = await vm.putFile('p2pmem-unmap.mjs', script)
    const r = await vm.run(['node', file, vm.repoRoot, cmb], {timeoutMs: 120_000})
    expect(r.code, r.stderr).to.equal(0)
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!)
    console.log(`      available ${j.before} → ${j.during} mapped → ${j.after} after munmap; read back 0x${j.v.toString(16)}`)
    expect(j.v).to.equal(0x12345678)
    expect(j.before - j.during).to.equal(MiB)
    expect(j.after).to.equal(j.before)
  })

  for (const sig of ['TERM', 'KILL'] as const) {
    it(`p2pmem: iopmem map --p2pmem 1M --hold holds the chunk; SIG${sig} gives it back`, async () => {
      const before = await available()
      const pidFile = `/tmp/p2p-hold-${sig}.pid`
      const holder = vm.sh(`node bin/run.js map ${cmb} --p2pmem 1M --hold 0 --write 0 --value 0xabcd --yes & echo $! >${pidFile}; wait $!; echo "rc=$?"`, {timeoutMs: 300_000})
      let killed: RunResult | undefined
      try {
        const during = await waitAvailable((n) => n <= before - MiB, `never dropped from ${before} while iopmem held 1 MiB`)
        console.log(`      --hold: available ${before} → ${during}`)
        expect(before - during).to.equal(MiB)
        const facts = ok(await iopmem(['map', cmb, '--p2pmem', '4K', '--json'])).mapping
        console.log(`      another 4 KiB chunk: CPU physical ${facts.physStart}, ${facts.notes.find((n: string) => n.includes('offset')) ?? ''}`)
        expect(facts.physStart).to.match(/^0x[0-9a-f]{16}$/)
      } finally {
        await vm.sh(`kill -${sig} $(cat ${pidFile})`)
        killed = await holder
      }
      const rc = /rc=(\d+)/.exec(killed.stdout)?.[1]
      expect(rc).to.equal(sig === 'TERM' ? '143' : '137')
      const after = await waitAvailable((n) => n === before, `did not return to ${before} after SIG${sig}`, 30_000)
      console.log(`      SIG${sig} (exit ${rc}): available back to ${after}`)
    })
  }
})
