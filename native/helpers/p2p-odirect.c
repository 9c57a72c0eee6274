/*
 * p2p-odirect: a tiny guest-side helper for the iopmem VM test harness.
 *
 *   p2p-odirect [--verify] [--offset BYTES] PROVIDER BLOCKDEV BYTES
 *       mmap PROVIDER's p2pmem/allocate (MAP_SHARED, offset 0, BYTES rounded
 *       up to a page) and O_DIRECT pread BYTES from BLOCKDEV at --offset into
 *       that mapping: the NVMe controller DMAs straight into the provider's BAR.
 *       PROVIDER is a PCI BDF ("0000:03:00.0") or a path to an allocate file.
 *       --verify: also read the same range with a plain pread into RAM and
 *       compare it with what arrived in the mapping.
 *   p2p-odirect --poke FILE OFFSET HEX
 *       mmap FILE (e.g. /sys/bus/pci/devices/BDF/resource2) and store the
 *       bytes HEX at OFFSET with single-byte volatile stores.
 *   p2p-odirect --peek FILE OFFSET LENGTH
 *       mmap FILE and print LENGTH bytes at OFFSET as hex.
 *
 * Output: exactly one JSON line on stdout, e.g.
 *   {"ok":true,"bytes":65536,"offset":0,"head":"...","match":true}
 *   {"ok":false,"errno":121,"code":"EREMOTEIO","step":"pread","message":"..."}
 * Exit status: 0 when ok, 1 on failure, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAD_BYTES 32

static const char *errno_name(int e)
{
	switch (e) {
#define E(x) case x: return #x
	E(EPERM); E(ENOENT); E(ESRCH); E(EINTR); E(EIO); E(ENXIO); E(E2BIG);
	E(ENOEXEC); E(EBADF); E(EAGAIN); E(ENOMEM); E(EACCES); E(EFAULT);
	E(EBUSY); E(EEXIST); E(EXDEV); E(ENODEV); E(ENOTDIR); E(EISDIR);
	E(EINVAL); E(ENFILE); E(EMFILE); E(ENOTTY); E(EFBIG); E(ENOSPC);
	E(ESPIPE); E(EROFS); E(ERANGE); E(ENOSYS); E(EOVERFLOW);
	E(EOPNOTSUPP); E(ETIMEDOUT); E(EREMOTEIO);
#undef E
	default: return "UNKNOWN";
	}
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int fail(const char *step, int err, const char *path)
{
	printf("{\"ok\":false,\"errno\":%d,\"code\":", err);
	json_str(err ? errno_name(err) : "UNKNOWN");
	printf(",\"step\":");
	json_str(step);
	printf(",\"message\":");
	json_str(err ? strerror(err) : step);
	if (path) {
		printf(",\"path\":");
		json_str(path);
	}
	printf("}\n");
	fflush(stdout);
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: p2p-odirect [--verify] [--offset BYTES] PROVIDER BLOCKDEV BYTES\n"
		"       p2p-odirect --poke FILE OFFSET HEX\n"
		"       p2p-odirect --peek FILE OFFSET LENGTH\n");
	printf("{\"ok\":false,\"errno\":%d,\"code\":\"EINVAL\",\"step\":\"args\","
	       "\"message\":\"bad usage\"}\n", EINVAL);
	return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static void print_hex(const volatile uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Map [offset, offset+len) of path; returns the pointer to offset. */
static volatile uint8_t *map_range(const char *path, uint64_t offset, size_t len,
				   int writable, void **base, size_t *maplen, int *fdp)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_SYNC | O_CLOEXEC);
	if (fd < 0) {
		fail("open", errno, path);
		return NULL;
	}
	uint64_t start = offset & ~(uint64_t)(page - 1);
	*maplen = (size_t)(offset - start) + len;
	*base = mmap(NULL, *maplen, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
		     fd, (off_t)start);
	if (*base == MAP_FAILED) {
		fail("mmap", errno, path);
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return (volatile uint8_t *)*base + (offset - start);
}

static int do_poke(const char *path, const char *off_s, const char *hex)
{
	uint64_t offset;
	size_t hl = strlen(hex);
	if (parse_u64(off_s, &offset) || hl == 0 || hl % 2)
		return usage();
	size_t n = hl / 2;
	uint8_t *bytes = malloc(n);
	if (!bytes)
		return fail("args", ENOMEM, NULL);
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(bytes);
			return usage();
		}
		bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	void *base;
	size_t maplen;
	int fd;
	volatile uint8_t *p = map_range(path, offset, n, 1, &base, &maplen, &fd);
	if (!p) {
		free(bytes);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = bytes[i];
	__sync_synchronize();
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		msync(base, maplen, MS_SYNC);
	int same = 1;
	for (size_t i = 0; i < n; i++)
		if (p[i] != bytes[i])
			same = 0;
	munmap(base, maplen);
	close(fd);
	free(bytes);
	printf("{\"ok\":%s,\"bytes\":%zu,\"offset\":%" PRIu64 ",\"readback\":%s}\n",
	       same ? "true" : "false", n, offset, same ? "true" : "false");
	return same ? 0 : 1;
}

static int do_peek(const char *path, const char *off_s, const char *len_s)
{
	uint64_t offset, len;
	if (parse_u64(off_s, &offset) || parse_u64(len_s, &len) || len == 0 || len > (1 << 20))
		return usage();
	void *base;
	size_t maplen;
	int fd;
	volatile uint8_t *p = map_range(path, offset, (size_t)len, 0, &base, &maplen, &fd);
	if (!p)
		return 1;
	printf("{\"ok\":true,\"bytes\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"hex\":\"", len, offset);
	print_hex(p, (size_t)len);
	printf("\"}\n");
	munmap(base, maplen);
	close(fd);
	return 0;
}

static int do_p2p(const char *provider, const char *blockdev, uint64_t bytes,
		  uint64_t offset, int verify)
{
	char allocate[512];
	if (strchr(provider, '/'))
		snprintf(allocate, sizeof(allocate), "%s", provider);
	else
		snprintf(allocate, sizeof(allocate), "/sys/bus/pci/devices/%s/p2pmem/allocate",
			 provider);

	long page = sysconf(_SC_PAGESIZE);
	size_t maplen = (size_t)((bytes + (uint64_t)page - 1) & ~(uint64_t)(page - 1));

	int afd = open(allocate, O_RDWR | O_CLOEXEC);
	if (afd < 0)
		return fail("open", errno, allocate);
	void *buf = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
	if (buf == MAP_FAILED)
		return fail("mmap", errno, allocate);

	int bfd = open(blockdev, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (bfd < 0)
		return fail("open", errno, blockdev);

	ssize_t got = pread(bfd, buf, (size_t)bytes, (off_t)offset);
	if (got < 0)
		return fail("pread", errno, blockdev);
	if ((uint64_t)got != bytes) {
		printf("{\"ok\":false,\"errno\":0,\"code\":\"SHORT_READ\",\"step\":\"pread\","
		       "\"bytes\":%zd,\"message\":\"short read\"}\n", got);
		return 1;
	}

	/* Copy out of the BAR with 8-byte volatile loads (never libc memcpy on UC). */
	uint8_t *copy = malloc((size_t)bytes);
	if (!copy)
		return fail("verify", ENOMEM, NULL);
	const volatile uint64_t *src = (const volatile uint64_t *)buf;
	size_t words = (size_t)bytes / 8;
	for (size_t i = 0; i < words; i++) {
		uint64_t w = src[i];
		memcpy(copy + i * 8, &w, 8);
	}
	for (size_t i = words * 8; i < (size_t)bytes; i++)
		copy[i] = ((const volatile uint8_t *)buf)[i];

	int match = -1;
	if (verify) {
		uint8_t *plain = malloc((size_t)bytes);
		if (!plain)
			return fail("verify", ENOMEM, NULL);
		int pfd = open(blockdev, O_RDONLY | O_CLOEXEC);
		if (pfd < 0)
			return fail("verify", errno, blockdev);
		ssize_t pg = pread(pfd, plain, (size_t)bytes, (off_t)offset);
		if (pg < 0)
			return fail("verify", errno, blockdev);
		match = (uint64_t)pg == bytes && memcmp(plain, copy, (size_t)bytes) == 0;
		close(pfd);
		free(plain);
	}

	printf("{\"ok\":%s,\"bytes\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"head\":\"",
	       match == 0 ? "false" : "true", bytes, offset);
	print_hex(copy, bytes < HEAD_BYTES ? (size_t)bytes : HEAD_BYTES);
	printf("\"");
	if (verify)
		printf(",\"match\":%s", match ? "true" : "false");
	if (match == 0)
		printf(",\"step\":\"verify\",\"code\":\"MISMATCH\",\"errno\":0");
	printf("}\n");
	free(copy);
	close(bfd);
	munmap(buf, maplen);
	close(afd);
	return match == 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	int verify = 0;
	uint64_t offset = 0;
	int i = 1;

	if (argc >= 2 && strcmp(argv[1], "--poke") == 0)
		return argc == 5 ? do_poke(argv[2], argv[3], argv[4]) : usage();
	if (argc >= 2 && strcmp(argv[1], "--peek") == 0)
		return argc == 5 ? do_peek(argv[2], argv[3], argv[4]) : usage();

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--verify") == 0)
			verify = 1;
		else if (strcmp(argv[i], "--offset") == 0 && i + 1 < argc) {
			if (parse_u64(argv[++i], &offset))
				return usage();
		} else
			return usage();
	}
	if (argc - i != 3)
		return usage();
	uint64_t bytes;
	if (parse_u64(argv[i + 2], &bytes) || bytes == 0 || bytes > (1ULL << 30))
		return usage();
	return do_p2p(argv[i], argv[i + 1], bytes, offset, verify);
}
