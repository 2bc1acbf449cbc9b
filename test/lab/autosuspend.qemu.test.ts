/**
 * Runtime autosuspend and HID remote wakeup in a real Linux 6.1 guest
 * (QEMU 7.2 TCG, our model behind x-pci-proxy-dev). With its input reader
 * open, the guest's usbhid asks for remote wakeup; the guest puts the tablet
 * and the root hub on autosuspend, so uhci-hcd suspends port 1 (PORTSC
 * Suspend) and then the controller (USBCMD EGSM + CF, RS cleared: global
 * suspend, UHCI Design Guide §2.1.1) with USBINTR = Resume. The host then
 * leaves the model alone (no frames, no timer wake-ups) and injects tablet
 * input: the device signals remote wakeup, the port reports Resume Detect,
 * the controller Resume Detect and Force Global Resume (§2.1.1/§2.1.2/
 * §2.1.7), the guest resumes and its reader gets the events.
 * Needs what test/lab/lab.qemu.test.ts needs; UHCI_DM_SKIP_LAB=1 skips it.
 * About 30 s on 2 cores.
 */
import { runLab, type LabResult } from '../../src/lab/lab.js';
import { EV_MSC, EV_SYN } from '../../src/lab/lab-report.js';
import { ABS_X, ABS_Y, BTN_LEFT } from '../../src/lab/input-plan.js';
import { PORTSC, USBCMD, USBINTR, USBSTS } from '../../src/uhci/registers.js';

const skip = process.env.UHCI_DM_SKIP_LAB === '1';
const d = skip ? describe.skip : describe;

let r: LabResult;

d('lab: Linux autosuspends the tablet and the root hub; tablet input wakes it (remote wakeup)', () => {
  beforeAll(async () => {
    r = await runLab({
      ports: ['tablet', 'none'],
      autosuspend: { delayMs: 300, holdMs: 2000 },
      onProgress: (m) => process.stderr.write(`[lab autosuspend] ${m}\n`),
      timeoutMs: 150_000,
    });
    const s = r.suspend;
    process.stderr.write(`[lab autosuspend] hold ${JSON.stringify(s?.hold)}, guest resumed the controller ${s?.resumedAfterMs} ms after the input\n`);
  }, 170_000);

  test('the guest ran to the end with the tablet bound', () => {
    expect({ done: r.done, timedOut: r.timedOut, insmod: r.insmodFailures }).toEqual({ done: true, timedOut: false, insmod: [] });
    expect(r.settled).toMatchObject({ boundInterfaces: 1, eventDevices: 1 });
  });

  test('the guest runtime-suspended the tablet and the root hub before the input', () => {
    expect(r.suspend!.guestBefore).toEqual({ usb1: 'suspended', '1-1': 'suspended' });
  });

  test('the model saw the suspend: port 1 suspended, controller in global suspend and halted, resume interrupt enabled', () => {
    const at = r.suspend!.atReady!;
    expect(at.portsc[0]! & (PORTSC.bit.SUSP | PORTSC.bit.PE)).toBe(PORTSC.bit.SUSP | PORTSC.bit.PE);
    expect(at.usbcmd & (USBCMD.bit.EGSM | USBCMD.bit.RS)).toBe(USBCMD.bit.EGSM);
    expect(at.usbsts & USBSTS.bit.HCHALTED).toBe(USBSTS.bit.HCHALTED);
    expect(at.usbintr & USBINTR.bit.RESUME).toBe(USBINTR.bit.RESUME);
    expect(at.running).toBe(false);
  });

  test('while suspended the model runs no frame and no timer', () => {
    expect(r.suspend!.hold).toMatchObject({ frames: 0, timerWakeups: 0 });
  });

  test('input sets port and controller Resume Detect and Force Global Resume at once', () => {
    const after = r.suspend!.afterFirstInput!;
    expect(after.portsc[0]! & PORTSC.bit.RD).toBe(PORTSC.bit.RD);
    expect(after.usbsts & USBSTS.bit.RD).toBe(USBSTS.bit.RD);
    expect(after.usbcmd & USBCMD.bit.FGR).toBe(USBCMD.bit.FGR);
  });

  test('the guest resumed the controller and its reader got the injected events', () => {
    expect(r.suspend!.resumedAfterMs).not.toBeNull();
    const tablet = r.inputs.find((i) => i.name === 'QEMU QEMU USB Tablet');
    const events = (tablet?.events ?? []).filter((e) => e.type !== EV_SYN && e.type !== EV_MSC).map((e) => [e.type, e.code, e.value]);
    const EV_KEY = 1;
    const EV_ABS = 3;
    expect(events).toEqual([[EV_ABS, ABS_X, 0x4000], [EV_ABS, ABS_Y, 0x2000], [EV_KEY, BTN_LEFT, 1], [EV_KEY, BTN_LEFT, 0]]);
  });

  test('no USB errors in the guest kernel log or the model log', () => {
    const bad = r.kernelLog.filter((l) => /error|fail|unable|not accepting|disabled by hub|cannot|reset .* using/i.test(l));
    expect(bad).toEqual([]);
    expect(r.proxy).toMatchObject({ functionErrors: 0, barMisses: 0 });
    expect(r.modelLog.filter((l) => l.startsWith('error') || l.startsWith('warn'))).toEqual([]);
  });
});
