// The I/O engine of `iopmem bench p2p` and the fio comparison: copies (or
// reads) a byte range between two files/block devices through one buffer, with
// O_DIRECT, io_uring (liburing, linked statically) with registered files and
// buffers where the kernel allows, or pread/pwrite when io_uring is not there.
//
// ioRun(options, control) → Promise. The run happens on napi async work (a
// libuv worker) which starts `jobs` pthreads, each with its own ring and its
// own `qd * bs` slice of the buffer. The buffer is anonymous page-aligned RAM
// ("bounce") or a Mapping the caller made (a p2pmem chunk: "p2p"), passed as
// its handle: resolved, bounds-checked and pinned here, so it cannot be
// unmapped (E_BUSY) until the run has settled and no I/O is in flight.
// `control` is an IoControl: a C++-owned block of atomics (bytes and ops,
// running totals over every run that used it, which only grow; a stop
// request) that the JS thread reads and the engine's threads update, so no
// thread ever writes into memory JS owns.
//
// memProbe(control, bytes) → Promise: a STREAM-like copy loop on its own
// thread until control.stop(); control.bytes counts bytes moved (read+write).
//
// A failed system call does not reject: the result carries `error` {errno,
// syscall, offset} with the partial counts, and the JS glue throws.
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

// glibc 2.34 moved pthread_create/join into libc under a new version; bind
// to the x86-64 base version so the prebuild still loads on glibc >= 2.27.
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");

namespace iopmem {

namespace {

inline uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Log-linear latency histogram (ns): 64 powers of two × 32 sub-buckets.
struct Hist {
  static constexpr int kSub = 32;
  std::vector<uint64_t> b = std::vector<uint64_t>(64 * kSub, 0);
  uint64_t n = 0, sum = 0, max = 0;
  static int Index(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    int msb = 63 - __builtin_clzll(v);            // >= 5
    int sub = static_cast<int>((v >> (msb - 5)) & (kSub - 1));
    return (msb - 4) * kSub + sub;
  }
  static uint64_t Upper(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    int msb = i / kSub + 4;
    uint64_t sub = static_cast<uint64_t>(i % kSub);
    return ((static_cast<uint64_t>(kSub) + sub + 1) << (msb - 5)) - 1;
  }
  void Add(uint64_t v) {
    b[Index(v)]++;
    n++;
    sum += v;
    if (v > max) max = v;
  }
  void Merge(const Hist& o) {
    for (size_t i = 0; i < b.size(); i++) b[i] += o.b[i];
    n += o.n;
    sum += o.sum;
    if (o.max > max) max = o.max;
  }
  uint64_t Pct(double p) const {
    if (!n) return 0;
    uint64_t want = static_cast<uint64_t>(p * static_cast<double>(n));
    if (want >= n) want = n - 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < b.size(); i++) {
      acc += b[i];
      if (acc > want) return Upper(static_cast<int>(i)) < max ? Upper(static_cast<int>(i)) : max;
    }
    return max;
  }
};

// The progress and stop request shared by the JS thread and the engine's
// threads. Reference-counted: the IoControl object and each run using it hold
// one, so a collected IoControl never frees a block a run still writes.
struct ControlBlock {
  std::atomic<uint64_t> bytes{0}, ops{0};
  std::atomic<bool> stop{false};
  std::atomic<unsigned> refs{1};
  ControlBlock* Ref() {
    refs.fetch_add(1, std::memory_order_relaxed);
    return this;
  }
  void Unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

struct Options {
  std::string src, dst;  // dst empty: read only
  uint64_t srcOffset = 0, dstOffset = 0, length = 0, bs = 0;
  uint32_t qd = 1, jobs = 1;
  bool direct = true, random = false, verify = false, fsync = true, registerBuffers = true, verifyOnly = false;
  std::string engine = "auto";  // auto | io_uring | psync
  uint64_t durationNs = 0;     // 0: copy the range once
  uint8_t* buf = nullptr;      // caller's memory (p2p), else anonymous
  uint64_t bufLen = 0;
  uint64_t seed = 1;
};

struct Failure {
  int err = 0;
  const char* syscall = "";
  uint64_t offset = 0;
};

struct Shared {
  const Options* o;
  ControlBlock* ctl;  // never null: the caller's, or the run's own
  std::atomic<uint64_t> bytes{0}, ops{0};  // this run's (ctl's run on over every run using it)
  std::atomic<bool> stop{false};
  // A job could not reap its I/O after a fatal io_uring_enter error: the
  // buffer must stay mapped (and pinned) for the life of the process.
  std::atomic<bool> leakBuffer{false};
  std::atomic<int> failed{0};
  Failure fail;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  int srcFd = -1, dstFd = -1;
  uint64_t deadline = 0;
  bool ioUringDisabledByEnv = false;
  // Fault injection for the tests (IOPMEM_FAULT_IO_URING_ENTER): 1 ("once")
  // fails a job's first wait for completions with EIO after its I/O went in,
  // 2 ("always") fails every io_uring_enter after that as well, so the drain
  // cannot reap either.
  int faultEnter = 0;
};

struct JobResult {
  Hist hist;
  double user = 0, sys = 0;
  std::string engine;
  bool registered = false, registeredFiles = false;
  std::string registerError, fallbackReason;
};

void SetFail(Shared* s, int err, const char* sc, uint64_t off) {
  pthread_mutex_lock(&s->mu);
  if (!s->failed.load()) {
    s->fail = {err, sc, off};
    s->failed.store(1);
  }
  pthread_mutex_unlock(&s->mu);
  s->stop.store(true);
}

inline bool ShouldStop(Shared* s) {
  if (s->stop.load(std::memory_order_relaxed)) return true;
  if (s->ctl->stop.load(std::memory_order_relaxed)) {
    s->stop.store(true);
    return true;
  }
  return false;
}

// Counters only ever grow (fetch_add), so a reader never sees progress go back.
inline void Progress(Shared* s, uint64_t n) {
  s->bytes.fetch_add(n, std::memory_order_relaxed);
  s->ops.fetch_add(1, std::memory_order_relaxed);
  s->ctl->bytes.fetch_add(n, std::memory_order_relaxed);
  s->ctl->ops.fetch_add(1, std::memory_order_relaxed);
}

uint64_t Rng(uint64_t* x) {  // xorshift64*
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 2685821657736338717ull;
}

// The work of one job: the blocks [first, end) of the range in order (seq), or
// random blocks of the whole range; with a deadline, again until it passes.
struct Cursor {
  uint64_t first, end, next, blocks, rng;
  bool random, loop;
  uint64_t issuedRandom = 0;
  bool Next(uint64_t* blk) {
    if (random) {
      if (!loop && issuedRandom >= end - first) return false;
      issuedRandom++;
      *blk = Rng(&rng) % blocks;
      return true;
    }
    if (next >= end) {
      if (!loop || end == first) return false;
      next = first;
    }
    *blk = next++;
    return true;
  }
};

struct Slot {
  int state = 0;  // 0 idle, 1 reading, 2 writing
  uint64_t blk = 0, len = 0, done = 0, start = 0;
  uint8_t* mem = nullptr;
};

struct JobArg {
  Shared* s;
  uint32_t index;
  JobResult* r;
};

void CpuTimes(JobResult* r) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) == 0) {
    r->user = static_cast<double>(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6;
    r->sys = static_cast<double>(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6;
  }
}

Cursor MakeCursor(const Options& o, uint32_t j) {
  uint64_t blocks = (o.length + o.bs - 1) / o.bs;
  Cursor c;
  c.blocks = blocks;
  c.random = o.random;
  c.loop = o.durationNs != 0;
  c.first = blocks * j / o.jobs;
  c.end = blocks * (j + 1) / o.jobs;
  c.next = c.first;
  c.rng = (o.seed + 0x9E3779B97F4A7C15ull * (j + 1)) | 1;
  return c;
}

inline uint64_t BlockLen(const Options& o, uint64_t blk) {
  uint64_t off = blk * o.bs;
  return o.length - off < o.bs ? o.length - off : o.bs;
}

bool PastDeadline(Shared* s) { return s->deadline && NowNs() >= s->deadline; }

void RunPsync(Shared* s, uint32_t j, JobResult* r) {
  const Options& o = *s->o;
  Cursor c = MakeCursor(o, j);
  uint8_t* mem = o.buf + static_cast<uint64_t>(j) * o.qd * o.bs;
  uint64_t blk;
  while (!ShouldStop(s) && !PastDeadline(s) && c.Next(&blk)) {
    uint64_t len = BlockLen(o, blk), t0 = NowNs();
    for (uint64_t done = 0; done < len;) {
      ssize_t n = pread(s->srcFd, mem + done, len - done, static_cast<off_t>(o.srcOffset + blk * o.bs + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return SetFail(s, n < 0 ? errno : EIO, n < 0 ? "pread" : "pread (0 bytes: end of file)", o.srcOffset + blk * o.bs + done);
      done += static_cast<uint64_t>(n);
    }
    if (s->dstFd >= 0) {
      for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(s->dstFd, mem + done, len - done, static_cast<off_t>(o.dstOffset + blk * o.bs + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return SetFail(s, n < 0 ? errno : EIO, n < 0 ? "pwrite" : "pwrite (0 bytes written)", o.dstOffset + blk * o.bs + done);
        done += static_cast<uint64_t>(n);
      }
    }
    r->hist.Add(NowNs() - t0);
    Progress(s, len);
  }
}

// After a fatal error: cancel what is in flight and wait for the completion
// of every I/O submitted. false if the completions could not be reaped.
bool Drain(struct io_uring* ring, uint32_t* inflight, bool faultAlways) {
  constexpr uint64_t kCancelTag = ~uint64_t{0};
  bool cancelSent = false;
  int failures = 0;
  while (*inflight > 0) {
    if (!cancelSent) {
      struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, kCancelTag);
        cancelSent = true;
      }
    }
    int rc = faultAlways ? -EIO : io_uring_submit_and_wait(ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      if (++failures > 100) return false;
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, nullptr);
      continue;
    }
    struct io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      seen++;
      if (io_uring_cqe_get_data64(cqe) != kCancelTag) (*inflight)--;
    }
    io_uring_cq_advance(ring, seen);
  }
  return true;
}

// How much I/O a job lets queue up unsubmitted: a quarter of what is in the
// device (see prep in RunUring). On this project's VM disk (virtio-blk, the
// host serving requests one after another) submitting each round's SQEs in
// one batch left the device empty while the batch was built; docs/speed.md
// has the traces and the interleaved figures.
constexpr unsigned kKickDivisor = 4;

// false: the ring could not be set up (r->fallbackReason says why) — the caller
// falls back to psync when the engine is `auto`.
bool RunUring(Shared* s, uint32_t j, JobResult* r) {
  const Options& o = *s->o;
  struct io_uring ring;
  if (s->ioUringDisabledByEnv) {
    r->fallbackReason = "io_uring disabled by IOPMEM_NO_IO_URING";
    return false;
  }
  // One ring per job thread, used by that thread only: SINGLE_ISSUER + DEFER_TASKRUN
  // (Linux >= 6.1) keep completions as deferred task work run when this thread asks
  // for events, so no interrupt or wake-up is spent per completion. Older kernels
  // refuse the flags (EINVAL): COOP_TASKRUN (5.19), then none.
  const unsigned entries = o.qd * 2 < 8 ? 8 : o.qd * 2;
  bool deferred = true;
  int rc = io_uring_queue_init(entries, &ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (rc == -EINVAL) {
    deferred = false;
    rc = io_uring_queue_init(entries, &ring, IORING_SETUP_COOP_TASKRUN);
  }
  if (rc == -EINVAL) rc = io_uring_queue_init(entries, &ring, 0);
  if (rc < 0) {
    r->fallbackReason = std::string("io_uring_setup failed: ") + strerror(-rc);
    return false;
  }
  r->engine = "io_uring";
  uint8_t* mem = o.buf + static_cast<uint64_t>(j) * o.qd * o.bs;
  struct iovec iov = {mem, static_cast<size_t>(o.qd) * o.bs};
  if (o.registerBuffers) {
    rc = io_uring_register_buffers(&ring, &iov, 1);
    if (rc == 0) r->registered = true;
    else r->registerError = std::string("io_uring_register_buffers: ") + strerror(-rc);
  } else {
    r->registerError = "not asked for";
  }
  int fds[2] = {s->srcFd, s->dstFd >= 0 ? s->dstFd : s->srcFd};
  int srcIdx = s->srcFd, dstIdx = s->dstFd;
  unsigned fixedFlag = 0;
  if (io_uring_register_files(&ring, fds, 2) == 0) {
    r->registeredFiles = true;
    srcIdx = 0;
    dstIdx = 1;
    fixedFlag = IOSQE_FIXED_FILE;
  }
  std::vector<Slot> slots(o.qd);
  for (uint32_t i = 0; i < o.qd; i++) slots[i].mem = mem + static_cast<uint64_t>(i) * o.bs;
  Cursor c = MakeCursor(o, j);
  uint32_t inflight = 0;
  bool exhausted = false;

  // An SQE for slot i; a full submission queue is submitted first, so no
  // block is dropped. false only when the ring still has no room (then the
  // run fails, saying so, rather than skip the block).
  auto prep = [&](uint32_t i, bool write) -> bool {
    Slot& sl = slots[i];
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    for (int tries = 0; !sqe && tries < 64; tries++) {
      int sr = io_uring_submit(&ring);
      if (sr < 0 && sr != -EINTR && sr != -EAGAIN && sr != -EBUSY) break;
      sqe = io_uring_get_sqe(&ring);
    }
    if (!sqe) {
      SetFail(s, EBUSY, "io_uring_get_sqe (submission queue full)", (write ? o.dstOffset : o.srcOffset) + sl.blk * o.bs);
      exhausted = true;
      sl.state = 0;
      return false;
    }
    uint8_t* p = sl.mem + sl.done;
    unsigned n = static_cast<unsigned>(sl.len - sl.done);
    if (write) {
      uint64_t off = o.dstOffset + sl.blk * o.bs + sl.done;
      if (r->registered) io_uring_prep_write_fixed(sqe, dstIdx, p, n, off, 0);
      else io_uring_prep_write(sqe, dstIdx, p, n, off);
    } else {
      uint64_t off = o.srcOffset + sl.blk * o.bs + sl.done;
      if (r->registered) io_uring_prep_read_fixed(sqe, srcIdx, p, n, off, 0);
      else io_uring_prep_read(sqe, srcIdx, p, n, off);
    }
    sqe->flags |= fixedFlag;
    io_uring_sqe_set_data64(sqe, i);
    sl.state = write ? 2 : 1;
    // Keep the device fed: submit now, rather than with the rest of this
    // round's SQEs, while the batch waiting here is at least a quarter of what
    // the device already has. After a burst of completions the device is
    // empty, so the first new I/O goes at once (a batch waits behind the block
    // plug until all of it is built), the next in chunks growing with the
    // depth; at full depth with completions trickling in (tmpfs through
    // io-wq) the chunks are large and the syscalls few. A failure here is
    // left to the loop's next submit, which sees it too.
    const unsigned queued = io_uring_sq_ready(&ring);
    const unsigned active = inflight + 1 > queued ? inflight + 1 - queued : 0;  // submitted, not yet reaped
    if (queued >= (active / kKickDivisor > 1 ? active / kKickDivisor : 1)) io_uring_submit(&ring);
    return true;
  };
  auto startNext = [&](uint32_t i) {
    uint64_t blk;
    if (exhausted || ShouldStop(s) || PastDeadline(s) || !c.Next(&blk)) {
      exhausted = true;
      slots[i].state = 0;
      return;
    }
    Slot& sl = slots[i];
    sl.blk = blk;
    sl.len = BlockLen(o, blk);
    sl.done = 0;
    sl.start = NowNs();
    if (prep(i, false)) inflight++;
  };

  constexpr uint64_t kMaxSpinNs = 20000;
  uint64_t gapNs = kMaxSpinNs, lastDoneNs = 0;
  bool faultInjected = false;
  for (uint32_t i = 0; i < o.qd; i++) startNext(i);
  while (inflight > 0) {
    // Completions a few microseconds apart (a fast device at depth, tmpfs through
    // io-wq): poll for up to twice the recent gap (at most kMaxSpinNs) before sleeping.
    // A sleeping thread costs the completing CPU a wake-up (an IPI, a VM exit under
    // virtualisation) per completion; a slow device (gaps above kMaxSpinNs) never spins.
    uint64_t spin = gapNs < kMaxSpinNs / 2 ? 2 * gapNs : 0;
    if (s->faultEnter && !faultInjected) {
      // The injected failure: what was prepared goes in for real first, so
      // the drain below has I/O in flight to cancel and reap.
      faultInjected = true;
      io_uring_submit(&ring);
      rc = -EIO;
    } else if (spin > 0 && deferred) {
      rc = io_uring_submit(&ring);
      const uint64_t until = NowNs() + spin;
      while (!io_uring_cq_ready(&ring) && (rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) && NowNs() < until) rc = io_uring_get_events(&ring);
      if (rc >= 0 && !io_uring_cq_ready(&ring)) rc = io_uring_submit_and_wait(&ring, 1);
    } else {
      rc = io_uring_submit_and_wait(&ring, 1);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      SetFail(s, -rc, "io_uring_enter", 0);
      exhausted = true;
      // The I/O already submitted still reads into (and writes from) the
      // buffer: cancel it and reap every completion before the buffer can be
      // unmapped. If even that fails, the buffer and the ring are kept.
      if (!Drain(&ring, &inflight, s->faultEnter == 2)) {
        s->leakBuffer.store(true);
        return true;
      }
      break;
    }
    struct io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      uint32_t i = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      int res = cqe->res;
      Slot& sl = slots[i];
      inflight--;
      bool writing = sl.state == 2;
      if (res <= 0) {
        uint64_t off = (writing ? o.dstOffset : o.srcOffset) + sl.blk * o.bs + sl.done;
        if (res == -EAGAIN || res == -EINTR) {
          if (prep(i, writing)) inflight++;
          continue;
        }
        // 0 bytes is no errno of the device's: say so (an end of file where the range said data).
        const char* what = res < 0 ? (writing ? "io_uring write" : "io_uring read") : (writing ? "io_uring write (0 bytes written)" : "io_uring read (0 bytes: end of file)");
        SetFail(s, res < 0 ? -res : EIO, what, off);
        exhausted = true;
        sl.state = 0;
        continue;
      }
      sl.done += static_cast<uint64_t>(res);
      if (sl.done < sl.len) {  // short transfer: the rest
        if (prep(i, writing)) inflight++;
        continue;
      }
      if (!writing && s->dstFd >= 0) {
        sl.done = 0;
        if (prep(i, true)) inflight++;
        continue;
      }
      const uint64_t now = NowNs();
      r->hist.Add(now - sl.start);
      if (lastDoneNs) gapNs = (gapNs * 7 + (now - lastDoneNs)) / 8;  // EWMA of the gap between completions
      lastDoneNs = now;
      Progress(s, sl.len);
      startNext(i);
    }
    io_uring_cq_advance(&ring, seen);
  }
  io_uring_queue_exit(&ring);
  return true;
}

void* JobMain(void* p) {
  JobArg* a = static_cast<JobArg*>(p);
  Shared* s = a->s;
  const Options& o = *s->o;
  if (o.engine != "psync") {
    if (RunUring(s, a->index, a->r)) {
      CpuTimes(a->r);
      return nullptr;
    }
    if (o.engine == "io_uring") {
      SetFail(s, ENOSYS, "io_uring_setup", 0);
      CpuTimes(a->r);
      return nullptr;
    }
  }
  a->r->engine = "psync";
  RunPsync(s, a->index, a->r);
  CpuTimes(a->r);
  return nullptr;
}

// A 64-bit hash of a byte stream, fed in pieces (words; the tail bytewise).
struct Hasher {
  uint64_t h = 0xcbf29ce484222325ull;
  void Feed(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      h = (h ^ w) * 0x100000001b3ull;
      h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  }
};

std::string Hex(uint64_t v) {
  char b[17];
  snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

struct VerifyResult {
  bool done = false, ok = false;
  uint64_t srcHash = 0, dstHash = 0;
  int64_t mismatchAt = -1;
  int err = 0;
  const char* syscall = "";
};

// The largest logical block size of a device O_DIRECT may need (4Kn disks);
// a multiple of 512, so it serves 512-byte devices too.
constexpr size_t kDioAlign = 4096;

// Read both ranges (O_DIRECT when the copy used it: the device's bytes, not
// the page cache's) and compare them.
void Verify(Shared* s, VerifyResult* v) {
  const Options& o = *s->o;
  v->done = true;
  const size_t chunk = 1 << 20;
  void* a = nullptr;
  void* b = nullptr;
  if (posix_memalign(&a, 4096, chunk) || posix_memalign(&b, 4096, chunk)) {
    v->err = ENOMEM;
    v->syscall = "posix_memalign";
    free(a);
    return;
  }
  Hasher hs, hd;
  bool same = true;
  for (uint64_t off = 0; off < o.length; off += chunk) {
    size_t n = o.length - off < chunk ? static_cast<size_t>(o.length - off) : chunk;
    // O_DIRECT takes whole logical blocks: ask for the range's tail rounded
    // up (the chunk buffers have room), compare only its n bytes. At the end
    // of a file the kernel returns the bytes there are.
    const size_t want = o.direct ? (n + kDioAlign - 1) & ~(kDioAlign - 1) : n;
    for (int side = 0; side < 2; side++) {
      uint8_t* m = static_cast<uint8_t*>(side ? b : a);
      int fd = side ? s->dstFd : s->srcFd;
      uint64_t base = side ? o.dstOffset : o.srcOffset;
      for (size_t done = 0; done < n;) {
        ssize_t r = pread(fd, m + done, want - done, static_cast<off_t>(base + off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          v->err = r < 0 ? errno : EIO;
          v->syscall = "pread (verify)";
          free(a);
          free(b);
          return;
        }
        done += static_cast<size_t>(r);
      }
    }
    hs.Feed(static_cast<uint8_t*>(a), n);
    hd.Feed(static_cast<uint8_t*>(b), n);
    if (same && memcmp(a, b, n) != 0) {
      same = false;
      for (size_t i = 0; i < n; i++)
        if (static_cast<uint8_t*>(a)[i] != static_cast<uint8_t*>(b)[i]) {
          v->mismatchAt = static_cast<int64_t>(off + i);
          break;
        }
    }
  }
  free(a);
  free(b);
  v->srcHash = hs.h;
  v->dstHash = hd.h;
  v->ok = same;
}

bool GetStr(Napi::Object o, const char* k, std::string* out, bool required) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) Throw(o.Env(), "E_ARG", std::string(k) + " is required", Kind::TypeError);
    return !required;
  }
  return GetString(o.Env(), v, k, out);
}

bool GetNum(Napi::Object o, const char* k, uint64_t* out, uint64_t dflt) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) {
    *out = dflt;
    return true;
  }
  return GetU64(o.Env(), v, k, out);
}

bool GetBool(Napi::Object o, const char* k, bool* out, bool dflt) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) {
    *out = dflt;
    return true;
  }
  if (!v.IsBoolean()) {
    Throw(o.Env(), "E_ARG", std::string(k) + " must be a boolean", Kind::TypeError);
    return false;
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

class IoWorker : public Napi::AsyncWorker {
 public:
  IoWorker(Napi::Env env, Options o, ControlBlock* ctl, PinnedBuffer pin)
      : Napi::AsyncWorker(env), o_(std::move(o)), deferred_(Napi::Promise::Deferred::New(env)), ctl_(ctl), pin_(pin) {}
  ~IoWorker() override { ctl_->Unref(); }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    Shared s;
    s.o = &o_;
    s.ctl = ctl_;
    const char* env = getenv("IOPMEM_NO_IO_URING");
    s.ioUringDisabledByEnv = env && *env && strcmp(env, "0") != 0;
    const char* fault = getenv("IOPMEM_FAULT_IO_URING_ENTER");
    s.faultEnter = !fault ? 0 : strcmp(fault, "once") == 0 ? 1 : strcmp(fault, "always") == 0 ? 2 : 0;
    int dflag = o_.direct ? O_DIRECT : 0;
    s.srcFd = open(o_.src.c_str(), O_RDONLY | O_CLOEXEC | dflag);
    if (s.srcFd < 0) return Fail(errno, "open", o_.src);
    if (!o_.dst.empty()) {
      s.dstFd = open(o_.dst.c_str(), (o_.verify ? O_RDWR : O_WRONLY) | O_CLOEXEC | dflag);
      if (s.dstFd < 0) {
        int e = errno;
        close(s.srcFd);
        return Fail(e, "open", o_.dst);
      }
    }
    uint64_t need = static_cast<uint64_t>(o_.qd) * o_.bs * o_.jobs;
    void* anon = nullptr;
    if (!o_.buf) {
      anon = mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      if (anon == MAP_FAILED) {
        int e = errno;
        CloseFds(&s);
        return Fail(e, "mmap", "[bounce buffer]");
      }
      o_.buf = static_cast<uint8_t*>(anon);
      o_.bufLen = need;
      bufferKind_ = "anonymous";
    }
    std::vector<JobResult> results(o_.jobs);
    std::vector<JobArg> args(o_.jobs);
    std::vector<pthread_t> th(o_.jobs);
    std::vector<bool> started(o_.jobs, false);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = NowNs();
    if (o_.durationNs) s.deadline = t0 + o_.durationNs;
    for (uint32_t j = 0; j < o_.jobs && !o_.verifyOnly; j++) {
      args[j] = {&s, j, &results[j]};
      if (pthread_create(&th[j], nullptr, JobMain, &args[j]) == 0) started[j] = true;
      else SetFail(&s, EAGAIN, "pthread_create", 0);
    }
    for (uint32_t j = 0; j < o_.jobs; j++)
      if (started[j]) pthread_join(th[j], nullptr);
    if (o_.verifyOnly)
      for (auto& r : results) r.engine = o_.engine == "psync" ? "psync" : "io_uring";
    if (!s.failed.load() && !o_.verifyOnly && s.dstFd >= 0 && o_.fsync && fdatasync(s.dstFd) < 0 && errno != EINVAL)
      SetFail(&s, errno, "fdatasync", 0);
    seconds_ = static_cast<double>(NowNs() - t0) / 1e9;
    getrusage(RUSAGE_SELF, &ru1);
    for (auto& r : results) {
      hist_.Merge(r.hist);
      user_ += r.user;
      sys_ += r.sys;
    }
    procUser_ = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    procSys_ = (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    engine_ = results[0].engine;
    registered_ = results[0].registered;
    registeredFiles_ = results[0].registeredFiles;
    registerError_ = results[0].registerError;
    fallbackReason_ = results[0].fallbackReason;
    for (auto& r : results)
      if (r.engine != engine_) engine_ = "mixed";
    bytes_ = s.bytes.load();
    ops_ = s.ops.load();
    stopped_ = ctl_->stop.load();
    if (s.failed.load()) {
      err_ = s.fail.err;
      errSyscall_ = s.fail.syscall;
      errOffset_ = s.fail.offset;
    } else if (o_.verify && s.dstFd >= 0 && !stopped_) {
      Verify(&s, &verify_);
    }
    leak_ = s.leakBuffer.load();
    if (anon && !leak_) munmap(anon, need);
    if (!leak_) CloseFds(&s);
  }

  // The buffer mapping stays pinned (unmap refused) for good when the run
  // could not reap its I/O: the kernel may still write into it.
  void Unpin() {
    if (!leak_) UnpinMapping(Env(), &pin_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Unpin();
    if (openErr_) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("errno", openErr_);
      e.Set("syscall", openSyscall_);
      e.Set("path", openPath_);
      Napi::Object r = Napi::Object::New(env);
      r.Set("error", e);
      deferred_.Resolve(r);
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("engine", engine_);
    r.Set("registeredBuffers", registered_);
    r.Set("registeredFiles", registeredFiles_);
    if (!registerError_.empty()) r.Set("registerError", registerError_);
    if (!fallbackReason_.empty()) r.Set("fallbackReason", fallbackReason_);
    r.Set("buffer", bufferKind_);
    r.Set("bytes", static_cast<double>(bytes_));
    r.Set("ops", static_cast<double>(ops_));
    r.Set("seconds", seconds_);
    r.Set("stopped", stopped_);
    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("userS", user_);
    cpu.Set("sysS", sys_);
    cpu.Set("processUserS", procUser_);
    cpu.Set("processSysS", procSys_);
    r.Set("cpu", cpu);
    Napi::Object lat = Napi::Object::New(env);
    lat.Set("count", static_cast<double>(hist_.n));
    lat.Set("meanUs", hist_.n ? static_cast<double>(hist_.sum) / hist_.n / 1e3 : 0.0);
    lat.Set("p50Us", hist_.Pct(0.5) / 1e3);
    lat.Set("p99Us", hist_.Pct(0.99) / 1e3);
    lat.Set("p999Us", hist_.Pct(0.999) / 1e3);
    lat.Set("maxUs", hist_.max / 1e3);
    r.Set("latency", lat);
    if (verify_.done) {
      Napi::Object v = Napi::Object::New(env);
      v.Set("ok", verify_.ok);
      v.Set("srcHash", Hex(verify_.srcHash));
      v.Set("dstHash", Hex(verify_.dstHash));
      v.Set("mismatchAt", static_cast<double>(verify_.mismatchAt));
      if (verify_.err) {
        v.Set("errno", verify_.err);
        v.Set("syscall", verify_.syscall);
      }
      r.Set("verify", v);
    }
    if (err_) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("errno", err_);
      e.Set("syscall", errSyscall_);
      e.Set("offset", static_cast<double>(errOffset_));
      if (leak_) e.Set("bufferKept", true);
      r.Set("error", e);
    }
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override {
    Unpin();
    deferred_.Reject(e.Value());
  }

 private:
  void CloseFds(Shared* s) {
    if (s->srcFd >= 0) close(s->srcFd);
    if (s->dstFd >= 0) close(s->dstFd);
  }
  void Fail(int e, const char* sc, const std::string& p) {
    openErr_ = e;
    openSyscall_ = sc;
    openPath_ = p;
  }
  Options o_;
  Napi::Promise::Deferred deferred_;
  ControlBlock* ctl_;
  PinnedBuffer pin_;
  bool leak_ = false;
  std::string bufferKind_ = "caller";
  Hist hist_;
  double seconds_ = 0, user_ = 0, sys_ = 0, procUser_ = 0, procSys_ = 0;
  std::string engine_, registerError_, fallbackReason_;
  bool registered_ = false, registeredFiles_ = false, stopped_ = false;
  uint64_t bytes_ = 0, ops_ = 0;
  int err_ = 0;
  const char* errSyscall_ = "";
  uint64_t errOffset_ = 0;
  VerifyResult verify_;
  int openErr_ = 0;
  std::string openSyscall_, openPath_;
};

// The JS face of a ControlBlock: `new IoControl()`, then `bytes`, `ops`,
// `stopRequested` (atomic loads) and `stop()`. Type-tagged, so another
// wrapped object (a Mapping) is never taken for one.
const napi_type_tag kControlTag = {0x696f706d656d4374ull, 0x726c426c6f636b31ull};

class IoControl : public Napi::ObjectWrap<IoControl> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoControl",
                       {
                           InstanceAccessor<&IoControl::GetBytes>("bytes"),
                           InstanceAccessor<&IoControl::GetOps>("ops"),
                           InstanceAccessor<&IoControl::GetStopRequested>("stopRequested"),
                           InstanceMethod<&IoControl::Stop>("stop"),
                       });
  }
  explicit IoControl(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IoControl>(info) {
    napi_type_tag_object(info.Env(), info.This(), &kControlTag);
  }
  ~IoControl() override { block_->Unref(); }
  ControlBlock* block() { return block_; }

  // The block behind a JS value, or null after throwing.
  static ControlBlock* From(Napi::Env env, Napi::Value v) {
    bool tagged = false;
    if (v.IsObject()) napi_check_object_type_tag(env, v, &kControlTag, &tagged);
    IoControl* c = nullptr;
    if (tagged) napi_unwrap(env, v, reinterpret_cast<void**>(&c));
    if (!c) {
      Throw(env, "E_ARG", "control must be an IoControl (new IoControl())", Kind::TypeError);
      return nullptr;
    }
    return c->block_;
  }

 private:
  Napi::Value GetBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(block_->bytes.load()));
  }
  Napi::Value GetOps(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(block_->ops.load()));
  }
  Napi::Value GetStopRequested(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), block_->stop.load());
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    block_->stop.store(true);
    return info.Env().Undefined();
  }
  ControlBlock* block_ = new ControlBlock();
};

// The control argument of ioRun/memProbe: an IoControl's block (a new
// reference), or a fresh block of the run's own when it is absent.
ControlBlock* GetControl(Napi::Env env, Napi::Value v, bool required) {
  if (!required && (v.IsUndefined() || v.IsNull())) return new ControlBlock();
  ControlBlock* b = IoControl::From(env, v);
  return b ? b->Ref() : nullptr;
}

// An end offset (offset + length) must be a valid off_t: a negative one
// would mean "the current file position" to io_uring.
bool CheckEnd(Napi::Env env, const char* what, uint64_t offset, uint64_t length) {
  const uint64_t kMaxOff = static_cast<uint64_t>(INT64_MAX);
  if (offset > kMaxOff || length > kMaxOff - offset) {
    Throw(env, "ERANGE", std::string(what) + " + length is past the largest file offset (2^63 - 1)", Kind::RangeError);
    return false;
  }
  return true;
}

Napi::Value IoRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Throw(env, "E_ARG", "ioRun(options, control?)", Kind::TypeError);
  Napi::Object a = info[0].As<Napi::Object>();
  Options o;
  uint64_t qd, jobs, dur, seed;
  if (!GetStr(a, "src", &o.src, true) || !GetStr(a, "dst", &o.dst, false) ||
      !GetStr(a, "engine", &o.engine, false) || !GetNum(a, "srcOffset", &o.srcOffset, 0) ||
      !GetNum(a, "dstOffset", &o.dstOffset, 0) || !GetNum(a, "length", &o.length, 0) ||
      !GetNum(a, "bs", &o.bs, 0) || !GetNum(a, "qd", &qd, 1) || !GetNum(a, "jobs", &jobs, 1) ||
      !GetNum(a, "durationMs", &dur, 0) || !GetNum(a, "seed", &seed, 1) ||
      !GetBool(a, "direct", &o.direct, true) || !GetBool(a, "random", &o.random, false) ||
      !GetBool(a, "verify", &o.verify, false) || !GetBool(a, "fsync", &o.fsync, true) ||
      !GetBool(a, "registerBuffers", &o.registerBuffers, true) || !GetBool(a, "verifyOnly", &o.verifyOnly, false))
    return env.Undefined();
  Napi::Value bufferSlot = a.Get("bufferSlot");
  if (o.engine.empty()) o.engine = "auto";
  if (o.engine != "auto" && o.engine != "io_uring" && o.engine != "psync")
    return Throw(env, "E_ARG", "engine must be auto, io_uring or psync", Kind::TypeError);
  if (o.bs == 0 || o.bs > (1u << 30)) return Throw(env, "ERANGE", "bs must be 1..1 GiB", Kind::RangeError);
  if (o.length == 0) return Throw(env, "ERANGE", "length must be > 0", Kind::RangeError);
  if (!CheckEnd(env, "srcOffset", o.srcOffset, o.length) || !CheckEnd(env, "dstOffset", o.dstOffset, o.length))
    return env.Undefined();
  if (qd < 1 || qd > 4096) return Throw(env, "ERANGE", "qd must be 1..4096", Kind::RangeError);
  if (jobs < 1 || jobs > 256) return Throw(env, "ERANGE", "jobs must be 1..256", Kind::RangeError);
  if (dur > (uint64_t{1} << 32)) return Throw(env, "ERANGE", "durationMs must be at most 2^32", Kind::RangeError);
  o.qd = static_cast<uint32_t>(qd);
  o.jobs = static_cast<uint32_t>(jobs);
  o.durationNs = dur * 1000000ull;
  o.seed = seed ? seed : 1;
  if (o.verifyOnly) o.verify = true;
  if (o.verify && o.dst.empty()) return Throw(env, "E_ARG", "verify needs a dst", Kind::TypeError);
  // Last, after every getter of `options` has run: the buffer is pinned from
  // here until the run settles.
  ControlBlock* ctl = GetControl(env, info.Length() > 1 ? info[1] : env.Undefined(), false);
  if (!ctl) return env.Undefined();
  PinnedBuffer pin;
  if (!bufferSlot.IsUndefined() && !bufferSlot.IsNull()) {
    if (!PinMapping(env, bufferSlot, static_cast<uint64_t>(o.qd) * o.bs * o.jobs, &pin)) {
      ctl->Unref();
      return env.Undefined();
    }
    o.buf = pin.addr;
    o.bufLen = pin.len;
  }
  IoWorker* w = new IoWorker(env, std::move(o), ctl, pin);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---- DRAM bandwidth probe ------------------------------------------------------

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, ControlBlock* ctl, uint64_t bytes)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ctl_(ctl), bytes_(bytes) {}
  ~ProbeWorker() override { ctl_->Unref(); }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    void* a = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    void* b = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) {
      err_ = errno;
      if (a != MAP_FAILED) munmap(a, bytes_);
      if (b != MAP_FAILED) munmap(b, bytes_);
      return;
    }
    memset(a, 1, bytes_);
    uint64_t t0 = NowNs();
    uint64_t moved = 0;
    const size_t step = 1 << 20;
    auto stopped = [&] { return ctl_->stop.load(std::memory_order_relaxed); };
    // At least one whole pass, so a probe stopped early still measures something.
    for (bool first = true; first || !stopped(); first = false) {
      for (size_t off = 0; off < bytes_ && (first || !stopped()); off += step) {
        size_t n = bytes_ - off < step ? bytes_ - off : step;
        if ((off / step) & 1) memcpy(static_cast<uint8_t*>(a) + off, static_cast<uint8_t*>(b) + off, n);
        else memcpy(static_cast<uint8_t*>(b) + off, static_cast<uint8_t*>(a) + off, n);
        moved += 2 * n;  // STREAM "copy" counts the read and the write
        ctl_->bytes.fetch_add(2 * n, std::memory_order_relaxed);
        ctl_->ops.fetch_add(1, std::memory_order_relaxed);
      }
    }
    seconds_ = static_cast<double>(NowNs() - t0) / 1e9;
    moved_ = moved;
    munmap(a, bytes_);
    munmap(b, bytes_);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Resolve(Napi::Number::New(env, -err_));
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("bytes", static_cast<double>(moved_));
    r.Set("seconds", seconds_);
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  ControlBlock* ctl_;
  uint64_t bytes_, moved_ = 0;
  double seconds_ = 0;
  int err_ = 0;
};

Napi::Value MemProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) return Throw(env, "E_ARG", "memProbe(control: IoControl, bytes)", Kind::TypeError);
  uint64_t bytes;
  if (!GetU64(env, info[1], "bytes", &bytes)) return env.Undefined();
  if (bytes < (1 << 20) || bytes > (1ull << 34)) return Throw(env, "ERANGE", "bytes must be 1 MiB..16 GiB", Kind::RangeError);
  ControlBlock* ctl = GetControl(env, info[0], true);
  if (!ctl) return env.Undefined();
  ProbeWorker* w = new ProbeWorker(env, ctl, bytes);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value IoUringProbe(const Napi::CallbackInfo& info) {
  struct io_uring ring;
  int rc = io_uring_queue_init(4, &ring, 0);
  if (rc == 0) io_uring_queue_exit(&ring);
  return Napi::Number::New(info.Env(), rc);
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("IoControl", IoControl::Define(env));
  exports.Set("ioRun", Napi::Function::New(env, IoRun, "ioRun"));
  exports.Set("memProbe", Napi::Function::New(env, MemProbe, "memProbe"));
  exports.Set("ioUringProbe", Napi::Function::New(env, IoUringProbe, "ioUringProbe"));
}

}  // namespace iopmem
