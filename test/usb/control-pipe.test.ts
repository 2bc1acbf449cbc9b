/**
 * The endpoint-0 state machine and the standard requests of the generic
 * device layer (src/usb/device-base.ts), exercised packet by packet.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket } from '../../src/usb/packet.js';
import { CONTROL_BUFFER_SIZE } from '../../src/usb/device-base.js';
import { UsbTablet } from '../../src/usb/hid/tablet.js';
import { UsbKeyboard } from '../../src/usb/hid/keyboard.js';
import { TestHost, TransferStall, setupBytes } from './host.js';

function make(profile: 'qemu-7.2' | 'usb-2.0' = 'qemu-7.2') {
  const clock = new ManualClock();
  const wakeups: number[] = [];
  const dev = new UsbTablet({ clock, profile, hcdPath: '0000:00:05.0', portPath: '2' });
  dev.attach({ complete: () => {}, wakeup: () => wakeups.push(clock.nowNs()) });
  const host = new TestHost(dev);
  return { clock, dev, host, wakeups };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('device states and addressing', () => {
  test('attached but not reset: no answer; after reset: Default, address 0', () => {
    const { dev, host } = make();
    expect(dev.state).toBe('attached');
    expect(host.setup(0x80, 6, 0x0100, 0, 18).status).toBe('nodev');
    dev.reset();
    expect(dev.state).toBe('default');
    expect(host.setup(0x80, 6, 0x0100, 0, 18).status).toBe('ack');
  });

  test('SET_ADDRESS takes effect after the status stage', () => {
    const { dev, host } = make();
    dev.reset();
    expect(host.setup(0x00, 5, 7, 0, 0).status).toBe('ack');
    expect(dev.address).toBe(0);
    const st = host.in(0, 0);
    expect(st.status).toBe('ack');
    expect(st.actualLength).toBe(0);
    expect(dev.address).toBe(7);
    expect(dev.state).toBe('address');
    // The old address no longer answers, the new one does.
    expect(host.setup(0x80, 6, 0x0100, 0, 18).status).toBe('nodev');
    host.addr = 7;
    expect(hex(host.control(0x80, 6, 0x0100, 0, 18)).slice(0, 4)).toBe('1201');
  });

  test('configure, unconfigure, unknown configuration value keeps the current one (QEMU)', () => {
    const { dev, host } = make();
    host.enumerate(3);
    expect(dev.state).toBe('configured');
    expect(hex(host.control(0x80, 8, 0, 0, 1))).toBe('01');
    host.control(0x00, 9, 5, 0, 0); // acknowledged, nothing changes
    expect(dev.configurationValue).toBe(1);
    host.control(0x00, 9, 0, 0, 0);
    expect(dev.state).toBe('address');
    expect(hex(host.control(0x80, 8, 0, 0, 1))).toBe('00');
    // GET_INTERFACE / SET_INTERFACE need a configuration.
    expect(host.tryControl(0x81, 10, 0, 0, 1)).toBe('EPIPE');
    expect(host.tryControl(0x01, 11, 0, 0, 0)).toBe('EPIPE');
  });

  test('port reset forgets address, configuration and remote wakeup', () => {
    const { dev, host } = make();
    host.enumerate(9);
    host.control(0x00, 3, 1, 0, 0);
    expect(dev.remoteWakeup).toBe(true);
    dev.reset();
    expect([dev.address, dev.configurationValue, dev.remoteWakeup, dev.state]).toEqual([0, 0, false, 'default']);
  });

  test('detach: the device stops answering', () => {
    const { dev, host } = make();
    host.enumerate(2);
    dev.detach();
    expect(dev.state).toBe('detached');
    expect(host.in(1, 8).status).toBe('nodev');
  });
});

describe('control pipe', () => {
  test('IN data stage in max-packet chunks, then ZLPs, then status OUT', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.setup(0x80, 6, 0x0200, 0, 255).actualLength).toBe(8);
    const chunks: number[] = [];
    for (;;) {
      const p = host.in(0, 8);
      expect(p.status).toBe('ack');
      chunks.push(p.actualLength);
      if (p.actualLength < 8) break;
    }
    expect(chunks).toEqual([8, 8, 8, 8, 2]); // 34-byte configuration
    const extra = host.in(0, 8); // more IN after the data: zero-length
    expect([extra.status, extra.actualLength]).toEqual(['ack', 0]);
    expect(host.out(0, new Uint8Array(0)).status).toBe('ack');
    expect(host.out(0, new Uint8Array(0)).status).toBe('stall'); // nothing in progress
  });

  test('a larger host buffer gets the data in one packet, capped at wLength', () => {
    const { host } = make();
    host.enumerate(1);
    host.setup(0x80, 6, 0x0200, 0, 20);
    const p = host.in(0, 64);
    expect(p.actualLength).toBe(20);
    expect(host.in(0, 64).actualLength).toBe(0);
  });

  test('tokens without a SETUP stall', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.in(0, 8).status).toBe('stall');
    expect(host.out(0, new Uint8Array(0)).status).toBe('stall');
  });

  test('wrong direction in the data stage stalls and ends the transfer', () => {
    const { dev, host } = make();
    host.enumerate(1);
    host.setup(0x80, 6, 0x0100, 0, 18);
    host.in(0, 8);
    // Premature status OUT while IN data remains: QEMU stalls it.
    expect(host.out(0, new Uint8Array(0)).status).toBe('stall');
    expect(dev.controlStage).toBe('idle');
    expect(host.in(0, 8).status).toBe('stall');
    // OUT request, then an IN during its data stage.
    host.setup(0x21, 9, 0x0200, 0, 1);
    expect(host.in(0, 8).status).toBe('stall');
    expect(dev.controlStage).toBe('idle');
  });

  test('a new SETUP aborts the transfer in progress', () => {
    const { host } = make();
    host.enumerate(1);
    host.setup(0x80, 6, 0x0200, 0, 34);
    host.in(0, 8);
    host.setup(0x80, 6, 0x0100, 0, 18);
    const p = host.in(0, 8);
    expect(hex(p.data.subarray(0, 2))).toBe('1201');
  });

  test('SETUP must be 8 bytes', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.packet(PID_SETUP, 0, new Uint8Array(7)).status).toBe('stall');
    expect(host.packet(PID_SETUP, 0, new Uint8Array(9)).status).toBe('stall');
  });

  test.each([0xffff, 0x8000, CONTROL_BUFFER_SIZE + 1])('wLength 0x%s above the 4096-byte buffer: SETUP stalls', (wLength) => {
    const { dev, host } = make();
    host.enumerate(1);
    const s = host.setup(0x80, 6, 0x0100, 0, wLength);
    expect(s.status).toBe('stall');
    expect(dev.controlStage).toBe('idle');
    expect(host.in(0, 8).status).toBe('stall');
    // OUT direction too (nothing is copied anywhere).
    expect(host.setup(0x21, 9, 0x0200, 0, wLength).status).toBe('stall');
    expect(host.out(0, new Uint8Array(64)).status).toBe('stall');
    // The device still works.
    expect(host.control(0x80, 6, 0x0100, 0, 18).length).toBe(18);
  });

  test('wLength 4096 exactly is accepted; short answers end the data stage early', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.control(0x80, 6, 0x0100, 0, CONTROL_BUFFER_SIZE).length).toBe(18);
  });

  test('device-to-host request with wLength 0: the status OUT stalls (QEMU core.c quirk)', () => {
    const { dev, host } = make();
    host.enumerate(1);
    expect(host.setup(0x80, 6, 0x0100, 0, 0).status).toBe('ack');
    expect(dev.controlStage).toBe('data');
    expect(host.out(0, new Uint8Array(0)).status).toBe('stall');
    // Reading the (empty) data stage first makes the status stage succeed.
    host.setup(0x80, 6, 0x0100, 0, 0);
    expect(host.in(0, 8).actualLength).toBe(0);
    expect(host.out(0, new Uint8Array(0)).status).toBe('ack');
  });

  test('oversized wLength after a started transfer leaves that stage (QEMU keeps it)', () => {
    const { dev, host } = make();
    host.enumerate(1);
    host.setup(0x80, 6, 0x0100, 0, 18);
    expect(host.setup(0x80, 6, 0x0100, 0, 0xffff).status).toBe('stall');
    expect(dev.controlStage).toBe('data');
  });

  test('OUT data stage: chunks assembled, extra OUT ignored, request runs at status', () => {
    const clock = new ManualClock();
    const leds: number[] = [];
    const kbd = new UsbKeyboard({ clock, onLeds: (l) => leds.push(l) });
    kbd.attach({ complete: () => {}, wakeup: () => {} });
    const host = new TestHost(kbd);
    host.enumerate(4);
    host.setup(0x21, 9, 0x0200, 0, 10);
    expect(host.out(0, Uint8Array.of(0x05, 1, 2, 3, 4, 5, 6, 7)).actualLength).toBe(8);
    expect(host.out(0, Uint8Array.of(8, 9, 10, 11)).actualLength).toBe(2);
    expect(host.out(0, Uint8Array.of(1)).status).toBe('ack'); // ignored
    expect(leds).toEqual([]);
    expect(host.in(0, 0).status).toBe('ack');
    expect(leds).toEqual([0x05]);
    expect(kbd.leds).toBe(0x05);
  });

  test('a host-to-device request that fails stalls the status stage', () => {
    const { dev, host } = make();
    host.enumerate(1);
    host.setup(0x00, 3, 2, 0, 0); // SET_FEATURE(TEST_MODE): not supported
    const st = host.in(0, 0);
    expect(st.status).toBe('stall');
    expect(dev.controlStage).toBe('idle');
  });

  test('a device-to-host request that fails stalls the SETUP', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.setup(0x80, 6, 0x0a00, 0, 8).status).toBe('stall'); // DEBUG descriptor
    expect(() => host.control(0x80, 6, 0x0201, 0, 9)).toThrow(TransferStall);
  });

  test('unknown string index: zero-length data stage (QEMU)', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.control(0x80, 6, 0x0363, 0x0409, 255).length).toBe(0);
  });

  test('serial number string derives from controller and port path', () => {
    const { host, dev } = make();
    host.enumerate(1);
    const d = host.control(0x80, 6, 0x030a, 0x0409, 255);
    expect(Buffer.from(d.subarray(2)).toString('utf16le')).toBe('28754-0000:00:05.0-2');
    expect(dev.serialNumber).toBe('28754-0000:00:05.0-2');
  });
});

describe('standard requests, qemu-7.2 profile', () => {
  test('remote wakeup feature, GET_STATUS, wakeup only when enabled', () => {
    const { dev, host, wakeups } = make();
    host.enumerate(1);
    expect(hex(host.control(0x80, 0, 0, 0, 2))).toBe('0000');
    dev.moveTo(1, 1);
    expect(wakeups.length).toBe(0);
    host.control(0x00, 3, 1, 0, 0);
    expect(hex(host.control(0x80, 0, 0, 0, 2))).toBe('0200');
    dev.setSuspended(true);
    expect(dev.suspended).toBe(true);
    dev.buttons(1);
    expect(wakeups.length).toBe(1);
    host.control(0x00, 1, 1, 0, 0);
    dev.buttons(0);
    expect(wakeups.length).toBe(1);
  });

  test('interface/endpoint status, ENDPOINT_HALT and SYNCH_FRAME stall like QEMU', () => {
    const { host } = make();
    host.enumerate(1);
    expect(host.tryControl(0x81, 0, 0, 0, 2)).toBe('EPIPE');
    expect(host.tryControl(0x82, 0, 0, 0x81, 2)).toBe('EPIPE');
    expect(host.tryControl(0x02, 3, 0, 0x81, 0)).toBe('EPIPE');
    expect(host.tryControl(0x02, 1, 0, 0x81, 0)).toBe('EPIPE');
    expect(host.tryControl(0x82, 12, 0, 0x81, 2)).toBe('EPIPE');
  });

  test('data endpoints: IN 1 answers, OUT 1 / IN 2 / SETUP to 1 stall', () => {
    const { dev, host } = make();
    host.enumerate(1);
    expect(host.in(1, 8).status).toBe('nak');
    dev.moveTo(5, 6);
    expect(host.in(1, 8).status).toBe('ack');
    expect(host.out(1, new Uint8Array(1)).status).toBe('stall');
    expect(host.in(2, 8).status).toBe('stall');
    expect(host.packet(PID_SETUP, 1, new Uint8Array(8)).status).toBe('stall');
  });
});

describe('standard requests, usb-2.0 profile', () => {
  test('endpoint halt: set, status, stall, clear', () => {
    const { dev, host } = make('usb-2.0');
    host.enumerate(1);
    dev.moveTo(10, 10);
    expect(hex(host.control(0x82, 0, 0, 0x81, 2))).toBe('0000');
    host.control(0x02, 3, 0, 0x81, 0);
    expect(hex(host.control(0x82, 0, 0, 0x81, 2))).toBe('0100');
    expect(host.in(1, 8).status).toBe('stall');
    host.control(0x02, 1, 0, 0x81, 0);
    expect(hex(host.control(0x82, 0, 0, 0x81, 2))).toBe('0000');
    expect(host.in(1, 8).status).toBe('ack');
  });

  test('interface status, endpoint 0 status, missing endpoints and bad features stall', () => {
    const { host } = make('usb-2.0');
    host.enumerate(1);
    expect(hex(host.control(0x81, 0, 0, 0, 2))).toBe('0000');
    expect(host.tryControl(0x81, 0, 0, 1, 2)).toBe('EPIPE');
    expect(hex(host.control(0x82, 0, 0, 0x00, 2))).toBe('0000');
    expect(hex(host.control(0x82, 0, 0, 0x80, 2))).toBe('0000');
    expect(host.tryControl(0x82, 0, 0, 0x02, 2)).toBe('EPIPE');
    expect(host.tryControl(0x02, 3, 0, 0x01, 0)).toBe('EPIPE'); // OUT 1 does not exist
    expect(host.tryControl(0x02, 3, 5, 0x81, 0)).toBe('EPIPE'); // not ENDPOINT_HALT
    expect(host.in(2, 8).status).toBe('stall');
    expect(host.out(1, new Uint8Array(1)).status).toBe('stall');
  });

  test('unconfigured: data endpoints and endpoint requests stall; SET_CONFIGURATION clears halts', () => {
    const { dev, host } = make('usb-2.0');
    host.enumerate(1);
    host.control(0x02, 3, 0, 0x81, 0);
    host.control(0x00, 9, 0, 0, 0);
    dev.moveTo(1, 2);
    expect(host.in(1, 8).status).toBe('stall');
    expect(host.tryControl(0x82, 0, 0, 0x81, 2)).toBe('EPIPE');
    host.control(0x00, 9, 1, 0, 0);
    expect(host.in(1, 8).status).toBe('ack');
  });
});

test('UsbPacket PIDs are the UHCI token values', () => {
  expect([PID_IN, PID_OUT, PID_SETUP]).toEqual([0x69, 0xe1, 0x2d]);
  expect(setupBytes(0x80, 6, 0x0100, 0x0409, 0x12)).toEqual(Uint8Array.of(0x80, 6, 0, 1, 9, 4, 0x12, 0));
  expect(new UsbPacket(PID_IN, 0, 0, new Uint8Array(1)).status).toBe('ack');
});
