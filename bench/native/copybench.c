/*
 * The C baseline of the native copy bench (bench/native/index.ts): the same
 * copies the addon makes, in plain C, built by `cc -O2` in the bench run.
 *
 *   copybench SIZE REPS BACKING          one shot: REPS rounds, best of each
 *   copybench SIZE 0 BACKING serve       one copy per command read on stdin
 *
 * BACKING is the WB memory standing in for the mapping: "memfd" (MAP_SHARED
 * memfd, 4 KiB pages), "hugetlb" (MFD_HUGETLB memfd) or "anon" (private
 * anonymous memory, MADV_HUGEPAGE advised). The host side is malloc'd, as a
 * large Node Buffer is. Both are touched before timing. Prints one JSON line:
 * the best of REPS, in GB/s (1e9 bytes/s), for the copies below. In serve
 * mode it prints "ready", then for each line naming a copy ("memcpy_in", ...)
 * makes that copy once and prints its GB/s; "quit" ends it. The bench uses
 * serve mode to interleave C and iopmem copies a fraction of a second apart,
 * so that the load of the machine at each moment weighs on both alike.
 *
 *   memcpy_in   memcpy(mapping, host)
 *   memcpy_out  memcpy(host, mapping)
 *   stream_in   SSE2 streaming-store loop host -> mapping, then sfence
 *   stream_out  SSE2 streaming-store loop mapping -> host, then sfence
 */
#define _GNU_SOURCE
#include <emmintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Streaming stores: d 16-byte aligned after a short head, loads unaligned. */
static void stream_copy(uint8_t *d, const uint8_t *s, size_t n) {
  while (n && ((uintptr_t)d & 15)) {
    *d++ = *s++;
    n--;
  }
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m128i a = _mm_loadu_si128((const __m128i *)(s + i));
    __m128i b = _mm_loadu_si128((const __m128i *)(s + i + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32));
    __m128i e = _mm_loadu_si128((const __m128i *)(s + i + 48));
    _mm_stream_si128((__m128i *)(d + i), a);
    _mm_stream_si128((__m128i *)(d + i + 16), b);
    _mm_stream_si128((__m128i *)(d + i + 32), c);
    _mm_stream_si128((__m128i *)(d + i + 48), e);
  }
  for (; i < n; i++) d[i] = s[i];
  _mm_sfence();
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: copybench SIZE REPS memfd|hugetlb|anon\n");
    return 2;
  }
  size_t size = strtoull(argv[1], NULL, 0);
  int reps = atoi(argv[2]);
  const char *backing = argv[3];
  uint8_t *map;
  if (!strcmp(backing, "anon")) {
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map != MAP_FAILED) madvise(map, size, MADV_HUGEPAGE);
  } else {
    int fd = memfd_create("copybench", MFD_CLOEXEC | (!strcmp(backing, "hugetlb") ? MFD_HUGETLB : 0));
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
      perror("memfd");
      return 1;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
  }
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  uint8_t *host = malloc(size);
  if (!host) {
    perror("malloc");
    return 1;
  }
  memset(map, 1, size);
  memset(host, 2, size);

  if (argc > 4 && !strcmp(argv[4], "serve")) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
      double t = now();
      if (!strncmp(line, "memcpy_in", 9))
        memcpy(map, host, size);
      else if (!strncmp(line, "memcpy_out", 10))
        memcpy(host, map, size);
      else if (!strncmp(line, "stream_in", 9))
        stream_copy(map, host, size);
      else if (!strncmp(line, "stream_out", 10))
        stream_copy(host, map, size);
      else
        break;
      t = now() - t;
      printf("%.3f\n", size / t / 1e9);
    }
    return host[size / 2] == map[size / 2] ? 0 : 3;
  }

  double best[4] = {0, 0, 0, 0};
  for (int r = 0; r < reps; r++) {
    double t;
    t = now();
    memcpy(map, host, size);
    t = now() - t;
    if (size / t > best[0]) best[0] = size / t;
    t = now();
    memcpy(host, map, size);
    t = now() - t;
    if (size / t > best[1]) best[1] = size / t;
    t = now();
    stream_copy(map, host, size);
    t = now() - t;
    if (size / t > best[2]) best[2] = size / t;
    t = now();
    stream_copy(host, map, size);
    t = now() - t;
    if (size / t > best[3]) best[3] = size / t;
  }
  if (host[size / 2] != map[size / 2]) return 3; /* keep the copies observable */
  printf("{\"memcpy_in\":%.3f,\"memcpy_out\":%.3f,\"stream_in\":%.3f,\"stream_out\":%.3f}\n", best[0] / 1e9,
         best[1] / 1e9, best[2] / 1e9, best[3] / 1e9);
  free(host);
  munmap(map, size);
  return 0;
}
