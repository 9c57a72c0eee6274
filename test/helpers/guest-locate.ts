/** The guest suite's proof that DAX file data sits in ivshmem BAR2: `iopmem locate` in the guest, every extent read back on the host from the ivshmem file. */
import {expect} from 'chai'

import type {Guest} from '../../src/lib/vm/index.js'

/**
 * Copy `data` into `file` on the DAX filesystem on /dev/iopmem0, run `iopmem locate`, and check every
 * extent on the host: its physical address lies in BAR2 (at `bar2`, `size` bytes) and (address − BAR2
 * base) in the ivshmem file holds the file's bytes; the bus address is the BAR's bus address plus the
 * same offset.
 */
export async function locateAndCheck(vm: Guest, at: {bdf: string; bar2: bigint; size: number}, tag: string, file: string, data: Buffer): Promise<void> {
  const src = await vm.putFile(`locate-${tag}.bin`, data)
  const cp = await vm.sh(`cp ${src} ${file} && sync`, {timeoutMs: 120_000})
  expect(cp.code, cp.stderr).to.equal(0)
  const r = await vm.run(['node', 'bin/run.js', 'locate', file, '--json'], {timeoutMs: 120_000})
  expect(r.code, r.stdout + r.stderr).to.equal(0)
  const j = JSON.parse(r.stdout)
  expect(j.device).to.deep.include({node: '/dev/iopmem0', kind: 'iopmem', base: '0x' + at.bar2.toString(16)})
  expect(j.device.pci).to.deep.include({bdf: at.bdf, bar: 2, barSource: 'driver'})
  let covered = 0
  for (const e of j.extents) {
    const phys = BigInt(e.physical)
    expect(phys >= at.bar2 && phys + BigInt(e.length) <= at.bar2 + BigInt(at.size), `extent ${e.physical}+${e.length} lies in BAR2`).to.equal(true)
    if (j.device.busBase) expect(BigInt(e.busAddress) - BigInt(j.device.busBase)).to.equal(phys - at.bar2)
    const n = Math.min(e.length, data.length - e.fileOffset)
    const got = await vm.readIvshmem(Number(phys - at.bar2), n)
    expect(got.equals(data.subarray(e.fileOffset, e.fileOffset + n)), `${tag}: extent at file offset ${e.fileOffset} (${e.physical}) holds the file's bytes`).to.equal(true)
    covered += n
  }
  expect(covered).to.equal(data.length)
  console.log(`      ${tag}: ${j.extents.length} extents of ${file} (${data.length} B) found by the host at their BAR2 offsets`)
}
