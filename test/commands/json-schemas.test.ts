/**
 * JSON shapes as schemas (issue 18): every command's --json document has a
 * JSON Schema (draft 2020-12) in docs/schemas/, linked from its docs page;
 * the schemas are closed (a field added to the output but not to the schema
 * fails here), and the real output of each command on fixture machines,
 * errors included, validates against them. Every --json example in the help
 * is validated too (test/commands/examples.test.ts); the commands that need
 * a kernel (driver build/load/…, topo --probe, sandbox) are validated by the
 * same schemas wherever their output is a fixture's.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {SCHEMA_VERSION} from '../../src/lib/sys/index.js'
import {cli, cliProcess, ROOT} from '../helpers/cli.js'
import {FakeDriverCore} from '../helpers/fake-driver-core.js'
import {BDF, standardMachine} from '../helpers/machines.js'
import {nvmetMachine} from '../helpers/nvmet.js'
import {expectSchema, SCHEMA_DIR, SCHEMA_OF, validator} from '../helpers/schemas.js'
import {type SysfsFixture, trackFixtures} from '../helpers/sysfs-fixture.js'
import {topoMachine} from '../helpers/topo-machines.js'

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {flags: Record<string, unknown>; hidden?: boolean}>}
const schemaFiles = fs.readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, ''))

/** Every object schema in `s` (properties given) that admits fields it does not name. */
function openObjects(s: unknown, at = '#'): string[] {
  if (Array.isArray(s)) return s.flatMap((x, i) => openObjects(x, `${at}/${i}`))
  if (s === null || typeof s !== 'object') return []
  const o = s as Record<string, unknown>
  const here = o.properties && o.additionalProperties !== false ? [at] : []
  return [...here, ...Object.entries(o).flatMap(([k, v]) => openObjects(v, `${at}/${k}`))]
}

describe('JSON schemas (docs/schemas)', () => {
  it('every command with --json has a schema, and every schema file is one a command (or the error envelope) uses', () => {
    const withJson = Object.entries(manifest.commands).filter(([, c]) => 'json' in c.flags).map(([id]) => id).sort()
    expect(withJson.length).to.be.greaterThan(20)
    expect(withJson).to.deep.equal(Object.keys(SCHEMA_OF).sort())
    expect(schemaFiles.sort()).to.deep.equal([...new Set([...Object.values(SCHEMA_OF), 'error', 'dry-run'])].sort())
  })

  it('each schema is draft 2020-12, compiles strictly, requires schemaVersion (the constant) and is closed', () => {
    for (const name of schemaFiles) {
      const s = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `${name}.json`), 'utf8'))
      expect(s.$schema, name).to.equal('https://json-schema.org/draft/2020-12/schema')
      expect(s.title, name).to.be.a('string')
      // dry-run.json is one closed shape per command (oneOf).
      for (const doc of s.oneOf ?? [s]) {
        expect(doc.properties.schemaVersion.const, name).to.equal(SCHEMA_VERSION)
        expect(doc.required, name).to.include('schemaVersion')
      }
      validator(name)
      // error.details is free-form per code (docs/json-and-exit-codes.md); everything else names its fields.
      expect(openObjects(s), `${name}: objects without additionalProperties: false`).to.deep.equal([])
    }
  })

  it('a field the output has and the schema does not fails validation, at the top and nested', async () => {
    const fx = standardMachine()
    try {
      const r = await cli(['list', '--json'], fx)
      expectSchema('list', r.json)
      expect(validator('list')({...r.json, extra: 1})).to.equal(false)
      expect(validator('list')({...r.json, functions: [{...r.json.functions[0], extra: 1}]})).to.equal(false)
      const {schemaVersion: _, ...unversioned} = r.json
      expect(validator('list')(unversioned), 'schemaVersion is required').to.equal(false)
      expect(validator('error')({schemaVersion: 1, error: {code: 'E_X', message: 'x', exit: 2, suggestions: [], extra: 1}})).to.equal(false)
    } finally {
      fx.cleanup()
    }
  })

  it('each docs page links the schema of its command\'s --json; the error page links the envelope\'s', () => {
    const page = (id: string) => {
      const words = id.split(':')
      const single = path.join(ROOT, 'docs', `${words.join('-')}.md`)
      return fs.existsSync(single) ? single : path.join(ROOT, 'docs', `${words[0]}.md`)
    }
    for (const [id, name] of Object.entries(SCHEMA_OF)) {
      const text = fs.readFileSync(page(id), 'utf8')
      expect(text, `${path.basename(page(id))} links schemas/${name}.json`).to.include(`](schemas/${name}.json)`)
    }
    expect(fs.readFileSync(path.join(ROOT, 'docs/json-and-exit-codes.md'), 'utf8')).to.include('](schemas/error.json)').and.to.include('](schemas/dry-run.json)')
  })
})

describe('real --json output validates against its schema', function () {
  this.timeout(60_000)
  let fx: SysfsFixture
  let core: FakeDriverCore
  const run = async (args: string[], exit = 0) => {
    const r = await cli(args, fx, {writer: core})
    expect(r.exit, `${args.join(' ')}\n${r.stderr}${r.stdout.slice(0, 2000)}`).to.equal(exit)
    expect(r.json.schemaVersion, 'schemaVersion first').to.equal(SCHEMA_VERSION)
    expect(Object.keys(r.json)[0]).to.equal('schemaVersion')
    expectSchema(SCHEMA_OF[`${args[0]}:${args[1]}`] ? `${args[0]}:${args[1]}` : args[0], r.json)
    return r.json
  }
  beforeEach(() => {
    fx = topoMachine()
    core = new FakeDriverCore(fx)
  })
  afterEach(() => fx.cleanup())

  it('list: default, --all, --tree, selectors, one function', async () => {
    await run(['list', '--json'])
    await run(['list', '--all', '--json'])
    await run(['list', '--tree', '--json'])
    await run(['list', '-d', '1b36:0010', '--p2pmem', '--json'])
    await run(['list', BDF.nvmeCmb, '--json'])
  })

  it('topo and check', async () => {
    await run(['topo', '--json'])
    await run(['topo', BDF.nvmeCmb, BDF.nvmePeer, '--json'])
    await run(['check', '--json'])
    await run(['check', BDF.nvmeCmb, BDF.nvmePeer, '--json'])
  })

  it('map: the facts, a read, a write with readback, a fill and a verify (rates rounded)', async () => {
    await run(['map', BDF.ivshmem, '--json'])
    await run(['map', BDF.ivshmem, '--cache', 'uc', '--read', '0x40', '--width', '32', '--count', '4', '--json'])
    await run(['map', BDF.ivshmem, '--write', '0x1000', '--value', '1,2', '--width', '16', '--readback', '--yes', '--json'])
    const f = await run(['map', BDF.ivshmem, '--fill', 'u32:0xc0ffee00', '--offset', '4K', '--size', '64K', '--yes', '--json'])
    expect(f.op.gbps).to.be.a('number')
    await run(['map', BDF.ivshmem, '--verify', 'u32:0xc0ffee00', '--offset', '4K', '--size', '64K', '--json'])
  })

  it('bench p2p on two files: a verified bounce copy with the DRAM probe, and a sweep', async () => {
    const [src, dst] = ['src.bin', 'dst.bin'].map((f) => path.join(fx.root, f))
    fs.writeFileSync(src, Buffer.alloc(256 * 1024, 0x5a))
    fs.writeFileSync(dst, Buffer.alloc(256 * 1024))
    for (const more of [['--verify'], ['--sweep', '4K,16K', '--no-probe']]) await run(['bench', 'p2p', '--src', src, '--dst', dst, '--buffer', 'bounce', '--size', '64K', '--yes', '--json', ...more])
  })

  it('bench mmio on a fixture BAR', async () => {
    await run(['bench', 'mmio', BDF.ivshmem, '--read-only', '--sizes', '4K', '--time', '0.01', '--json'])
  })

  it('bind and unbind, and a refusal (the envelope)', async () => {
    await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--yes', '--json'])
    await run(['unbind', BDF.ivshmem, '--yes', '--json'])
    await run(['unbind', BDF.nvmeCmb, '--json'], 5)
  })

  it('--dry-run of bind and unbind (the dry-run schema)', async () => {
    const b = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--dry-run', '--json'])
    expect(b).to.include({dryRun: true, command: 'bind'})
    await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--yes', '--json'])
    expect((await run(['unbind', BDF.ivshmem, '--dry-run', '--json'])).steps).to.have.length.greaterThan(0)
    // --persist: the etc steps (mkdir, write-file, remove) and the persist facts.
    const bp = await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--dry-run', '--json'])
    expect(bp.steps.map((s: {kind: string}) => s.kind)).to.include.members(['mkdir', 'write-file'])
    await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--yes', '--json'])
    const up = await run(['unbind', BDF.ivshmem, '--persist', '--dry-run', '--json'])
    expect(up.steps.map((s: {kind: string}) => s.kind)).to.include('remove')
  })

  it('driver status and persist list', async () => {
    await run(['driver', 'status', '--json'])
    await run(['persist', 'list', '--json'])
  })

  it('the error envelope from every path: a command, a parse error, an unknown command, a plugin command', async () => {
    await run(['map', 'zz:zz.z', '--json'], 2)
    await run(['topo', '--bogus', '--json'], 2)
    for (const args of [['xyzzy', '--json'], ['help', 'lst', '--json'], ['autocomplete', 'fish', '--json']]) {
      const r = cliProcess(args)
      expect(r.exit, args.join(' ')).to.equal(2)
      expect(Object.keys(r.json)[0]).to.equal('schemaVersion')
      expectSchema(args[0], r.json)
    }
  })
})

describe('nvmet and persist --json validate against their schemas', function () {
  this.timeout(60_000)
  const track = trackFixtures()
  const NQN = 'nqn.2026-11.io.iopmem:schema'

  it('nvmet create (tcp, p2pmem auto), list, save, remove, restore', async () => {
    const {fx, cfs} = nvmetMachine(track)
    const run = async (args: string[]) => {
      const r = await cli(['nvmet', ...args, '--json'], fx, {writer: cfs})
      expect(r.exit, `${args.join(' ')}\n${r.stdout}${r.stderr}`).to.equal(0)
      expectSchema(`nvmet ${args[0]}`, r.json)
    }
    const file = path.join(fx.root, 'saved.json')
    await run(['create', NQN, '--device', 'nvme1n1', '--transport', 'tcp', '--address', '127.0.0.1', '--p2pmem', 'auto', '--yes'])
    await run(['list'])
    await run(['save', file])
    await run(['remove', NQN, '--yes'])
    await run(['restore', file, '--yes'])
  })

  it('bind --persist, persist list, persist remove, unbind --persist', async () => {
    const fx = track(standardMachine())
    const core = new FakeDriverCore(fx)
    const run = async (args: string[]) => {
      const r = await cli([...args, '--json'], fx, {writer: core})
      expect(r.exit, `${args.join(' ')}\n${r.stdout}${r.stderr}`).to.equal(0)
      expectSchema(SCHEMA_OF[`${args[0]}:${args[1]}`] ? `${args[0]}:${args[1]}` : args[0], r.json)
    }
    await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--yes'])
    await run(['persist', 'list'])
    await run(['persist', 'remove', BDF.ivshmem])
    await run(['bind', BDF.ivshmem, '--driver', 'uio_pci_generic', '--persist', '--yes'])
    await run(['unbind', BDF.ivshmem, '--persist', '--yes'])
  })
})
