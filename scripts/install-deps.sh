#!/usr/bin/env bash
# Debian packages uhci-dm's labs and tests use (run as root; idempotent):
#   qemu-system-x86   QEMU 7.2: the oracle (qtest) and the proxy lab (x-pci-proxy-dev)
#   linux-image-amd64 the guest kernel (uhci-hcd, usbhid, dummy_hcd, usbtest, 9p)
#   busybox-static    the guest's userland
#   tshark            decodes our pcap (usbmon) exports in the tests
#   libxen-dev        Xen 4.17 libraries (libxendevicemodel, libxenevtchn, libxenforeignmemory, libxenstore) for the FFI
#   xen-hypervisor-4.17-amd64 xen-utils-4.17 qemu-system-xen   the real-Xen lab (Xen booted under QEMU TCG,
#                     PV dom0, HVM domUs; QEMU-xen for the reference domU)
#   grub-pc-bin grub-common xorriso mtools   grub-mkrescue builds the lab's bootable Xen ISO
set -euo pipefail
# Root installs directly (a fresh Debian machine has no sudo); anyone else goes through sudo.
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: run as root (sudo is not installed)" >&2
    exit 1
  fi
  exec sudo bash "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(qemu-system-x86 qemu-utils linux-image-amd64 busybox-static libxen-dev gcc libc6-dev tshark
  xen-hypervisor-4.17-amd64 xen-utils-4.17 qemu-system-xen grub-pc-bin grub-common xorriso mtools cpio)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The lab reads the kernel image; Debian installs it readable by root only.
chmod a+r /boot/vmlinuz-* 2>/dev/null || true
