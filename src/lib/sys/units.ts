/** Byte sizes: parsing 4K/1M/0x1000 and printing KiB/MiB/GiB. */
import {usage} from './errors.js'

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** 64 MiB, 1.5 GiB, 512 B: binary units, at most one decimal, trailing .0 dropped. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return String(n)
  let i = 0
  let v = n
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024
    i++
  }
  const s = i === 0 ? String(v) : v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, '')
  return `${s} ${UNITS[i]}`
}

const SUFFIX: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
}

/**
 * Parse a size or offset: decimal or 0x hex, with an optional binary unit
 * suffix (K, KiB, M, MiB, G, GiB, T, TiB; KB/MB/GB are taken as binary too,
 * as dd and fio do). Throws a usage error naming the flag.
 */
export function parseSize(text: string, what = 'size', opts: {min?: number; max?: number} = {}): number {
  const t = text.trim()
  const m = /^(0x[0-9a-f]+|\d+)\s*([a-z]*)$/i.exec(t)
  const mult = m ? SUFFIX[m[2].toLowerCase()] : undefined
  if (!m || mult === undefined || (m[1].startsWith('0x') && m[2] !== '')) {
    throw usage(`Invalid ${what} ${JSON.stringify(text)}: expected a number with an optional unit, e.g. 4096, 0x1000, 64K, 2MiB, 1G.`, 'E_SIZE_SYNTAX')
  }
  const n = Number(BigInt(m[1].toLowerCase()) * BigInt(mult))
  if (!Number.isSafeInteger(n)) throw usage(`Invalid ${what} ${JSON.stringify(text)}: too large.`, 'E_SIZE_RANGE')
  if (opts.min !== undefined && n < opts.min) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be at least ${formatBytes(opts.min)}.`, 'E_SIZE_RANGE')
  if (opts.max !== undefined && n > opts.max) throw usage(`Invalid ${what} ${JSON.stringify(text)}: must be at most ${formatBytes(opts.max)}.`, 'E_SIZE_RANGE')
  return n
}

/** "0x" + 16 hex digits: how every address is spelled in JSON (the form sysfs `resource` uses), so scripts compare strings. */
export function hex64(n: bigint | number): string {
  return '0x' + BigInt(n).toString(16).padStart(16, '0')
}

/** An address for a person: "0x" and the significant digits, as lspci and filefrag print them (JSON keeps hex64's 16). */
export function shortHex(addr: string): string {
  return '0x' + BigInt(addr).toString(16)
}

/**
 * A rate (GB/s, IOPS, MB/s) as every command gives it, in JSON and on screen:
 * 3 significant digits (12.3, 0.0457, 123000), so a figure a script reads is
 * the one a person sees and no digit claims more than a run can measure.
 */
export function roundRate(x: number): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(3))
}

/** A rate for a person: the same rounded number as in --json (roundRate), as text. */
export function formatRate(x: number): string {
  return String(roundRate(x))
}
