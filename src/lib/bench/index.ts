/** The benchmarks: peer-to-peer DMA copies (bench p2p) and CPU access to mapped device memory (bench mmio). */
export * from './mmio.js'
export * from './p2p.js'
export * from './p2p-run.js'
export * from './mmio-run.js'
