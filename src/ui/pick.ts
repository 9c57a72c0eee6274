import type {Host} from '../lib/sys/index.js'
import {hasDeviceMemory, largestMemBar, PciScanner} from '../lib/pci/index.js'
import {formatBytes} from '../lib/sys/index.js'

/** On a TTY, let a person choose a function with device memory. */
export async function pickFunction(host: Host, message: string): Promise<string> {
  const scanner = new PciScanner(host)
  const fns = scanner.scanAll().filter((f) => hasDeviceMemory(f) && !f.isBridge)
  const {select} = await import('@inquirer/prompts')
  if (fns.length === 0) throw new Error('No PCI function with device memory is visible.')
  return select({
    message,
    choices: fns.map((f) => {
      const bar = largestMemBar(f)
      return {
        value: f.bdf,
        name: `${f.bdf}  ${f.deviceName ?? f.className}  [${f.driver ?? 'no driver'}]${bar ? `  ${bar.name} ${formatBytes(bar.size)}` : ''}${f.p2pmem ? '  p2pmem' : ''}`,
      }
    }),
  })
}
