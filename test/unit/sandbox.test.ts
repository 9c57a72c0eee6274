import {expect} from 'chai'

import {IopmemError} from '../../src/lib/sys/errors.js'
import {explainSandboxError, sandboxOptions} from '../../src/lib/vm/sandbox.js'

describe('sandbox options', () => {
  it('defaults: both topology, 64 MiB CMB and ivshmem, 2 GiB RAM, 180 s boot, 600 s command', () => {
    expect(sandboxOptions({})).to.deep.include({topology: 'both', cmbMiB: 64, ivshmemMiB: 64, memoryMiB: 2048, bootTimeoutMs: 180_000, commandTimeoutMs: 600_000, keep: false})
  })

  it('takes sizes with units', () => {
    expect(sandboxOptions({cmb: '128M', ivshmem: '0x10000000', memory: '2560M'})).to.deep.include({cmbMiB: 128, ivshmemMiB: 256, memoryMiB: 2560})
  })

  it('new machine options: NVMe count, pmem size (RAM grows with it), IOMMU, NIC, extra parameters', () => {
    expect(sandboxOptions({})).to.deep.include({nvmeCount: 2, pmemMiB: 256, iommu: false, nic: false, append: undefined})
    expect(sandboxOptions({nvme: 4, pmem: '512M', iommu: true, nic: true, append: ' pci=disable_acs_redir=pci:1b36:000c '})).to.deep.include({
      nvmeCount: 4,
      pmemMiB: 512,
      memoryMiB: 2304,
      iommu: true,
      nic: true,
      append: 'pci=disable_acs_redir=pci:1b36:000c',
    })
    expect(sandboxOptions({pmem: '0'})).to.deep.include({pmemMiB: 0, memoryMiB: 2048})
    expect(sandboxOptions({pmem: 'off'})).to.deep.include({pmemMiB: 0})
    for (const bad of ['ip=127.0.0.2', 'nfsroot=1.2.3.4:/x', 'a\tb']) expect(() => sandboxOptions({append: bad})).to.throw(IopmemError)
  })

  it('explains a missing kernel with the command that builds one', () => {
    const e = explainSandboxError(Object.assign(new Error('x'), {name: 'KernelNotFoundError', code: 'ENOKERNEL'})) as IopmemError
    expect(e.code).to.equal('E_NO_KERNEL')
    expect(e.exit).to.equal(7)
    expect(e.suggestions.join(' ')).to.contain('iopmem sandbox build-kernel')
  })
})
