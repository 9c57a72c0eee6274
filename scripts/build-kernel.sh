#!/usr/bin/env bash
# Build the project's guest kernel (vm/kernel/): Linux 6.12 from Debian's linux-source-6.12
# at the version pinned in vm/kernel/SOURCE, configured as x86_64_defconfig + kvm_guest.config
# + vm/kernel/guest.config (P2PDMA, ZONE_DEVICE, DAX, NVMe host and NVMe-oF target, soft-RoCE
# and soft-iWARP, intel-iommu with IRQ remapping, iommufd, kmemleak, signed modules; all
# built in), and the external-module build tree the iopmem driver builds against.
#
# The build is reproducible: fixed KBUILD_BUILD_* identity and timestamp, the committed test
# signing key (vm/kernel/test-signing-key.pem) instead of a random one, and a deterministic
# tar/xz of the module tree. With the same source package and the same toolchain (Debian 12's
# gcc 12.2.0, binutils 2.40) the results are byte for byte those in vm/kernel/SHA256SUMS;
# `--verify` builds into a scratch directory and compares.
#
# Results (in --out, default vm/kernel/ of this checkout):
#   bzImage         the kernel                      config        its full .config
#   extmod.tar.xz   external-module build tree (scripts/package/install-extmod-build):
#                   tar xf it into DIR, then make -C DIR M=$PWD modules
#   SHA256SUMS      sums of the three, checked by the harness before it boots the kernel
# The source and the O= build tree live in ${XDG_CACHE_HOME:-~/.cache}/iopmem/kernel-build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
kdir=$repo/vm/kernel

usage() {
	cat <<USAGE
usage: $(basename "$0") [options]

  -j, --jobs N        parallel make jobs (default: nproc = $(nproc))
  --out DIR           where the results go (default: $kdir)
  --verify            build into a scratch directory and compare with $kdir/SHA256SUMS;
                      exit 8 on any difference (the committed kernel is left alone)
  --cache DIR         source and build tree (default: \${XDG_CACHE_HOME:-~/.cache}/iopmem/kernel-build)
  --source TARBALL    another kernel source tarball (the result is then not the pinned kernel)
  --config-only       stop after writing and checking .config (about a minute)
  --clean             remove the build tree after a successful build
  --check             check the prerequisites only; exit 7 if something is missing
  --install-deps      apt-get install -y the missing Debian packages first (needs root)
  -n, --dry-run       print what would be done, do nothing
  -h, --help          this text

Debian packages needed: linux-source-6.12 (= the version in vm/kernel/SOURCE) build-essential
flex bison bc libelf-dev libssl-dev cpio xz-utils perl kmod
USAGE
}

# Exit codes as docs/json-and-exit-codes.md gives them: 2 bad input, 7 not possible here
# (a prerequisite missing), 8 a difference found (--verify); 1 only for a failed build step.
die() { echo "build-kernel: error: $*" >&2; exit 1; }
bad_usage() { echo "build-kernel: error: $*" >&2; exit 2; }
unable() { echo "build-kernel: error: $*" >&2; exit 7; }
note() { echo "build-kernel: $*" >&2; }

# The pinned source: "package version sha256-of-the-tarball".
read -r src_pkg src_version src_sha <"$kdir/SOURCE" || die "cannot read $kdir/SOURCE"
fragment=$kdir/guest.config
key=$kdir/test-signing-key.pem

jobs=$(nproc)
out_dir=$kdir
cache="${XDG_CACHE_HOME:-$HOME/.cache}/iopmem/kernel-build"
source_path=/usr/src/$src_pkg.tar.xz
custom_source=0 verify=0 config_only=0 clean=0 check_only=0 install_deps=0 dry_run=0

need_arg() { [ "$#" -ge 2 ] && [ -n "$2" ] || bad_usage "$1 needs an argument"; }
while [ "$#" -gt 0 ]; do
	case "$1" in
		-j|--jobs) need_arg "$@"; jobs=$2; shift 2 ;;
		-j[0-9]*) jobs=${1#-j}; shift ;;
		--jobs=*) jobs=${1#*=}; shift ;;
		--out) need_arg "$@"; out_dir=$2; shift 2 ;;
		--out=*) out_dir=${1#*=}; shift ;;
		--verify) verify=1; shift ;;
		--cache) need_arg "$@"; cache=$2; shift 2 ;;
		--cache=*) cache=${1#*=}; shift ;;
		--source) need_arg "$@"; source_path=$2; custom_source=1; shift 2 ;;
		--source=*) source_path=${1#*=}; custom_source=1; shift ;;
		--config-only) config_only=1; shift ;;
		--clean) clean=1; shift ;;
		--check) check_only=1; shift ;;
		--install-deps) install_deps=1; shift ;;
		-n|--dry-run) dry_run=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) usage >&2; bad_usage "unknown argument: $1" ;;
	esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || bad_usage "--jobs wants a positive number, not '$jobs'"
[ -f "$fragment" ] || die "no config fragment at $fragment"
[ -f "$key" ] || die "no signing key at $key"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
cache=$(abspath "$cache")
source_path=$(abspath "$source_path")
out_dir=$(abspath "$out_dir")

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
	need_cmd openssl openssl
	need_file /usr/include/libelf.h libelf-dev
	need_file /usr/include/openssl/ssl.h libssl-dev
	if [ "$custom_source" = 0 ]; then
		need_file "$source_path" "$src_pkg=$src_version"
	else
		[ -e "$source_path" ] || unable "no kernel source at $source_path"
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
	if [ "$dry_run" = 1 ] && [ "$check_only" = 0 ]; then note "warning: $msg"; else unable "$msg"; fi
fi
if [ "$custom_source" = 0 ] && [ "$dry_run" = 0 ]; then
	got=$(sha256sum "$source_path" | cut -d' ' -f1)
	installed=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null || echo '?')
	[ "$got" = "$src_sha" ] ||
		unable "$source_path is $src_pkg $installed (sha256 $got), not the pinned $src_version (sha256 $src_sha): apt-get install $src_pkg=$src_version, or pass --source to build from another tree (not the pinned kernel)"
fi
if [ "$check_only" = 1 ]; then
	note "prerequisites present; source $source_path ($src_pkg $src_version); build tree $cache"
	exit 0
fi

# --- reproducibility: every input the kernel embeds is fixed ------------------
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=iopmem KBUILD_BUILD_HOST=iopmem KBUILD_BUILD_VERSION=1
export SOURCE_DATE_EPOCH=1767225600 LC_ALL=C TZ=UTC
unset KCONFIG_CONFIG KBUILD_OUTPUT ARCH CROSS_COMPILE LOCALVERSION

# --- source ----------------------------------------------------------------
src_dir="$cache/src"
build="$cache/out"
run mkdir -p "$cache"
if [ "$dry_run" = 0 ]; then
	exec 9>"$cache/.lock"
	flock -n 9 || die "another build-kernel.sh is using $cache"
fi
stamp="$source_path $(stat -c '%s-%Y' "$source_path" 2>/dev/null || echo missing)"
if [ "$dry_run" = 1 ] || [ "$(cat "$cache/.unpacked" 2>/dev/null)" != "$stamp" ]; then
	note "unpacking $source_path (about 20 s)"
	run rm -rf "$src_dir" "$build" "$cache/.unpacked"
	run mkdir -p "$src_dir"
	run tar -xaf "$source_path" -C "$src_dir" --strip-components=1
	[ "$dry_run" = 1 ] || [ -f "$src_dir/Makefile" ] || die "$source_path did not unpack to a kernel tree"
	[ "$dry_run" = 1 ] || echo "$stamp" >"$cache/.unpacked"
fi
kmake() { run make -C "$src_dir" O="$build" "$@"; }

# --- configuration -----------------------------------------------------------
note "configuring: x86_64_defconfig + kvm_guest.config + vm/kernel/guest.config"
run mkdir -p "$build/certs"
# MODULE_SIG_KEY names this path (relative to the build tree), so .config holds no host path.
run cp "$key" "$build/certs/iopmem-test-signing-key.pem"
kmake -s x86_64_defconfig kvm_guest.config
if [ "$dry_run" = 1 ]; then
	run "$src_dir/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment"
else
	"$src_dir/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >/dev/null
fi
kmake -s olddefconfig

if [ "$dry_run" = 0 ]; then
	# Every line of the fragment must have survived olddefconfig, and nothing is a module.
	bad=()
	while IFS= read -r line; do
		case "$line" in
			CONFIG_*=*)
				grep -qxF "$line" "$build/.config" || bad+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$build/.config" || echo absent))") ;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }; opt=${opt%% *}
				grep -qE "^$opt=[ym]" "$build/.config" && bad+=("$line (got: $(grep -E "^$opt=" "$build/.config"))") ;;
		esac
	done <"$fragment"
	while IFS= read -r m; do bad+=("$m (the guest loads no modules: build it in or leave it out)"); done < <(grep -E '^CONFIG_[A-Z0-9_]+=m$' "$build/.config" || true)
	[ "${#bad[@]}" -eq 0 ] || die "config not as vm/kernel/guest.config asks:$(printf '\n  %s' "${bad[@]}")"
	release=$(make -s -C "$src_dir" O="$build" kernelrelease)
	note "kernel release $release; .config checked against the fragment"
fi
if [ "$config_only" = 1 ]; then
	note "stopping after configuration (--config-only): $build/.config"
	exit 0
fi

# --- build -------------------------------------------------------------------
note "building bzImage and Module.symvers with -j$jobs (about 15 min on 2 cores)"
start=$(date +%s)
kmake -j"$jobs" bzImage modules
stage="$cache/extmod-stage"
run rm -rf "$stage"
kmake run-command KBUILD_RUN_COMMAND="$src_dir/scripts/package/install-extmod-build $stage"

# --- results -----------------------------------------------------------------
if [ "$verify" = 1 ]; then
	target=$(mktemp -d)
	trap 'rm -rf "$target"' EXIT
else
	target=$out_dir
	run mkdir -p "$target"
fi
run cp "$build/arch/x86/boot/bzImage" "$target/.bzImage.tmp"
run cp "$build/.config" "$target/.config.tmp"
# A tar of sorted names with fixed owners and times, xz single-threaded: the same bytes each time.
if [ "$dry_run" = 1 ]; then
	run tar ... "$stage" '|' xz -T1 -9 '>' "$target/.extmod.tar.xz.tmp"
else
	tar -C "$stage" --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf - . |
		xz -T1 -9 >"$target/.extmod.tar.xz.tmp"
fi
run mv -f "$target/.bzImage.tmp" "$target/bzImage"
run mv -f "$target/.config.tmp" "$target/config"
run mv -f "$target/.extmod.tar.xz.tmp" "$target/extmod.tar.xz"
run rm -rf "$stage"
[ "$clean" = 1 ] && run rm -rf "$build"
[ "$dry_run" = 1 ] && exit 0
note "built $release in $(( $(date +%s) - start )) s; bzImage $(stat -c %s "$target/bzImage") bytes"

if [ "$verify" = 1 ]; then
	if (cd "$target" && sha256sum --quiet -c "$kdir/SHA256SUMS"); then
		note "verified: this build is byte for byte the committed vm/kernel (SHA256SUMS)"
	else
		note "differs from the committed vm/kernel: see the lines above"
		exit 8
	fi
else
	(cd "$target" && sha256sum bzImage config extmod.tar.xz >SHA256SUMS)
	note "wrote $target/{bzImage,config,extmod.tar.xz,SHA256SUMS}"
	cat "$target/SHA256SUMS" >&2
fi
