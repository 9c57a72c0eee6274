// File-side system calls for the JS glue: open/close, fstatfs, statx (raw
// syscall, so the DIOALIGN fields are there whatever glibc's struct has),
// FIEMAP (batched, into flat typed arrays), memfd_create and ftruncate,
// strerror, and readMany (many small sysfs reads in one call). Each returns
// -errno on failure (see common.h).
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"

// As in io.cc: the x86-64 base version of pthread_create/join, so the
// prebuild still loads on glibc >= 2.27.
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");

namespace iopmem {

namespace {

// struct statx as the kernel lays it out (include/uapi/linux/stat.h), 256 bytes.
struct KStatxTimestamp {
  int64_t tv_sec;
  uint32_t tv_nsec;
  int32_t reserved;
};
struct KStatx {
  uint32_t mask;
  uint32_t blksize;
  uint64_t attributes;
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  uint16_t mode;
  uint16_t spare0;
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;
  uint64_t attributes_mask;
  KStatxTimestamp atime, btime, ctime, mtime;
  uint32_t rdev_major;
  uint32_t rdev_minor;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint64_t mnt_id;
  uint32_t dio_mem_align;
  uint32_t dio_offset_align;
  uint64_t spare3[12];
};
static_assert(sizeof(KStatx) == 256, "struct statx is 256 bytes");

constexpr uint32_t kStatxDioAlign = 0x2000;

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int64_t flags = 0, mode = 0;
  if (!GetPathArg(env, info[0], "path", &path)) return Napi::Value();
  if (!GetInt(env, info[1], "flags", INT32_MIN, INT32_MAX, &flags)) return Napi::Value();
  if (info.Length() > 2 && !info[2].IsUndefined() && !GetInt(env, info[2], "mode", 0, 07777, &mode))
    return Napi::Value();
  int fd = ::open(path.c_str(), static_cast<int>(flags) | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return NegErrno(env, errno);
  return Napi::Number::New(env, fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!GetInt(env, info[0], "fd", 0, INT32_MAX, &fd)) return Napi::Value();
  if (::close(static_cast<int>(fd)) < 0) return NegErrno(env, errno);
  return Napi::Number::New(env, 0);
}

Napi::Value Fstatfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!GetInt(env, info[0], "fd", 0, INT32_MAX, &fd)) return Napi::Value();
  struct statfs st;
  if (::fstatfs(static_cast<int>(fd), &st) < 0) return NegErrno(env, errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, static_cast<double>(static_cast<uint64_t>(st.f_type))));
  o.Set("bsize", Napi::Number::New(env, static_cast<double>(st.f_bsize)));
  o.Set("blocks", Napi::Number::New(env, static_cast<double>(st.f_blocks)));
  return o;
}

// statx(dirfd, path, flags, mask): dirfd -100 is AT_FDCWD; with AT_EMPTY_PATH
// and path "" it stats dirfd itself.
Napi::Value Statx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t dirfd, flags, mask;
  std::string path;
  if (!GetInt(env, info[0], "dirfd", INT32_MIN, INT32_MAX, &dirfd)) return Napi::Value();
  if (!GetPathArg(env, info[1], "path", &path)) return Napi::Value();
  if (!GetInt(env, info[2], "flags", 0, INT32_MAX, &flags)) return Napi::Value();
  if (!GetInt(env, info[3], "mask", 0, UINT32_MAX, &mask)) return Napi::Value();
  KStatx st;
  memset(&st, 0, sizeof st);
  long r = ::syscall(SYS_statx, static_cast<int>(dirfd), path.c_str(), static_cast<int>(flags),
                     static_cast<unsigned>(mask), &st);
  if (r < 0) return NegErrno(env, errno);
  auto num = [&](double v) { return Napi::Number::New(env, v); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("mask", num(st.mask));
  o.Set("blksize", num(st.blksize));
  o.Set("attributes", num(static_cast<double>(st.attributes)));
  o.Set("attributesMask", num(static_cast<double>(st.attributes_mask)));
  o.Set("nlink", num(st.nlink));
  o.Set("uid", num(st.uid));
  o.Set("gid", num(st.gid));
  o.Set("mode", num(st.mode));
  o.Set("ino", Napi::BigInt::New(env, st.ino));
  o.Set("size", num(static_cast<double>(st.size)));
  o.Set("blocks", num(static_cast<double>(st.blocks)));
  o.Set("devMajor", num(st.dev_major));
  o.Set("devMinor", num(st.dev_minor));
  o.Set("rdevMajor", num(st.rdev_major));
  o.Set("rdevMinor", num(st.rdev_minor));
  o.Set("mntId", Napi::BigInt::New(env, st.mnt_id));
  bool dio = (st.mask & kStatxDioAlign) != 0;
  o.Set("dioMemAlign", num(dio ? st.dio_mem_align : 0));
  o.Set("dioOffsetAlign", num(dio ? st.dio_offset_align : 0));
  auto ms = [](const KStatxTimestamp& t) { return static_cast<double>(t.tv_sec) * 1e3 + t.tv_nsec / 1e6; };
  o.Set("atimeMs", num(ms(st.atime)));
  o.Set("btimeMs", num(ms(st.btime)));
  o.Set("ctimeMs", num(ms(st.ctime)));
  o.Set("mtimeMs", num(ms(st.mtime)));
  return o;
}

// fiemap(fd, start, length, flags, batch): FS_IOC_FIEMAP in batches of `batch`
// extents, from `start` until FIEMAP_EXTENT_LAST, an empty answer, or the end
// of the range. FIEMAP_FLAG_SYNC (if asked) goes with the first call only: one
// sync is enough. Returns {count, calls, logical, physical, length, flags}.
Napi::Value Fiemap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, flags, batch;
  uint64_t start, length;
  if (!GetInt(env, info[0], "fd", 0, INT32_MAX, &fd)) return Napi::Value();
  if (!GetU64(env, info[1], "start", &start)) return Napi::Value();
  if (!GetU64(env, info[2], "length", &length)) return Napi::Value();
  if (!GetInt(env, info[3], "flags", 0, UINT32_MAX, &flags)) return Napi::Value();
  if (!GetInt(env, info[4], "batch", 1, 1 << 20, &batch)) return Napi::Value();

  const size_t bytes = sizeof(struct fiemap) + static_cast<size_t>(batch) * sizeof(struct fiemap_extent);
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[bytes]);
  if (!buf) return NegErrno(env, ENOMEM);
  auto* fm = reinterpret_cast<struct fiemap*>(buf.get());

  std::vector<uint64_t> lo, ph, ln;
  std::vector<uint32_t> fl;
  const uint64_t end = length > UINT64_MAX - start ? UINT64_MAX : start + length;
  uint64_t pos = start;
  uint32_t reqFlags = static_cast<uint32_t>(flags);
  uint32_t calls = 0;
  for (;;) {
    memset(fm, 0, sizeof(struct fiemap));
    fm->fm_start = pos;
    fm->fm_length = end - pos;
    fm->fm_flags = reqFlags;
    fm->fm_extent_count = static_cast<uint32_t>(batch);
    calls++;
    if (::ioctl(static_cast<int>(fd), FS_IOC_FIEMAP, fm) < 0) return NegErrno(env, errno);
    reqFlags &= ~static_cast<uint32_t>(FIEMAP_FLAG_SYNC);
    uint32_t got = fm->fm_mapped_extents;
    if (got == 0) break;
    size_t base = lo.size();
    lo.resize(base + got);
    ph.resize(base + got);
    ln.resize(base + got);
    fl.resize(base + got);
    for (uint32_t i = 0; i < got; i++) {
      const struct fiemap_extent& e = fm->fm_extents[i];
      lo[base + i] = e.fe_logical;
      ph[base + i] = e.fe_physical;
      ln[base + i] = e.fe_length;
      fl[base + i] = e.fe_flags;
    }
    const struct fiemap_extent& last = fm->fm_extents[got - 1];
    if (last.fe_flags & FIEMAP_EXTENT_LAST) break;
    uint64_t next = last.fe_logical + last.fe_length;
    if (next <= pos || next >= end) break;  // no progress, or range done
    pos = next;
  }

  const size_t n = lo.size();
  auto u64 = [&](const std::vector<uint64_t>& v) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, n * 8);
    if (n) memcpy(ab.Data(), v.data(), n * 8);
    return Napi::TypedArrayOf<uint64_t>::New(env, n, ab, 0, napi_biguint64_array);
  };
  Napi::ArrayBuffer fab = Napi::ArrayBuffer::New(env, n * 4);
  if (n) memcpy(fab.Data(), fl.data(), n * 4);
  Napi::Object o = Napi::Object::New(env);
  o.Set("count", Napi::Number::New(env, static_cast<double>(n)));
  o.Set("calls", Napi::Number::New(env, calls));
  o.Set("logical", u64(lo));
  o.Set("physical", u64(ph));
  o.Set("length", u64(ln));
  o.Set("flags", Napi::TypedArrayOf<uint32_t>::New(env, n, fab, 0, napi_uint32_array));
  return o;
}

// memfdCreate(name, hugetlb): an anonymous file (MFD_CLOEXEC), for tests and
// benches. Size it with ftruncate.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetString(env, info[0], "name", &name)) return Napi::Value();
  unsigned flags = MFD_CLOEXEC;
  if (info.Length() > 1 && info[1].ToBoolean().Value()) flags |= MFD_HUGETLB;
  int fd = ::memfd_create(name.c_str(), flags);
  if (fd < 0) return NegErrno(env, errno);
  return Napi::Number::New(env, fd);
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  uint64_t size;
  if (!GetInt(env, info[0], "fd", 0, INT32_MAX, &fd)) return Napi::Value();
  if (!GetU64(env, info[1], "size", &size)) return Napi::Value();
  if (size > static_cast<uint64_t>(INT64_MAX)) return NegErrno(env, EFBIG);
  if (::ftruncate(static_cast<int>(fd), static_cast<off_t>(size)) < 0) return NegErrno(env, errno);
  return Napi::Number::New(env, 0);
}

// readMany(kinds, paths, sizes): many small reads in one call, for the sysfs
// scan (`iopmem list` reads ~15 attributes of every PCI function and ~6 of
// every block device; one by one from JavaScript each costs several Node fs
// calls). One answer per request, in order; a failed request's answer is -errno:
//   0 text   open, one read of at most sizes[i] bytes, close → string (UTF-8,
//            invalid bytes as U+FFFD, as Buffer#toString). A read that fills
//            the buffer answers -EOVERFLOW: the caller reads such a file itself.
//   1 bytes  open, pread of at most sizes[i] bytes at offset 0, close → Buffer
//   2 link   readlink → string (-ENAMETOOLONG if the target fills PATH_MAX)
//   3 dir    the names in the directory, "." and ".." left out → string[]
//   4 exists lstat → true, or false on any failure (as Host.exists)
// Files open O_RDONLY|O_NONBLOCK|O_CLOEXEC: a FIFO in a fixture tree answers
// at once instead of waiting for a writer. The system calls (most of the time:
// each open walks a deep sysfs path) run on up to four threads for a large
// batch; the answers become JavaScript values on the calling thread after.
// Checked before any system call: the three arrays are as long as each other,
// at most 65536 requests, kinds 0..4, sizes 1..1 MiB and at most 256 MiB in
// all (what the answers could hold), paths strings without NUL and at most
// 64 MiB in all (E_ARG / ERANGE): no input makes the addon run out of memory.
constexpr uint32_t kReadManyMax = 1u << 16;
constexpr uint32_t kReadManyMaxSize = 1u << 20;
constexpr uint64_t kReadManyMaxTotal = uint64_t{1} << 28;
constexpr uint64_t kReadManyMaxPathBytes = uint64_t{1} << 26;
// A thread per this many requests, at most kReadManyThreads in all: below a
// few hundred requests, starting a thread costs more than it saves.
constexpr size_t kReadManyPerThread = 256;
constexpr size_t kReadManyThreads = 4;
constexpr size_t kReadManyBlock = 32;  // requests a thread takes at a time

struct ReadAnswer {
  int err = 0;     // errno, or 0
  bool yes = false;  // kind 4
  std::string data;  // kinds 0, 1, 2
  std::vector<std::string> names;  // kind 3
};

struct ReadJob {
  const std::vector<std::string>* paths;
  const std::vector<uint8_t>* kinds;
  const std::vector<uint32_t>* sizes;
  std::vector<ReadAnswer>* answers;
  uint32_t bufSize;
  std::atomic<size_t> next{0};
};

void ReadOne(uint8_t kind, const char* path, uint32_t size, char* buf, ReadAnswer* a) {
  switch (kind) {
    case 0:
    case 1: {
      int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) {
        a->err = errno;
        return;
      }
      ssize_t got;
      do got = kind == 0 ? ::read(fd, buf, size) : ::pread(fd, buf, size, 0);
      while (got < 0 && errno == EINTR);
      int e = errno;
      ::close(fd);
      if (got < 0) a->err = e;
      else if (kind == 0 && static_cast<size_t>(got) == size) a->err = EOVERFLOW;
      else a->data.assign(buf, static_cast<size_t>(got));
      return;
    }
    case 2: {
      ssize_t got = ::readlink(path, buf, PATH_MAX);
      if (got < 0) a->err = errno;
      else if (got >= PATH_MAX) a->err = ENAMETOOLONG;
      else a->data.assign(buf, static_cast<size_t>(got));
      return;
    }
    case 3: {
      DIR* d = ::opendir(path);
      if (!d) {
        a->err = errno;
        return;
      }
      errno = 0;
      while (struct dirent* de = ::readdir(d)) {
        const char* nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
        a->names.emplace_back(nm);
      }
      a->err = errno;
      ::closedir(d);
      return;
    }
    default: {
      struct stat st;
      a->yes = ::lstat(path, &st) == 0;
      return;
    }
  }
}

void* ReadWorker(void* arg) {
  auto* job = static_cast<ReadJob*>(arg);
  std::unique_ptr<char[]> buf(new (std::nothrow) char[job->bufSize]);
  const size_t n = job->paths->size();
  for (;;) {
    size_t at = job->next.fetch_add(kReadManyBlock);
    if (at >= n) break;
    for (size_t i = at; i < n && i < at + kReadManyBlock; i++) {
      ReadAnswer* a = &(*job->answers)[i];
      if (!buf) a->err = ENOMEM;
      else ReadOne((*job->kinds)[i], (*job->paths)[i].c_str(), (*job->sizes)[i], buf.get(), a);
    }
  }
  return nullptr;
}

// A batch checked and copied out of JavaScript: what the reads need, and their answers.
struct ReadBatch {
  std::vector<std::string> paths;
  std::vector<uint8_t> kinds;
  std::vector<uint32_t> sizes;
  std::vector<ReadAnswer> answers;
  uint32_t largest = PATH_MAX;
};

// Check every request before the first system call, copying what is needed:
// a getter or a later bad element must not leave half the reads done. False
// with a JavaScript exception pending when the input is refused.
bool TakeBatch(const Napi::CallbackInfo& info, ReadBatch* b) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    return Throw(env, "E_ARG", "kinds must be a Uint8Array", Kind::TypeError), false;
  if (!info[1].IsArray()) return Throw(env, "E_ARG", "paths must be an array of strings", Kind::TypeError), false;
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return Throw(env, "E_ARG", "sizes must be a Uint32Array", Kind::TypeError), false;
  Napi::Uint8Array kinds = info[0].As<Napi::Uint8Array>();
  Napi::Array paths = info[1].As<Napi::Array>();
  Napi::Uint32Array sizes = info[2].As<Napi::Uint32Array>();
  const size_t n = kinds.ElementLength();
  if (paths.Length() != n || sizes.ElementLength() != n)
    return Throw(env, "E_ARG", "kinds, paths and sizes must have the same length", Kind::TypeError), false;
  if (n > kReadManyMax) return Throw(env, "ERANGE", "at most 65536 requests in one call", Kind::RangeError), false;

  std::vector<std::string>& p = b->paths;
  std::vector<uint8_t>& k = b->kinds;
  std::vector<uint32_t>& sz = b->sizes;
  p.resize(n);
  k.resize(n);
  sz.resize(n);
  uint64_t total = 0, pathBytes = 0;
  for (size_t i = 0; i < n; i++) {
    k[i] = kinds[i];
    sz[i] = sizes[i];
    if (k[i] > 4) return Throw(env, "E_ARG", "kinds[" + std::to_string(i) + "] must be 0..4", Kind::TypeError), false;
    if ((k[i] == 0 || k[i] == 1) && (sz[i] == 0 || sz[i] > kReadManyMaxSize))
      return Throw(env, "ERANGE", "sizes[" + std::to_string(i) + "] must be 1..1048576", Kind::RangeError), false;
    napi_value el;
    if (napi_get_element(env, paths, static_cast<uint32_t>(i), &el) != napi_ok) return false;
    // GetPathArg's rules, with the copy made straight into place (thousands of paths per
    // call); anything it would refuse goes to GetPathArg for the error naming the index.
    napi_valuetype type;
    size_t len = 0;
    bool plain = napi_typeof(env, el, &type) == napi_ok && type == napi_string &&
                 napi_get_value_string_utf8(env, el, nullptr, 0, &len) == napi_ok && len <= (size_t{1} << 16);
    if (plain) {
      p[i].resize(len + 1);
      size_t got = 0;
      plain = napi_get_value_string_utf8(env, el, &p[i][0], len + 1, &got) == napi_ok && got == len;
      p[i].resize(got);
      plain = plain && std::memchr(p[i].data(), 0, got) == nullptr;
    }
    if (!plain) {
      std::string what = "paths[" + std::to_string(i) + "]";
      if (!GetPathArg(env, Napi::Value(env, el), what.c_str(), &p[i])) return false;
    }
    pathBytes += p[i].size();
    if (pathBytes > kReadManyMaxPathBytes) return Throw(env, "ERANGE", "the paths come to more than 64 MiB", Kind::RangeError), false;
    if (k[i] <= 1) {
      total += sz[i];
      if (total > kReadManyMaxTotal) return Throw(env, "ERANGE", "the sizes come to more than 256 MiB", Kind::RangeError), false;
      if (sz[i] > b->largest) b->largest = sz[i];
    }
  }
  b->answers.resize(n);
  return true;
}

// The system calls, on this thread and up to kReadManyThreads - 1 more; no JavaScript.
void RunBatch(ReadBatch* b) {
  const size_t n = b->paths.size();
  ReadJob job;
  job.paths = &b->paths;
  job.kinds = &b->kinds;
  job.sizes = &b->sizes;
  job.answers = &b->answers;
  job.bufSize = b->largest;
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  size_t want = n / kReadManyPerThread;
  if (want > kReadManyThreads) want = kReadManyThreads;
  if (cpus > 0 && want > static_cast<size_t>(cpus)) want = static_cast<size_t>(cpus);
  // This thread works too; a thread that cannot be started leaves its share to the others.
  pthread_t threads[kReadManyThreads];
  size_t started = 0;
  for (size_t t = 1; t < want; t++)
    if (pthread_create(&threads[started], nullptr, ReadWorker, &job) == 0) started++;
  ReadWorker(&job);
  for (size_t t = 0; t < started; t++) pthread_join(threads[t], nullptr);
}

// The answers as JavaScript values, on the JavaScript thread.
Napi::Array BatchAnswers(Napi::Env env, ReadBatch* b) {
  const size_t n = b->answers.size();
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    ReadAnswer& a = b->answers[i];
    const uint8_t k = b->kinds[i];
    napi_value v = nullptr;
    if (k == 4) v = Napi::Boolean::New(env, a.yes);
    else if (a.err) v = NegErrno(env, a.err);
    else if (k == 1) v = Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(a.data.data()), a.data.size());
    else if (k != 3) napi_create_string_utf8(env, a.data.data(), a.data.size(), &v);
    else {
      Napi::Array names = Napi::Array::New(env, a.names.size());
      for (size_t j = 0; j < a.names.size(); j++) names.Set(static_cast<uint32_t>(j), Napi::String::New(env, a.names[j]));
      v = names;
    }
    napi_set_element(env, out, static_cast<uint32_t>(i), v);
  }
  return out;
}

Napi::Value ReadMany(const Napi::CallbackInfo& info) {
  ReadBatch b;
  if (!TakeBatch(info, &b)) return Napi::Value();
  RunBatch(&b);
  return BatchAnswers(info.Env(), &b);
}

// readManyAsync: readMany's reads on libuv's thread pool, so the JavaScript
// thread goes on (loading modules, say) meanwhile; the promise resolves to
// readMany's answers. The input is checked and copied before it returns, and
// refused input throws as readMany does: nothing is read.
class ReadManyWorker : public Napi::AsyncWorker {
 public:
  explicit ReadManyWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  ReadBatch batch;
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { RunBatch(&batch); }
  void OnOK() override { deferred_.Resolve(BatchAnswers(Env(), &batch)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
};

Napi::Value ReadManyAsync(const Napi::CallbackInfo& info) {
  auto* w = new ReadManyWorker(info.Env());
  if (!TakeBatch(info, &w->batch)) {
    delete w;
    return Napi::Value();
  }
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value Strerror(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t e;
  if (!GetInt(env, info[0], "errno", INT32_MIN, INT32_MAX, &e)) return Napi::Value();
  char buf[256];
  const char* s = strerror_r(static_cast<int>(e < 0 ? -e : e), buf, sizeof buf);
  return Napi::String::New(env, s);
}

}  // namespace

void InitSysfile(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("fstatfs", Napi::Function::New(env, Fstatfs, "fstatfs"));
  exports.Set("statx", Napi::Function::New(env, Statx, "statx"));
  exports.Set("fiemap", Napi::Function::New(env, Fiemap, "fiemap"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
  exports.Set("strerror", Napi::Function::New(env, Strerror, "strerror"));
  exports.Set("readMany", Napi::Function::New(env, ReadMany, "readMany"));
  exports.Set("readManyAsync", Napi::Function::New(env, ReadManyAsync, "readManyAsync"));
}

}  // namespace iopmem
