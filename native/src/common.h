// Shared helpers of the addon's N-API glue.
//
// Convention: a native function that makes a system call returns -errno (a
// negative Number) when it fails and leaves it to the JavaScript glue
// (src/native/index.ts) to throw an Error with code/errno/syscall/path/message.
// Misuse that JavaScript can see coming (a bad argument, use after unmap, an
// out-of-range or misaligned offset) throws here directly, with a `code`.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <string>

namespace iopmem {

enum class Kind { Error, TypeError, RangeError };

// Throw a JS error carrying `code` and return an empty Value.
inline Napi::Value Throw(Napi::Env env, const char* code, const std::string& msg, Kind kind = Kind::Error) {
  napi_value err, jcode, jmsg;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode);
  napi_create_string_utf8(env, msg.c_str(), msg.size(), &jmsg);
  switch (kind) {
    case Kind::TypeError: napi_create_type_error(env, jcode, jmsg, &err); break;
    case Kind::RangeError: napi_create_range_error(env, jcode, jmsg, &err); break;
    default: napi_create_error(env, jcode, jmsg, &err); break;
  }
  napi_throw(env, err);
  return Napi::Value();
}

inline Napi::Value NegErrno(Napi::Env env, int e) { return Napi::Number::New(env, -static_cast<double>(e)); }

// A non-negative integer Number or BigInt that fits in uint64 (Numbers must be
// safe integers). Returns false after throwing.
inline bool GetU64(Napi::Env env, Napi::Value v, const char* what, uint64_t* out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) {
      Throw(env, "ERANGE", std::string(what) + " must be a non-negative safe integer", Kind::RangeError);
      return false;
    }
    *out = static_cast<uint64_t>(d);
    return true;
  }
  if (t == napi_bigint) {
    int sign = 0;
    size_t words = 2;
    uint64_t w[2] = {0, 0};
    napi_get_value_bigint_words(env, v, &sign, &words, w);
    if (sign || words > 1) {
      Throw(env, "ERANGE", std::string(what) + " must fit in an unsigned 64-bit integer", Kind::RangeError);
      return false;
    }
    *out = words ? w[0] : 0;
    return true;
  }
  Throw(env, "E_ARG", std::string(what) + " must be a number or bigint", Kind::TypeError);
  return false;
}

inline bool GetInt(Napi::Env env, Napi::Value v, const char* what, int64_t lo, int64_t hi, int64_t* out) {
  if (!v.IsNumber()) {
    Throw(env, "E_ARG", std::string(what) + " must be a number", Kind::TypeError);
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
    Throw(env, "ERANGE", std::string(what) + " is out of range", Kind::RangeError);
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

// A string argument: names, modes and paths, so at most 64 KiB of UTF-8
// (checked before the copy is allocated: no bad_alloc from a huge string).
inline bool GetString(Napi::Env env, Napi::Value v, const char* what, std::string* out) {
  if (!v.IsString()) {
    Throw(env, "E_ARG", std::string(what) + " must be a string", Kind::TypeError);
    return false;
  }
  size_t n = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &n);
  if (n > (size_t{1} << 16)) {
    Throw(env, "ERANGE", std::string(what) + " is longer than 64 KiB", Kind::RangeError);
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

// A path argument: GetString's rules, and no NUL byte. The C string would end
// at the first NUL, so "/ok\0/other" would reach the system call as "/ok",
// a file other than the one the JavaScript side checked.
inline bool GetPathArg(Napi::Env env, Napi::Value v, const char* what, std::string* out) {
  if (!GetString(env, v, what, out)) return false;
  if (out->find('\0') != std::string::npos) {
    Throw(env, "E_ARG", std::string(what) + " must not contain a NUL byte", Kind::TypeError);
    return false;
  }
  return true;
}

// Bytes of a Buffer / TypedArray / DataView / ArrayBuffer.
inline bool GetBytes(Napi::Env env, Napi::Value v, const char* what, uint8_t** data, size_t* len) {
  napi_value raw = v;
  bool is = false;
  void* p = nullptr;
  size_t n = 0;
  if (napi_is_typedarray(env, raw, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t length, byteOffset;
    napi_value ab;
    napi_get_typedarray_info(env, raw, &type, &length, &p, &ab, &byteOffset);
    size_t elem = 1;
    switch (type) {
      case napi_int16_array:
      case napi_uint16_array: elem = 2; break;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array: elem = 4; break;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array: elem = 8; break;
      default: elem = 1; break;
    }
    n = length * elem;
  } else if (napi_is_dataview(env, raw, &is) == napi_ok && is) {
    napi_value ab;
    size_t byteOffset;
    napi_get_dataview_info(env, raw, &n, &p, &ab, &byteOffset);
  } else if (napi_is_arraybuffer(env, raw, &is) == napi_ok && is) {
    napi_get_arraybuffer_info(env, raw, &p, &n);
  } else {
    Throw(env, "E_ARG", std::string(what) + " must be a Buffer, TypedArray, DataView or ArrayBuffer", Kind::TypeError);
    return false;
  }
  *data = static_cast<uint8_t*>(p);
  *len = n;
  return true;
}

// A Mapping pinned as the buffer of an I/O running on other threads (io.cc
// ↔ addon.cc): while pinned it cannot be unmapped (unmap throws E_BUSY).
struct PinnedBuffer {
  uint8_t* addr = nullptr;
  size_t len = 0;
  void* token = nullptr;
  napi_ref ref = nullptr;
};
bool PinMapping(napi_env env, napi_value slot, uint64_t need, PinnedBuffer* out);
void UnpinMapping(napi_env env, PinnedBuffer* pin);

void InitSysfile(Napi::Env env, Napi::Object exports);
void InitIo(Napi::Env env, Napi::Object exports);

}  // namespace iopmem
