/**
 * Module signatures and Secure Boot on fixtures: the signer and serial read
 * from a file signed by a kernel's real scripts/sign-file with a key made by
 * openssl, the SecureBoot and MokListRT EFI variables, and what `check` and
 * `driver status` say from them.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {driverEnv, driverStatus, enrolledAsMok, moduleSignature, renderStatus, secureBootState} from '../../src/lib/bind/index.js'
import {runCheck} from '../../src/lib/check/index.js'
import {checkMachine, modules, RELEASE} from '../helpers/check-machines.js'
import {DEBIAN_612, debianTree, makeKey, mokListRT, type TestKey} from '../helpers/signing.js'
import type {SysfsFixture} from '../helpers/sysfs-fixture.js'

const EFIVARS = 'firmware/efi/efivars'
const SB = `${EFIVARS}/SecureBoot-8be4df61-93ca-11d2-aa0d-e98c0130b54a`
const MOK = `${EFIVARS}/MokListRT-605dab50-e046-4293-a419-f73cb0a9e3ab`

describe('module signatures and Secure Boot', function () {
  this.timeout(60_000)
  let tmp: string
  let key: TestKey
  let other: TestKey
  let signed: Buffer
  const fixtures: SysfsFixture[] = []
  const track = (fx: SysfsFixture) => (fixtures.push(fx), fx)

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-sig-'))
    key = makeKey(tmp, 'iopmem unit test key')
    other = makeKey(tmp, 'someone else', 'other')
    // Debian's own sign-file (linux-kbuild, with the headers): it appends the PKCS#7 and the trailer to any file.
    const unsigned = path.join(tmp, 'iopmem.ko')
    fs.writeFileSync(unsigned, Buffer.concat([Buffer.from('\x7fELF'), Buffer.from(`vermagic=${RELEASE} SMP\0`)]))
    execFileSync(path.join(debianTree(DEBIAN_612).dir, 'scripts/sign-file'), ['sha256', key.key, key.cert, unsigned, path.join(tmp, 'signed.ko')])
    signed = fs.readFileSync(path.join(tmp, 'signed.ko'))
  })
  after(() => {
    for (const fx of fixtures) fx.cleanup()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('reads the signer (the issuer\'s CN) and serial that sign-file wrote, and sees an unsigned file as unsigned', () => {
    expect(moduleSignature(signed, 'iopmem.ko')).to.deep.equal({signed: true, signer: key.cn, serial: key.serial})
    expect(moduleSignature(Buffer.from('\x7fELF nothing'), 'iopmem.ko')).to.deep.equal({signed: false, signer: null, serial: null})
    // A truncated signature is signed but unreadable, never a throw.
    const cut = Buffer.concat([Buffer.from('x'), signed.subarray(signed.length - 40)])
    expect(moduleSignature(cut, 'iopmem.ko')).to.include({signed: true, signer: null})
    expect(moduleSignature(signed, 'iopmem.ko.xz').unreadable).to.match(/xz-compressed/)
  })

  it('Secure Boot from efivars (4 attribute bytes, then the value); no firmware/efi is a BIOS boot; sig_enforce', () => {
    const fx = track(checkMachine())
    expect(secureBootState(fx.host())).to.include({secureBoot: 'no-efi', needsSignature: false})
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 0]))
    expect(secureBootState(fx.host())).to.include({secureBoot: 'off', needsSignature: false})
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 1]))
    expect(secureBootState(fx.host())).to.include({secureBoot: 'on', needsSignature: true})
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 0]))
    fx.writeSys('module/module/parameters/sig_enforce', 'Y\n')
    expect(secureBootState(fx.host())).to.include({secureBoot: 'off', sigEnforce: true, needsSignature: true})
  })

  it('a signer is enrolled when shim\'s MokListRT holds its certificate (issuer and serial), not when it holds another', () => {
    const fx = track(checkMachine())
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 1]))
    const sig = moduleSignature(signed, 'iopmem.ko')
    expect(enrolledAsMok(sig, secureBootState(fx.host())), 'no MokListRT: unknown').to.equal(null)
    fx.writeSys(MOK, mokListRT([fs.readFileSync(other.der)]))
    expect(enrolledAsMok(sig, secureBootState(fx.host()))).to.equal(false)
    fx.writeSys(MOK, mokListRT([fs.readFileSync(other.der), fs.readFileSync(key.der)]))
    expect(secureBootState(fx.host()).mok).to.have.length(2)
    expect(enrolledAsMok(sig, secureBootState(fx.host()))).to.equal(true)
  })

  it('check: with Secure Boot on, an unsigned module fails, one signed by a key not enrolled fails with the mokutil --import step, an enrolled one passes', () => {
    const fx = track(checkMachine({modulesDep: ['updates/iopmem.ko:']}))
    const ko = modules(fx, RELEASE, 'updates/iopmem.ko')
    fs.mkdirSync(path.dirname(ko), {recursive: true})
    fs.writeFileSync(ko, `\x7fELF vermagic=${RELEASE} SMP\0`)
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 1]))
    fx.writeSys(MOK, mokListRT([fs.readFileSync(other.der)]))
    const item = () => runCheck(fx.host(), []).items.find((i) => i.id === 'kernel.iopmem-module')!
    expect(item()).to.include({verdict: 'fail'})
    expect(item().found).to.match(/unsigned, and the kernel wants signed modules \(Secure Boot is on/)
    expect(item().fix).to.match(/driver build --sign KEY --cert CERT/)
    fs.writeFileSync(ko, signed)
    expect(item()).to.include({verdict: 'fail'})
    expect(item().found).to.contain(`signed by ${key.cn}, but that key is not an enrolled MOK`)
    expect(item().fix).to.match(/^sudo mokutil --import /)
    fx.writeSys(MOK, mokListRT([fs.readFileSync(key.der)]))
    expect(item()).to.include({verdict: 'pass', found: `built for ${RELEASE}, signed by ${key.cn}, not loaded`})
    expect(item().details).to.include({secureBoot: 'on', enrolled: true, signer: key.cn})
  })

  it('driver status: the built module\'s signer, Secure Boot, whether the loaded one was verified, and the mokutil step', () => {
    const fx = track(checkMachine())
    const cache = path.join(tmp, 'cache')
    const out = path.join(cache, 'iopmem/kmod', RELEASE)
    fs.mkdirSync(out, {recursive: true})
    fs.writeFileSync(path.join(out, 'iopmem.ko'), signed)
    fx.writeSys(SB, Buffer.from([6, 0, 0, 0, 1]))
    fx.writeSys(MOK, mokListRT([fs.readFileSync(other.der)]))
    const env = {IOPMEM_KERNEL_RELEASE: RELEASE, XDG_CACHE_HOME: cache}
    let s = driverStatus(driverEnv(fx.host(), env))
    expect(s.built?.signature).to.deep.equal({signed: true, signer: key.cn, serial: key.serial})
    expect(s.signing).to.include({secureBoot: 'on', needsSignature: true, enrolled: false, loadedVerified: null})
    expect(s.signing.advice.join('\n')).to.match(/not an enrolled MOK: sudo mokutil --import/)
    expect(renderStatus(s)).to.match(/built module: .*signed by iopmem unit test key/)
    expect(renderStatus(s)).to.match(/Secure Boot: on; modules must be signed by a trusted key/)
    fx.writeSys('module/iopmem/version', '0.1.0\n')
    fx.writeSys('module/iopmem/taint', 'OE\n')
    s = driverStatus(driverEnv(fx.host(), env))
    expect(s.signing.loadedVerified).to.equal(false)
    expect(renderStatus(s)).to.contain('loaded module not verified (taint E)')
  })
})
