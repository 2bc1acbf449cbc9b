/**
 * The /init script of the lab guest (busybox sh). It loads the modules,
 * waits until the expected USB devices are bound and their input devices
 * exist, then reports on the serial console in lines that start with
 * `@@LAB:` (everything else on the console is ordinary kernel/boot output):
 *
 *   @@LAB:boot <uptime>
 *   @@LAB:insmod-failed <module>
 *   @@LAB:settled <uptime> <bound-interfaces> <usb-event-devices>
 *   @@LAB:pci <slot> <vendor> <device> <class>  each PCI function (as lspci -n)
 *   @@LAB:usb <dev> <attr> <value>        sysfs attributes of each USB device
 *   @@LAB:if <dev>:<cfg>.<if> <attr> <value>  interface attributes (+ driver)
 *   @@LAB:input <eventN> <attr> <value>   input device name and ids
 *   @@LAB:power <dev> <runtime_status> <wakeup>  runtime PM state of each USB
 *                                         device (with lab.autosuspend: once before
 *                                         ready, once after the event window)
 *   @@LAB:ready                           event readers run; host injects input
 *   @@LAB:events <eventN> <hex>           raw struct input_event records read
 *   @@LAB:klog <line>                     dmesg lines about usb/uhci/hid/input
 *   @@LAB:script-begin / script-end <rc>  output of the user script, if any
 *   @@LAB:done
 *
 * The host ends the event window by writing a line to the serial port
 * (the guest waits at most lab.evwait seconds). Parameters come from the
 * kernel command line: lab.devices=N (interfaces to bind), lab.inputs=N
 * (USB input devices), lab.wait=S, lab.evwait=S, lab.autosuspend=MS: with
 * the event readers open (so usbhid asks for remote wakeup), put every USB
 * device and the root hub on autosuspend with that delay and wait (at most
 * lab.aswait seconds, default 20) until all of them are runtime-suspended
 * before saying ready; the host's input must then wake them up.
 */
export const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp
param() { sed -n "s/.*lab\\.$1=\\([0-9]*\\).*/\\1/p" /proc/cmdline; }
want=$(param devices); want=\${want:-0}
wantin=$(param inputs); wantin=\${wantin:-$want}
wait_s=$(param wait); wait_s=\${wait_s:-60}
evwait=$(param evwait); evwait=\${evwait:-20}
autosusp=$(param autosuspend); autosusp=\${autosusp:-0}
aswait=$(param aswait); aswait=\${aswait:-20}
power() {
  for d in /sys/bus/usb/devices/*; do
    [ -e "$d/idVendor" ] || continue
    echo "@@LAB:power \${d##*/} $(cat $d/power/runtime_status 2>/dev/null) $(cat $d/power/wakeup 2>/dev/null)"
  done
}
echo "@@LAB:boot $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /lab/modules); do
  insmod /lib/modules/$m.ko || echo "@@LAB:insmod-failed $m"
done
count() {
  bound=0
  for i in /sys/bus/usb/devices/*-*:*; do
    case "\${i##*/}" in *-0:*) continue;; esac
    [ -e "$i/driver" ] && bound=$((bound+1))
  done
  ev=0
  for e in /sys/class/input/event*; do
    case "$(cat $e/device/phys 2>/dev/null)" in usb-*) ev=$((ev+1));; esac
  done
}
t=0
while :; do
  count
  [ "$bound" -ge "$want" ] && [ "$ev" -ge "$wantin" ] && break
  [ "$t" -ge $((wait_s*5)) ] && break
  sleep 0.2; t=$((t+1))
done
echo "@@LAB:settled $(cut -d' ' -f1 /proc/uptime) $bound $ev"
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] && echo "@@LAB:pci \${d##*/} $(cat $d/vendor) $(cat $d/device) $(cat $d/class)"
done
for d in /sys/bus/usb/devices/*; do
  [ -e "$d/idVendor" ] || continue
  n=\${d##*/}
  for a in busnum devnum devpath idVendor idProduct bcdDevice bcdUSB manufacturer product serial speed version bDeviceClass bMaxPacketSize0 bNumConfigurations bConfigurationValue bMaxPower; do
    [ -r "$d/$a" ] && echo "@@LAB:usb $n $a $(cat $d/$a 2>/dev/null)"
  done
  for i in $d/$n:*; do
    [ -d "$i" ] || continue
    f=\${i##*/}
    for a in bInterfaceNumber bInterfaceClass bInterfaceSubClass bInterfaceProtocol bNumEndpoints; do
      [ -r "$i/$a" ] && echo "@@LAB:if $f $a $(cat $i/$a)"
    done
    [ -e "$i/driver" ] && echo "@@LAB:if $f driver $(basename $(readlink $i/driver))"
    for ep in $i/ep_*; do
      [ -d "$ep" ] || continue
      echo "@@LAB:if $f endpoint $(cat $ep/bEndpointAddress) $(cat $ep/type) $(cat $ep/wMaxPacketSize) $(cat $ep/bInterval)"
    done
  done
done
pids=""
for e in /sys/class/input/event*; do
  [ -e "$e" ] || continue
  n=\${e##*/}
  echo "@@LAB:input $n name $(cat $e/device/name)"
  echo "@@LAB:input $n phys $(cat $e/device/phys)"
  for a in bustype vendor product version; do echo "@@LAB:input $n $a $(cat $e/device/id/$a)"; done
  echo "@@LAB:input $n ev $(cat $e/device/capabilities/ev)"
  cat /dev/input/$n > /tmp/$n.bin &
  pids="$pids $!"
done
sleep 0.5
if [ "$autosusp" -gt 0 ]; then
  for d in /sys/bus/usb/devices/*; do
    [ -e "$d/power/control" ] || continue
    echo $autosusp > $d/power/autosuspend_delay_ms 2>/dev/null
    echo auto > $d/power/control
  done
  t=0
  while [ "$t" -lt $((aswait*10)) ]; do
    awake=0
    for d in /sys/bus/usb/devices/*; do
      [ -e "$d/idVendor" ] || continue
      [ "$(cat $d/power/runtime_status)" = suspended ] || awake=1
    done
    [ "$awake" = 0 ] && break
    sleep 0.1; t=$((t+1))
  done
  power
fi
echo "@@LAB:ready"
read -t $evwait line
sleep 0.2
[ "$autosusp" -gt 0 ] && power
[ -n "$pids" ] && kill $pids 2>/dev/null
sleep 0.2
for f in /tmp/event*.bin; do
  [ -e "$f" ] || continue
  n=\${f##*/}; n=\${n%.bin}
  echo "@@LAB:events $n $(hexdump -v -e '1/1 "%02x"' $f)"
done
dmesg | grep -iE 'usb|uhci|hid|input' | grep -v 'ommand line:' | while IFS= read -r l; do echo "@@LAB:klog $l"; done
if [ -x /lab/user.sh ]; then
  echo "@@LAB:script-begin"
  /lab/user.sh 2>&1
  echo "@@LAB:script-end $?"
fi
echo "@@LAB:done"
poweroff -f
`;
