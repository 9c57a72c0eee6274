{
  # The iopmem N-API addon (native/src). N-API only, so one build serves every
  # Node >= 20. x86-64 Linux: the SIMD copy paths are compiled per function with
  # __attribute__((target(...))) and chosen at run time from cpuid, so the
  # binary itself needs nothing beyond baseline x86-64 (SSE2).
  "targets": [
    {
      "target_name": "iopmem",
      "sources": [
        "native/src/addon.cc",
        "native/src/copy.cc",
        "native/src/io.cc",
        "native/src/sysfile.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GNU_SOURCE",
        "IOPMEM_SOURCE_HASH=<!(node native/source-hash.cjs)"
      ],
      # liburing (Debian liburing-dev) is linked statically: the prebuild then
      # runs where liburing is not installed.
      "libraries": ["-l:liburing.a", "-lpthread"],
      "cflags": ["-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags_cc": ["-O2"]
    }
  ]
}
