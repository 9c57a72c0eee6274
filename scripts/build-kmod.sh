#!/usr/bin/env bash
# Build the iopmem kernel module (native/kmod) against a kernel build tree with
# warnings as errors (-Werror, plus W=1), then run the kernel's checkpatch on it.
# CI runs it against the guest kernel's external-module build tree in vm/kernel/.
#
# usage: scripts/build-kmod.sh [TREE | TARBALL]
#   default: vm/kernel/extmod.tar.xz (checked against vm/kernel/SHA256SUMS), unpacked once
#   into ${XDG_CACHE_HOME:-~/.cache}/iopmem/extmod-<sha256 prefix>/ (never into the checkout).
#   scripts/build-kernel.sh makes that tarball with the kernel.
# The module is built in a temporary directory; IOPMEM_KMOD_OUT=DIR keeps it there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
src=$repo/native/kmod
cache=${XDG_CACHE_HOME:-$HOME/.cache}/iopmem
arg=${1:-$repo/vm/kernel/extmod.tar.xz}
if [[ $# -eq 0 ]]; then
	(cd "$repo/vm/kernel" && grep ' extmod.tar.xz$' SHA256SUMS | sha256sum --quiet -c -) ||
		{ echo "build-kmod: vm/kernel/extmod.tar.xz does not match vm/kernel/SHA256SUMS (git checkout -- vm/kernel)" >&2; exit 3; }
fi

if [[ -d $arg ]]; then
	tree=$(cd "$arg" && pwd)
elif [[ -f $arg ]]; then
	tree=$cache/extmod-$(sha256sum "$arg" | cut -c1-16)
	if [[ ! -f $tree/Module.symvers ]]; then
		echo "unpacking $arg into $tree" >&2
		rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
		tar -xJf "$arg" -C "$tree.tmp"
		rm -rf "$tree" && mv "$tree.tmp" "$tree"
	fi
else
	echo "build-kmod: no kernel build tree or extmod tarball at $arg" >&2
	exit 3
fi
[[ -f $tree/Makefile && -f $tree/Module.symvers ]] || { echo "build-kmod: $tree is not a kernel build tree" >&2; exit 3; }

out=${IOPMEM_KMOD_OUT:-$(mktemp -d)}
[[ -n ${IOPMEM_KMOD_OUT:-} ]] || trap 'rm -rf "$out"' EXIT
mkdir -p "$out"
cp "$src/iopmem.c" "$src/Kbuild" "$out/"
log=$out/build.log
make -C "$tree" M="$out" IOPMEM_WERROR=1 W=1 modules 2>&1 | tee "$log"
# W=1 warnings from the kernel's own headers are not ours; any line naming iopmem.c is.
if grep -E "iopmem\.c:[0-9]+:[0-9]+: (warning|error)" "$log"; then
	echo "build-kmod: compiler warnings in iopmem.c" >&2
	exit 1
fi
release=$(cat "$tree/include/config/kernel.release" 2>/dev/null || echo '?')
vermagic=$(tr '\0' '\n' <"$out/iopmem.ko" | sed -n 's/^vermagic=//p')
echo "built iopmem.ko for $release (vermagic: $vermagic)"
[[ $vermagic == "$release "* ]] || { echo "build-kmod: vermagic does not match the tree's release" >&2; exit 1; }

if [[ -f $tree/scripts/checkpatch.pl ]]; then
	perl "$tree/scripts/checkpatch.pl" --no-tree --quiet --show-types -f "$src/iopmem.c"
	echo "checkpatch: clean"
fi
