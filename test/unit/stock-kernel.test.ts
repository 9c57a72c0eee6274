/** Which of a distribution kernel's modules the guest's initramfs gets, in which order (modules.dep), and reading them uncompressed. */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {moduleClosure, readModuleFile} from '../../src/lib/vm/index.js'

const DEP = [
  'kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz',
  'kernel/fs/mbcache.ko.xz:',
  'kernel/fs/jbd2/jbd2.ko.xz:',
  'kernel/lib/crc16.ko.xz:',
  'kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
  'kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz',
  'kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
  'kernel/fs/netfs/netfs.ko.xz:',
  'kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz kernel/drivers/nvme/common/nvme-auth.ko.xz',
  'kernel/drivers/nvme/host/nvme-core.ko.xz: kernel/drivers/nvme/common/nvme-auth.ko.xz',
  'kernel/drivers/nvme/common/nvme-auth.ko.xz:',
].join('\n')

describe('stock kernels: the initramfs modules', () => {
  it('every module after the ones it needs, each once; names match across - and _', () => {
    const order = moduleClosure(DEP, ['9pnet_virtio', '9p', 'nvme', 'ext4'])
    const base = order.map((f) => path.basename(f, '.ko.xz'))
    expect(base).to.deep.equal(['netfs', '9pnet', '9pnet_virtio', '9p', 'nvme-auth', 'nvme-core', 'nvme', 'jbd2', 'mbcache', 'crc16', 'ext4'])
    expect(moduleClosure(DEP, ['nvme_core']).map((f) => path.basename(f, '.ko.xz'))).to.deep.equal(['nvme-auth', 'nvme-core'])
  })

  it('a wanted module the kernel has built in (modules.builtin) is left out; one neither built in nor in modules.dep is an error', () => {
    expect(moduleClosure(DEP, ['virtio_pci', 'nvme_core'], 'kernel/drivers/virtio/virtio_pci.ko\n').map((f) => path.basename(f, '.ko.xz'))).to.deep.equal(['nvme-auth', 'nvme-core'])
    expect(() => moduleClosure(DEP, ['virtio_pci'])).to.throw(/no module virtio_pci/)
  })

  it('a module modules.dep does not have is an error naming who needs it', () => {
    expect(() => moduleClosure(DEP + '\nkernel/x.ko.xz: kernel/gone.ko.xz', ['x'])).to.throw(/no module gone \(needed by x\)/)
  })

  it('reads .ko.xz uncompressed', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iopmem-ko-'))
    try {
      fs.writeFileSync(path.join(tmp, 'm.ko'), 'ELF module bytes')
      execFileSync('xz', ['-k', path.join(tmp, 'm.ko')])
      expect(readModuleFile(path.join(tmp, 'm.ko.xz')).toString()).to.equal('ELF module bytes')
    } finally {
      fs.rmSync(tmp, {recursive: true, force: true})
    }
  })
})
