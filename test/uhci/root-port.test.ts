/**
 * One root port's PORTSC (UHCI DG §2.1.7) as QEMU 7.2 hcd-uhci.c runs it:
 * the declared field access, plus the port's own rules (PE only with a
 * device, a rising PR resets the device, line status computed from the
 * device's speed, resume signalling).
 */
import { RootPort } from '../../src/uhci/root-port.js';
import { PORTSC } from '../../src/uhci/registers.js';
import type { UsbDevice, UsbSpeed } from '../../src/usb/packet.js';

function fakeDevice(speed: UsbSpeed): UsbDevice & { resets: number } {
  return {
    speed,
    productName: 'fake',
    vendorId: 0,
    productId: 0,
    address: 0,
    resets: 0,
    attach() {},
    detach() {},
    reset() {
      this.resets++;
    },
    handlePacket() {},
    cancelPacket() {},
    saveState: () => null,
    loadState() {},
  };
}

const P = PORTSC.bit;

function port(): { p: RootPort; resumes: () => number } {
  let n = 0;
  const p = new RootPort(0, { resume: () => n++ });
  return { p, resumes: () => n };
}

describe('root port PORTSC', () => {
  test('reset value 0x0080; an empty port cannot be enabled', () => {
    const { p } = port();
    expect(p.read()).toBe(0x0080);
    p.write(P.PE);
    expect(p.read()).toBe(0x0080);
  });

  test('connect sets CCS and CSC; CSC is write-1-to-clear, CCS read only', () => {
    const { p, resumes } = port();
    p.attach(fakeDevice('full'));
    expect(resumes()).toBe(1);
    expect(p.read() & (P.CCS | P.CSC)).toBe(P.CCS | P.CSC);
    p.write(0); // writing 0 clears nothing
    expect(p.read() & P.CSC).toBe(P.CSC);
    p.write(P.CSC); // writing 1 clears CSC, CCS stays
    expect(p.read() & (P.CCS | P.CSC)).toBe(P.CCS);
  });

  test('line status: J state of a full-speed (D+) or low-speed (D-) device, SE0 during reset', () => {
    const full = port().p;
    full.attach(fakeDevice('full'));
    expect(PORTSC.get(full.read(), 'LS')).toBe(0b01);
    expect(full.read() & P.LSDA).toBe(0);
    const low = port().p;
    low.attach(fakeDevice('low'));
    expect(PORTSC.get(low.read(), 'LS')).toBe(0b10);
    expect(low.read() & P.LSDA).toBe(P.LSDA);
    low.write(P.PR);
    expect(PORTSC.get(low.read(), 'LS')).toBe(0);
    // Line status is not stored: writing 1s there changes nothing.
    expect(low.ctrl & P.LS).toBe(0);
  });

  test('a rising PR resets the device once; PE then sticks; unplug reports PEC', () => {
    const { p } = port();
    const d = fakeDevice('full');
    p.attach(d);
    p.write(P.PR);
    p.write(P.PR);
    expect(d.resets).toBe(1);
    p.write(P.PE | P.CSC);
    expect(p.read() & (P.PE | P.PR | P.CSC)).toBe(P.PE);
    p.detach();
    expect(p.read() & (P.CCS | P.CSC | P.PE | P.PEC)).toBe(P.CSC | P.PEC);
    p.write(P.PEC);
    expect(p.read() & P.PEC).toBe(0);
  });

  test('reserved bits QEMU stores are kept; bit 7 and LSDA are read only', () => {
    const { p } = port();
    p.write(0xec00);
    expect(p.read()).toBe(0xec80);
    p.write(0);
    expect(p.read()).toBe(0x0080);
    p.write(P.LSDA); // cannot fake a low-speed device
    expect(p.read() & P.LSDA).toBe(0);
  });

  test('remote wakeup sets RD only while suspended, and signals resume', () => {
    const { p, resumes } = port();
    p.attach(fakeDevice('full'));
    const before = resumes();
    p.wakeup();
    expect(p.read() & P.RD).toBe(0);
    p.write(P.SUSP);
    p.wakeup();
    expect(p.read() & P.RD).toBe(P.RD);
    expect(resumes()).toBe(before + 1);
  });

  test('controller reset: back to 0x0080 with an attached device reported freshly connected and reset', () => {
    const { p } = port();
    const d = fakeDevice('low');
    p.attach(d);
    p.write(P.PE | P.SUSP);
    p.controllerReset();
    expect(p.ctrl).toBe(PORTSC.reset | P.CCS | P.CSC | P.LSDA);
    expect(d.resets).toBe(1);
  });
});
