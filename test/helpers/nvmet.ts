/** Fixture machines for `iopmem nvmet`: the standard machine with a fake nvmet configfs, and RDMA devices (a PCI one, soft-RoCE) to add. */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {FakeConfigfs} from './fake-configfs.js'
import {BDF, standardMachine} from './machines.js'
import type {SysfsFixture} from './sysfs-fixture.js'

export function nvmetMachine(track: (fx: SysfsFixture) => SysfsFixture): {fx: SysfsFixture; cfs: FakeConfigfs} {
  const fx = track(standardMachine())
  return {fx, cfs: new FakeConfigfs(fx)}
}

/** A soft-RoCE device (no PCI parent) and a PCI RDMA device on the root complex NIC. */
export function addRdma(fx: SysfsFixture, which: 'rxe' | 'pci'): void {
  const cls = path.join(fx.sys, 'class/infiniband')
  fs.mkdirSync(cls, {recursive: true})
  if (which === 'rxe') {
    const d = path.join(fx.sys, 'devices/virtual/infiniband/rxe0')
    fs.mkdirSync(d, {recursive: true})
    fs.symlinkSync(path.relative(cls, d), path.join(cls, 'rxe0'))
  } else {
    const d = path.join(fx.fnDir(BDF.nic), 'infiniband/mlx_0')
    fs.mkdirSync(d, {recursive: true})
    fs.symlinkSync(path.relative(cls, d), path.join(cls, 'mlx_0'))
  }
}

