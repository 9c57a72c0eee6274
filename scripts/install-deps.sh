#!/usr/bin/env bash
# Installs the Debian 12 packages iopmem and its test suites need, using sudo
# when not run as root. Safe to run again.
#   qemu-system-x86, busybox-static  the real-kernel guest suite (npm run test:vm) and `iopmem sandbox`
#   iproute2                         `ip`, run in the guest (which shares the host root) for its NIC
#   udev, kmod                       systemd-udevd and depmod, run in the guest for the reboot test of `bind --persist`
#   pci.ids                          device names in `iopmem list`
#   pciutils                         lspci, to compare against
#   e2fsprogs, xfsprogs              mkfs.ext4 / mkfs.xfs for DAX filesystems
#   build-essential, python3         the native addon and guest helpers (cc, make, node-gyp)
#   xz-utils                         unpacking the guest kernel's module build tree
#   liburing-dev                     io_uring for the native I/O engine (linked statically)
#   fio                              the baseline `npm run bench` measures the engine against
#   linux-headers-amd64              Debian 12's 6.1 kernel headers (no PCI_P2PDMA): `npm run build:kmod`'s matrix
#   linux-headers-6.12-amd64         Debian 12's 6.12 kernel headers (linux-6.12, no PCI_P2PDMA): the same
#                                    (Debian's 6.12 headers depend on its linux-image, which comes along)
#   linux-image-amd64                Debian 12's 6.1 kernel, which the guest suite boots (test/vm/stock-kernel.test.ts;
#                                    6.12's image comes with its headers)
#   dkms                             `iopmem driver install` and its test (`dkms build` into a temporary tree)
#   openssl                          the module-signing test's throw-away key (`openssl req`)
set -euo pipefail

pkgs=(qemu-system-x86 busybox-static iproute2 udev kmod pci.ids pciutils e2fsprogs xfsprogs build-essential python3 xz-utils liburing-dev fio
  linux-headers-amd64 linux-headers-6.12-amd64 linux-image-amd64 dkms openssl)

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install as root: apt-get install ${pkgs[*]}" >&2; exit 1; }
  as_root=(sudo)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: Debian packages already installed"
fi

# Node.js >= 20.19 (Debian 12's own nodejs is 18: use NodeSource or nvm for 20).
if ! command -v node >/dev/null; then
  echo "install-deps: Node.js is missing: install Node.js 20.19 or newer (e.g. from NodeSource or nvm)" >&2
  exit 1
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20 || (a===20 && b<19)) { console.error(`install-deps: Node.js ${process.versions.node} is too old: iopmem needs 20.19 or newer`); process.exit(1) }'
echo "install-deps: Node.js $(node --version) ok"
