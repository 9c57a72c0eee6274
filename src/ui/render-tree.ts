/** `iopmem list --tree` for a person: the hierarchy drawn as `lspci -tv` draws it, providers and P2P groups marked, each line fitted to the width. */
import type {ChalkInstance} from 'chalk'

import type {ListResult, PciFunction, PciTree, TreeNode} from '../lib/pci/index.js'
import {formatBytes} from '../lib/sys/index.js'
import {truncate, wrap} from './width.js'

const hex2 = (n: number) => n.toString(16).padStart(2, '0')

function name(f: PciFunction | undefined): string {
  if (!f) return ''
  const vendor = f.vendorName ? f.vendorName.replace(/,? (Inc\.|Corporation|Co\., Ltd\.|Ltd\.|Technology.*)$/, '') : `Device ${f.vendorId.slice(2)}`
  return `${vendor} ${f.deviceName ?? f.deviceId.slice(2)}`
}

const compact = (n: number) => formatBytes(n).replace(/ ([KMGTPE])iB$/, '$1').replace(/ B$/, 'B')

/** What a leaf says between its address and its name: provider and group marks. */
function marks(n: TreeNode, f: PciFunction | undefined): string {
  const m: string[] = []
  if (n.group) m.push(n.group)
  if (n.provider && f) m.push(f.p2pmem ? `p2pmem ${compact(f.p2pmem.size)}` : 'iopmem')
  return m.length ? `[${m.join(' ')}]` : ''
}

/**
 * lspci's ls-tree.c: one buffer per line; a device writes "dd.f" at the
 * current position, a bridge "-[sec-sub]-" and its bus after it; once a line
 * is printed, the buffer keeps only the "|" of branches still open.
 */
export function renderTree(r: ListResult, c: ChalkInstance, width = Infinity): string {
  const tree = r.tree as PciTree
  const byBdf = new Map(r.functions.map((f) => [f.bdf, f]))
  const out: string[] = []
  let line: string[] = []
  const put = (at: number, s: string) => {
    while (line.length < at) line.push(' ')
    line.splice(at, s.length, ...s)
    return at + s.length
  }
  const print = (end: number, tail = '') => {
    const text = line.slice(0, end).join('') + tail
    out.push(width === Infinity ? text : truncate(text, width))
    line = line.slice(0, end).map((ch) => (ch === '+' || ch === '|' ? '|' : ' '))
  }
  const dev = (n: TreeNode, at: number) => {
    const f = byBdf.get(n.bdf)
    let p = put(at, `${n.bdf.slice(-4)}`)
    if (n.buses) {
      const [sec, sub] = n.buses
      p = put(p, sec === sub ? `-[${hex2(sec)}]--` : `-[${hex2(sec)}-${hex2(sub)}]--`)
      bus(n.children, p)
      return
    }
    // The marks are kept whole where the name is cut (or left out when fewer than 8 columns remain for it).
    const m = marks(n, f)
    const room = width - p - 2 - (m ? m.length + 1 : 0)
    print(p, `  ${m}${room >= 8 ? `${m ? ' ' : ''}${truncate(name(f), room)}` : ''}`)
  }
  const bus = (children: TreeNode[], p: number) => {
    if (children.length === 0) {
      print(p)
      return
    }
    if (children.length === 1) {
      dev(children[0], put(p, '--'))
      return
    }
    for (const [i, ch] of children.entries()) dev(ch, put(p, i === children.length - 1 ? '\\-' : '+-'))
  }
  for (const hb of tree.hostBridges) {
    const [dom, b] = hb.name.replace(/^pci/, '').split(':')
    bus(hb.children, put(0, `-[${dom}:${b}]-`))
    line = []
  }
  const legend: string[] = []
  for (const g of tree.groups) {
    const members = g.members.map((m) => m.replace(/^0000:/, '')).join(', ')
    legend.push(`[${g.name}] P2P group: ${members} under switch ${g.switch.replace(/^0000:/, '')}, no ACS redirect on the way${g.acsKnown ? '' : ' (ACS not readable without root: assumed)'}.`)
  }
  if (r.functions.some((f) => f.p2pmem || f.driver === 'iopmem')) legend.push('p2pmem SIZE, iopmem: a P2P provider (memory a peer can DMA to).')
  else legend.push('No P2P provider (p2pmem or iopmem) on this machine.')
  return [...out, ...legend.map((l) => c.dim(wrap(l, width)))].join('\n')
}
