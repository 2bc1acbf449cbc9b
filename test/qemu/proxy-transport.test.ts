/**
 * QemuProxyTransport against a fake QEMU on the other end of a real UNIX
 * socket pair: fds cross as SCM_RIGHTS (a memfd as guest RAM, eventfds as
 * the irqfd pair), requests are answered with RET, DMA lands in the shared
 * RAM and the interrupt reaches the eventfd.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { RealClock } from '../../src/platform/clock.js';
import { MemoryLogger } from '../../src/platform/logger.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import {
  FdSocket,
  closeFd,
  eventFd,
  eventFdDrain,
  eventFdSignal,
  mapShared,
  memFd,
  socketPair,
} from '../../src/qemu/libc.js';
import {
  MPQEMU_CMD,
  MessageAssembler,
  encodeBarMsg,
  encodeConfigMsg,
  encodeHeader,
  encodeSyncSysmem,
} from '../../src/qemu/mpqemu-protocol.js';
import { QemuProxyTransport, type ProxyEnd } from '../../src/qemu/proxy-transport.js';

const RAM = 1 << 20;
const IO = 0xc000;

class FakeQemu {
  readonly sock: FdSocket;
  private readonly asm = new MessageAssembler();
  constructor(fd: number) {
    this.sock = new FdSocket(fd);
  }
  async request(bytes: Uint8Array): Promise<bigint> {
    this.sock.send(bytes);
    const deadline = Date.now() + 2000;
    for (;;) {
      const r = this.sock.recv(this.asm.wanted());
      if (r && r.eof) throw new Error('transport closed the socket');
      if (r) {
        const m = this.asm.push(r.data, r.fds);
        if (m) {
          if (m.cmd !== 'ret') throw new Error(`expected RET, got ${m.cmd}`);
          return m.value;
        }
        continue;
      }
      if (Date.now() > deadline) throw new Error('no RET within 2 s');
      await new Promise((res) => setTimeout(res, 1));
    }
  }
  cfgRead(addr: number, len: number) {
    return this.request(encodeConfigMsg(false, addr, 0, len)).then(Number);
  }
  cfgWrite(addr: number, len: number, v: number) {
    return this.request(encodeConfigMsg(true, addr, v, len));
  }
  ioRead(port: number, size: number) {
    return this.request(encodeBarMsg(false, port, 0n, size, false)).then(Number);
  }
  ioWrite(port: number, size: number, v: number) {
    return this.request(encodeBarMsg(true, port, BigInt(v), size, false));
  }
}

function setup(opts: { logger?: MemoryLogger; wrapMem?: (m: GuestMemory) => GuestMemory } = {}) {
  const [ours, theirs] = socketPair();
  const transport = new QemuProxyTransport({ fd: ours, logger: opts.logger });
  const mem = opts.wrapMem ? opts.wrapMem(transport.mem) : transport.mem;
  const fn = new UhciPciFunction({ mem, irq: transport.irq, clock: new RealClock(), logger: opts.logger });
  const served = transport.serve(fn);
  return { transport, fn, served, qemu: new FakeQemu(theirs) };
}

function finishFake(q: FakeQemu) {
  q.sock.close();
  q.sock.dispose();
}

test('config cycles and BAR accesses are answered by the function', async () => {
  const { fn, served, qemu } = setup();
  expect(await qemu.cfgRead(0x00, 2)).toBe(0x8086);
  expect(await qemu.cfgRead(0x02, 2)).toBe(0x7020);
  expect(await qemu.cfgRead(0x08, 4)).toBe(fn.configRead(0x08, 4));
  // QEMU's BAR probe: write all ones, read back the size mask (I/O BAR4, 32 bytes).
  await qemu.cfgWrite(0x20, 4, 0xffffffff);
  expect((await qemu.cfgRead(0x20, 4)) >>> 0).toBe(0xffffffe1);
  await qemu.cfgWrite(0x20, 4, IO);
  await qemu.cfgWrite(0x04, 2, 0x0005); // I/O space + bus master
  expect(fn.ioBase).toBe(IO);
  expect(await qemu.ioRead(IO + 0x10, 2)).toBe(0x0080); // PORTSC1 after reset (bit 7 reads 1)
  expect(await qemu.ioRead(IO + 0x0c, 1)).toBe(0x40); // SOFMOD reset value 64
  await qemu.ioWrite(IO + 0x0c, 1, 0x41);
  expect(fn.ioRead(0x0c, 1)).toBe(0x41);
  // Outside the window: all ones, counted as a miss.
  expect(await qemu.ioRead(IO + 0x40, 2)).toBe(0xffff);
  // Straddling the window's end: the bytes inside come from the function, the rest read
  // all ones (QEMU's memory core; io-window.ts). This used to be all ones, whole.
  expect((await qemu.ioRead(IO + 0x1e, 4)) >>> 0).toBe((0xffff0000 | fn.ioRead(0x1e, 2)) >>> 0);
  // DEVICE_RESET gets a RET and resets the function.
  expect(await qemu.request(encodeHeader(MPQEMU_CMD.DEVICE_RESET, 0))).toBe(0n);
  expect(fn.ioBase).toBeNull();
  finishFake(qemu);
  const end: ProxyEnd = await served;
  expect(end.reason).toBe('peer-closed');
  expect(end.stats).toMatchObject({ configReads: 4, configWrites: 3, barReads: 4, barWrites: 1, barMisses: 1, resets: 1 });
});

test('guest RAM from SYNC_SYSMEM fds carries DMA; the interrupt reaches the irqfd', async () => {
  const { transport, served, qemu } = setup();
  const ramFd = memFd('fake-guest-ram', RAM);
  const ram = mapShared(ramFd, RAM, 0);
  const dv = new DataView(ram.bytes.buffer, ram.bytes.byteOffset, ram.bytes.byteLength);
  const irqFd = eventFd();
  const resampleFd = eventFd();
  // Two regions of the same file, like QEMU's low RAM and RAM above 1 MiB would be.
  qemu.sock.send(encodeSyncSysmem([{ gpa: 0, size: 0x80000, offset: 0 }, { gpa: 0x80000, size: 0x80000, offset: 0x80000 }]), [ramFd, ramFd]);
  qemu.sock.send(encodeHeader(MPQEMU_CMD.SET_IRQFD, 0), [irqFd, resampleFd]);
  await qemu.cfgWrite(0x20, 4, IO);
  await qemu.cfgWrite(0x04, 2, 0x0005);

  // The transport sees the same bytes (also across the region boundary).
  ram.bytes.set([1, 2, 3, 4], 0x7fffe);
  const probe = new Uint8Array(4);
  transport.mem.read(0x7fffe, probe);
  expect([...probe]).toEqual([1, 2, 3, 4]);

  // One TD on every frame: IN to address 0 with no device attached -> timeout, IOC.
  const FL = 0x1000;
  const TD = 0x2000;
  for (let i = 0; i < 1024; i++) dv.setUint32(FL + i * 4, TD, true);
  dv.setUint32(TD, 1, true); // link: terminate
  dv.setUint32(TD + 4, (3 << 27) | (1 << 24) | (1 << 23), true); // C_ERR=3, IOC, Active
  dv.setUint32(TD + 8, (7 << 21) | 0x69, true); // MaxLen 8, endpoint 0, address 0, PID IN
  dv.setUint32(TD + 12, 0x3000, true);
  await qemu.ioWrite(IO + 0x08, 4, FL);
  await qemu.ioWrite(IO + 0x04, 2, 0x000f); // all interrupts enabled
  await qemu.ioWrite(IO + 0x00, 2, 0x0081); // MAXP | RS

  const deadline = Date.now() + 3000;
  while ((dv.getUint32(TD + 4, true) & (1 << 23)) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const status = dv.getUint32(TD + 4, true);
  expect(status & (1 << 23)).toBe(0); // written back by the model through the shared mapping
  const usbsts = await qemu.ioRead(IO + 0x02, 2);
  expect(usbsts & 0x3).not.toBe(0); // USBINT or USBERRINT
  expect(eventFdDrain(irqFd)).toBeGreaterThan(0n);

  // While the line stays high, a resample from QEMU re-signals the irqfd.
  eventFdSignal(resampleFd);
  const t = Date.now();
  let again = 0n;
  while (again === 0n && Date.now() - t < 1000) {
    await new Promise((r) => setTimeout(r, 5));
    again = eventFdDrain(irqFd);
  }
  expect(again).toBeGreaterThan(0n);

  await qemu.ioWrite(IO + 0x00, 2, 0x0000); // stop the controller
  transport.stop();
  const end = await served;
  expect(end.reason).toBe('stopped');
  expect(end.stats.memoryMaps).toBe(1);
  expect(end.stats.irqRaises).toBeGreaterThan(0);
  finishFake(qemu);
  ram.unmap();
  closeFd(ramFd);
  closeFd(irqFd);
  closeFd(resampleFd);
});

test('a malformed message ends the transport with a protocol error', async () => {
  const { served, qemu } = setup();
  const bad = encodeHeader(MPQEMU_CMD.PCI_CFGREAD, 400);
  qemu.sock.send(bad);
  const end = await served;
  expect(end.reason).toBe('protocol-error');
  expect(end.error?.message).toMatch(/exceeds 192/);
  finishFake(qemu);
});

describe('internal faults behind the proxy', () => {
  const HSE_HALTED = 0x28;
  const level = (t: QemuProxyTransport) => (t.irq as unknown as { level: boolean }).level;

  test('a function that throws on a BAR read: RET all ones, then HSE|HCHalted, IRQ, one error line; HCRESET recovers', async () => {
    const logger = new MemoryLogger();
    const { transport, fn, served, qemu } = setup({ logger });
    await qemu.cfgWrite(0x20, 4, IO);
    await qemu.cfgWrite(0x04, 2, 0x0005);
    await qemu.ioWrite(IO + 0x04, 2, 0x0000); // USBINTR: nothing enabled
    const read = fn.ioRead.bind(fn);
    let broken = true;
    fn.ioRead = (o, n) => {
      if (broken) throw new RangeError('function bug');
      return read(o, n);
    };
    expect(await qemu.ioRead(IO + 0x02, 2)).toBe(0xffff); // answered, not left waiting
    expect(await qemu.ioRead(IO + 0x02, 2)).toBe(0xffff);
    broken = false;
    expect(await qemu.ioRead(IO + 0x02, 2)).toBe(HSE_HALTED);
    expect(level(transport)).toBe(true);
    expect(transport.stats.functionErrors).toBe(2);
    expect(logger.records.filter((r) => r.level === 'error')).toEqual([
      expect.objectContaining({ component: 'uhci', msg: 'internal error in a proxied I/O read: host system error, controller halted' }),
    ]);
    await qemu.ioWrite(IO + 0x00, 2, 0x0002); // HCRESET
    expect(await qemu.ioRead(IO + 0x02, 2)).toBe(0x20);
    expect(level(transport)).toBe(false);
    finishFake(qemu);
    expect((await served).reason).toBe('peer-closed');
  });

  test('guest memory that throws inside the frame timer: the process lives, QEMU keeps getting answers', async () => {
    const logger = new MemoryLogger();
    let armed = true;
    const wrapMem = (m: GuestMemory): GuestMemory => ({
      read: (a, b) => {
        if (armed) throw new RangeError('offset is out of bounds');
        m.read(a, b);
      },
      write: (a, b) => m.write(a, b),
    });
    const { transport, served, qemu } = setup({ logger, wrapMem });
    await qemu.cfgWrite(0x20, 4, IO);
    await qemu.cfgWrite(0x04, 2, 0x0005);
    await qemu.ioWrite(IO + 0x00, 2, 0x0001); // RS: the first frame walk reads the frame list
    let sts = 0;
    const deadline = Date.now() + 5000;
    while ((sts & 0x08) === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
      sts = await qemu.ioRead(IO + 0x02, 2);
    }
    expect(sts & 0x3c).toBe(HSE_HALTED);
    expect(level(transport)).toBe(true);
    expect(logger.records.filter((r) => r.level === 'error')).toEqual([
      expect.objectContaining({ msg: 'internal error in frame processing: host system error, controller halted' }),
    ]);
    armed = false;
    await qemu.ioWrite(IO + 0x00, 2, 0x0002);
    expect(await qemu.ioRead(IO + 0x02, 2)).toBe(0x20);
    finishFake(qemu);
    expect((await served).reason).toBe('peer-closed');
  });
});
