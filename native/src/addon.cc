// iopmem native addon: mappings of BAR / p2pmem / DAX / regular files, exact
// width MMIO access, bulk copies fitted to the caching mode, cache flushes.
//
// A mapping is a `Mapping` object (ObjectWrap). The accessors take its `slot`
// number (see Resolve), so a foreign or stale value is refused rather than
// misread. Every live mapping is in its environment's table, so JS can unmap
// all of them on exit or SIGINT; the finalizer unmaps a mapping JS forgot. Accesses check the handle, the bounds
// and the alignment first, and run under a SIGBUS guard, so a truncated file
// or a vanished device gives an error instead of killing the process.
#include <setjmp.h>
#include <xmmintrin.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "copy.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

namespace iopmem {

namespace {

// ---- SIGBUS guard -------------------------------------------------------
// An access to a mapping past the end of a truncated file, or to a device that
// went away, raises SIGBUS. While a guarded access runs on a thread, a fault
// the kernel raised for an address inside the mapping being accessed jumps
// back to it (the access then fails with E_SIGBUS). Any other SIGBUS goes on
// as POSIX says it would without us (the handler stays installed): a previous
// handler is called once; an ignored one is ignored, unless it is a synchronous
// fault (the kernel would force the default then); the default is restored and
// the signal takes effect: a synchronous fault re-executes and kills the
// process with SIGBUS, an asynchronous one (kill -BUS) is raised again.

// initial-exec: a plain %fs-relative access (no __tls_get_addr call) on the hot path.
__attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* tl_guard = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local uintptr_t tl_guardLo = 0;
__attribute__((tls_model("initial-exec"))) thread_local uintptr_t tl_guardHi = 0;
struct sigaction g_prevBus;

// A fault the kernel raised for a memory access at si_addr (not kill(2),
// sigqueue, tgkill, nor an action-optional machine check elsewhere).
inline bool SyncBusFault(const siginfo_t* si) {
  if (!si) return false;
  switch (si->si_code) {
    case BUS_ADRALN:
    case BUS_ADRERR:
    case BUS_OBJERR:
#ifdef BUS_MCEERR_AR
    case BUS_MCEERR_AR:
#endif
      return true;
    default: return false;
  }
}

void BusHandler(int sig, siginfo_t* si, void* uc) {
  const bool sync = SyncBusFault(si);
  sigjmp_buf* j = tl_guard;
  if (j && sync) {
    uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
    if (a >= tl_guardLo && a < tl_guardHi) {
      tl_guard = nullptr;
      siglongjmp(*j, 1);
    }
  }
  const struct sigaction& p = g_prevBus;
  if (p.sa_flags & SA_SIGINFO) {
    if (p.sa_sigaction) {
      p.sa_sigaction(sig, si, uc);
      return;
    }
  } else if (p.sa_handler == SIG_IGN) {
    if (!sync) return;  // an ignored kill -BUS stays ignored
  } else if (p.sa_handler != SIG_DFL) {
    p.sa_handler(sig);
    return;
  }
  // The default action: terminate with SIGBUS (and a core dump).
  struct sigaction d;
  memset(&d, 0, sizeof d);
  d.sa_handler = SIG_DFL;
  sigemptyset(&d.sa_mask);
  sigaction(SIGBUS, &d, nullptr);
  if (sync) return;  // the access re-executes and faults under the default
  // Asynchronous: send it again; SIGBUS is not blocked here (SA_NODEFER), so
  // it is delivered on this thread before raise() returns.
  raise(SIGBUS);
}

void InstallBusHandler() {
  // Once per process (a function-local static: thread-safe, and no
  // std::call_once, which would tie the binary to glibc >= 2.34).
  static const bool installed = [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = BusHandler;
    // NODEFER: we leave the handler by siglongjmp without restoring the mask
    // (sigsetjmp(.., 0) is cheaper), so SIGBUS must not be blocked in it.
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_prevBus);
    return true;
  }();
  (void)installed;
}

// Run f() with the guard armed for faults in [lo, lo + n); false if it was
// cut short by SIGBUS there.
template <typename F>
__attribute__((noinline)) bool Guarded(const uint8_t* lo, size_t n, F&& f) {
  sigjmp_buf jb;
  sigjmp_buf* volatile prev = tl_guard;
  const uintptr_t pLo = tl_guardLo, pHi = tl_guardHi;
  if (sigsetjmp(jb, 0)) {
    tl_guard = prev;
    tl_guardLo = pLo;
    tl_guardHi = pHi;
    return false;
  }
  tl_guardLo = reinterpret_cast<uintptr_t>(lo);
  tl_guardHi = reinterpret_cast<uintptr_t>(lo) + n;
  tl_guard = &jb;
  // Keep the stores to tl_guard around the access: without the fences the
  // compiler may drop the first (nothing but the signal handler reads it).
  std::atomic_signal_fence(std::memory_order_seq_cst);
  f();
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tl_guard = prev;
  tl_guardLo = pLo;
  tl_guardHi = pHi;
  return true;
}

// ---- mappings ---------------------------------------------------------------

enum class Mode { UC, WC, WB, WT };
enum class Strategy { Auto, Memcpy, StreamStore, StreamLoad, Exact64 };

bool ParseMode(const std::string& s, Mode* m) {
  if (s == "uc") *m = Mode::UC;
  else if (s == "wc") *m = Mode::WC;
  else if (s == "wb") *m = Mode::WB;
  else if (s == "wt") *m = Mode::WT;
  else return false;
  return true;
}

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::UC: return "uc";
    case Mode::WC: return "wc";
    case Mode::WB: return "wb";
    case Mode::WT: return "wt";
  }
  return "?";
}

struct MapInit {
  uint8_t* mapBase;
  size_t mapLen;
  size_t delta;
  size_t length;
  uint64_t offset;
  bool writable;
  int flags;
  Mode mode;
  std::string path;
};

class Mapping;
Napi::Value UnmapOrRefuse(Napi::Env env, Mapping* m);

// The handle JS passes to the accessors is a Number, the mapping's `slot`:
// generation * 2^22 + index into this table. Resolving it is an array lookup
// (napi_unwrap and type tags are private-property lookups, ~100 ns each); a
// number that is not a live slot, or a stale one whose slot was reused, is
// refused, so no value can reach freed or foreign memory. One table per JS
// environment (main thread, each worker), touched only on its thread.
constexpr unsigned kSlotBits = 22;
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;

struct Slot {
  Mapping* m;
  uint32_t gen;
};

// Shared by the environment's AddonData and each of its Mappings, whichever
// is finalized last frees it. Only ever touched on the environment's thread,
// so the count is a plain integer (and no shared_ptr, which would need a newer
// libstdc++ than the oldest Node 20 platforms have).
struct Registry {
  std::vector<Slot> slots;
  std::vector<uint32_t> freeList;
  uint64_t nextId = 1;
  unsigned refs = 1;
  Registry* Ref() {
    refs++;
    return this;
  }
  void Unref() {
    if (--refs == 0) delete this;
  }
};

struct AddonData {
  Napi::FunctionReference mappingCtor;
  Registry* reg = new Registry();
  ~AddonData();
};

thread_local MapInit* tl_pendingInit = nullptr;

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceAccessor<&Mapping::GetId>("id"),
                           InstanceAccessor<&Mapping::GetBase>("base"),
                           InstanceAccessor<&Mapping::GetLength>("length"),
                           InstanceAccessor<&Mapping::GetOffset>("offset"),
                           InstanceAccessor<&Mapping::GetMode>("mode"),
                           InstanceAccessor<&Mapping::GetPath>("path"),
                           InstanceAccessor<&Mapping::GetWritable>("writable"),
                           InstanceAccessor<&Mapping::GetMapped>("mapped"),
                           InstanceAccessor<&Mapping::GetSync>("sync"),
                           InstanceMethod<&Mapping::JsUnmap>("unmap"),
                       });
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    MapInit* init = tl_pendingInit;
    tl_pendingInit = nullptr;
    if (!init) {
      Throw(info.Env(), "E_ARG", "Mapping objects are made by map(), not new", Kind::TypeError);
      return;
    }
    mapBase_ = init->mapBase;
    mapLen_ = init->mapLen;
    addr = init->mapBase + init->delta;
    len = init->length;
    offset_ = init->offset;
    writable = init->writable;
    flags_ = init->flags;
    mode = init->mode;
    path_ = init->path;
    reg_ = info.Env().GetInstanceData<AddonData>()->reg->Ref();
    Registry& r = *reg_;
    if (!r.freeList.empty()) {
      idx_ = r.freeList.back();
      r.freeList.pop_back();
    } else {
      if (r.slots.size() > kSlotMask) {
        Throw(info.Env(), "ENOMEM", "too many live mappings");
        return;
      }
      idx_ = static_cast<uint32_t>(r.slots.size());
      r.slots.push_back(Slot{nullptr, 0});
    }
    r.slots[idx_].m = this;
    slot_ = (static_cast<uint64_t>(r.slots[idx_].gen) << kSlotBits) | idx_;
    id_ = r.nextId++;
    mapped = true;
    // A read-only, non-enumerable data property: the JS glue reads it with an
    // inline-cached property load and passes it to the accessors.
    napi_property_descriptor d = {"slot", nullptr, nullptr, nullptr, nullptr,
                                  Napi::Number::New(info.Env(), static_cast<double>(slot_)), napi_default, nullptr};
    napi_define_properties(info.Env(), info.This(), 1, &d);
  }

  ~Mapping() override {
    // A pinned mapping is never finalized (the pin holds a reference to it)
    // unless its environment is torn down under a running I/O: then leak it
    // rather than unmap memory a kernel I/O may still write.
    if (busy_ == 0) Release();
    if (reg_) reg_->Unref();
  }

  // munmap if still mapped, and retire the slot; true if this call did it.
  // Never while the mapping is pinned (busy()): the caller checks.
  bool Release() {
    if (!mapped || busy_ > 0) return false;
    mapped = false;
    munmap(mapBase_, mapLen_);
    Slot& s = reg_->slots[idx_];
    s.m = nullptr;
    s.gen = (s.gen + 1) & 0x7fffffffu;
    reg_->freeList.push_back(idx_);
    return true;
  }

  Napi::Object Info(Napi::Env env) const {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", Napi::Number::New(env, static_cast<double>(id_)));
    o.Set("path", Napi::String::New(env, path_));
    o.Set("base", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(addr))));
    o.Set("length", Napi::Number::New(env, static_cast<double>(len)));
    o.Set("offset", Napi::Number::New(env, static_cast<double>(offset_)));
    o.Set("mode", Napi::String::New(env, ModeName(mode)));
    o.Set("writable", Napi::Boolean::New(env, writable));
    return o;
  }

  const uint8_t* mapBase() const { return mapBase_; }
  size_t mapLen() const { return mapLen_; }
  // Pins by I/O in flight on other threads (PinMapping). Only touched on the
  // environment's thread, like the rest of the object.
  unsigned busy() const { return busy_; }
  void Pin() { busy_++; }
  void Unpin() { busy_--; }

  uint8_t* addr = nullptr;
  size_t len = 0;
  bool writable = false;
  bool mapped = false;
  Mode mode = Mode::UC;
  uint64_t id_ = 0;

 private:
  Napi::Value GetId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(id_)); }
  Napi::Value GetBase(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(mapped ? reinterpret_cast<uintptr_t>(addr) : 0));
  }
  Napi::Value GetLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(len)); }
  Napi::Value GetOffset(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(offset_));
  }
  Napi::Value GetMode(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), ModeName(mode)); }
  Napi::Value GetPath(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }
  Napi::Value GetWritable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), writable); }
  Napi::Value GetMapped(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), mapped); }
  Napi::Value GetSync(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), (flags_ & MAP_SYNC) != 0);
  }
  Napi::Value JsUnmap(const Napi::CallbackInfo& info) { return UnmapOrRefuse(info.Env(), this); }

  Registry* reg_ = nullptr;
  unsigned busy_ = 0;
  uint32_t idx_ = 0;
  uint64_t slot_ = 0;
  uint8_t* mapBase_ = nullptr;
  size_t mapLen_ = 0;
  uint64_t offset_ = 0;
  int flags_ = 0;
  std::string path_;
};

// Environment teardown (process exit, worker end): unmap what is still mapped.
// Mapping objects finalized later find themselves released already.
AddonData::~AddonData() {
  // Release() leaves pinned mappings alone (their I/O may still be running).
  for (size_t i = 0; i < reg->slots.size(); i++)
    if (reg->slots[i].m) reg->slots[i].m->Release();
  reg->Unref();
}

Napi::Value NewMapping(Napi::Env env, MapInit* init) {
  AddonData* data = env.GetInstanceData<AddonData>();
  tl_pendingInit = init;
  Napi::Object obj = data->mappingCtor.New({});
  tl_pendingInit = nullptr;
  if (env.IsExceptionPending()) {
    munmap(init->mapBase, init->mapLen);
    return Napi::Value();
  }
  return obj;
}

Registry& Reg(napi_env env) {
  void* d = nullptr;
  napi_get_instance_data(env, &d);
  return *static_cast<AddonData*>(d)->reg;
}

// Decode a slot Number. Returns 1 for a live mapping (in *out), 0 for a stale
// or never-live slot, -1 for a value that is not a slot at all.
int Resolve(napi_env env, napi_value v, Mapping** out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d < 9007199254740992.0)) return -1;
  uint64_t u = static_cast<uint64_t>(d);
  if (static_cast<double>(u) != d) return -1;
  Registry& r = Reg(env);
  uint64_t idx = u & kSlotMask;
  if (idx >= r.slots.size()) return -1;
  const Slot& s = r.slots[idx];
  if (!s.m || s.gen != (u >> kSlotBits)) return 0;
  *out = s.m;
  return 1;
}

// The live Mapping behind a handle (its slot); throws and returns null
// otherwise.
Mapping* GetMapping(napi_env env, napi_value v) {
  Mapping* m = nullptr;
  int r = Resolve(env, v, &m);
  if (r > 0) return m;
  if (r == 0)
    Throw(env, "E_UNMAPPED", "the mapping has been unmapped");
  else
    Throw(env, "E_HANDLE", "not a mapping handle (expected the object map() returned)", Kind::TypeError);
  return nullptr;
}

// An offset argument: a non-negative safe integer Number (or BigInt).
inline bool GetOff(napi_env env, napi_value v, uint64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) == napi_ok) {
    if (d >= 0 && d <= 9007199254740991.0 && static_cast<double>(static_cast<uint64_t>(d)) == d) {
      *out = static_cast<uint64_t>(d);
      return true;
    }
    Throw(env, "ERANGE", "offset must be a non-negative integer", Kind::RangeError);
    return false;
  }
  return GetU64(env, Napi::Value(env, v), "offset", out);
}

std::string Hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

// Bounds and natural alignment of [off, off + width * count) in m.
bool CheckRange(napi_env env, Mapping* m, uint64_t off, size_t width, uint64_t count) {
  uint64_t bytes = width * count;
  if ((count && bytes / count != width) || off > m->len || bytes > m->len - off) {
    Throw(env, "ERANGE",
          "range " + Hex(off) + "+" + Hex(bytes) + " is outside the mapping (length " + Hex(m->len) + ")",
          Kind::RangeError);
    return false;
  }
  if (width > 1 && (reinterpret_cast<uintptr_t>(m->addr + off) & (width - 1))) {
    Throw(env, "E_ALIGN", "offset " + Hex(off) + " is not " + std::to_string(width) + "-byte aligned",
          Kind::RangeError);
    return false;
  }
  return true;
}

bool CheckWritable(napi_env env, Mapping* m) {
  if (!m->writable) {
    Throw(env, "E_READONLY", "the mapping is read-only");
    return false;
  }
  return true;
}

Napi::Value BusError(napi_env env) {
  return Throw(env, "E_SIGBUS",
               "bus error (SIGBUS) accessing the mapping: the file was truncated, or the device or its "
               "memory went away");
}

// ---- map / unmap -----------------------------------------------------------

size_t PageSize() {
  static const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

// mmap(fd, offset, length, writable, extraFlags, mode, path) -> Mapping | -errno
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, extra;
  uint64_t offset, length;
  std::string modeStr, path;
  Mode mode;
  if (!GetInt(env, info[0], "fd", 0, INT32_MAX, &fd)) return Napi::Value();
  if (!GetU64(env, info[1], "offset", &offset)) return Napi::Value();
  if (!GetU64(env, info[2], "length", &length)) return Napi::Value();
  bool writable = info[3].ToBoolean().Value();
  if (!GetInt(env, info[4], "flags", 0, INT32_MAX, &extra)) return Napi::Value();
  if (!GetString(env, info[5], "mode", &modeStr)) return Napi::Value();
  if (!ParseMode(modeStr, &mode))
    return Throw(env, "E_MODE", "mode must be one of uc, wc, wb, wt (got '" + modeStr + "')", Kind::TypeError);
  if (info.Length() > 6 && info[6].IsString() && !GetPathArg(env, info[6], "path", &path)) return Napi::Value();
  if (length == 0) return Throw(env, "ERANGE", "length must be > 0", Kind::RangeError);
  // The mapping type (the low two bits) is always shared: MAP_SHARED, or
  // MAP_SHARED_VALIDATE, which MAP_SYNC needs. MAP_PRIVATE (0x02, one of
  // MAP_SHARED_VALIDATE's two bits) would give a copy-on-write mapping whose
  // writes never reach the file or the device: refused.
  const int64_t type = extra & 0x03;
  if (type != 0 && type != MAP_SHARED && type != MAP_SHARED_VALIDATE)
    return Throw(env, "E_ARG", "MAP_PRIVATE is not supported: iopmem mappings are shared with the file or device",
                 Kind::TypeError);
  const int allowed = MAP_SYNC | MAP_SHARED_VALIDATE | MAP_POPULATE | MAP_LOCKED | MAP_NORESERVE;
  if (extra & ~allowed) return Throw(env, "E_ARG", "unsupported mmap flags " + Hex(extra), Kind::TypeError);
  int flags = static_cast<int>(extra & ~int64_t{0x03});
  flags |= (type == MAP_SHARED_VALIDATE || (extra & MAP_SYNC)) ? MAP_SHARED_VALIDATE : MAP_SHARED;

  size_t ps = PageSize();
  uint64_t pgOff = offset & ~static_cast<uint64_t>(ps - 1);
  size_t delta = static_cast<size_t>(offset - pgOff);
  if (length > SIZE_MAX - delta || pgOff > static_cast<uint64_t>(INT64_MAX)) return NegErrno(env, EOVERFLOW);
  size_t mapLen = delta + static_cast<size_t>(length);
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = mmap(nullptr, mapLen, prot, flags, static_cast<int>(fd), static_cast<off_t>(pgOff));
  if (p == MAP_FAILED) return NegErrno(env, errno);
  MapInit init{static_cast<uint8_t*>(p), mapLen, delta, static_cast<size_t>(length), offset, writable, flags,
               mode, path};
  return NewMapping(env, &init);
}

// mapAnonymous(length, hugetlb, thp) -> Mapping | -errno: private anonymous WB
// memory (benches, tests).
Napi::Value MapAnonymous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t length;
  if (!GetU64(env, info[0], "length", &length)) return Napi::Value();
  if (length == 0) return Throw(env, "ERANGE", "length must be > 0", Kind::RangeError);
  bool huge = info.Length() > 1 && info[1].ToBoolean().Value();
  bool thp = info.Length() > 2 && info[2].ToBoolean().Value();
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0);
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return NegErrno(env, errno);
  if (thp) madvise(p, length, MADV_HUGEPAGE);  // advice: ignored where THP is off
  MapInit init{static_cast<uint8_t*>(p), static_cast<size_t>(length), 0, static_cast<size_t>(length), 0, true, flags,
               Mode::WB, huge ? "[anon:hugetlb]" : "[anon]"};
  return NewMapping(env, &init);
}

// Unmapping a mapping an ioRun is using is refused (E_BUSY), not waited for:
// the run ends on this very thread (its completion callback unpins), so a wait
// here could only block the event loop for the rest of the run (minutes with
// durationMs) with SIGINT unanswered. The caller stops the run and unmaps once
// its promise has settled.
Napi::Value UnmapOrRefuse(Napi::Env env, Mapping* m) {
  if (m->busy() > 0)
    return Throw(env, "E_BUSY",
                 "the mapping is the buffer of an I/O run still in flight: stop the run and unmap when it has "
                 "settled");
  return Napi::Boolean::New(env, m->Release());
}

// unmap(slot) -> true if it unmapped now, false if it was unmapped already;
// throws E_BUSY while an ioRun uses it.
Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = nullptr;
  int r = Resolve(env, info[0], &m);
  if (r < 0)
    return Throw(env, "E_HANDLE", "not a mapping handle (expected the object map() returned)", Kind::TypeError);
  if (r == 0) return Napi::Boolean::New(env, false);
  return UnmapOrRefuse(env, m);
}

std::vector<Mapping*> Live(napi_env env) {
  std::vector<Mapping*> v;
  for (const Slot& s : Reg(env).slots)
    if (s.m) v.push_back(s.m);
  return v;
}

// Skips (leaves mapped) the mappings an ioRun is using: at exit the kernel
// unmaps them once the I/O threads are gone.
Napi::Value UnmapAll(const Napi::CallbackInfo& info) {
  uint32_t n = 0;
  for (Mapping* m : Live(info.Env())) n += m->Release() ? 1 : 0;
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

// Pin the mapping behind `slot` as the buffer of an I/O on another thread:
// live, writable (the I/O reads into it), at least `need` bytes. Throws and
// returns false otherwise. Until UnpinMapping it cannot be unmapped (E_BUSY),
// and a reference keeps its object from being collected.
bool PinMapping(napi_env env, napi_value slot, uint64_t need, PinnedBuffer* out) {
  Mapping* m = GetMapping(env, slot);
  if (!m) return false;
  if (!CheckWritable(env, m)) return false;
  if (need > m->len) {
    Throw(env, "ERANGE",
          "the buffer mapping is " + std::to_string(m->len) + " bytes, smaller than qd * bs * jobs = " +
              std::to_string(need),
          Kind::RangeError);
    return false;
  }
  napi_ref ref;
  if (napi_create_reference(env, m->Value(), 1, &ref) != napi_ok) {
    Throw(env, "E_ARG", "cannot reference the buffer mapping");
    return false;
  }
  m->Pin();
  out->addr = m->addr;
  out->len = m->len;
  out->token = m;
  out->ref = ref;
  return true;
}

void UnpinMapping(napi_env env, PinnedBuffer* pin) {
  if (!pin->token) return;
  static_cast<Mapping*>(pin->token)->Unpin();
  napi_delete_reference(env, pin->ref);
  pin->token = nullptr;
  pin->ref = nullptr;
}

namespace {

Napi::Value LiveMappings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Mapping*> v = Live(env);
  std::sort(v.begin(), v.end(), [](Mapping* a, Mapping* b) { return a->id_ < b->id_; });
  Napi::Array arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) arr.Set(static_cast<uint32_t>(i), v[i]->Info(env));
  return arr;
}

// ---- exact-width access ----------------------------------------------------
// Raw N-API callbacks: these are the per-call hot path.

template <typename T>
napi_value ReadN(napi_env env, napi_callback_info cbi) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, cbi, &argc, argv, nullptr, nullptr);
  if (argc < 2) {
    Throw(env, "E_ARG", "read(handle, offset)", Kind::TypeError);
    return nullptr;
  }
  Mapping* m = GetMapping(env, argv[0]);
  if (!m) return nullptr;
  uint64_t off;
  if (!GetOff(env, argv[1], &off) || !CheckRange(env, m, off, sizeof(T), 1)) return nullptr;
  const volatile T* p = reinterpret_cast<const volatile T*>(m->addr + off);
  T v = 0;
  if (!Guarded(m->mapBase(), m->mapLen(), [&] { v = *p; })) {
    BusError(env);
    return nullptr;
  }
  napi_value out;
  if (sizeof(T) == 8)
    napi_create_bigint_uint64(env, static_cast<uint64_t>(v), &out);
  else
    napi_create_uint32(env, static_cast<uint32_t>(v), &out);
  return out;
}

// A value for a `width`-byte store: a Number integer in [0, 2^(8*width)), or
// for width 8 a BigInt in [0, 2^64) (a Number is accepted if safe).
bool GetValue(napi_env env, napi_value v, size_t width, uint64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) == napi_ok) {
    double lim = width == 8 ? 9007199254740992.0 : static_cast<double>(uint64_t{1} << (8 * width));
    if (!(d >= 0 && d < lim) || static_cast<double>(static_cast<uint64_t>(d)) != d) {
      Throw(env, "E_VALUE",
            "value must be an integer in [0, 2^" + std::to_string(8 * width) + ")" +
                (width == 8 ? " (use a BigInt above 2^53)" : ""),
            Kind::RangeError);
      return false;
    }
    *out = static_cast<uint64_t>(d);
    return true;
  }
  if (width == 8) {
    int sign = 0;
    size_t words = 2;
    uint64_t w[2] = {0, 0};
    if (napi_get_value_bigint_words(env, v, &sign, &words, w) == napi_ok) {
      if (sign || words > 1) {
        Throw(env, "E_VALUE", "value must be a BigInt in [0, 2^64)", Kind::RangeError);
        return false;
      }
      *out = words ? w[0] : 0;
      return true;
    }
  }
  Throw(env, "E_VALUE", width == 8 ? "value must be a BigInt or a number" : "value must be a number",
        Kind::TypeError);
  return false;
}

template <typename T>
napi_value WriteN(napi_env env, napi_callback_info cbi) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, cbi, &argc, argv, nullptr, nullptr);
  if (argc < 3) {
    Throw(env, "E_ARG", "write(handle, offset, value)", Kind::TypeError);
    return nullptr;
  }
  Mapping* m = GetMapping(env, argv[0]);
  if (!m) return nullptr;
  uint64_t off, val;
  if (!GetOff(env, argv[1], &off) || !CheckRange(env, m, off, sizeof(T), 1) || !CheckWritable(env, m) ||
      !GetValue(env, argv[2], sizeof(T), &val))
    return nullptr;
  volatile T* p = reinterpret_cast<volatile T*>(m->addr + off);
  T tv = static_cast<T>(val);
  // WC: drain the write-combining buffer so the store is on its way now.
  const bool fence = m->mode == Mode::WC;
  if (!Guarded(m->mapBase(), m->mapLen(), [&] {
        *p = tv;
        if (fence) _mm_sfence();
      })) {
    BusError(env);
    return nullptr;
  }
  return nullptr;  // undefined
}

bool GetWidth(Napi::Env env, Napi::Value v, size_t* w) {
  int64_t x;
  if (!GetInt(env, v, "width", 1, 8, &x)) return false;
  if (x != 1 && x != 2 && x != 4 && x != 8) {
    Throw(env, "E_ARG", "width must be 1, 2, 4 or 8 (bytes)", Kind::RangeError);
    return false;
  }
  *w = static_cast<size_t>(x);
  return true;
}

template <typename T>
void ReadLoop(T* dst, const uint8_t* src, uint64_t count) {
  const volatile T* s = reinterpret_cast<const volatile T*>(src);
  for (uint64_t i = 0; i < count; i++) dst[i] = s[i];
}

template <typename T>
void WriteLoop(uint8_t* dst, const T* src, uint64_t count) {
  volatile T* d = reinterpret_cast<volatile T*>(dst);
  for (uint64_t i = 0; i < count; i++) d[i] = src[i];
}

// readValues and writeValues move at most this many bytes per call: they make
// one volatile access per element (copyFrom/copyTo are the bulk path), and
// their buffers are allocated from what JS asked for, so the bound comes first.
constexpr uint64_t kMaxValuesBytes = uint64_t{1} << 30;

bool CheckValuesBytes(napi_env env, size_t w, uint64_t count) {
  if (count > kMaxValuesBytes / w) {
    Throw(env, "ERANGE",
          "count " + std::to_string(count) + " of " + std::to_string(w) +
              "-byte values is more than 1 GiB: use copyFrom/copyTo for bulk data",
          Kind::RangeError);
    return false;
  }
  return true;
}

void FreeBytes(napi_env, void* data, void*) { free(data); }

// readValues(handle, offset, width, count) -> Uint8Array | Uint16Array |
// Uint32Array | BigUint64Array, one volatile access per element. The result's
// memory is malloc'ed (a failure is ENOMEM, not V8's fatal "Allocation failed")
// and handed to an external ArrayBuffer.
Napi::Value ReadValues(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = GetMapping(env, info[0]);
  if (!m) return Napi::Value();
  uint64_t off, count;
  size_t w;
  if (!GetOff(env, info[1], &off) || !GetWidth(env, info[2], &w) || !GetU64(env, info[3], "count", &count) ||
      !CheckValuesBytes(env, w, count) || !CheckRange(env, m, off, w, count))
    return Napi::Value();
  const size_t bytes = static_cast<size_t>(count * w);
  void* dst = malloc(bytes ? bytes : 1);
  if (!dst) return Throw(env, "ENOMEM", "cannot allocate " + std::to_string(bytes) + " bytes for readValues");
  const uint8_t* src = m->addr + off;
  bool ok = Guarded(m->mapBase(), m->mapLen(), [&] {
    switch (w) {
      case 1: ReadLoop(static_cast<uint8_t*>(dst), src, count); break;
      case 2: ReadLoop(static_cast<uint16_t*>(dst), src, count); break;
      case 4: ReadLoop(static_cast<uint32_t*>(dst), src, count); break;
      default: ReadLoop(static_cast<uint64_t*>(dst), src, count); break;
    }
  });
  if (!ok) {
    free(dst);
    return BusError(env);
  }
  napi_value abv;
  if (napi_create_external_arraybuffer(env, dst, bytes, FreeBytes, nullptr, &abv) != napi_ok) {
    // A runtime that refuses external buffers (V8 sandbox): copy into its own.
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      free(dst);
      return Napi::Value();
    }
    void* data = nullptr;
    if (napi_create_arraybuffer(env, bytes, &data, &abv) != napi_ok) {
      free(dst);
      return Napi::Value();
    }
    memcpy(data, dst, bytes);
    free(dst);
  }
  Napi::ArrayBuffer ab(env, abv);
  napi_typedarray_type t = w == 1 ? napi_uint8_array
                           : w == 2 ? napi_uint16_array
                           : w == 4 ? napi_uint32_array
                                    : napi_biguint64_array;
  napi_value out;
  napi_create_typedarray(env, t, static_cast<size_t>(count), ab, 0, &out);
  return Napi::Value(env, out);
}

// writeValues(handle, offset, width, values) -> count. values: a TypedArray of
// that element width (its bytes are stored as they are), or an Array of
// Numbers (BigInts for width 8).
Napi::Value WriteValues(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = GetMapping(env, info[0]);
  if (!m) return Napi::Value();
  uint64_t off;
  size_t w;
  if (!GetOff(env, info[1], &off) || !GetWidth(env, info[2], &w)) return Napi::Value();
  const uint8_t* src = nullptr;
  uint64_t count = 0;
  struct Free {
    void operator()(uint8_t* p) const { free(p); }
  };
  std::unique_ptr<uint8_t[], Free> packed;
  if (info[3].IsTypedArray()) {
    napi_typedarray_type t;
    size_t length, byteOffset;
    void* data;
    napi_value ab;
    napi_get_typedarray_info(env, info[3], &t, &length, &data, &ab, &byteOffset);
    size_t elem = (t == napi_int8_array || t == napi_uint8_array || t == napi_uint8_clamped_array) ? 1
                  : (t == napi_int16_array || t == napi_uint16_array)                                ? 2
                  : (t == napi_int32_array || t == napi_uint32_array)                                ? 4
                  : (t == napi_bigint64_array || t == napi_biguint64_array)                          ? 8
                                                                                                     : 0;
    if (elem != w)
      return Throw(env, "E_ARG", "values must be an integer TypedArray of " + std::to_string(w) + "-byte elements",
                   Kind::TypeError);
    src = static_cast<const uint8_t*>(data);
    count = length;
  } else if (info[3].IsArray()) {
    Napi::Array a = info[3].As<Napi::Array>();
    count = a.Length();
    // Bounds before the packing buffer: its size comes from JS (a sparse
    // Array can claim 2^32 - 1 elements).
    if (!CheckValuesBytes(env, w, count) || !CheckRange(env, m, off, w, count) || !CheckWritable(env, m))
      return Napi::Value();
    const size_t bytes = static_cast<size_t>(count * w);
    packed.reset(static_cast<uint8_t*>(malloc(bytes ? bytes : 1)));
    if (!packed) return Throw(env, "ENOMEM", "cannot allocate " + std::to_string(bytes) + " bytes for writeValues");
    for (uint32_t i = 0; i < count; i++) {
      uint64_t v;
      if (!GetValue(env, a.Get(i), w, &v)) return Napi::Value();
      switch (w) {
        case 1: packed[i] = static_cast<uint8_t>(v); break;
        case 2: { uint16_t x = static_cast<uint16_t>(v); memcpy(&packed[i * 2], &x, 2); break; }
        case 4: { uint32_t x = static_cast<uint32_t>(v); memcpy(&packed[i * 4], &x, 4); break; }
        default: memcpy(&packed[i * 8], &v, 8); break;
      }
    }
    src = packed.get();
    // Reading the elements ran JS (getters) that may have unmapped it: look again.
    m = GetMapping(env, info[0]);
    if (!m) return Napi::Value();
  } else {
    return Throw(env, "E_ARG", "values must be a TypedArray or an Array", Kind::TypeError);
  }
  if (!CheckRange(env, m, off, w, count) || !CheckWritable(env, m)) return Napi::Value();
  uint8_t* dst = m->addr + off;
  // Element reads from src go through memcpy: a TypedArray is aligned, the
  // packed vector is too, but say so to the compiler rather than assume.
  bool ok = Guarded(m->mapBase(), m->mapLen(), [&] {
    switch (w) {
      case 1: WriteLoop(dst, src, count); break;
      case 2: {
        volatile uint16_t* d = reinterpret_cast<volatile uint16_t*>(dst);
        for (uint64_t i = 0; i < count; i++) { uint16_t x; memcpy(&x, src + 2 * i, 2); d[i] = x; }
        break;
      }
      case 4: {
        volatile uint32_t* d = reinterpret_cast<volatile uint32_t*>(dst);
        for (uint64_t i = 0; i < count; i++) { uint32_t x; memcpy(&x, src + 4 * i, 4); d[i] = x; }
        break;
      }
      default: {
        volatile uint64_t* d = reinterpret_cast<volatile uint64_t*>(dst);
        for (uint64_t i = 0; i < count; i++) { uint64_t x; memcpy(&x, src + 8 * i, 8); d[i] = x; }
        break;
      }
    }
    if (m->mode == Mode::WC) _mm_sfence();
  });
  if (!ok) return BusError(env);
  return Napi::Number::New(env, static_cast<double>(count));
}

// ---- bulk copies -------------------------------------------------------------

bool ParseStrategy(Napi::Env env, Napi::Value v, Strategy* s) {
  if (v.IsUndefined() || v.IsNull()) {
    *s = Strategy::Auto;
    return true;
  }
  std::string x;
  if (!GetString(env, v, "strategy", &x)) return false;
  if (x == "auto") *s = Strategy::Auto;
  else if (x == "memcpy") *s = Strategy::Memcpy;
  else if (x == "stream-store") *s = Strategy::StreamStore;
  else if (x == "stream-load") *s = Strategy::StreamLoad;
  else if (x == "exact64") *s = Strategy::Exact64;
  else {
    Throw(env, "E_STRATEGY", "strategy must be auto, memcpy, stream-store, stream-load or exact64 (got '" + x + "')",
          Kind::TypeError);
    return false;
  }
  return true;
}

// copyTo(handle, offset, src, strategy?) -> the strategy used.
Napi::Value CopyTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = GetMapping(env, info[0]);
  if (!m) return Napi::Value();
  uint64_t off;
  uint8_t* src;
  size_t n;
  Strategy s;
  if (!GetOff(env, info[1], &off) || !GetBytes(env, info[2], "src", &src, &n) || !ParseStrategy(env, info[3], &s) ||
      !CheckRange(env, m, off, 1, n) || !CheckWritable(env, m))
    return Napi::Value();
  if (s == Strategy::StreamLoad)
    return Throw(env, "E_STRATEGY", "stream-load is a strategy for copyFrom (reads), not copyTo", Kind::TypeError);
  if (s == Strategy::Auto)
    s = m->mode == Mode::WC ? Strategy::StreamStore : m->mode == Mode::UC ? Strategy::Exact64 : Strategy::Memcpy;
  uint8_t* dst = m->addr + off;
  bool ok = Guarded(m->mapBase(), m->mapLen(), [&] {
    switch (s) {
      case Strategy::StreamStore: copyStreamStore(dst, src, n); break;
      case Strategy::Exact64: copyExact64To(dst, src, n); break;
      default:
        memcpy(dst, src, n);
        // memcpy into WC/UC memory (asked for explicitly): fence as gdrcopy
        // does, so the data does not linger in write-combining buffers.
        if (m->mode == Mode::WC || m->mode == Mode::UC) _mm_sfence();
        break;
    }
  });
  if (!ok) return BusError(env);
  return Napi::String::New(env, s == Strategy::StreamStore ? "stream-store" : s == Strategy::Exact64 ? "exact64" : "memcpy");
}

// copyFrom(handle, offset, dst, strategy?) -> the strategy used.
Napi::Value CopyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = GetMapping(env, info[0]);
  if (!m) return Napi::Value();
  uint64_t off;
  uint8_t* dst;
  size_t n;
  Strategy s;
  if (!GetOff(env, info[1], &off) || !GetBytes(env, info[2], "dst", &dst, &n) || !ParseStrategy(env, info[3], &s) ||
      !CheckRange(env, m, off, 1, n))
    return Napi::Value();
  if (s == Strategy::StreamStore)
    return Throw(env, "E_STRATEGY", "stream-store is a strategy for copyTo (writes), not copyFrom", Kind::TypeError);
  if (s == Strategy::Auto) s = (m->mode == Mode::WC || m->mode == Mode::UC) ? Strategy::StreamLoad : Strategy::Memcpy;
  const uint8_t* src = m->addr + off;
  const char* used = "memcpy";
  bool ok = Guarded(m->mapBase(), m->mapLen(), [&] {
    switch (s) {
      case Strategy::StreamLoad:
        used = strcmp(copyStreamLoad(dst, src, n), "exact64") == 0 ? "exact64" : "stream-load";
        break;
      case Strategy::Exact64:
        copyExact64From(dst, src, n);
        used = "exact64";
        break;
      default: memcpy(dst, src, n); break;
    }
  });
  if (!ok) return BusError(env);
  return Napi::String::New(env, used);
}

// flush(handle, offset, length) -> "clwb" | "clflushopt" | "clflush" | "sfence"
Napi::Value Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = GetMapping(env, info[0]);
  if (!m) return Napi::Value();
  uint64_t off, n;
  if (!GetOff(env, info[1], &off) || !GetU64(env, info[2], "length", &n) || !CheckRange(env, m, off, 1, n))
    return Napi::Value();
  const char* used = "sfence";
  if (!Guarded(m->mapBase(), m->mapLen(), [&] { used = flushRange(m->addr + off, static_cast<size_t>(n)); })) return BusError(env);
  return Napi::String::New(env, used);
}

// ---- CPU features ------------------------------------------------------------

Napi::Value CpuFeaturesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu();
  Isa isa = isaLimit();
  Napi::Object o = Napi::Object::New(env);
  o.Set("sse2", f.sse2);
  o.Set("sse41", f.sse41);
  o.Set("avx", f.avx);
  o.Set("avx2", f.avx2);
  o.Set("avx512f", f.avx512f);
  o.Set("clflush", f.clflush);
  o.Set("clflushopt", f.clflushopt);
  o.Set("clwb", f.clwb);
  o.Set("cacheLine", f.cacheLine);
  o.Set("isa", isaName(isa));
  o.Set("streamStore", isa >= ISA_AVX512 ? "avx512f" : isa >= ISA_AVX ? "avx" : "sse2");
  o.Set("streamLoad", isa >= ISA_AVX512 ? "avx512f" : isa >= ISA_AVX2 ? "avx2" : isa >= ISA_SSE41 ? "sse4.1" : "none");
  o.Set("flush", f.clwb ? "clwb" : f.clflushopt ? "clflushopt" : f.clflush ? "clflush" : "sfence");
  return o;
}

// setIsaLimit(name) -> the ISA in force (the request clamped to the CPU's).
Napi::Value SetIsaLimitJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string s;
  if (!GetString(env, info[0], "isa", &s)) return Napi::Value();
  Isa want;
  if (s == "sse2") want = ISA_SSE2;
  else if (s == "sse4.1") want = ISA_SSE41;
  else if (s == "avx") want = ISA_AVX;
  else if (s == "avx2") want = ISA_AVX2;
  else if (s == "avx512f" || s == "best") want = ISA_AVX512;
  else return Throw(env, "E_ARG", "isa must be sse2, sse4.1, avx, avx2, avx512f or best", Kind::TypeError);
  return Napi::String::New(env, isaName(setIsaLimit(want)));
}

void DefineRaw(Napi::Env env, Napi::Object exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  exports.Set(name, Napi::Value(env, fn));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallBusHandler();
  auto* data = new AddonData();
  Napi::Function ctor = Mapping::Define(env);
  data->mappingCtor = Napi::Persistent(ctor);
  env.SetInstanceData<AddonData>(data);

  exports.Set("Mapping", ctor);
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("mapAnonymous", Napi::Function::New(env, MapAnonymous, "mapAnonymous"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
  exports.Set("unmapAll", Napi::Function::New(env, UnmapAll, "unmapAll"));
  exports.Set("liveMappings", Napi::Function::New(env, LiveMappings, "liveMappings"));
  DefineRaw(env, exports, "read8", ReadN<uint8_t>);
  DefineRaw(env, exports, "read16", ReadN<uint16_t>);
  DefineRaw(env, exports, "read32", ReadN<uint32_t>);
  DefineRaw(env, exports, "read64", ReadN<uint64_t>);
  DefineRaw(env, exports, "write8", WriteN<uint8_t>);
  DefineRaw(env, exports, "write16", WriteN<uint16_t>);
  DefineRaw(env, exports, "write32", WriteN<uint32_t>);
  DefineRaw(env, exports, "write64", WriteN<uint64_t>);
  exports.Set("readValues", Napi::Function::New(env, ReadValues, "readValues"));
  exports.Set("writeValues", Napi::Function::New(env, WriteValues, "writeValues"));
  exports.Set("copyTo", Napi::Function::New(env, CopyTo, "copyTo"));
  exports.Set("copyFrom", Napi::Function::New(env, CopyFrom, "copyFrom"));
  exports.Set("flush", Napi::Function::New(env, Flush, "flush"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeaturesJs, "cpuFeatures"));
  exports.Set("setIsaLimit", Napi::Function::New(env, SetIsaLimitJs, "setIsaLimit"));

  Napi::Object c = Napi::Object::New(env);
  c.Set("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE);
  c.Set("MAP_SYNC", MAP_SYNC);
  c.Set("MAP_POPULATE", MAP_POPULATE);
  c.Set("MAP_LOCKED", MAP_LOCKED);
  c.Set("MAP_NORESERVE", MAP_NORESERVE);
  c.Set("pageSize", static_cast<double>(PageSize()));
  exports.Set("constants", c);
  exports.Set("abiVersion", 5);
#ifdef IOPMEM_SOURCE_HASH
#define IOPMEM_STR2(x) #x
#define IOPMEM_STR(x) IOPMEM_STR2(x)
  // "h" + 16 hex digits of sha256(native/src/*, binding.gyp): see native/source-hash.cjs.
  exports.Set("sourceHash", IOPMEM_STR(IOPMEM_SOURCE_HASH) + 1);
#else
  exports.Set("sourceHash", "");
#endif
  InitSysfile(env, exports);
  InitIo(env, exports);
  return exports;
}

}  // namespace

}  // namespace iopmem

static Napi::Object InitIopmem(Napi::Env env, Napi::Object exports) { return iopmem::Init(env, exports); }

NODE_API_MODULE(iopmem, InitIopmem)
