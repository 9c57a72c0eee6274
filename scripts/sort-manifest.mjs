#!/usr/bin/env node
// oclif writes the manifest's commands in the order it finds their files, which differs
// between checkouts (directory order on disk): sort them by id, so the committed
// oclif.manifest.json is the same whoever builds it and check:manifest compares content.
import {readFileSync, writeFileSync} from 'node:fs'

const file = new URL('../oclif.manifest.json', import.meta.url)
const manifest = JSON.parse(readFileSync(file, 'utf8'))
const commands = Object.fromEntries(Object.keys(manifest.commands).sort().map((id) => [id, manifest.commands[id]]))
writeFileSync(file, JSON.stringify({...manifest, commands}, null, 2))
