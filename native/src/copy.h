// CPU access to device memory: exact-width accesses, gdrcopy-style bulk
// copies fitted to the caching mode, cache-line flushes, and CPU feature
// detection. x86-64 only. Everything wider than SSE2 is compiled per function
// with __attribute__((target)) and picked at run time from cpuid.
#pragma once

#include <cstddef>
#include <cstdint>

namespace iopmem {

// Widest vector ISA the copy loops may use (a ceiling set by setIsaLimit, and
// never above what cpuid says the CPU and OS support).
enum Isa : int { ISA_SSE2 = 0, ISA_SSE41 = 1, ISA_AVX = 2, ISA_AVX2 = 3, ISA_AVX512 = 4 };

struct CpuFeatures {
  bool sse2, sse41, avx, avx2, avx512f, clflush, clflushopt, clwb;
  unsigned cacheLine;  // CLFLUSH line size in bytes (cpuid 1, EBX[15:8] * 8)
  Isa best;            // widest usable ISA
};

const CpuFeatures& cpu();
const char* isaName(Isa isa);
// Clamp the ISA the copy loops use (tests and benches). Returns the ISA in
// force after the call (the request clamped to what the CPU has).
Isa setIsaLimit(Isa limit);
Isa isaLimit();

// Streaming (non-temporal) stores to dev, then sfence. The device pointer is
// first aligned with naturally aligned 1/2/4/8-byte volatile stores; the tail
// likewise. Returns the ISA of the vector loop used.
const char* copyStreamStore(uint8_t* dev, const uint8_t* host, size_t n);
// Streaming loads (movntdqa) from dev into host. The device pointer is aligned
// first with naturally aligned small volatile loads. Falls back to exact64 when
// the CPU lacks SSE4.1 (returns "exact64" then).
const char* copyStreamLoad(uint8_t* host, const uint8_t* dev, size_t n);
// Exact-width loops: 8-byte volatile stores/loads for the aligned body,
// naturally aligned 1/2/4-byte accesses for the head and tail. Never memcpy.
// The store loop ends with sfence.
void copyExact64To(uint8_t* dev, const uint8_t* host, size_t n);
void copyExact64From(uint8_t* host, const uint8_t* dev, size_t n);

// Write back (clwb), else flush (clflushopt, clflush) every cache line of
// [p, p+n), then sfence. Returns the instruction used.
const char* flushRange(const uint8_t* p, size_t n);

}  // namespace iopmem
