// File-side system calls for the JS glue: open/close, fstatfs, statx (raw
// syscall, so the DIOALIGN fields are there whatever glibc's struct has),
// FIEMAP (batched, into flat typed arrays), memfd_create and ftruncate, and
// strerror. Each returns -errno on failure (see common.h).
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"

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
  if (!GetString(env, info[0], "path", &path)) return Napi::Value();
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
  if (!GetString(env, info[1], "path", &path)) return Napi::Value();
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
}

}  // namespace iopmem
