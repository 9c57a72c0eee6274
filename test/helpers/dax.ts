/**
 * Fakes for mkfs-dax and locate: a runner that plays wipefs, mkfs, blkid,
 * mount and umount on an in-memory device table (and records every call, so
 * a test can prove nothing ran), fake statx/FIEMAP for files placed on
 * fixture devices, and installers that reach the dist modules the in-process
 * cli() runs.
 */
import * as path from 'node:path'

import type {DaxDeps, Signature} from '../../src/lib/dax/index.js'
import type {ExecResult, Runner} from '../../src/lib/sys/exec.js'
import type {FileOps, FileStat} from '../../src/lib/dax/locate.js'
import type {FiemapResult} from '../../src/native/types.js'
import {distModule} from './cli.js'

export interface Call {
  program: string
  args: string[]
}

const DESTRUCTIVE = new Set(['mkfs.ext4', 'mkfs.xfs', 'mount', 'umount'])

/** A runner that acts out the tools on `signatures` (device node → what it holds). */
export class FakeRunner implements Runner {
  /** It plays wipefs, mkfs and blkid on the kernel's names (/dev/pmem1), so the host hands it those. */
  readonly kernelNames = true
  readonly calls: Call[] = []
  readonly signatures = new Map<string, Signature[]>()
  readonly mounted = new Map<string, string>()
  private failures = new Map<string, ExecResult>()
  private missing = new Set<string>()

  /** Make `program` exit with code and stderr. */
  fail(program: string, code: number, stderr: string): this {
    this.failures.set(program, {code, stdout: '', stderr})
    return this
  }

  /** Make `program` "not installed" (the error the real runner gives, from dist's module). */
  uninstall(program: string): this {
    this.missing.add(program)
    return this
  }

  /** Whether run() finds `program` (the Runner's presence check). */
  installed(program: string): boolean {
    return !this.missing.has(program)
  }

  has(dev: string, type: string, offset = type === 'ext4' ? '0x438' : '0x0'): this {
    const list = this.signatures.get(dev) ?? []
    list.push({device: dev, offset, type, uuid: '11111111-2222-3333-4444-555555555555', label: null})
    this.signatures.set(dev, list)
    return this
  }

  /** Calls that would have changed something (not the read-only probes). */
  writes(): Call[] {
    return this.calls.filter((c) => DESTRUCTIVE.has(c.program) || (c.program === 'wipefs' && !c.args.includes('--no-act')))
  }

  async run(program: string, args: string[]): Promise<ExecResult> {
    this.calls.push({program, args})
    if (this.missing.has(program)) {
      const {programMissing} = (await import(distModule('lib/sys/exec.cjs'))) as typeof import('../../src/lib/sys/exec.js')
      throw programMissing(program)
    }
    const f = this.failures.get(program)
    if (f) return f
    const dev = args.at(-1)!
    switch (program) {
      case 'wipefs': {
        if (args.includes('--no-act')) {
          const sigs = this.signatures.get(dev) ?? []
          return {code: 0, stdout: JSON.stringify({signatures: sigs.map((s) => ({...s, device: path.basename(s.device)}))}), stderr: ''}
        }
        this.signatures.delete(dev)
        return {code: 0, stdout: '', stderr: ''}
      }
      case 'mkfs.ext4':
      case 'mkfs.xfs': {
        const type = program.slice(5)
        this.signatures.set(dev, [{device: dev, offset: type === 'ext4' ? '0x438' : '0x0', type, uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', label: null}])
        return {code: 0, stdout: '', stderr: ''}
      }
      case 'blkid': {
        const s = this.signatures.get(dev)?.[0]
        if (!s) return {code: 2, stdout: '', stderr: ''}
        return {code: 0, stdout: `DEVNAME=${dev}\nUUID=${s.uuid}\nBLOCK_SIZE=4096\nTYPE=${s.type}\nUSAGE=filesystem\n`, stderr: ''}
      }
      case 'mount':
        this.mounted.set(args.at(-1)!, args.at(-2)!)
        return {code: 0, stdout: '', stderr: ''}
      case 'umount':
        this.mounted.delete(dev)
        return {code: 0, stdout: '', stderr: ''}
      default:
        return {code: 127, stdout: '', stderr: `${program}: not faked`}
    }
  }
}

/** A FIEMAP answer from [logical, physical, length, flags] tuples. */
export function fakeFiemap(extents: Array<[number | bigint, number | bigint, number | bigint, number]>): FiemapResult {
  const n = extents.length
  const r: FiemapResult = {
    count: n,
    calls: 1,
    logical: new BigUint64Array(n),
    physical: new BigUint64Array(n),
    length: new BigUint64Array(n),
    flags: new Uint32Array(n),
  }
  extents.forEach(([l, p, len, f], i) => {
    r.logical[i] = BigInt(l)
    r.physical[i] = BigInt(p)
    r.length[i] = BigInt(len)
    r.flags[i] = f
  })
  return r
}

/** FileOps that put any file on device maj:min (mount id mnt) with the given DAX flag and extents. */
export function fakeFileOps(stat: Partial<FileStat> & {devMajor: number; devMinor: number}, extents: FiemapResult | ((opts: {start: number; length: number | bigint; sync: boolean}) => FiemapResult)): FileOps & {fiemapCalls: Array<{start: number; length: number | bigint; sync: boolean}>} {
  const fiemapCalls: Array<{start: number; length: number | bigint; sync: boolean}> = []
  return {
    fiemapCalls,
    statx: () => ({size: 1 << 20, mode: 0o100644, blksize: 4096, mntId: 500n, dax: true, ...stat}),
    fiemap: (_f, o) => {
      fiemapCalls.push(o)
      return typeof extents === 'function' ? extents(o) : extents
    },
  }
}

type DistDax = typeof import('../../src/lib/dax/mkfs.js')
type DistLocate = typeof import('../../src/lib/dax/locate.js')

/** Install fakes into dist's dax module (what cli() runs); call with {} to restore. */
export async function installDaxDeps(deps: Partial<DaxDeps>): Promise<void> {
  const mod = (await import(distModule('lib/dax/mkfs.cjs'))) as DistDax
  mod.setDaxDeps(deps)
}

/** Install fake statx/FIEMAP into dist's locate module; undefined restores the addon. */
export async function installFileOps(ops: FileOps | undefined): Promise<void> {
  const mod = (await import(distModule('lib/dax/locate.cjs'))) as DistLocate
  mod.setFileOps(ops)
}

export const PMEM_BASE = 0x6000_0000
export const PFN_BASE = 0x1_4000_0000
export const PFN_DATA = 0x20_0000

/**
 * The standard machine plus DAX devices:
 *   pmem0  512 MiB legacy pmem at 0x60000000 (namespace0.0), partition pmem0p1 from 2 MiB (dev 259:11)
 *   pmem1  fsdax pmem: namespace1.0 at 0x140000000, pfn1.1 with a 2 MiB data offset (dev 259:20)
 *   iopmem0  64 MiB disk on ivshmem 0000:00:04.0 (BAR2 at 0x800000000), iopmem/bar = 2 (dev 252:0)
 *   dm-0   device-mapper over nvme2n1 (dev 253:0)
 *   nvme0n1 (259:0), nvme1n1 (259:1) with nvme1n1p1, nvme2n1 (259:4): from the standard machine
 */
export async function daxMachine(): Promise<import('./sysfs-fixture.js').SysfsFixture> {
  const {standardMachine, BDF, MiB} = await import('./machines.js')
  const fx = standardMachine()
  fx.pmem({name: 'pmem0', dev: '259:10', start: PMEM_BASE, sizeBytes: 512 * MiB, partitions: [{name: 'pmem0p1', dev: '259:11', start: 4096, sizeBytes: 256 * MiB}]})
  fx.pmem({name: 'pmem1', dev: '259:20', region: 1, start: PFN_BASE, sizeBytes: 1024 * MiB, pfn: {name: 'pfn1.1', dataOffset: PFN_DATA}})
  const ivsh = path.relative(path.join(fx.sys, 'devices'), fx.fnDir(BDF.ivshmem))
  fx.addDisk(path.join(ivsh, 'block'), {name: 'iopmem0', dev: '252:0', sizeBytes: 64 * MiB, dax: true})
  fx.writeSys(path.join('devices', ivsh, 'block/iopmem0/iopmem/bar'), '2\n')
  fx.addDisk('virtual/block', {name: 'dm-0', dev: '253:0', sizeBytes: 128 * MiB, slaves: ['nvme2n1']})
  return fx
}
