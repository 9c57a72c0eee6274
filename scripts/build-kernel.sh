#!/usr/bin/env bash
# Build the guest kernel for iopmem's VM tests (test/vm, src/lib/vm): Linux 6.12 from
# Debian's linux-source-6.12 with x86_64_defconfig + kvm_guest.config +
# scripts/p2pdma.fragment (CONFIG_PCI_P2PDMA, NVMe, pmem, DAX, 9p, uio, vfio-noiommu,
# all built in). About 25 minutes on 2 cores; NOT run in CI.
#
# Results, in ${XDG_CACHE_HOME:-~/.cache}/iopmem (the harness looks for ./bzImage there):
#   bzImage-<release>, config-<release>    the kernel and its .config
#   bzImage, config                        symlinks to the latest build
#   extmod-<release>.tar.xz                external-module build tree (from
#                                          scripts/package/install-extmod-build):
#                                          tar xf it into DIR, then make -C DIR M=$PWD modules
#   build/                                 the unpacked source and the O= build tree (reused)
set -euo pipefail

SERIES=6.12
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<USAGE
usage: $(basename "$0") [options]

  -j, --jobs N        parallel make jobs (default: nproc = $(nproc))
  --cache DIR         output/cache directory (default: \${XDG_CACHE_HOME:-~/.cache}/iopmem)
  --source PATH       kernel source: a tarball or an unpacked tree
                      (default: /usr/src/linux-source-$SERIES.tar.xz, Debian package linux-source-$SERIES)
  --fragment FILE     extra config fragment (default: scripts/p2pdma.fragment)
  --config-only       stop after writing and checking .config (about a minute)
  --force             rebuild even when the cache already holds this exact config
  --clean             remove the build tree after a successful build
  --check             check the prerequisites only; exit 1 if something is missing
  --install-deps      apt-get install -y the missing Debian packages first (needs root)
  -n, --dry-run       print what would be done, do nothing
  -h, --help          this text

Debian packages needed: linux-source-$SERIES build-essential flex bison bc libelf-dev
libssl-dev cpio xz-utils perl kmod
USAGE
}

die() { echo "build-kernel: error: $*" >&2; exit 1; }
note() { echo "build-kernel: $*" >&2; }

jobs=$(nproc)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/iopmem"
source_path=/usr/src/linux-source-$SERIES.tar.xz
fragment="$here/p2pdma.fragment"
config_only=0 force=0 clean=0 check_only=0 install_deps=0 dry_run=0

need_arg() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs an argument"; }
while [ "$#" -gt 0 ]; do
	case "$1" in
		-j|--jobs) need_arg "$@"; jobs=$2; shift 2 ;;
		-j[0-9]*) jobs=${1#-j}; shift ;;
		--jobs=*) jobs=${1#*=}; shift ;;
		--cache) need_arg "$@"; cache=$2; shift 2 ;;
		--cache=*) cache=${1#*=}; shift ;;
		--source) need_arg "$@"; source_path=$2; shift 2 ;;
		--source=*) source_path=${1#*=}; shift ;;
		--fragment) need_arg "$@"; fragment=$2; shift 2 ;;
		--fragment=*) fragment=${1#*=}; shift ;;
		--config-only) config_only=1; shift ;;
		--force) force=1; shift ;;
		--clean) clean=1; shift ;;
		--check) check_only=1; shift ;;
		--install-deps) install_deps=1; shift ;;
		-n|--dry-run) dry_run=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number, not '$jobs'"
[ -f "$fragment" ] || die "no config fragment at $fragment"
fragment=$(cd "$(dirname "$fragment")" && pwd)/$(basename "$fragment")
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
cache=$(abspath "$cache")
source_path=$(abspath "$source_path")

# Run a command, or print it under --dry-run.
run() {
	if [ "$dry_run" = 1 ]; then
		printf '+'; printf ' %q' "$@"; printf '\n'
	else
		"$@"
	fi
}

# --- prerequisites ---------------------------------------------------------
missing_pkgs=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing_pkgs+=("$2"); }
need_file() { [ -e "$1" ] || missing_pkgs+=("$2"); }
check_prereqs() {
	missing_pkgs=()
	need_cmd make build-essential
	need_cmd gcc build-essential
	need_cmd flex flex
	need_cmd bison bison
	need_cmd bc bc
	need_cmd perl perl
	need_cmd xz xz-utils
	need_cmd cpio cpio
	need_cmd depmod kmod
	need_cmd tar tar
	need_file /usr/include/libelf.h libelf-dev
	need_file /usr/include/openssl/ssl.h libssl-dev
	if [ "$source_path" = "/usr/src/linux-source-$SERIES.tar.xz" ]; then
		need_file "$source_path" "linux-source-$SERIES"
	else
		[ -e "$source_path" ] || die "no kernel source at $source_path"
	fi
	mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u | sed '/^$/d')
}

check_prereqs
if [ "${#missing_pkgs[@]}" -gt 0 ] && [ "$install_deps" = 1 ]; then
	note "installing: ${missing_pkgs[*]}"
	run apt-get install -y "${missing_pkgs[@]}"
	[ "$dry_run" = 1 ] || check_prereqs
fi
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
	msg="missing Debian packages: ${missing_pkgs[*]} (apt-get install -y ${missing_pkgs[*]}, or rerun with --install-deps)"
	if [ "$dry_run" = 1 ] && [ "$check_only" = 0 ]; then note "warning: $msg"; else die "$msg"; fi
fi
if [ "$check_only" = 1 ]; then
	note "prerequisites present; source $source_path; cache $cache"
	exit 0
fi

# --- source ----------------------------------------------------------------
build="$cache/build"
out="$build/out"
run mkdir -p "$cache" "$build"

# One build at a time per cache directory.
if [ "$dry_run" = 0 ]; then
	exec 9>"$cache/.build-kernel.lock"
	flock -n 9 || die "another build-kernel.sh is running on $cache"
fi

if [ -d "$source_path" ]; then
	src=$source_path
	[ -f "$src/Makefile" ] || die "$src is not a kernel source tree"
else
	stamp="$(stat -c '%s-%Y' "$source_path" 2>/dev/null || echo missing)"
	topdir=$(basename "$source_path"); topdir=${topdir%.tar.*}
	src="$build/$topdir"
	if [ "$dry_run" = 1 ] || [ "$(cat "$build/.unpacked" 2>/dev/null)" != "$source_path $stamp" ]; then
		note "unpacking $source_path (a minute or two)"
		run rm -rf "$src" "$out"
		run tar -xaf "$source_path" -C "$build"
		[ "$dry_run" = 1 ] || [ -f "$src/Makefile" ] || die "$source_path did not unpack to $src"
		[ "$dry_run" = 1 ] || echo "$source_path $stamp" >"$build/.unpacked"
	fi
fi
kmake() { run make -C "$src" O="$out" "$@"; }

# --- configuration -----------------------------------------------------------
note "configuring: x86_64_defconfig + kvm_guest.config + $(basename "$fragment")"
run mkdir -p "$out"
kmake -s x86_64_defconfig kvm_guest.config
if [ "$dry_run" = 1 ]; then
	run "$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment"
else
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment" >/dev/null
fi
kmake -s olddefconfig

if [ "$dry_run" = 0 ]; then
	# Every option the fragment asks for must have survived olddefconfig.
	bad=()
	while IFS= read -r line; do
		case "$line" in
			CONFIG_*=*)
				grep -qxF "$line" "$out/.config" || bad+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$out/.config" || echo absent))") ;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }; opt=${opt%% *}
				grep -qE "^$opt=[ym]" "$out/.config" && bad+=("$line (got: $(grep -E "^$opt=" "$out/.config"))") ;;
		esac
	done <"$fragment"
	[ "${#bad[@]}" -eq 0 ] || die "config fragment not honoured:$(printf '\n  %s' "${bad[@]}")"
	release=$(make -s -C "$src" O="$out" kernelrelease)
	note "kernel release $release; .config checked against the fragment"
else
	release="<release>"
fi

if [ "$config_only" = 1 ]; then
	note "stopping after configuration (--config-only): $out/.config"
	exit 0
fi

if [ "$dry_run" = 0 ] && [ "$force" = 0 ] && [ -f "$cache/bzImage-$release" ] &&
	[ -f "$cache/extmod-$release.tar.xz" ] && cmp -s "$out/.config" "$cache/config-$release"; then
	note "up to date: $cache/bzImage-$release (use --force to rebuild)"
	exit 0
fi

# --- build -------------------------------------------------------------------
note "building bzImage and Module.symvers with -j$jobs (about 25 min on 2 cores)"
kmake -j"$jobs" bzImage modules

stage="$build/extmod-stage"
run rm -rf "$stage"
kmake run-command KBUILD_RUN_COMMAND="$src/scripts/package/install-extmod-build $stage"

# --- install into the cache (atomically) --------------------------------------
run cp "$out/arch/x86/boot/bzImage" "$cache/.bzImage-$release.tmp"
run cp "$out/.config" "$cache/.config-$release.tmp"
run tar -C "$stage" -cJf "$cache/.extmod-$release.tar.xz.tmp" .
run mv -f "$cache/.bzImage-$release.tmp" "$cache/bzImage-$release"
run mv -f "$cache/.config-$release.tmp" "$cache/config-$release"
run mv -f "$cache/.extmod-$release.tar.xz.tmp" "$cache/extmod-$release.tar.xz"
run ln -sfn "bzImage-$release" "$cache/bzImage"
run ln -sfn "config-$release" "$cache/config"
run rm -rf "$stage"
if [ "$clean" = 1 ]; then
	run rm -rf "$build"
fi

note "done: $cache/bzImage -> bzImage-$release"
note "  extmod tree: $cache/extmod-$release.tar.xz"
note "  the VM tests find it there; or export IOPMEM_VM_KERNEL=$cache/bzImage-$release"
