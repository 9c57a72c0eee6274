/** Test keys and kernel trees for module signing and DKMS: a throw-away key pair from openssl, Debian's header trees, shim's MOK list as efivarfs shows it. */
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface TestKey {
  key: string
  /** PEM */
  cert: string
  /** DER, what mokutil --import takes */
  der: string
  cn: string
  /** Serial number, hex, upper case, as openssl prints it. */
  serial: string
}

/** A fresh RSA key and self-signed certificate with common name `cn`, made by `openssl req` in `dir`. */
export function makeKey(dir: string, cn: string, name = 'mok'): TestKey {
  const key = path.join(dir, `${name}.key`)
  const cert = path.join(dir, `${name}.pem`)
  const der = path.join(dir, `${name}.der`)
  execFileSync('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${cn}/`, '-keyout', key, '-out', cert], {stdio: 'pipe'})
  execFileSync('openssl', ['x509', '-in', cert, '-outform', 'DER', '-out', der])
  const serial = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-serial'], {encoding: 'utf8'}).trim().replace(/^serial=/, '')
  return {key, cert, der, cn, serial: serial.toUpperCase()}
}

/**
 * The newest installed Debian header tree matching `re` (under /usr/src): what
 * scripts/install-deps.sh installs. Throws when there is none, so a missing
 * package fails the test instead of skipping it.
 */
export function debianTree(re: RegExp): {dir: string; release: string} {
  const names = fs.existsSync('/usr/src') ? fs.readdirSync('/usr/src').filter((n) => re.test(n)) : []
  const sorted = names.sort((a, b) => a.localeCompare(b, 'en', {numeric: true}))
  const name = sorted.at(-1)
  if (!name || !fs.existsSync(path.join('/usr/src', name, 'Module.symvers'))) {
    throw new Error(`no Debian kernel header tree matching ${re} in /usr/src: run scripts/install-deps.sh`)
  }
  const dir = path.join('/usr/src', name)
  const uts = fs.readFileSync(path.join(dir, 'include/generated/utsrelease.h'), 'utf8')
  return {dir, release: /UTS_RELEASE "([^"]+)"/.exec(uts)![1]}
}

export const DEBIAN_612 = /^linux-headers-6\.12\.[0-9]+\+deb12-amd64$/
export const DEBIAN_61 = /^linux-headers-6\.1\.0-[0-9]+-amd64$/

/** shim's MokListRT as efivarfs shows it: 4 attribute bytes, then one EFI_SIGNATURE_LIST of X.509 certificates. */
export function mokListRT(ders: Buffer[]): Buffer {
  const x509 = Buffer.from('a159c0a5e494a74a87b5ab155c2bf072', 'hex')
  const lists = ders.map((der) => {
    const head = Buffer.alloc(28)
    x509.copy(head, 0)
    head.writeUInt32LE(28 + 16 + der.length, 16)
    head.writeUInt32LE(0, 20)
    head.writeUInt32LE(16 + der.length, 24)
    return Buffer.concat([head, Buffer.alloc(16, 0x11), der])
  })
  return Buffer.concat([Buffer.from([7, 0, 0, 0]), ...lists])
}
