// Prints a short hash of the addon's sources (native/src/* and binding.gyp).
// binding.gyp compiles it into the addon (`sourceHash`), and the tests compare
// the shipped prebuild's with the sources', so a stale prebuild is caught.
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

function sourceHash(root) {
  const h = crypto.createHash('sha256')
  const src = path.join(root, 'native', 'src')
  const files = fs.readdirSync(src).filter((f) => /\.(cc|h)$/.test(f)).sort().map((f) => path.join('native', 'src', f))
  for (const rel of [...files, 'binding.gyp']) {
    h.update(rel.split(path.sep).join('/') + '\0')
    h.update(fs.readFileSync(path.join(root, rel), 'utf8').replace(/\r\n/g, '\n'))
    h.update('\0')
  }
  return h.digest('hex').slice(0, 16)
}

module.exports = {sourceHash}
if (require.main === module) process.stdout.write('h' + sourceHash(path.resolve(__dirname, '..')))
