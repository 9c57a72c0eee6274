// Bulk copies between host memory and a mapping, fitted to its caching mode
// the way gdrcopy does it (src/memcpy_avx.c, memcpy_sse.c, memcpy_sse41.c):
//  - WC writes: non-temporal (streaming) stores, then sfence so the
//    write-combining buffers drain before anyone looks;
//  - UC/WC reads: SSE4.1 movntdqa streaming loads (16/32/64 bytes per access
//    instead of 8);
//  - UC: exact-width loops, never libc memcpy (which may use any width, and
//    rep movsb);
//  - WB: memcpy (chosen by the caller; not here).
// Unlike gdrcopy, the head and tail that align the device pointer use naturally
// aligned 1/2/4/8-byte volatile accesses rather than memcpy.
#include "copy.h"

#include <cpuid.h>
#include <immintrin.h>

#include <atomic>
#include <cstring>

namespace iopmem {

namespace {

inline uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f{};
  unsigned a = 0, b = 0, c = 0, d = 0;
  f.cacheLine = 64;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.sse2 = (d >> 26) & 1;
  f.clflush = (d >> 19) & 1;
  f.sse41 = (c >> 19) & 1;
  bool osxsave = (c >> 27) & 1;
  bool avxBit = (c >> 28) & 1;
  unsigned line = ((b >> 8) & 0xff) * 8;
  if (f.clflush && line >= 16) f.cacheLine = line;
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  // The OS must save YMM (XCR0 bits 1,2) and, for AVX-512, opmask/ZMM (5,6,7).
  f.avx = avxBit && osxsave && (xcr0 & 0x6) == 0x6;
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = f.avx && ((b >> 5) & 1);
    f.avx512f = f.avx && ((b >> 16) & 1) && (xcr0 & 0xe6) == 0xe6;
    f.clflushopt = (b >> 23) & 1;
    f.clwb = (b >> 24) & 1;
  }
  f.best = f.avx512f ? ISA_AVX512 : f.avx2 ? ISA_AVX2 : f.avx ? ISA_AVX : f.sse41 ? ISA_SSE41 : ISA_SSE2;
  return f;
}

const CpuFeatures g_cpu = detect();
std::atomic<int> g_limit{ISA_AVX512};

inline Isa effective() {
  int l = g_limit.load(std::memory_order_relaxed);
  return static_cast<Isa>(l < g_cpu.best ? l : g_cpu.best);
}

// Host-side destination of a streaming load: above this size, write it with
// non-temporal stores too (it would only evict the cache); below, plain stores
// keep the data hot for the JS that asked for it.
constexpr size_t kHostNtThreshold = 4u << 20;

// ---- naturally aligned small accesses to the device side ------------------

// Store the widest naturally aligned piece (1/2/4/8 bytes) that fits in n at d.
inline size_t devStoreSmall(uint8_t* d, const uint8_t* s, size_t n) {
  uintptr_t a = reinterpret_cast<uintptr_t>(d);
  if ((a & 1) || n < 2) {
    *reinterpret_cast<volatile uint8_t*>(d) = *s;
    return 1;
  }
  if ((a & 2) || n < 4) {
    uint16_t v;
    memcpy(&v, s, 2);
    *reinterpret_cast<volatile uint16_t*>(d) = v;
    return 2;
  }
  if ((a & 4) || n < 8) {
    uint32_t v;
    memcpy(&v, s, 4);
    *reinterpret_cast<volatile uint32_t*>(d) = v;
    return 4;
  }
  uint64_t v;
  memcpy(&v, s, 8);
  *reinterpret_cast<volatile uint64_t*>(d) = v;
  return 8;
}

// Load the widest naturally aligned piece that fits in n from the device at s.
inline size_t devLoadSmall(uint8_t* d, const uint8_t* s, size_t n) {
  uintptr_t a = reinterpret_cast<uintptr_t>(s);
  if ((a & 1) || n < 2) {
    *d = *reinterpret_cast<const volatile uint8_t*>(s);
    return 1;
  }
  if ((a & 2) || n < 4) {
    uint16_t v = *reinterpret_cast<const volatile uint16_t*>(s);
    memcpy(d, &v, 2);
    return 2;
  }
  if ((a & 4) || n < 8) {
    uint32_t v = *reinterpret_cast<const volatile uint32_t*>(s);
    memcpy(d, &v, 4);
    return 4;
  }
  uint64_t v = *reinterpret_cast<const volatile uint64_t*>(s);
  memcpy(d, &v, 8);
  return 8;
}

inline size_t minz(size_t a, size_t b) { return a < b ? a : b; }

// Advance until dev is aligned to `align`; returns the bytes done.
inline size_t storeHead(uint8_t* dev, const uint8_t* host, size_t n, size_t align) {
  size_t done = 0;
  while (done < n) {
    size_t mis = reinterpret_cast<uintptr_t>(dev + done) & (align - 1);
    if (!mis) break;
    done += devStoreSmall(dev + done, host + done, minz(n - done, align - mis));
  }
  return done;
}

inline void storeTail(uint8_t* dev, const uint8_t* host, size_t n) {
  size_t done = 0;
  while (done < n) done += devStoreSmall(dev + done, host + done, n - done);
}

inline size_t loadHead(uint8_t* host, const uint8_t* dev, size_t n, size_t align) {
  size_t done = 0;
  while (done < n) {
    size_t mis = reinterpret_cast<uintptr_t>(dev + done) & (align - 1);
    if (!mis) break;
    done += devLoadSmall(host + done, dev + done, minz(n - done, align - mis));
  }
  return done;
}

inline void loadTail(uint8_t* host, const uint8_t* dev, size_t n) {
  size_t done = 0;
  while (done < n) done += devLoadSmall(host + done, dev + done, n - done);
}

// ---- streaming-store bodies: d aligned to the vector width, n a multiple ----

void ssBodySse2(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 0));
    __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    __m128i r2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    __m128i r3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    __m128i r4 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 64));
    __m128i r5 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 80));
    __m128i r6 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 96));
    __m128i r7 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 112));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 0), r0);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), r1);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), r2);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), r3);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 64), r4);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 80), r5);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 96), r6);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 112), r7);
  }
  for (; i < n; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
}

__attribute__((target("avx"))) void ssBodyAvx(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 0));
    __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 32));
    __m256i r2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 64));
    __m256i r3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 0), r0);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 32), r1);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 64), r2);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 96), r3);
  }
  for (; i < n; i += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
  _mm256_zeroupper();
}

__attribute__((target("avx512f"))) void ssBodyAvx512(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    __m512i r0 = _mm512_loadu_si512(s + i + 0);
    __m512i r1 = _mm512_loadu_si512(s + i + 64);
    __m512i r2 = _mm512_loadu_si512(s + i + 128);
    __m512i r3 = _mm512_loadu_si512(s + i + 192);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 0), r0);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 64), r1);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 128), r2);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 192), r3);
  }
  for (; i < n; i += 64) _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i), _mm512_loadu_si512(s + i));
  _mm256_zeroupper();
}

// ---- streaming-load bodies: s (device) aligned to the vector width ---------
// nt: host d is aligned to the width and the copy is large: store it
// non-temporally as well.

__attribute__((target("sse4.1"))) void slBodySse41(uint8_t* d, const uint8_t* s, size_t n, bool nt) {
  size_t i = 0;
  __m128i* src = reinterpret_cast<__m128i*>(const_cast<uint8_t*>(s));
  if (nt) {
    for (; i + 128 <= n; i += 128, src += 8) {
      __m128i r0 = _mm_stream_load_si128(src + 0);
      __m128i r1 = _mm_stream_load_si128(src + 1);
      __m128i r2 = _mm_stream_load_si128(src + 2);
      __m128i r3 = _mm_stream_load_si128(src + 3);
      __m128i r4 = _mm_stream_load_si128(src + 4);
      __m128i r5 = _mm_stream_load_si128(src + 5);
      __m128i r6 = _mm_stream_load_si128(src + 6);
      __m128i r7 = _mm_stream_load_si128(src + 7);
      __m128i* o = reinterpret_cast<__m128i*>(d + i);
      _mm_stream_si128(o + 0, r0);
      _mm_stream_si128(o + 1, r1);
      _mm_stream_si128(o + 2, r2);
      _mm_stream_si128(o + 3, r3);
      _mm_stream_si128(o + 4, r4);
      _mm_stream_si128(o + 5, r5);
      _mm_stream_si128(o + 6, r6);
      _mm_stream_si128(o + 7, r7);
    }
  } else {
    for (; i + 128 <= n; i += 128, src += 8) {
      __m128i r0 = _mm_stream_load_si128(src + 0);
      __m128i r1 = _mm_stream_load_si128(src + 1);
      __m128i r2 = _mm_stream_load_si128(src + 2);
      __m128i r3 = _mm_stream_load_si128(src + 3);
      __m128i r4 = _mm_stream_load_si128(src + 4);
      __m128i r5 = _mm_stream_load_si128(src + 5);
      __m128i r6 = _mm_stream_load_si128(src + 6);
      __m128i r7 = _mm_stream_load_si128(src + 7);
      __m128i* o = reinterpret_cast<__m128i*>(d + i);
      _mm_storeu_si128(o + 0, r0);
      _mm_storeu_si128(o + 1, r1);
      _mm_storeu_si128(o + 2, r2);
      _mm_storeu_si128(o + 3, r3);
      _mm_storeu_si128(o + 4, r4);
      _mm_storeu_si128(o + 5, r5);
      _mm_storeu_si128(o + 6, r6);
      _mm_storeu_si128(o + 7, r7);
    }
  }
  for (; i < n; i += 16, src += 1) _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm_stream_load_si128(src));
}

__attribute__((target("avx2"))) void slBodyAvx2(uint8_t* d, const uint8_t* s, size_t n, bool nt) {
  size_t i = 0;
  const __m256i* src = reinterpret_cast<const __m256i*>(s);
  if (nt) {
    for (; i + 128 <= n; i += 128, src += 4) {
      __m256i r0 = _mm256_stream_load_si256(src + 0);
      __m256i r1 = _mm256_stream_load_si256(src + 1);
      __m256i r2 = _mm256_stream_load_si256(src + 2);
      __m256i r3 = _mm256_stream_load_si256(src + 3);
      __m256i* o = reinterpret_cast<__m256i*>(d + i);
      _mm256_stream_si256(o + 0, r0);
      _mm256_stream_si256(o + 1, r1);
      _mm256_stream_si256(o + 2, r2);
      _mm256_stream_si256(o + 3, r3);
    }
  } else {
    for (; i + 128 <= n; i += 128, src += 4) {
      __m256i r0 = _mm256_stream_load_si256(src + 0);
      __m256i r1 = _mm256_stream_load_si256(src + 1);
      __m256i r2 = _mm256_stream_load_si256(src + 2);
      __m256i r3 = _mm256_stream_load_si256(src + 3);
      __m256i* o = reinterpret_cast<__m256i*>(d + i);
      _mm256_storeu_si256(o + 0, r0);
      _mm256_storeu_si256(o + 1, r1);
      _mm256_storeu_si256(o + 2, r2);
      _mm256_storeu_si256(o + 3, r3);
    }
  }
  for (; i < n; i += 32, src += 1) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_stream_load_si256(src));
  _mm256_zeroupper();
}

__attribute__((target("avx512f"))) void slBodyAvx512(uint8_t* d, const uint8_t* s, size_t n, bool nt) {
  size_t i = 0;
  void* src = const_cast<uint8_t*>(s);
  if (nt) {
    for (; i + 256 <= n; i += 256) {
      __m512i r0 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 0);
      __m512i r1 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 64);
      __m512i r2 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 128);
      __m512i r3 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 192);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 0), r0);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 64), r1);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 128), r2);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 192), r3);
    }
  } else {
    for (; i + 256 <= n; i += 256) {
      __m512i r0 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 0);
      __m512i r1 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 64);
      __m512i r2 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 128);
      __m512i r3 = _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i + 192);
      _mm512_storeu_si512(d + i + 0, r0);
      _mm512_storeu_si512(d + i + 64, r1);
      _mm512_storeu_si512(d + i + 128, r2);
      _mm512_storeu_si512(d + i + 192, r3);
    }
  }
  for (; i < n; i += 64) _mm512_storeu_si512(d + i, _mm512_stream_load_si512(static_cast<uint8_t*>(src) + i));
  _mm256_zeroupper();
}

__attribute__((target("clwb"))) void flushClwb(uintptr_t a, uintptr_t end, unsigned line) {
  for (; a < end; a += line) _mm_clwb(reinterpret_cast<void*>(a));
  _mm_sfence();
}

__attribute__((target("clflushopt"))) void flushClflushopt(uintptr_t a, uintptr_t end, unsigned line) {
  for (; a < end; a += line) _mm_clflushopt(reinterpret_cast<void*>(a));
  _mm_sfence();
}

void flushClflush(uintptr_t a, uintptr_t end, unsigned line) {
  for (; a < end; a += line) _mm_clflush(reinterpret_cast<void*>(a));
  // CLFLUSH is ordered only against writes; a full fence keeps later loads
  // behind it too.
  _mm_mfence();
}

}  // namespace

const CpuFeatures& cpu() { return g_cpu; }

const char* isaName(Isa isa) {
  switch (isa) {
    case ISA_SSE2: return "sse2";
    case ISA_SSE41: return "sse4.1";
    case ISA_AVX: return "avx";
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512f";
  }
  return "?";
}

Isa setIsaLimit(Isa limit) {
  g_limit.store(limit, std::memory_order_relaxed);
  return effective();
}

Isa isaLimit() { return effective(); }

const char* copyStreamStore(uint8_t* dev, const uint8_t* host, size_t n) {
  Isa isa = effective();
  size_t w = isa >= ISA_AVX512 ? 64 : isa >= ISA_AVX ? 32 : 16;
  const char* used = isa >= ISA_AVX512 ? "avx512f" : isa >= ISA_AVX ? "avx" : "sse2";
  size_t h = storeHead(dev, host, n, w);
  dev += h;
  host += h;
  n -= h;
  size_t body = n & ~(w - 1);
  if (body) {
    if (w == 64)
      ssBodyAvx512(dev, host, body);
    else if (w == 32)
      ssBodyAvx(dev, host, body);
    else
      ssBodySse2(dev, host, body);
  }
  storeTail(dev + body, host + body, n - body);
  // Drain the write-combining buffers: needed for the NT stores, and even for
  // plain stores to WC memory.
  _mm_sfence();
  return used;
}

const char* copyStreamLoad(uint8_t* host, const uint8_t* dev, size_t n) {
  Isa isa = effective();
  if (isa < ISA_SSE41) {
    copyExact64From(host, dev, n);
    return "exact64";
  }
  size_t w = isa >= ISA_AVX512 ? 64 : isa >= ISA_AVX2 ? 32 : 16;
  const char* used = isa >= ISA_AVX512 ? "avx512f" : isa >= ISA_AVX2 ? "avx2" : "sse4.1";
  // MOVNTDQA is weakly ordered: it may pass older loads and stores and may
  // read a WC line fetched before them. MFENCE first, as the Intel SDM (vol. 1
  // 12.10.3) advises, so the copy sees what the device (or an earlier store
  // of ours) put there before the call.
  _mm_mfence();
  size_t h = loadHead(host, dev, n, w);
  host += h;
  dev += h;
  n -= h;
  size_t body = n & ~(w - 1);
  if (body) {
    uintptr_t ha = reinterpret_cast<uintptr_t>(host);
    bool big = body >= kHostNtThreshold;
    if (big && w > 16 && (ha & (w - 1)) && !(ha & 15)) {
      // The host buffer is only 16-byte aligned (malloc's large blocks are):
      // the 16-byte loop can still stream to it, which beats wide loads into
      // cached stores on a large copy.
      w = 16;
      used = "sse4.1";
    }
    bool nt = big && (ha & (w - 1)) == 0;
    if (w == 64)
      slBodyAvx512(host, dev, body, nt);
    else if (w == 32)
      slBodyAvx2(host, dev, body, nt);
    else
      slBodySse41(host, dev, body, nt);
    if (nt) _mm_sfence();
  }
  loadTail(host + body, dev + body, n - body);
  return used;
}

void copyExact64To(uint8_t* dev, const uint8_t* host, size_t n) {
  size_t h = storeHead(dev, host, n, 8);
  dev += h;
  host += h;
  n -= h;
  size_t words = n / 8;
  volatile uint64_t* d = reinterpret_cast<volatile uint64_t*>(dev);
  for (size_t i = 0; i < words; i++) {
    uint64_t v;
    memcpy(&v, host + 8 * i, 8);
    d[i] = v;
  }
  storeTail(dev + 8 * words, host + 8 * words, n - 8 * words);
  _mm_sfence();  // WC: drain the write-combining buffers; UC: harmless
}

void copyExact64From(uint8_t* host, const uint8_t* dev, size_t n) {
  size_t h = loadHead(host, dev, n, 8);
  dev += h;
  host += h;
  n -= h;
  size_t words = n / 8;
  const volatile uint64_t* s = reinterpret_cast<const volatile uint64_t*>(dev);
  for (size_t i = 0; i < words; i++) {
    uint64_t v = s[i];
    memcpy(host + 8 * i, &v, 8);
  }
  loadTail(host + 8 * words, dev + 8 * words, n - 8 * words);
}

const char* flushRange(const uint8_t* p, size_t n) {
  unsigned line = g_cpu.cacheLine;
  uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~static_cast<uintptr_t>(line - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  if (g_cpu.clwb) {
    flushClwb(a, end, line);
    return "clwb";
  }
  if (g_cpu.clflushopt) {
    flushClflushopt(a, end, line);
    return "clflushopt";
  }
  if (g_cpu.clflush) {
    flushClflush(a, end, line);
    return "clflush";
  }
  _mm_sfence();
  return "sfence";
}

}  // namespace iopmem
