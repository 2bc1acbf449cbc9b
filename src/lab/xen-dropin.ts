/**
 * Xen lab, the drop-in scenario: an ordinary xl.cfg (`usb = 1`, `usbdevice`,
 * `usbctrl`) plus `device_model_override` naming bin/uhci-dm-qemu.js, and
 * nothing but xl commands: `xl create`, `xl usbdev-attach` / `xl usb-list` /
 * `xl usbdev-detach` of dom0's USB gadget, `xl save` + `xl restore`, the
 * domain ending by itself. uhci-dm's controllers are found only through
 * their control sockets under /run/uhci-dm/<domid>/ (for input injection and
 * to read what the guest addressed); their logs land in libxl's
 * qemu-dm-<name>.log, copied to the lab dir.
 */
import { dom0GadgetSetup, dom0Prelude, dom0WaitHelpers } from './xen-dom0.js';

export interface DropInScenarioOptions {
  /** Control-socket client (scripts/xen-lab/control.mjs) as dom0 sees it. */
  controlClient: string;
  /** Commands sent to the `-usb` controller once the domU is ready, and after the restore. */
  inputCommands: readonly string[];
  restoredInputCommands: readonly string[];
  /** Emulated HID devices on the `-usb` controller (the restore waits until the guest polls them all). */
  hidDevices: number;
  /** configfs gadget script for dom0's own USB device (dummy_hcd), and its vendor id (4 hex digits). */
  gadgetScript: string;
  gadgetVendor: string;
  /** Seconds the domU may run. */
  domUTimeout: number;
}

/** Lines of an xl.cfg that make it a drop-in domain: the admin's USB lines plus device_model_override. */
export function dropInConfigLines(wrapper: string, usbdevice: readonly string[]): string[] {
  return [
    `device_model_override = "${wrapper}"`,
    'usb = 1',
    `usbdevice = [${usbdevice.map((d) => `"${d}"`).join(', ')}]`,
    'usbctrl = ["type=devicemodel,version=1,ports=2"]',
  ];
}

export function dom0DropInScenario(o: DropInScenarioOptions): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const inputs = (cmds: readonly string[]) => cmds.map(q).join(' ');
  return `${dom0Prelude()}
${dom0WaitHelpers()}
${dom0GadgetSetup(o.gadgetScript)}
# The controllers' options come through libxl's environment (--host-usb: usbdev-attach passes a host device).
export UHCI_DM_ARGS="--host-usb --log-json"
ctl() { s=$1; shift; node ${q(o.controlClient)} "$s" "$@"; }
dmprocs() { pgrep -f 'uhci-dm(-qemu)?\\.js' | wc -l; }
say dm-create
if xl create $L/dropin.cfg > $L/dm.xl.log 2>&1; then
  d=$(xl domid dm); say dm-created $d
  DM=$(xenstore-read /local/domain/$d/image/device-model-pid)
  say dm-procs $(dmprocs) $(ls /run/uhci-dm/$d 2>/dev/null | tr '\\n' ' ')
  if waitready $d ${o.domUTimeout} dm; then
    say dm-ready
    ctl /run/uhci-dm/$d/usb.ctl ${inputs(o.inputCommands)} > $L/input-replies.txt 2>&1
    say dm-input-sent $(grep -c '"return"' $L/input-replies.txt)
    # xl save with no other command; the domain is gone afterwards, and so must be uhci-dm.
    if xl save dm /run/dm.save > $L/xl-save.log 2>&1; then say dm-saved; else say dm-save-failed; fi
    t=0; while [ $(dmprocs) -gt 0 ] && [ $t -lt 100 ]; do sleep 0.2; t=$((t+1)); done
    say dm-procs-after-save $(dmprocs)
    if xl restore /run/dm.save > $L/xl-restore.log 2>&1; then
      d=$(xl domid dm); say dm-restored $d
      DM=$(xenstore-read /local/domain/$d/image/device-model-pid)
      ctl /run/uhci-dm/$d/usb.ctl --until-polled ${o.hidDevices} --within 120 ${inputs(o.restoredInputCommands)} > $L/input-replies-restored.txt 2>&1
      say dm-polled-restored $(head -1 $L/input-replies-restored.txt)
      say dm-input-sent-restored $(grep -c '"return"' $L/input-replies-restored.txt)
      # dom0's gadget, by bus and address, onto the usbctrl controller (xenusb-0), port 1.
      for g in /sys/bus/usb/devices/*; do
        [ "$(cat $g/idVendor 2>/dev/null)" = "${o.gadgetVendor}" ] && { B=$(cat $g/busnum); A=$(cat $g/devnum); }
      done
      if xl usbdev-attach dm hostbus=$B hostaddr=$A controller=0 port=1 > $L/usbdev-attach.log 2>&1; then say usbdev-attached $B $A; else say usbdev-attach-failed; fi
      ctl /run/uhci-dm/$d/xenusb-0.ctl --until-address 1 --within 60 '{"execute":"query-usb"}' > $L/hotplug-usb.txt 2>&1
      say dm-hotplug-addressed $(head -1 $L/hotplug-usb.txt)
      xl usb-list dm > $L/usb-list.txt 2>&1
      say usb-list $(grep -c . $L/usb-list.txt)
      if xl usbdev-detach dm 0 1 > $L/usbdev-detach.log 2>&1; then say usbdev-detached; else say usbdev-detach-failed; fi
      ctl /run/uhci-dm/$d/xenusb-0.ctl '{"execute":"query-usb"}' > $L/after-detach-usb.txt 2>&1
      xl usb-list dm > $L/usb-list-after.txt 2>&1
    else
      say dm-restore-failed
    fi
  else
    say dm-not-ready
  fi
  if waitgone dm ${o.domUTimeout}; then say dm-gone; else say dm-timeout; xl destroy dm; say dm-destroyed; fi
  t=0; while [ $(dmprocs) -gt 0 ] && [ $t -lt 100 ]; do sleep 0.2; t=$((t+1)); done
  say dm-procs-end $(dmprocs) $(ls /run/uhci-dm 2>/dev/null | wc -l)
else
  say dm-create-failed
fi
xl dmesg > $L/xl-dmesg.txt 2>&1
cp /var/log/xen/* $L/ 2>/dev/null
dmesg > $L/dom0-dmesg.txt 2>&1
say scenario-done
`;
}
