/**
 * The JSON Schemas of docs/schemas/ (draft 2020-12), compiled once, and an
 * assertion that a command's --json document is what its schema says. A field the output has and the schema does
 * not is an error (additionalProperties: false).
 */
import {Ajv2020, type ValidateFunction} from 'ajv/dist/2020.js'
import {expect} from 'chai'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {ROOT} from './cli.js'

export const SCHEMA_DIR = path.join(ROOT, 'docs/schemas')

/** Each command with --json (its manifest id) and the schema of its result. */
export const SCHEMA_OF: Record<string, string> = {
  list: 'list',
  topo: 'topo',
  check: 'check',
  map: 'map',
  locate: 'locate',
  bind: 'bind',
  unbind: 'bind',
  'mkfs-dax': 'mkfs-dax',
  'bench:mmio': 'bench-mmio',
  'bench:p2p': 'bench-p2p',
  'driver:build': 'driver-build',
  'driver:install': 'driver-install',
  'driver:remove': 'driver-remove',
  'driver:load': 'driver-load',
  'driver:unload': 'driver-unload',
  'driver:status': 'driver-status',
  'nvmet:create': 'nvmet-target',
  'nvmet:remove': 'nvmet-target',
  'nvmet:restore': 'nvmet-target',
  'nvmet:list': 'nvmet-list',
  'nvmet:save': 'nvmet-save',
  'persist:list': 'persist-list',
  'persist:apply': 'persist-apply',
  'persist:remove': 'persist-remove',
  sandbox: 'sandbox',
}

let ajv: Ajv2020 | undefined
const compiled = new Map<string, ValidateFunction>()

/** The validator of docs/schemas/NAME.json (strict: an unknown keyword or a bad schema throws). */
export function validator(name: string): ValidateFunction {
  ajv ??= new Ajv2020({strict: true, allErrors: true})
  let v = compiled.get(name)
  if (!v) {
    v = ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `${name}.json`), 'utf8')))
    compiled.set(name, v)
  }
  return v
}

/**
 * `json` (what `iopmem ID … --json` printed) is valid against its schema: the
 * error envelope's when it is one (no result has a top-level `error`), a dry
 * run's (`dryRun: true`, bind/unbind/mkfs-dax/driver load), else the command's. `id` is the manifest id (`bench:p2p`) or the words (`bench p2p`).
 */
export function expectSchema(id: string, json: unknown): void {
  expect(json, `${id}: one JSON object on stdout`).to.be.an('object')
  const name = 'error' in (json as object) ? 'error' : (json as {dryRun?: boolean}).dryRun === true ? 'dry-run' : SCHEMA_OF[id.replaceAll(' ', ':')]
  expect(name, `no schema for ${id}`).to.be.a('string')
  const v = validator(name)
  const ok = v(json)
  expect(ok, `${id} --json against docs/schemas/${name}.json:\n${JSON.stringify(v.errors, null, 2)}`).to.equal(true)
}

/** The id (as SCHEMA_OF has it) of the command `iopmem ARGS` runs: `bench p2p …` is bench:p2p. */
export function commandIdOf(args: readonly string[]): string {
  const two = `${args[0]}:${args[1]}`
  return two in SCHEMA_OF ? two : args[0]
}
