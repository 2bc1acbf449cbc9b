/**
 * The oracle's programs: hand-written ones that walk through the device the
 * way a driver does (and a few deliberate mistakes), and generated ones built
 * by fast-check from a seed, so every generated program is reproducible from
 * its name (`gen:<kind>#<seed>`).
 */
import fc from 'fast-check';
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../../src/usb/packet.js';
import {
  prologue,
  ProgramBuilder,
  setupPacket,
  type ControlSpec,
  type Program,
  type TdSpec,
} from './program.js';
import type { IoSize } from './target.js';
import { USBCMD, REG } from '../../src/uhci/registers.js';

// USB 2.0 §9.4 standard requests and HID 1.11 §7.2 class requests.
const GET_STATUS = 0;
const CLEAR_FEATURE = 1;
const SET_FEATURE = 3;
const SET_ADDRESS = 5;
const GET_DESCRIPTOR = 6;
const GET_CONFIGURATION = 8;
const SET_CONFIGURATION = 9;
const GET_INTERFACE = 10;
const SET_INTERFACE = 11;
const HID_GET_REPORT = 1;
const HID_GET_IDLE = 2;
const HID_GET_PROTOCOL = 3;
const HID_SET_IDLE = 10;
const HID_SET_PROTOCOL = 11;
const DT_DEVICE = 1;
const DT_CONFIG = 2;
const DT_STRING = 3;
const DT_HID = 0x21;
const DT_REPORT = 0x22;

const getDescriptor = (type: number, index: number, len: number, recipient = 0x80, wIndex = 0): Uint8Array =>
  setupPacket(recipient, GET_DESCRIPTOR, (type << 8) | index, wIndex, len);

function start(name: string): ProgramBuilder {
  const b = new ProgramBuilder(name);
  prologue(b);
  return b;
}

/** Port reset + SET_ADDRESS(addr) + optionally SET_CONFIGURATION(1). */
function enumerate(b: ProgramBuilder, addr: number, configure: boolean, packet = 8): void {
  b.resetAndEnablePort();
  if (addr !== 0) b.controlTransfer({ dev: 0, setup: setupPacket(0x00, SET_ADDRESS, addr, 0, 0), packet });
  if (configure) b.controlTransfer({ dev: addr, setup: setupPacket(0x00, SET_CONFIGURATION, 1, 0, 0), packet });
}

// ---------------------------------------------------------------- hand-written

function cfgDump(): Program {
  const b = start('hand:cfg-dump');
  for (let off = 0; off < 256; off += 4) b.step({ op: 'cfgRead', offset: off, size: 4 });
  for (const off of [0x00, 0x02, 0x04, 0x06, 0x08, 0x0a, 0x0c, 0x0e, 0x3c, 0x3e, 0x60, 0xc0]) b.step({ op: 'cfgRead', offset: off, size: 2 });
  for (let off = 0; off < 0x40; off++) b.step({ op: 'cfgRead', offset: off, size: 1 });
  for (const off of [0x60, 0x61, 0x6a, 0xc0, 0xc1]) b.step({ op: 'cfgRead', offset: off, size: 1 });
  return b.build();
}

function cfgBars(): Program {
  const b = start('hand:cfg-bars');
  // BAR sizing (PCI 3.0 §6.2.5.1): write all-ones, read back the size mask, restore.
  for (const bar of [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30]) {
    b.step({ op: 'cfgSave', offset: bar });
    b.step({ op: 'cfgWrite', offset: bar, size: 4, value: 0xffffffff });
    b.step({ op: 'cfgRead', offset: bar, size: 4 });
    b.step({ op: 'cfgRestore', offset: bar });
    b.step({ op: 'cfgRead', offset: bar, size: 4 });
  }
  // Writable header bytes.
  for (const [off, size, v] of [
    [0x0c, 1, 0x10],
    [0x0d, 1, 0x40],
    [0x3c, 1, 0x0b],
    [0x3d, 1, 0x01],
    [0x3e, 2, 0xffff],
    [0x06, 2, 0xffff],
    [0x08, 4, 0xffffffff],
    [0x00, 4, 0xffffffff],
  ] as const) {
    b.step({ op: 'cfgSave', offset: off & 0xfc });
    b.step({ op: 'cfgWrite', offset: off, size: size as IoSize, value: v });
    b.step({ op: 'cfgRead', offset: off & 0xfc, size: 4 });
    b.step({ op: 'cfgRestore', offset: off & 0xfc });
  }
  // I/O decoding follows the command register: off → the BAR's ports float.
  b.step({ op: 'cfgWrite', offset: 0x04, size: 2, value: 0x0004 });
  b.ioRead(REG.USBSTS, 2);
  b.ioRead(REG.PORTSC1, 2);
  b.step({ op: 'cfgWrite', offset: 0x04, size: 2, value: 0x0005 });
  b.ioRead(REG.USBSTS, 2);
  b.ioRead(REG.PORTSC1, 2);
  // Move the BAR and look at both windows.
  b.step({ op: 'cfgWrite', offset: 0x20, size: 4, value: 0xd001 });
  b.step({ op: 'cfgRead', offset: 0x20, size: 4 });
  b.ioRead(REG.USBSTS, 2);
  b.step({ op: 'cfgWrite', offset: 0x20, size: 4, value: 0xc001 });
  b.ioRead(REG.USBSTS, 2);
  return b.build();
}

function ioReadsAllSizes(): Program {
  const b = start('hand:io-read-every-offset');
  for (const size of [1, 2, 4] as IoSize[]) for (let off = 0; off < 0x20; off++) b.ioRead(off, size);
  return b.build();
}

/**
 * One write of `size` bytes at BAR offset `off`, then a look at the whole
 * register file: one program per access, so a difference does not cascade.
 */
function ioWriteOnce(size: IoSize, off: number, pattern: number, tag: string): Program {
  const b = start(`hand:io-write/${size}@0x${off.toString(16)}=${tag}`);
  let v = pattern & [0, 0xff, 0xffff, 0, 0xffffffff][size]!;
  // Never start the schedule from a poke: RS would make FRNUM timing dependent.
  if (off === 0) v &= ~USBCMD.bit.RS;
  b.ioWrite(off, size, v >>> 0);
  b.observe(true);
  return b.build();
}

function ioWritesAllSizes(): Program[] {
  const out: Program[] = [];
  for (const [pattern, tag] of [
    [0xffffffff, 'ones'],
    [0x5a5aa5a5, '5a'],
  ] as const) {
    for (const size of [1, 2, 4] as IoSize[]) for (let off = 0; off < 0x20; off++) out.push(ioWriteOnce(size, off, pattern, tag));
  }
  return out;
}

function enumerateFully(): Program {
  const b = start('hand:enumerate');
  b.resetAndEnablePort();
  b.controlTransfer({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 8), packet: 8 });
  b.controlTransfer({ dev: 0, setup: setupPacket(0x00, SET_ADDRESS, 5, 0, 0), packet: 8 });
  b.controlTransfer({ dev: 5, setup: getDescriptor(DT_DEVICE, 0, 18), packet: 8 });
  b.controlTransfer({ dev: 5, setup: getDescriptor(DT_CONFIG, 0, 9), packet: 8 });
  b.controlTransfer({ dev: 5, setup: getDescriptor(DT_CONFIG, 0, 255), packet: 64, spd: true });
  for (const i of [0, 1, 2, 3]) b.controlTransfer({ dev: 5, setup: getDescriptor(DT_STRING, i, 255, 0x80, i ? 0x0409 : 0), packet: 64, spd: true });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x80, GET_CONFIGURATION, 0, 0, 1), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x00, SET_CONFIGURATION, 1, 0, 0), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x80, GET_CONFIGURATION, 0, 0, 1), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x80, GET_STATUS, 0, 0, 2), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x81, GET_STATUS, 0, 0, 2), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x82, GET_STATUS, 0, 0x81, 2), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0x21, HID_SET_IDLE, 0, 0, 0), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0xa1, HID_GET_IDLE, 0, 0, 1), packet: 8 });
  b.controlTransfer({ dev: 5, setup: setupPacket(0xa1, HID_GET_PROTOCOL, 0, 0, 1), packet: 8 });
  b.controlTransfer({ dev: 5, setup: getDescriptor(DT_HID, 0, 9, 0x81), packet: 8 });
  b.controlTransfer({ dev: 5, setup: getDescriptor(DT_REPORT, 0, 255, 0x81), packet: 64, spd: true });
  b.controlTransfer({ dev: 5, setup: setupPacket(0xa1, HID_GET_REPORT, 0x0100, 0, 8), packet: 8, spd: true });
  // Interrupt IN polling: no input events, so the tablet NAKs (HID 1.11 §7.2.4 idle = 0).
  const { qh, tds } = b.queue([{ pid: PID_IN, dev: 5, ep: 1, maxLen: 8, ioc: true }]);
  b.hang(qh | LINK.bit.Q);
  b.runAndObserve(tds, 32);
  return b.build();
}

function frnumProgram(): Program {
  const b = start('hand:frnum');
  b.step({ op: 'frnumMoves' });
  b.ioWrite(REG.FRNUM, 2, 0x3ff);
  b.ioRead(REG.FRNUM, 2);
  b.ioWrite(REG.FRNUM, 2, 0xffff);
  b.ioRead(REG.FRNUM, 2);
  b.ioWrite(REG.USBCMD, 2, USBCMD.bit.RS);
  b.step({ op: 'frnumMoves' });
  b.ioRead(REG.USBSTS, 2);
  b.ioRead(REG.USBCMD, 2);
  b.stop();
  b.step({ op: 'frnumMoves' });
  b.observe();
  // HCRESET while halted: what happens to FRNUM (QEMU keeps it, UHCI DG §2.1.1 says reset).
  b.ioWrite(REG.FRNUM, 2, 0x123);
  b.ioWrite(REG.USBCMD, 2, USBCMD.bit.HCRESET);
  b.wait(1);
  b.observe(true);
  return b.build();
}

function errorsProgram(): Program {
  const b = start('hand:errors');
  b.ioWrite(REG.USBINTR, 2, 0xf);
  b.resetAndEnablePort();
  // No device at address 77: CRC/timeout (UHCI DG §3.2.2; QEMU retires the TD at once).
  const nodev = b.queue([{ pid: PID_IN, dev: 77, ep: 0, maxLen: 8, cerr: 3, ioc: true }]);
  b.hang(nodev.qh | LINK.bit.Q);
  b.runAndObserve(nodev.tds);
  b.ioWrite(REG.USBSTS, 2, 0x3f);
  // Bad request: the device stalls the SETUP stage.
  b.controlTransfer({ dev: 0, setup: setupPacket(0x80, 0x77, 0, 0, 8), packet: 8 });
  b.ioWrite(REG.USBSTS, 2, 0x3f);
  // Endpoint the tablet does not have.
  const badEp = b.queue([{ pid: PID_IN, dev: 0, ep: 3, maxLen: 8, ioc: true }]);
  b.hang(badEp.qh | LINK.bit.Q);
  b.runAndObserve(badEp.tds);
  b.ioWrite(REG.USBSTS, 2, 0x3f);
  // Invalid PID: host controller process error, the controller halts.
  const bad = b.queue([{ pid: 0, dev: 0, ep: 0, maxLen: 8, rawToken: makeToken(0xa5, 0, 0, 0, 8) }]);
  b.hang(bad.qh | LINK.bit.Q);
  b.runAndObserve(bad.tds);
  return b.build();
}

function setupToDataEndpointProgram(): Program {
  const b = start('hand:setup-to-endpoint-1');
  b.ioWrite(REG.USBINTR, 2, 0xf);
  enumerate(b, 6, true);
  // SETUP is only defined for control endpoints (USB 2.0 §8.5.3). QEMU 7.2.21+
  // (CVE-2024-8354 fix, upstream d0af3cd0274e) treats SETUP to endpoint ≠ 0 like
  // an invalid PID: HCPE and RS cleared.
  const q = b.queue([{ pid: PID_SETUP, dev: 6, ep: 1, maxLen: 8, data: getDescriptor(DT_DEVICE, 0, 8), ioc: true }]);
  b.hang(q.qh | LINK.bit.Q);
  b.runAndObserve(q.tds);
  return b.build();
}

function shortPacketProgram(): Program {
  const b = start('hand:short-packet');
  b.ioWrite(REG.USBINTR, 2, 0xf);
  b.resetAndEnablePort();
  // 64-byte request in 8-byte TDs with SPD: the 18-byte device descriptor ends
  // short in the third TD and the queue stops there (UHCI DG §3.2.2 SPD).
  b.controlTransfer({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 64), packet: 8, spd: true, ioc: 'all' });
  b.ioWrite(REG.USBSTS, 2, 0x3f);
  // The same without SPD: the queue runs through.
  b.controlTransfer({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 64), packet: 8, spd: false });
  return b.build();
}

function iocInactiveProgram(): Program {
  const b = start('hand:ioc-on-inactive');
  b.ioWrite(REG.USBINTR, 2, 0x4);
  // An inactive TD with IOC straight in the frame list still interrupts.
  const [td] = b.tdChain([{ pid: PID_IN, dev: 9, ep: 0, maxLen: 8, ioc: true, active: false }]);
  b.frameListAll(td!);
  b.runAndObserve([td!], 16);
  b.ioWrite(REG.USBSTS, 2, 0x1);
  b.observe();
  return b.build();
}

function portDisabledProgram(): Program {
  const b = start('hand:port-disabled');
  b.ioWrite(REG.USBINTR, 2, 0x1);
  // The tablet is connected but its port is not enabled: no device answers.
  b.controlTransfer({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 8), packet: 8 });
  // Port 2 has nothing connected: PE cannot be set.
  b.ioWrite(REG.PORTSC2, 2, 0x0004);
  b.ioRead(REG.PORTSC2, 2);
  return b.build();
}

function directTdsProgram(): Program {
  const b = start('hand:frame-list-tds');
  b.resetAndEnablePort();
  // TDs linked straight from the frame list (no QH): each frame walks the
  // whole chain, so the control transfer finishes in one frame.
  const tds = b.tdChain(b.controlTds({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 18), packet: 8, depthFirst: false }));
  b.frameListAll(tds[0]!);
  b.runAndObserve(tds, 16);
  return b.build();
}

function breadthDepthProgram(depth: boolean): Program {
  const b = start(`hand:two-queues-${depth ? 'depth' : 'breadth'}`);
  b.resetAndEnablePort();
  b.controlTransfer({ dev: 0, setup: setupPacket(0x00, SET_ADDRESS, 3, 0, 0), packet: 8 });
  b.controlTransfer({ dev: 3, setup: setupPacket(0x00, SET_CONFIGURATION, 1, 0, 0), packet: 8 });
  const q2 = b.queue([{ pid: PID_IN, dev: 3, ep: 1, maxLen: 8 }]);
  const q1 = b.queue(b.controlTds({ dev: 3, setup: getDescriptor(DT_CONFIG, 0, 34), packet: 8, depthFirst: depth }), q2.qh | LINK.bit.Q);
  b.hang(q1.qh | LINK.bit.Q);
  b.runAndObserve([...q1.tds], 64);
  return b.build();
}

function toggleMismatchProgram(): Program {
  const b = start('hand:toggle-mismatch');
  b.resetAndEnablePort();
  // Every data stage TD says DATA0 (USB 2.0 §8.6 expects DATA1, DATA0, ...).
  // QEMU's UHCI and usb core do not check toggles; the transfer completes.
  const specs = b.controlTds({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 18), packet: 8 });
  specs.forEach((s) => (s.toggle = 0));
  const { qh, tds } = b.queue(specs);
  b.hang(qh | LINK.bit.Q);
  b.runAndObserve(tds);
  return b.build();
}

function globalResetProgram(): Program {
  const b = start('hand:global-reset');
  enumerate(b, 4, true);
  b.ioWrite(REG.USBCMD, 2, USBCMD.bit.GRESET);
  b.wait(10);
  b.ioWrite(REG.USBCMD, 2, 0);
  b.observe();
  // After the bus reset the tablet is back at address 0.
  b.resetAndEnablePort();
  b.controlTransfer({ dev: 4, setup: getDescriptor(DT_DEVICE, 0, 8), packet: 8 });
  b.controlTransfer({ dev: 0, setup: getDescriptor(DT_DEVICE, 0, 8), packet: 8 });
  return b.build();
}

function suspendResumeProgram(): Program {
  const b = start('hand:suspend-resume');
  b.resetAndEnablePort();
  b.ioWrite(REG.PORTSC1, 2, 0x1004);
  b.ioRead(REG.PORTSC1, 2);
  b.ioWrite(REG.USBCMD, 2, 0x0008);
  b.ioRead(REG.USBCMD, 2);
  b.ioRead(REG.USBSTS, 2);
  b.ioWrite(REG.PORTSC1, 2, 0x1044);
  b.ioWrite(REG.USBCMD, 2, 0x0008);
  b.observe();
  b.ioWrite(REG.USBCMD, 2, 0x0010);
  b.ioWrite(REG.USBCMD, 2, 0);
  b.ioWrite(REG.PORTSC1, 2, 0x0004);
  b.observe();
  return b.build();
}

function loopingScheduleProgram(): Program {
  const b = start('hand:looping-schedule');
  enumerate(b, 2, true);
  // Linux FSBR style: the last QH links back to the first, so the controller
  // loops until its frame budget ends (QEMU: a QH seen twice without work ends the frame).
  const qa = b.allocQh();
  const qb = b.allocQh();
  const ctl = b.tdChain(b.controlTds({ dev: 2, setup: getDescriptor(DT_CONFIG, 0, 34), packet: 8 }));
  const poll = b.tdChain([{ pid: PID_IN, dev: 2, ep: 1, maxLen: 4 }]);
  b.writeQh(qa, qb | LINK.bit.Q, ctl[0]!);
  b.writeQh(qb, qa | LINK.bit.Q, poll[0]!);
  b.hang(qa | LINK.bit.Q);
  b.runAndObserve(ctl, 64);
  return b.build();
}

function bandwidthProgram(): Program {
  const b = start('hand:bandwidth');
  b.ioWrite(REG.USBINTR, 2, 0x4);
  b.resetAndEnablePort();
  // 24 queues of 64-byte reads: more than a frame's 1280-byte budget, so the
  // work spreads over frames; the end state must still be complete.
  let next: number = LINK.bit.T;
  const all: number[] = [];
  for (let i = 0; i < 24; i++) {
    const q = b.queue(b.controlTds({ dev: 0, setup: getDescriptor(DT_CONFIG, 0, 64), packet: 64, ioc: i === 0 ? 'last' : 'none' }), next);
    all.push(...q.tds);
    next = q.qh | LINK.bit.Q;
  }
  b.hang(next);
  b.runAndObserve(all, 96);
  return b.build();
}

export function handWrittenPrograms(): Program[] {
  return [
    cfgDump(),
    cfgBars(),
    ioReadsAllSizes(),
    enumerateFully(),
    frnumProgram(),
    errorsProgram(),
    setupToDataEndpointProgram(),
    shortPacketProgram(),
    iocInactiveProgram(),
    portDisabledProgram(),
    directTdsProgram(),
    breadthDepthProgram(true),
    breadthDepthProgram(false),
    globalResetProgram(),
    toggleMismatchProgram(),
    suspendResumeProgram(),
    loopingScheduleProgram(),
    bandwidthProgram(),
    ...ioWritesAllSizes(),
  ];
}

// ---------------------------------------------------------------- generated

const ioSize = fc.constantFrom<IoSize>(1, 2, 4);

/** Register pokes: random accesses of every size at every offset. */
const pokesArb = fc.array(
  fc.record({ write: fc.boolean(), offset: fc.integer({ min: 0, max: 0x1f }), size: ioSize, value: fc.integer({ min: 0, max: 0xffffffff }) }),
  { minLength: 1, maxLength: 16 },
);

function pokesProgram(seed: number): Program {
  const [pokes] = fc.sample(pokesArb, { seed, numRuns: 1 });
  const b = start(`gen:pokes#${seed}`);
  for (const p of pokes!) {
    if (p.write) {
      let v = p.value & [0, 0xff, 0xffff, 0, 0xffffffff][p.size]!;
      if (p.offset === 0) v &= ~USBCMD.bit.RS;
      b.ioWrite(p.offset, p.size, v >>> 0);
    } else {
      b.ioRead(p.offset, p.size);
    }
  }
  b.observe(true);
  return b.build();
}

interface RequestChoice {
  setup: Uint8Array;
}

const requestArb: fc.Arbitrary<RequestChoice> = fc.oneof(
  fc.record({ type: fc.constantFrom(DT_DEVICE, DT_CONFIG), index: fc.integer({ min: 0, max: 1 }), len: fc.integer({ min: 0, max: 80 }) }).map((r) => ({
    setup: getDescriptor(r.type, r.index, r.len),
  })),
  fc.record({ index: fc.integer({ min: 0, max: 6 }), len: fc.integer({ min: 1, max: 80 }) }).map((r) => ({
    setup: getDescriptor(DT_STRING, r.index, r.len, 0x80, r.index ? 0x0409 : 0),
  })),
  fc.record({ type: fc.constantFrom(DT_HID, DT_REPORT), len: fc.integer({ min: 1, max: 90 }), iface: fc.integer({ min: 0, max: 1 }) }).map((r) => ({
    setup: getDescriptor(r.type, 0, r.len, 0x81, r.iface),
  })),
  fc.record({ rt: fc.constantFrom(0x80, 0x81, 0x82), idx: fc.constantFrom(0, 0x81, 0x01, 0x02) }).map((r) => ({
    setup: setupPacket(r.rt, GET_STATUS, 0, r.idx, 2),
  })),
  fc.constant({ setup: setupPacket(0x80, GET_CONFIGURATION, 0, 0, 1) }),
  fc.integer({ min: 0, max: 3 }).map((c) => ({ setup: setupPacket(0x00, SET_CONFIGURATION, c, 0, 0) })),
  fc.constant({ setup: setupPacket(0x81, GET_INTERFACE, 0, 0, 1) }),
  fc.integer({ min: 0, max: 1 }).map((alt) => ({ setup: setupPacket(0x01, SET_INTERFACE, alt, 0, 0) })),
  fc.record({ rt: fc.constantFrom(0x00, 0x02), f: fc.constantFrom(0, 1) }).map((r) => ({
    setup: setupPacket(r.rt, r.rt === 0 ? SET_FEATURE : CLEAR_FEATURE, r.f, r.rt === 2 ? 0x81 : 0, 0),
  })),
  fc.constant({ setup: setupPacket(0x21, HID_SET_IDLE, 0, 0, 0) }),
  fc.constant({ setup: setupPacket(0xa1, HID_GET_IDLE, 0, 0, 1) }),
  fc.integer({ min: 0, max: 1 }).map((p) => ({ setup: setupPacket(0x21, HID_SET_PROTOCOL, p, 0, 0) })),
  fc.constant({ setup: setupPacket(0xa1, HID_GET_PROTOCOL, 0, 0, 1) }),
  fc.integer({ min: 1, max: 16 }).map((len) => ({ setup: setupPacket(0xa1, HID_GET_REPORT, 0x0100, 0, len) })),
  // Requests the tablet does not know: stall.
  fc.record({ rt: fc.integer({ min: 0, max: 255 }), req: fc.integer({ min: 12, max: 255 }), len: fc.integer({ min: 0, max: 16 }) }).map((r) => ({
    setup: setupPacket(r.rt, r.req, 0, 0, r.len),
  })),
);

const controlPlanArb = fc.record({
  addr: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 127 })),
  configure: fc.boolean(),
  intr: fc.integer({ min: 0, max: 15 }),
  requests: fc.array(
    fc.record({
      req: requestArb,
      packet: fc.constantFrom(8, 16, 32, 64),
      spd: fc.boolean(),
      ioc: fc.constantFrom<'last' | 'all' | 'none'>('last', 'all', 'none'),
      cerr: fc.integer({ min: 0, max: 3 }),
      depthFirst: fc.boolean(),
      wrongAddr: fc.integer({ min: 0, max: 9 }),
      noStatus: fc.integer({ min: 0, max: 9 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});

function controlProgram(seed: number): Program {
  const [plan] = fc.sample(controlPlanArb, { seed, numRuns: 1 });
  const p = plan!;
  const b = start(`gen:control#${seed}`);
  b.ioWrite(REG.USBINTR, 2, p.intr);
  enumerate(b, p.addr, p.configure);
  for (const r of p.requests) {
    const c: ControlSpec = {
      // One time in ten, talk to an address nobody has.
      dev: r.wrongAddr === 0 ? (p.addr + 1) & 0x7f : p.addr,
      setup: r.req.setup,
      packet: r.packet,
      spd: r.spd,
      ioc: r.ioc,
      cerr: r.cerr,
      depthFirst: r.depthFirst,
      noStatus: r.noStatus === 0,
    };
    b.controlTransfer(c, 64);
    b.ioWrite(REG.USBSTS, 2, 0x1f);
  }
  return b.build();
}

const tdArb = fc.record({
  pid: fc.constantFrom(PID_IN, PID_IN, PID_OUT, PID_SETUP),
  ep: fc.constantFrom(0, 1, 1, 2, 15),
  addrSel: fc.integer({ min: 0, max: 5 }),
  maxLen: fc.constantFrom(0, 1, 4, 6, 8, 64),
  toggle: fc.integer({ min: 0, max: 1 }),
  ioc: fc.boolean(),
  spd: fc.boolean(),
  cerr: fc.integer({ min: 0, max: 3 }),
  active: fc.integer({ min: 0, max: 7 }).map((x) => x !== 0),
  depthFirst: fc.boolean(),
  ls: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
  /** SETUP to a non-zero endpoint halts QEMU (HCPE), so keep it rare. */
  setupAnyEp: fc.integer({ min: 0, max: 15 }).map((x) => x === 0),
});

const schedulePlanArb = fc.record({
  addr: fc.integer({ min: 1, max: 127 }),
  configure: fc.boolean(),
  portEnabled: fc.integer({ min: 0, max: 7 }).map((x) => x !== 0),
  intr: fc.integer({ min: 0, max: 15 }),
  direct: fc.integer({ min: 0, max: 3 }).map((x) => x === 0),
  queues: fc.array(fc.array(tdArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
});

/** Random queues of random TDs (interrupt polls, stalls, timeouts, odd lengths). */
function scheduleProgram(seed: number): Program {
  const [plan] = fc.sample(schedulePlanArb, { seed, numRuns: 1 });
  const p = plan!;
  const b = start(`gen:schedule#${seed}`);
  b.ioWrite(REG.USBINTR, 2, p.intr);
  if (p.portEnabled) enumerate(b, p.addr, p.configure);
  const addrFor = (sel: number): number => (sel === 0 ? 0 : sel === 1 ? (p.addr + 7) & 0x7f : p.addr);
  const specs = (tds: typeof p.queues[number]): TdSpec[] =>
    tds.map((t) => ({
      pid: t.pid,
      dev: addrFor(t.addrSel),
      ep: t.pid === PID_SETUP && !t.setupAnyEp ? 0 : t.ep,
      toggle: t.toggle,
      maxLen: t.maxLen,
      data: t.pid === PID_SETUP ? getDescriptor(DT_DEVICE, 0, 8) : t.pid === PID_OUT ? new Uint8Array(t.maxLen).fill(0x3c) : undefined,
      ioc: t.ioc,
      spd: t.spd,
      cerr: t.cerr,
      active: t.active,
      depthFirst: t.depthFirst,
      extraCtrl: t.ls ? TD_CTRL.bit.LS : 0,
    }));
  const all: number[] = [];
  if (p.direct) {
    // One flat TD chain straight from the frame list.
    const tds = b.tdChain(specs(p.queues.flat()));
    all.push(...tds);
    b.frameListAll(tds[0]!);
  } else {
    let next: number = LINK.bit.T;
    for (let i = p.queues.length - 1; i >= 0; i--) {
      const q = b.queue(specs(p.queues[i]!), next);
      all.push(...q.tds);
      next = q.qh | LINK.bit.Q;
    }
    b.hang(next);
  }
  b.runAndObserve(all, 48);
  return b.build();
}

export type GeneratedKind = 'pokes' | 'control' | 'schedule';

export function generatedProgram(kind: GeneratedKind, seed: number): Program {
  switch (kind) {
    case 'pokes':
      return pokesProgram(seed);
    case 'control':
      return controlProgram(seed);
    case 'schedule':
      return scheduleProgram(seed);
  }
}

/** `count` generated programs from `baseSeed`, mixing the kinds. */
export function generatedPrograms(baseSeed: number, count: number): Program[] {
  const kinds: GeneratedKind[] = ['pokes', 'control', 'schedule', 'control', 'schedule'];
  const out: Program[] = [];
  for (let i = 0; i < count; i++) out.push(generatedProgram(kinds[i % kinds.length]!, (baseSeed + i * 7919) >>> 0));
  return out;
}

/** Rebuild a program from its name (`hand:...` or `gen:<kind>#<seed>`). */
export function programByName(name: string): Program | undefined {
  const m = /^gen:(pokes|control|schedule)#(\d+)$/.exec(name);
  if (m) return generatedProgram(m[1] as GeneratedKind, Number(m[2]));
  return handWrittenPrograms().find((p) => p.name === name);
}

