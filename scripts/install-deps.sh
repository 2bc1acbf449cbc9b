#!/usr/bin/env bash
# Debian packages uhci-dm's labs and tests use (run as root; idempotent):
#   qemu-system-x86   QEMU 7.2: the oracle (qtest) and the proxy lab (x-pci-proxy-dev)
#   linux-image-amd64 the guest kernel (uhci-hcd, usbhid, dummy_hcd, usbtest, 9p)
#   busybox-static    the guest's userland
#   tshark            decodes our pcap (usbmon) exports in the tests
#   libxen-dev        Xen 4.17 libraries (libxendevicemodel, libxenevtchn, libxenforeignmemory, libxenstore) for the FFI
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(qemu-system-x86 qemu-utils linux-image-amd64 busybox-static libxen-dev gcc libc6-dev tshark)
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
