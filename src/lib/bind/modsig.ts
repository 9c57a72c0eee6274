/** Module signatures and Secure Boot: who signed a module file, whether this kernel needs a signature, and whether the signer's key is enrolled as a MOK. */
import * as crypto from 'node:crypto'
import * as zlib from 'node:zlib'

import type {Host} from '../sys/index.js'

/**
 * A signed module ends with its signature: the PKCS#7 (CMS) blob, then
 * struct module_signature (algo, hash, id_type, signer_len, key_id_len,
 * 3 pad bytes, be32 sig_len), then MODULE_SIG_MAGIC. scripts/sign-file
 * writes it; the kernel checks it against its trusted keys (built-in,
 * secondary, and with shim the MOKs). What modinfo calls the signer is the
 * common name of the issuer in the PKCS#7 SignerInfo, and sig_key its serial.
 */
const MAGIC = Buffer.from('~Module signature appended~\n', 'latin1')
const PKEY_ID_PKCS7 = 2
/** EFI global variable GUID (SecureBoot) and shim's (MokListRT). */
const EFI_GLOBAL = '8be4df61-93ca-11d2-aa0d-e98c0130b54a'
const SHIM_GUID = '605dab50-e046-4293-a419-f73cb0a9e3ab'
/** EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072, as stored (mixed endian). */
const EFI_CERT_X509 = Buffer.from('a159c0a5e494a74a87b5ab155c2bf072', 'hex')

export interface ModuleSignature {
  /** Whether the file carries a signature at all. */
  signed: boolean
  /** The issuer's common name, as modinfo's "signer"; null when unsigned or not PKCS#7. */
  signer: string | null
  /** The certificate's serial number in hex (modinfo's "sig_key"), upper case, no separators. */
  serial: string | null
  /** Why the signature could not be read, when it could not. */
  unreadable?: string
}

/** The signature of a module image (a .ko, or a .ko.gz unpacked here). */
export function moduleSignature(data: Buffer, name = ''): ModuleSignature {
  let image = data
  if (name.endsWith('.gz')) image = zlib.gunzipSync(data)
  else if (/\.(xz|zst)$/.test(name)) return {signed: false, signer: null, serial: null, unreadable: `${name.split('.').pop()}-compressed (\`modinfo -F signer\` reads it)`}
  if (image.length < MAGIC.length + 12 || !image.subarray(image.length - MAGIC.length).equals(MAGIC)) return {signed: false, signer: null, serial: null}
  const info = image.length - MAGIC.length - 12
  const idType = image[info + 2]
  const sigLen = image.readUInt32BE(info + 8)
  if (sigLen > info) return {signed: true, signer: null, serial: null, unreadable: 'the signature length is larger than the module'}
  if (idType !== PKEY_ID_PKCS7) return {signed: true, signer: null, serial: null, unreadable: `id type ${idType} is not PKCS#7`}
  try {
    return {signed: true, ...pkcs7Signer(image.subarray(info - sigLen, info))}
  } catch (error) {
    return {signed: true, signer: null, serial: null, unreadable: `its PKCS#7 cannot be parsed (${(error as Error).message})`}
  }
}

interface Der {
  tag: number
  start: number
  end: number
}

function der(buf: Buffer, off: number): Der {
  if (off + 2 > buf.length) throw new Error('truncated')
  const tag = buf[off]
  let len = buf[off + 1]
  let start = off + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || start + n > buf.length) throw new Error('bad length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]
    start += n
  }
  if (start + len > buf.length) throw new Error('truncated')
  return {tag, start, end: start + len}
}

function children(buf: Buffer, node: Der): Der[] {
  const out: Der[] = []
  for (let off = node.start; off < node.end; ) {
    const c = der(buf, off)
    out.push(c)
    off = c.end
  }
  return out
}

/** ContentInfo → SignedData → the first SignerInfo's issuerAndSerialNumber. */
function pkcs7Signer(buf: Buffer): {signer: string | null; serial: string | null} {
  const ci = children(buf, der(buf, 0))
  if (ci.length < 2 || ci[1].tag !== 0xa0) throw new Error('not a SignedData ContentInfo')
  const sd = children(buf, children(buf, ci[1])[0])
  const infos = sd.at(-1)
  if (!infos || infos.tag !== 0x31) throw new Error('no SignerInfos')
  const si = children(buf, children(buf, infos)[0])
  const sid = si[1]
  if (sid.tag !== 0x30) return {signer: null, serial: null} // [0] subjectKeyIdentifier: no issuer name
  const [issuer, serial] = children(buf, sid)
  let cn: string | null = null
  for (const rdn of children(buf, issuer)) {
    for (const atv of children(buf, rdn)) {
      const [oid, value] = children(buf, atv)
      if (buf.subarray(oid.start, oid.end).equals(Buffer.from([0x55, 0x04, 0x03]))) cn = buf.toString('utf8', value.start, value.end)
    }
  }
  let hex = buf.toString('hex', serial.start, serial.end).toUpperCase()
  while (hex.startsWith('00') && hex.length > 2) hex = hex.slice(2)
  return {signer: cn, serial: hex}
}

export interface SecureBootState {
  /** on/off from the SecureBoot EFI variable; 'no-efi' on a BIOS boot; 'unknown' when unreadable. */
  secureBoot: 'on' | 'off' | 'no-efi' | 'unknown'
  /** module.sig_enforce (Y also when the kernel was built with MODULE_SIG_FORCE); null when the kernel has no module signing. */
  sigEnforce: boolean | null
  /** Whether a module must carry a signature the kernel trusts to load. */
  needsSignature: boolean
  /** Certificates enrolled through shim (MokListRT), or null when that list cannot be read. */
  mok: Array<{subject: string; issuer: string; serial: string}> | null
}

/** Read from the host's sysfs root: efivars, the module parameters, shim's MOK list. */
export function secureBootState(host: Host): SecureBootState {
  let secureBoot: SecureBootState['secureBoot'] = 'unknown'
  if (!host.exists(host.sys('firmware/efi'))) secureBoot = 'no-efi'
  else {
    // efivarfs files start with 4 bytes of attributes.
    const v = host.readBytes(host.sys('firmware/efi/efivars', `SecureBoot-${EFI_GLOBAL}`))
    if (v && v.length >= 5) secureBoot = v[4] === 1 ? 'on' : 'off'
  }
  const enforce = host.readTrim(host.sys('module/module/parameters/sig_enforce'))
  const sigEnforce = enforce === undefined ? null : enforce === 'Y'
  return {secureBoot, sigEnforce, needsSignature: secureBoot === 'on' || sigEnforce === true, mok: mokList(host)}
}

function mokList(host: Host): SecureBootState['mok'] {
  // The kernel mirrors shim's list in mok-variables (no attribute bytes); efivars has it with them.
  let data = host.readBytes(host.sys('firmware/efi/mok-variables/MokListRT'))
  if (!data) {
    const v = host.readBytes(host.sys('firmware/efi/efivars', `MokListRT-${SHIM_GUID}`))
    data = v && v.length > 4 ? v.subarray(4) : undefined
  }
  if (!data) return null
  const out: NonNullable<SecureBootState['mok']> = []
  // EFI_SIGNATURE_LIST: type GUID, list size, header size, signature size, header, signatures (owner GUID + data).
  for (let off = 0; off + 28 <= data.length; ) {
    const listSize = data.readUInt32LE(off + 16)
    const headerSize = data.readUInt32LE(off + 20)
    const sigSize = data.readUInt32LE(off + 24)
    if (listSize < 28 || off + listSize > data.length || sigSize <= 16) break
    if (data.subarray(off, off + 16).equals(EFI_CERT_X509)) {
      for (let s = off + 28 + headerSize; s + sigSize <= off + listSize; s += sigSize) {
        try {
          const c = new crypto.X509Certificate(data.subarray(s + 16, s + sigSize))
          out.push({subject: c.subject, issuer: c.issuer, serial: c.serialNumber.toUpperCase()})
        } catch {}
      }
    }
    off += listSize
  }
  return out
}

/** Whether a signature's issuer and serial match an enrolled MOK: true, false, or null when unknown. */
export function enrolledAsMok(sig: ModuleSignature, state: SecureBootState): boolean | null {
  if (!sig.signed || sig.serial === null || state.mok === null) return null
  const cn = (name: string) => /(?:^|\n)CN=([^\n]*)/.exec(name)?.[1] ?? null
  return state.mok.some((m) => m.serial.replace(/^0+/, '') === sig.serial!.replace(/^0+/, '') && cn(m.issuer) === sig.signer)
}

/** The `mokutil --import` step for a certificate (DER: convert a PEM one first). */
export function mokImportStep(cert: string): string {
  return `sudo mokutil --import ${cert} (a DER certificate; for a PEM one first \`openssl x509 -in CERT.pem -outform DER -out CERT.der\`), choose a one-time password, reboot and enroll it in the blue MOK Manager screen`
}
