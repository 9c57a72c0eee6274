/**
 * The documentation keeps up with the commands (issue 12, item 6): every
 * visible command of iopmem's own has its page in docs/, and that page names
 * every flag (`--name`, `--no-name` for a negatable one, `-c` for its char)
 * and every argument (`NAME`); the README links to every page; and the
 * README's CI markers are each followed by the ```sh block .ci/run executes.
 * The commands, flags and args come from oclif.manifest.json, which every
 * build regenerates.
 */
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {ROOT} from '../helpers/cli.js'

interface ManifestFlag {
  allowNo?: boolean
  char?: string
  hidden?: boolean
  name: string
}

interface ManifestCommand {
  args?: Record<string, {name: string}>
  flags?: Record<string, ManifestFlag>
  hidden?: boolean
  id: string
  pluginName?: string
}

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {name: string}
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, ManifestCommand>}
const DOCS = path.join(ROOT, 'docs')
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

/** iopmem's own visible commands (plugin commands such as help and autocomplete are not in its manifest, and are skipped if they were). */
const commands = Object.values(manifest.commands).filter((c) => !c.hidden && (c.pluginName === undefined || c.pluginName === pkg.name))

/** `driver build` and the other driver commands share docs/driver.md, `persist list|apply|remove` docs/persist.md, `sandbox build-kernel` docs/sandbox.md; `bench mmio` has docs/bench-mmio.md. */
function pageFor(id: string): string {
  const [first] = id.split(':')
  if (first === 'driver' || first === 'sandbox' || first === 'persist') return `${first}.md`
  return `${id.replaceAll(':', '-')}.md`
}

const escape = (s: string) => s.replaceAll(/[.*+?^${}()|[\]\\]/g, String.raw`\$&`)
/** `--size` as a word of its own: not the start of `--sizes`, not the end of `--src-size`. */
const mentions = (text: string, token: string) => new RegExp(String.raw`(^|[^\w-])${escape(token)}(?![\w-])`, 'm').test(text)

describe('docs: one page per command, every flag and argument on it', () => {
  it('the manifest lists the commands', () => {
    expect(commands.map((c) => c.id)).to.include.members(['list', 'topo', 'bind', 'unbind', 'map', 'mkfs-dax', 'locate', 'bench:mmio', 'bench:p2p', 'driver:build', 'sandbox'])
  })

  for (const c of commands) {
    const name = c.id.replaceAll(':', ' ')
    const page = pageFor(c.id)
    it(`\`iopmem ${name}\`: docs/${page} names every flag and argument`, () => {
      const file = path.join(DOCS, page)
      expect(fs.existsSync(file), `docs/${page} is missing: \`iopmem ${name}\` has no page`).to.equal(true)
      const text = fs.readFileSync(file, 'utf8')
      expect(text, `docs/${page} does not name the command \`iopmem ${name}\``).to.include(`iopmem ${name}`)
      const missing: string[] = []
      for (const f of Object.values(c.flags ?? {})) {
        if (f.hidden) continue
        if (!mentions(text, `--${f.name}`)) missing.push(`--${f.name}`)
        if (f.allowNo && !mentions(text, `--no-${f.name}`)) missing.push(`--no-${f.name}`)
        if (f.char && !mentions(text, `-${f.char}`)) missing.push(`-${f.char} (--${f.name})`)
      }
      for (const a of Object.values(c.args ?? {})) {
        if (!new RegExp(String.raw`\b${escape(a.name.toUpperCase())}\b`).test(text)) missing.push(`argument ${a.name.toUpperCase()}`)
      }
      expect(missing, `docs/${page} does not mention ${missing.join(', ')} of \`iopmem ${name}\``).to.deep.equal([])
    })
  }

  it('docs/README.md documents help, autocomplete and did-you-mean', () => {
    const index = fs.readFileSync(path.join(DOCS, 'README.md'), 'utf8')
    for (const s of ['iopmem help', 'iopmem autocomplete', 'did you mean']) expect(index, `docs/README.md does not mention ${s}`).to.include(s)
  })
})

describe('docs: links', () => {
  const pages = fs.readdirSync(DOCS).filter((f) => f.endsWith('.md')).sort()

  it('docs/ holds the pages', () => {
    expect(pages).to.include.members(['README.md', 'json-and-exit-codes.md', 'guest-suite.md', 'speed.md', 'layout.md', 'safety.md'])
  })

  for (const p of pages) {
    it(`README.md links to docs/${p}`, () => {
      expect(readme.includes(`](docs/${p})`) || readme.includes(`](docs/${p}#`), `README.md has no link to docs/${p}`).to.equal(true)
    })
  }

  it('docs/README.md links to every other page', () => {
    const index = fs.readFileSync(path.join(DOCS, 'README.md'), 'utf8')
    const unlinked = pages.filter((p) => p !== 'README.md' && !index.includes(`](${p})`) && !index.includes(`](${p}#`))
    expect(unlinked, `docs/README.md has no link to ${unlinked.join(', ')}`).to.deep.equal([])
  })

  it('every relative link in docs/ and README.md points at a file that exists', () => {
    const broken: string[] = []
    for (const [file, dir] of [...pages.map((p) => [path.join(DOCS, p), DOCS]), [path.join(ROOT, 'README.md'), ROOT]]) {
      const text = fs.readFileSync(file, 'utf8')
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]
        if (/^[a-z]+:/.test(target)) continue
        if (!fs.existsSync(path.resolve(dir, target))) broken.push(`${path.relative(ROOT, file)} → ${target}`)
      }
    }
    expect(broken, `broken links: ${broken.join('; ')}`).to.deep.equal([])
  })
})

describe('README: the CI markers', () => {
  const lines = readme.split('\n')
  for (const stage of ['setup', 'main', 'test']) {
    it(`<!-- ci:${stage} --> is followed by a \`\`\`sh block with commands`, () => {
      const at = lines.indexOf(`<!-- ci:${stage} -->`)
      expect(at, `README.md has no <!-- ci:${stage} --> marker`).to.be.at.least(0)
      expect(lines[at + 1], `README.md: <!-- ci:${stage} --> is not followed by a \`\`\`sh line`).to.equal('```sh')
      const end = lines.indexOf('```', at + 2)
      expect(end, `README.md: the <!-- ci:${stage} --> block is not closed`).to.be.greaterThan(at + 2)
      const cmds = lines.slice(at + 2, end).filter((l) => l.trim() !== '')
      expect(cmds, `README.md: the <!-- ci:${stage} --> block has no commands`).not.to.be.empty
    })
  }
})
