import {expect} from 'chai'

import {IopmemError} from '../../src/lib/errors.js'
import {explainSandboxError, sandboxOptions} from '../../src/lib/sandbox.js'

describe('sandbox options', () => {
  it('defaults: both topology, 64 MiB CMB and ivshmem, 2 GiB RAM, 180 s boot, 600 s command', () => {
    expect(sandboxOptions({})).to.deep.include({topology: 'both', cmbMiB: 64, ivshmemMiB: 64, memoryMiB: 2048, bootTimeoutMs: 180_000, commandTimeoutMs: 600_000, keep: false})
  })

  it('takes sizes with units', () => {
    expect(sandboxOptions({cmb: '128M', ivshmem: '0x10000000', memory: '2560M'})).to.deep.include({cmbMiB: 128, ivshmemMiB: 256, memoryMiB: 2560})
  })

  it('explains a missing kernel with the command that builds one', () => {
    const e = explainSandboxError(Object.assign(new Error('x'), {name: 'KernelNotFoundError', code: 'ENOKERNEL'})) as IopmemError
    expect(e.code).to.equal('E_NO_KERNEL')
    expect(e.exit).to.equal(7)
    expect(e.suggestions.join(' ')).to.contain('iopmem sandbox build-kernel')
  })
})
