/**
 * What users expect of an oclif CLI (issue 12, item 4): `iopmem help …`,
 * bash/zsh completion, did-you-mean for a mistyped command that never asks
 * and never runs anything, the JSON error envelope under --json for unknown
 * commands and parse errors, and a description per topic. All through
 * bin/run.js as a child process, the way a shell runs it.
 */
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {closest, editDistance} from '../../src/hooks/command-not-found.js'
import {cliProcess, ROOT} from '../helpers/cli.js'

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0

describe('help', () => {
  it('`help topo` shows the command help', () => {
    const r = cliProcess(['help', 'topo'])
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/^Show which PCI functions can do peer-to-peer DMA/)
    expect(r.stdout).to.include('$ iopmem topo [BDF...] [--json]')
  })

  it('`help bench` shows the topic: its own description and its commands', () => {
    const r = cliProcess(['help', 'bench'])
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout.split('\n')[0]).to.match(/^Measure device memory/)
    expect(r.stdout).to.include('$ iopmem bench COMMAND')
    expect(r.stdout).to.match(/bench mmio\s+CPU ↔ device-memory bandwidth/)
    expect(r.stdout).to.match(/bench p2p\s+Peer DMA copy benchmark/)
  })

  it('`help driver sta` is a did-you-mean, not oclif\'s "command help:… not found"', () => {
    const r = cliProcess(['help', 'driver', 'sta'])
    expect(r.exit).to.equal(2)
    expect(r.stderr).to.include('`driver sta` is not an iopmem command; did you mean `driver status`?')
    expect(r.stderr).not.to.match(/\bat \S+ \(/) // no stack
  })

  it('the root help describes each topic on its own, and sandbox once, as a command', () => {
    const r = cliProcess(['--help'])
    expect(r.exit, r.stderr).to.equal(0)
    const section = (name: string) => r.stdout.split(`\n${name}\n`)[1]?.split('\n\n')[0] ?? ''
    const topics = section('TOPICS')
    expect(topics).to.match(/^ {2}bench +Measure device memory/m)
    expect(topics).to.match(/^ {2}driver +Build, load, unload and inspect the iopmem kernel module\./m)
    expect(topics).to.match(/^ {2}persist +Bindings that survive a reboot/m)
    expect(topics).not.to.include('sandbox')
    expect(section('COMMANDS')).to.match(/^ {2}sandbox +Boot a real Linux kernel/m)
    expect(section('COMMANDS')).to.match(/^ {2}help +/m)
    // The sandbox command's help leads to its subcommand.
    expect(cliProcess(['help', 'sandbox']).stdout).to.match(/sandbox build-kernel +Rebuild the sandbox's guest kernel/)
  })
})

describe('autocomplete', () => {
  let cache: string
  const env = () => ({IOPMEM_CACHE_DIR: cache})
  before(() => {
    cache = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-ac-'))
  })
  after(() => fs.rmSync(cache, {recursive: true, force: true}))

  it('`autocomplete bash` builds the cache and prints instructions without asking', () => {
    const r = cliProcess(['autocomplete', 'bash'], undefined, env())
    expect(r.exit, r.stderr).to.equal(0)
    expect(r.stdout).to.include('printf "$(iopmem autocomplete script bash)" >> ~/.bashrc')
    expect(fs.existsSync(path.join(cache, 'autocomplete/bash_setup'))).to.equal(true)
    expect(fs.existsSync(path.join(cache, 'autocomplete/functions/zsh/_iopmem'))).to.equal(true)
  })

  it('`autocomplete script bash` prints the line for ~/.bashrc, and bash completes commands, subcommands and flags', () => {
    cliProcess(['autocomplete', '--refresh-cache'], undefined, env())
    const r = cliProcess(['autocomplete', 'script', 'bash'], undefined, env())
    expect(r.exit, r.stderr).to.equal(0)
    const setup = path.join(cache, 'autocomplete/bash_setup')
    expect(r.stdout.trim()).to.equal(`IOPMEM_AC_BASH_SETUP_PATH=${setup} && test -f $IOPMEM_AC_BASH_SETUP_PATH && source $IOPMEM_AC_BASH_SETUP_PATH; # iopmem autocomplete setup`)
    if (!has('bash')) return
    const complete = (words: string[]) => {
      const script = `${r.stdout.trim()}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1))
_iopmem_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}" | sort -u`
      const b = spawnSync('bash', ['-c', script], {encoding: 'utf8'})
      expect(b.status, b.stderr).to.equal(0)
      return b.stdout.trim().split('\n')
    }
    expect(complete(['iopmem', ''])).to.include.members(['bench', 'driver', 'list', 'sandbox', 'topo', 'help', 'autocomplete'])
    expect(complete(['iopmem', 'bench', ''])).to.deep.equal(['mmio', 'p2p'])
    expect(complete(['iopmem', 'driver', 'st'])).to.deep.equal(['status'])
    expect(complete(['iopmem', 'list', '--'])).to.include.members(['--all', '--json'])
  })

  it('`autocomplete script zsh` prints the line for ~/.zshrc, and the completion function knows topics, commands and flags', () => {
    cliProcess(['autocomplete', '--refresh-cache'], undefined, env())
    const r = cliProcess(['autocomplete', 'script', 'zsh'], undefined, env())
    expect(r.exit, r.stderr).to.equal(0)
    const setup = path.join(cache, 'autocomplete/zsh_setup')
    expect(r.stdout.trim()).to.equal(`IOPMEM_AC_ZSH_SETUP_PATH=${setup} && test -f $IOPMEM_AC_ZSH_SETUP_PATH && source $IOPMEM_AC_ZSH_SETUP_PATH; # iopmem autocomplete setup`)
    expect(fs.readFileSync(setup, 'utf8')).to.include(path.join(cache, 'autocomplete/functions/zsh'))
    const fn = path.join(cache, 'autocomplete/functions/zsh/_iopmem')
    const text = fs.readFileSync(fn, 'utf8')
    expect(text.split('\n')[0]).to.equal('#compdef iopmem')
    expect(text).to.include('"bench[Measure device memory')
    expect(text).to.include('"driver[Build, load, unload and inspect the iopmem kernel module.]"')
    expect(text).to.include('"mmio[CPU ↔ device-memory bandwidth')
    expect(text).to.match(/"\(-a --all\)"\{-a,--all\}"\[Show every function/)
    if (has('zsh')) {
      const z = spawnSync('zsh', ['-n', fn], {encoding: 'utf8'})
      expect(z.status, z.stderr).to.equal(0)
    }
  })
})

describe('did you mean', () => {
  const cases: [string[], string, string[]][] = [
    [['lst'], '`lst` is not an iopmem command; did you mean `list`?', ['list']],
    [['tpoo'], '`tpoo` is not an iopmem command; did you mean `topo`?', ['topo']],
    [['mkfs'], '`mkfs` is not an iopmem command; did you mean `mkfs-dax`?', ['mkfs-dax']],
    [['bench', 'mmo'], '`bench mmo` is not an iopmem command; did you mean `bench mmio`?', ['bench mmio']],
    [['drvier', 'status'], '`drvier` is not an iopmem command; did you mean `driver status`?', ['driver status']],
    [['benhc'], '`benhc` is not an iopmem command; did you mean `bench`?', ['bench']],
    [['xyzzy'], '`xyzzy` is not an iopmem command.', []],
  ]
  for (const [args, message, suggestions] of cases) {
    it(`${args.join(' ')}: says so on stderr, exit 2`, () => {
      const r = cliProcess(args)
      expect(r.exit).to.equal(2)
      expect(r.stdout).to.equal('')
      expect(r.stderr).to.include(`Error: ${message}`)
      expect(r.stderr).to.match(/→ Run `iopmem help( \w+)?` to see the commands\./)
    })

    it(`${args.join(' ')} --json: the error envelope on stdout, exit 2`, () => {
      const r = cliProcess([...args, '--json'])
      expect(r.exit).to.equal(2)
      expect(r.json, r.stdout + r.stderr).to.be.an('object')
      expect(r.json.error).to.include({code: 'E_UNKNOWN_COMMAND', message, exit: 2})
      expect(r.json.error.suggestions).to.deep.equal(suggestions)
      expect(r.stderr).to.equal('')
    })
  }

  it('--json before the command: says where flags go', () => {
    const r = cliProcess(['--json', 'list'])
    expect(r.exit).to.equal(2)
    expect(r.json.error).to.include({code: 'E_UNKNOWN_COMMAND', exit: 2})
    expect(r.json.error.message).to.include('give the command first, then its flags')
    expect(r.json.error.suggestions).to.deep.equal(['list --json'])
  })

  it('never asks, even on a terminal (no "run this instead?"): a guessed `unbind` must not run', function () {
    if (!has('script')) this.skip()
    // script(1) gives the child a pseudo-terminal on stdin and stdout.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(ROOT, 'bin/run.js'))} unbnd 0000:03:00.0`
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {encoding: 'utf8', input: '', timeout: 15_000, env: {...process.env, NO_COLOR: '1'}})
    expect(r.error, 'timed out: waiting for an answer?').to.equal(undefined)
    expect(r.status).to.equal(2)
    expect(r.stdout).to.include('`unbnd` is not an iopmem command; did you mean `unbind`?')
    expect(r.stdout).not.to.match(/\(Y\/n\)|\(y\/N\)/)
  })

  it('ranks by edits, a swap of neighbours being one', () => {
    expect(editDistance('lsit', 'list')).to.equal(1)
    expect(editDistance('lst', 'list')).to.equal(1)
    expect(editDistance('bench', 'bench')).to.equal(0)
    const all = [{words: ['list'], topic: false}, {words: ['locate'], topic: false}, {words: ['bench', 'p2p'], topic: false}]
    expect(closest(all, ['lsit'])).to.deep.equal(['list'])
    expect(closest(all, ['bench', 'foo'])).to.deep.equal([]) // p2p is three edits from foo: no guess
  })
})

describe('parse errors under --json', () => {
  it('an unknown flag: the envelope with E_USAGE, exit 2', () => {
    const r = cliProcess(['topo', '--bogus', '--json'])
    expect(r.exit).to.equal(2)
    expect(r.json.error).to.deep.equal({code: 'E_USAGE', message: 'Nonexistent flag: --bogus', exit: 2, suggestions: ['See `iopmem topo --help`.']})
  })

  it('a missing argument: the whole message, the argument named', () => {
    const r = cliProcess(['map', '--json'])
    expect(r.exit).to.equal(2)
    expect(r.json.error.code).to.equal('E_USAGE')
    expect(r.json.error.message).to.match(/^Missing 1 required arg:\ntarget {2}A PCI function/)
    expect(r.json.error.message).not.to.include('See more help')
  })

  it('a bad option value: the whole message', () => {
    const r = cliProcess(['bench', 'mmio', '0000:03:00.0', '--cache', 'bogus', '--json'])
    expect(r.exit).to.equal(2)
    expect(r.json.error).to.include({code: 'E_USAGE', message: 'Expected --cache=bogus to be one of: auto, uc, wc, wb, wt'})
    // The old names (--mode, -m) are the same flag for one release (docs/vocabulary.md).
    for (const old of ['--mode', '-m']) {
      const o = cliProcess(['map', '0000:03:00.0', old, 'bogus', '--json'])
      expect(o.json.error).to.include({code: 'E_USAGE', message: 'Expected --cache=bogus to be one of: auto, uc, wc, wb, wt'})
    }
  })

  it('a plugin command\'s parse error (help, autocomplete) is the envelope too, not oclif\'s stack', () => {
    const h = cliProcess(['help', 'lst', '--json'])
    expect(h.exit).to.equal(2)
    expect(h.json.error).to.include({code: 'E_USAGE', message: 'Nonexistent flag: --json', exit: 2})
    expect(h.stderr).to.equal('')
    const a = cliProcess(['autocomplete', 'fish', '--json'])
    expect(a.exit).to.equal(2)
    expect(a.json.error).to.include({code: 'E_USAGE', message: 'Expected fish to be one of: zsh, bash, powershell', exit: 2})
  })
})

describe('short flags', () => {
  it('each short flag has one meaning across commands (a renamed one lives on only as a deprecated alias)', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, {flags: Record<string, {name: string; char?: string; charAliases?: string[]; deprecateAliases?: boolean}>}>
    }
    const meanings = new Map<string, Set<string>>()
    for (const [id, cmd] of Object.entries(manifest.commands)) {
      for (const f of Object.values(cmd.flags)) {
        if (f.charAliases?.length) expect(f.deprecateAliases, `${id} --${f.name}: a short alias is only kept as a deprecated one`).to.equal(true)
        if (f.char) meanings.set(f.char, new Set([...(meanings.get(f.char) ?? []), f.name]))
      }
    }
    const twice = [...meanings].filter(([, names]) => names.size > 1).map(([c, names]) => `-${c}: ${[...names].sort().join(', ')}`)
    expect(twice).to.deep.equal([])
    // lspci's habits hold on list.
    expect(manifest.commands.list.flags.slot.char).to.equal('s')
    expect(manifest.commands.list.flags.id.char).to.equal('d')
    // bind -d was --driver: it lives on only as a deprecated alias.
    const driver = manifest.commands.bind.flags.driver
    expect([driver.char, driver.charAliases, driver.deprecateAliases]).to.deep.equal([undefined, ['d'], true])
  })
})
