/** Mapping device memory (a BAR, a p2pmem chunk, device-dax, a DAX file) and the operations on a mapping: read, write, dump, fill, verify, copy, hold. */
export * from './hold.js'
export * from './ops.js'
export * from './target.js'
export * from './plan.js'
export * from './run.js'
export type {CachingMode, CopyStrategy, FlushInstruction, Mapping, UsedStrategy, Width} from '../../native/types.js'
