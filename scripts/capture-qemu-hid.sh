#!/bin/bash
# One-off capture of what a Linux guest sees of QEMU's usb-tablet, usb-kbd and
# usb-mouse behind piix3-usb-uhci. Boots the host's Debian kernel under TCG
# with a throw-away initramfs (busybox-static + USB/HID modules + usbprobe),
# then writes test/fixtures/qemu-7.2/{raw-console.txt,<device>.*}.
#
# Needs: qemu-system-x86_64 (7.2), busybox-static, cpio, gcc with static libc
# (libc6-dev), a /boot/vmlinuz-*-amd64 and its /lib/modules tree.
# Usage: scripts/capture-qemu-hid.sh            (takes ~30-60 s)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/test/fixtures/qemu-7.2"
KERNEL=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
KVER=${KERNEL#/boot/vmlinuz-}
MODDIR=/lib/modules/$KVER/kernel
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root"/{bin,dev,proc,sys,mod} "$OUT"

gcc -O1 -static -o "$WORK/root/bin/usbprobe" "$ROOT/scripts/qemu-capture/usbprobe.c"
cp /bin/busybox "$WORK/root/bin/busybox"
for m in usb/common/usb-common usb/core/usbcore usb/host/uhci-hcd hid/hid hid/usbhid/usbhid hid/hid-generic; do
  f=$(ls "$MODDIR/drivers/$m".ko* | head -1)
  case "$f" in
    *.xz) xz -dc "$f" > "$WORK/root/mod/$(basename "$m").ko" ;;
    *.zst) zstd -dc "$f" > "$WORK/root/mod/$(basename "$m").ko" ;;
    *) cp "$f" "$WORK/root/mod/$(basename "$m").ko" ;;
  esac
done

cat > "$WORK/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in usb-common usbcore uhci-hcd; do insmod /mod/$m.ko; done
# wait for the three HID devices (plus QEMU's auto-added hub)
i=0; while [ $i -lt 100 ]; do
  n=$(cat /sys/bus/usb/devices/*/idVendor 2>/dev/null | grep -c 0627 || true)
  [ "$n" -ge 3 ] && break; sleep 0.2; i=$((i+1)); done
sleep 1
hexof() { od -An -tx1 -v "$1" | tr -d ' \n'; }
echo "===CAPTURE-BEGIN==="
for d in /sys/bus/usb/devices/*; do
  case "$(basename $d)" in *:*) continue;; esac
  [ -f $d/idVendor ] || continue
  p=$(basename $d)
  for a in idVendor idProduct bcdDevice version speed bMaxPacketSize0 bmAttributes bMaxPower bNumConfigurations bConfigurationValue manufacturer product serial busnum devnum; do
    [ -f $d/$a ] && echo "S $p $a $(cat $d/$a | tr -s ' ' | sed 's/^ //')"
  done
  echo "S $p descriptors $(hexof $d/descriptors)"
done
for d in /sys/bus/usb/devices/*; do
  case "$(basename $d)" in *:*) continue;; esac
  [ "$(cat $d/idVendor 2>/dev/null)" = "0627" ] || continue
  echo "P $(basename $d) $(cat $d/product)"
  usbprobe /dev/bus/usb/$(printf %03d $(cat $d/busnum))/$(printf %03d $(cat $d/devnum))
done
for m in hid usbhid hid-generic; do insmod /mod/$m.ko; done
sleep 2
for h in /sys/bus/hid/devices/*; do
  echo "H $(readlink -f $h | sed 's#.*/usb[0-9]*/##') $(hexof $h/report_descriptor)"
done
echo "===CAPTURE-END==="
poweroff -f
INIT
chmod +x "$WORK/root/init"
(cd "$WORK/root" && find . | cpio -o -H newc --quiet) > "$WORK/initrd"

timeout 300 qemu-system-x86_64 -accel tcg -m 512 -nodefaults -nographic -serial stdio \
  -kernel "$KERNEL" -initrd "$WORK/initrd" -append "console=ttyS0 quiet panic=-1" -no-reboot \
  -device piix3-usb-uhci -device usb-tablet -device usb-kbd -device usb-mouse \
  </dev/null | tr -d '\r' > "$WORK/console.txt"

sed -n '/===CAPTURE-BEGIN===/,/===CAPTURE-END===/p' "$WORK/console.txt" \
  | sed 's/^.*===CAPTURE-BEGIN===/===CAPTURE-BEGIN===/' > "$OUT/raw-console.txt"
{ echo "# qemu: $(qemu-system-x86_64 --version | head -1)"; echo "# kernel: $KVER"; cat "$OUT/raw-console.txt"; } > "$WORK/r" && mv "$WORK/r" "$OUT/raw-console.txt"
grep -q '===CAPTURE-END===' "$OUT/raw-console.txt" || { echo "capture incomplete, see $OUT/raw-console.txt" >&2; exit 1; }
echo "wrote $OUT/raw-console.txt"
