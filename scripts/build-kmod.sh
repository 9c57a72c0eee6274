#!/usr/bin/env bash
# Build the iopmem kernel module (native/kmod) against kernel build trees with
# warnings as errors (-Werror, plus W=1), then run the kernel's checkpatch on it.
#
# usage: scripts/build-kmod.sh              the matrix: every tree below, one line each; fails if any fails
#        scripts/build-kmod.sh TREE|TARBALL  that one tree
# The matrix:
#   ours         vm/kernel/extmod.tar.xz (checked against vm/kernel/SHA256SUMS), the guest kernel
#                with CONFIG_PCI_P2PDMA, unpacked once into
#                ${XDG_CACHE_HOME:-~/.cache}/iopmem/extmod-<sha256 prefix>/ (never into the checkout)
#   debian-6.1   the newest /usr/src/linux-headers-6.1.0-*-amd64 (Debian 12's kernel, no P2PDMA)
#   debian-6.12  the newest /usr/src/linux-headers-6.12.*+deb12-amd64 (Debian 12's 6.12, no P2PDMA)
# scripts/install-deps.sh installs both Debian header packages; scripts/build-kernel.sh makes the
# tarball with the kernel. Each module is built in a temporary directory; IOPMEM_KMOD_OUT=DIR keeps
# the last one there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
src=$repo/native/kmod
cache=${XDG_CACHE_HOME:-$HOME/.cache}/iopmem
checkpatch=

# The extmod tree of the guest kernel, unpacked into the cache once; prints its directory.
ours() {
	local tarball=$repo/vm/kernel/extmod.tar.xz
	(cd "$repo/vm/kernel" && grep ' extmod.tar.xz$' SHA256SUMS | sha256sum --quiet -c -) ||
		{ echo "build-kmod: vm/kernel/extmod.tar.xz does not match vm/kernel/SHA256SUMS (git checkout -- vm/kernel)" >&2; return 3; }
	unpacked "$tarball"
}

unpacked() {
	local tree
	tree=$cache/extmod-$(sha256sum "$1" | cut -c1-16)
	if [[ ! -f $tree/Module.symvers ]]; then
		echo "unpacking $1 into $tree" >&2
		rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
		tar -xJf "$1" -C "$tree.tmp"
		rm -rf "$tree" && mv "$tree.tmp" "$tree"
	fi
	echo "$tree"
}

# The newest installed Debian header tree matching a glob, or nothing.
debian() {
	local d
	d=$(compgen -G "/usr/src/$1" | sort -V | tail -n 1 || true)
	[[ -n $d && -f $d/Module.symvers ]] && echo "$d"
	return 0
}

# Build against one tree; prints the build log and one summary line, returns non-zero on failure.
build_one() {
	local name=$1 tree=$2 out log release vermagic p2pdma
	[[ -f $tree/Makefile && -f $tree/Module.symvers ]] || { echo "build-kmod: $tree is not a kernel build tree" >&2; return 3; }
	out=${IOPMEM_KMOD_OUT:-$(mktemp -d)}
	mkdir -p "$out"
	cp "$src/iopmem.c" "$src/iopmem_compat.h" "$src/Kbuild" "$out/"
	log=$out/build.log
	if ! make -C "$tree" M="$out" IOPMEM_WERROR=1 W=1 modules >"$log" 2>&1; then
		cat "$log"
		echo "build-kmod: $name: the build against $tree failed" >&2
		[[ -n ${IOPMEM_KMOD_OUT:-} ]] || rm -rf "$out"
		return 1
	fi
	# W=1 warnings from the kernel's own headers are not ours; any line naming our files is.
	if grep -E "iopmem(_compat)?\.[ch]:[0-9]+:[0-9]+: (warning|error)" "$log"; then
		echo "build-kmod: $name: compiler warnings in iopmem" >&2
		[[ -n ${IOPMEM_KMOD_OUT:-} ]] || rm -rf "$out"
		return 1
	fi
	# The release modules must match (vermagic): UTS_RELEASE. Debian's include/config/kernel.release
	# holds the upstream version (6.1.192) instead of the package's (6.1.0-56-amd64).
	release=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' "$tree/include/generated/utsrelease.h" 2>/dev/null)
	[[ -n $release ]] || release=$(cat "$tree/include/config/kernel.release" 2>/dev/null || echo '?')
	vermagic=$(tr '\0' '\n' <"$out/iopmem.ko" | sed -n 's/^vermagic=//p')
	[[ -n ${IOPMEM_KMOD_OUT:-} ]] || rm -rf "$out"
	[[ $vermagic == "$release "* ]] || { echo "build-kmod: $name: vermagic '$vermagic' does not match the tree's release $release" >&2; return 1; }
	p2pdma=$(grep -q '^CONFIG_PCI_P2PDMA=y' "$tree/include/config/auto.conf" 2>/dev/null && echo 'blockdax, p2pmem' || echo 'blockdax (no PCI_P2PDMA: p2pmem refused at bind)')
	[[ -n $checkpatch || ! -f $tree/scripts/checkpatch.pl ]] || checkpatch=$tree/scripts/checkpatch.pl
	echo "build-kmod: ok  $name  $release  -Werror W=1  modes: $p2pdma"
}

run_checkpatch() {
	[[ -n $checkpatch ]] || { echo "build-kmod: no tree had scripts/checkpatch.pl: checkpatch not run" >&2; return 0; }
	perl "$checkpatch" --no-tree --quiet --show-types -f "$src/iopmem.c"
	# The compat header is where an out-of-tree module keys on the kernel version, by design.
	perl "$checkpatch" --no-tree --quiet --show-types --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f "$src/iopmem_compat.h"
	echo "checkpatch: clean"
}

if [[ $# -gt 0 ]]; then
	arg=$1
	if [[ -d $arg ]]; then tree=$(cd "$arg" && pwd)
	elif [[ -f $arg ]]; then tree=$(unpacked "$arg")
	else
		echo "build-kmod: no kernel build tree or extmod tarball at $arg" >&2
		exit 3
	fi
	build_one "$(basename "$tree")" "$tree"
	run_checkpatch
	exit 0
fi

fails=0
declare -A trees=([ours]="$(ours)")
trees[debian-6.1]=$(debian 'linux-headers-6.1.0-*-amd64')
trees[debian-6.12]=$(debian 'linux-headers-6.12.*+deb12-amd64')
for name in ours debian-6.1 debian-6.12; do
	if [[ -z ${trees[$name]} ]]; then
		echo "build-kmod: FAIL $name  no header tree installed: run scripts/install-deps.sh" >&2
		fails=$((fails + 1))
		continue
	fi
	build_one "$name" "${trees[$name]}" || { echo "build-kmod: FAIL $name  ${trees[$name]}" >&2; fails=$((fails + 1)); }
done
run_checkpatch
if [[ $fails -gt 0 ]]; then
	echo "build-kmod: $fails of 3 trees failed" >&2
	exit 1
fi
echo "build-kmod: all 3 trees built with -Werror"
