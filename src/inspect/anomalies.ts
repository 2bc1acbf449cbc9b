/**
 * Guest-driver bugs the trace shows, each with the frame and the TD/QH
 * address involved. The checks are about what a real UHCI (Intel UHCI DG
 * rev 1.1) would tolerate or choke on, and are tuned to stay quiet on
 * schedules real drivers build (Linux uhci-hcd: skeleton QHs, a dummy TD at
 * the end of each queue that is rewritten while inactive, and FSBR, where
 * the terminating skeleton QH loops back to the full-speed control QH).
 */
import {
  formatLink,
  formatTd,
  tokenMaxLen,
  tokenPid,
  type Td,
  LINK,
  TD_CTRL,
  tokenEndpoint,
  tokenDevAddr,
} from '../uhci/descriptors.js';
import { PID_IN, PID_SETUP } from '../usb/packet.js';
import { tokenProblem } from '../uhci/td-status.js';
import { BoundedMap, BoundedSet, DEFAULT_MEMORY_CAP, DropCounter } from './bounded.js';
import type { BoundaryEvent, FrameRecord, TdVisit } from './decoded-trace.js';
import type { DeviceBook, Transaction, Urb } from './transfers.js';
import { REQ_CLEAR_FEATURE, REQ_SET_CONFIGURATION, REQ_SET_INTERFACE } from '../usb/requests.js';

export type AnomalyKind =
  | 'td-rewritten-while-active'
  | 'reserved-link-bits'
  | 'memory-fault'
  | 'schedule-loop'
  | 'data-toggle'
  | 'maxlen-exceeds-max-packet'
  | 'irq-not-acknowledged'
  | 'ioc-storm'
  | 'invalid-td';

export const ANOMALY_KINDS: readonly AnomalyKind[] = [
  'td-rewritten-while-active',
  'reserved-link-bits',
  'memory-fault',
  'schedule-loop',
  'data-toggle',
  'maxlen-exceeds-max-packet',
  'irq-not-acknowledged',
  'ioc-storm',
  'invalid-td',
];

export interface Anomaly {
  kind: AnomalyKind;
  /** Frame (serial, 1-based) of the first occurrence. */
  frame: number;
  frnum: number;
  tNs: number;
  /** TD/QH (or memory) address involved, or null. */
  address: number | null;
  message: string;
  /** Extra decoded lines (TD before/after, the loop). */
  details: string[];
  /** Occurrences folded into this report (same kind, address and cause). */
  count: number;
  lastFrame: number;
}

export interface AnomalyOptions {
  /**
   * INTx high this many frames after the guest read USBSTS (so its driver
   * ran and saw the cause) without writing USBSTS back, while the guest did
   * touch the controller again in between (its driver moved on): not
   * acknowledged. A guest that reads USBSTS and then does nothing at all is
   * only slow (a vCPU descheduled or emulated: the real-Xen-under-TCG trace
   * has 100+ frames between Linux's read and its write-back); it is caught
   * by irqSilentFrames if it never comes back.
   */
  irqFrames: number;
  /**
   * INTx high this many frames with no USBSTS access at all: interrupts
   * enabled but never serviced. Long by default: a guest that services
   * interrupts from a timer (Linux `irqpoll` in the TCG lab) can leave the
   * line high for a few hundred frames while idle.
   */
  irqSilentFrames: number;
  /** IOC storm: more than `iocMax` IOC interrupts (INTx rising at the end of a frame with an IOC cause) in any `iocWindow` consecutive frames. */
  iocWindow: number;
  iocMax: number;
  /** A TD rewritten more than this many frames after the walk last saw it is not "continuously linked". */
  rewriteGapFrames: number;
}

export const DEFAULT_ANOMALY_OPTIONS: AnomalyOptions = { irqFrames: 100, irqSilentFrames: 2000, iocWindow: 32, iocMax: 24, rewriteGapFrames: 256 };

const hex = (n: number) => '0x' + (n >>> 0).toString(16);

function describeChange(a: Td, b: Td): string {
  const parts: string[] = [];
  if (a.link !== b.link) parts.push(`link ${formatLink(a.link)} -> ${formatLink(b.link)}`);
  if (a.token !== b.token) parts.push(`token ${hex(a.token)} -> ${hex(b.token)}`);
  if (a.buffer !== b.buffer) parts.push(`buffer ${hex(a.buffer)} -> ${hex(b.buffer)}`);
  if (a.ctrl !== b.ctrl) parts.push(`ctrl ${hex(a.ctrl)} -> ${hex(b.ctrl)}${a.ctrl & TD_CTRL.bit.ACTIVE && !(b.ctrl & TD_CTRL.bit.ACTIVE) ? ' (deactivated in place)' : ''}`);
  return parts.join(', ');
}

interface TdSighting {
  frame: number;
  parent: number;
  epoch: number;
  unlinked: boolean;
}

interface Ep0State {
  expect: number;
  dataIn: boolean | null;
  lastTd: number;
  lastFrame: number;
}

export class AnomalyDetector {
  /**
   * What the checks remember per guest address is bounded (a hostile guest
   * can touch millions): at most `memoryCap` entries per collection, the
   * oldest forgotten first, and at most `memoryCap` distinct anomalies (the
   * first ones found are kept); everything forgotten or not kept is counted
   * in `dropped`.
   */
  private readonly drops = new DropCounter();
  private readonly found = new Map<string, Anomaly>();
  readonly opts: AnomalyOptions;

  // TD rewrite tracking
  private readonly sightings: BoundedMap<number, TdSighting>;
  private readonly byParent: BoundedMap<number, BoundedSet<number>>;
  private reachedThisFrame = new Map<number, Set<number>>();
  // toggles
  private readonly toggles = new Map<string, { toggle: number; td: number; frame: number }>();
  private readonly ep0 = new Map<string, Ep0State>();
  private readonly maxLenChecked: BoundedSet<string>;
  // interrupts
  private irqLevel = 0;
  private irqSince: number | null = null;
  private irqReported = false;
  /** Frame of the first USBSTS read while INTx was high and not acknowledged since (null: none). */
  private irqSeenAt: number | null = null;
  /** Controller register accesses since irqSeenAt (the driver ran again without acknowledging). */
  private accessesSinceSeen = 0;
  private readonly iocRing: Uint8Array;
  private iocCount = 0;
  private inStorm = false;
  private lastIntr = 0;
  private lastStatus = 0;

  constructor(
    private readonly book: DeviceBook,
    private readonly haltEpoch: () => number,
    opts: Partial<AnomalyOptions> = {},
    private readonly memoryCap = DEFAULT_MEMORY_CAP,
  ) {
    this.opts = { ...DEFAULT_ANOMALY_OPTIONS, ...opts };
    this.sightings = new BoundedMap(memoryCap, this.drops);
    this.byParent = new BoundedMap(memoryCap, this.drops);
    this.maxLenChecked = new BoundedSet(memoryCap, this.drops);
    this.iocRing = new Uint8Array(Math.max(1, this.opts.iocWindow));
  }

  private flag(kind: AnomalyKind, key: string, f: { serial: number; frnum: number; tNs: number }, address: number | null, message: string, details: string[] = []): void {
    const k = `${kind}|${key}`;
    const old = this.found.get(k);
    if (old) {
      old.count++;
      old.lastFrame = f.serial;
      return;
    }
    if (this.found.size >= this.memoryCap) {
      this.drops.dropped++;
      return;
    }
    const a: Anomaly = { kind, frame: f.serial, frnum: f.frnum, tNs: f.tNs, address, message, details, count: 1, lastFrame: f.serial };
    this.found.set(k, a);
    this.fresh.push(a);
  }

  private fresh: Anomaly[] = [];

  /** Anomalies first found since the last call. */
  drainNew(): Anomaly[] {
    const out = this.fresh;
    if (out.length) this.fresh = [];
    return out;
  }

  /** Entries forgotten (or anomalies not kept) at the memory cap so far. */
  get dropped(): number {
    return this.drops.dropped;
  }

  /** All anomalies found so far, in order of first occurrence. */
  list(): Anomaly[] {
    return [...this.found.values()].sort((a, b) => a.frame - b.frame || a.tNs - b.tNs);
  }

  // ------------------------------------------------------------ per TD

  /** A TD the walk fetched (in walk order), before its transaction is processed. */
  tdVisit(v: TdVisit, f: FrameRecord, flEntry: number): void {
    const parent = v.via >= 0 ? v.via : flEntry;
    const prev = v.previous;
    const epoch = this.haltEpoch();
    if (v.changed && prev && prev.ctrl & TD_CTRL.bit.ACTIVE) {
      const s = this.sightings.get(v.addr);
      if (s && !s.unlinked && s.epoch === epoch && s.parent === parent && s.frame < f.serial && f.serial - s.frame <= this.opts.rewriteGapFrames) {
        this.flag(
          'td-rewritten-while-active',
          `${v.addr}`,
          f,
          v.addr,
          `TD@${hex(v.addr)} was rewritten by the guest while active and linked (${v.via >= 0 ? `in the queue of QH@${hex(v.via)}` : 'in the frame list'}; the walk saw it active in frame ${s.frame}): ${describeChange(prev, v.td)}`,
          [`before: ${formatTd(v.addr, prev)}`, `after:  ${formatTd(v.addr, v.td)}`],
        );
      }
    }
    const after = v.ctrlAfter ?? v.td.ctrl;
    if (after & TD_CTRL.bit.ACTIVE) {
      this.sightings.set(v.addr, { frame: f.serial, parent, epoch, unlinked: false });
      let set = this.byParent.get(parent);
      if (!set) this.byParent.set(parent, (set = new BoundedSet(this.memoryCap, this.drops)));
      set.add(v.addr);
    } else {
      this.sightings.delete(v.addr);
    }
    let r = this.reachedThisFrame.get(parent);
    if (!r) this.reachedThisFrame.set(parent, (r = new Set()));
    r.add(v.addr);

    if (v.td.ctrl & TD_CTRL.bit.ACTIVE) {
      const bad = tokenProblem(v.td.token);
      if (bad) this.flag('invalid-td', `${v.addr}|${v.td.token}`, f, v.addr, `TD@${hex(v.addr)} is invalid: ${bad} (the controller halts with HC Process Error)`, [formatTd(v.addr, v.td)]);
    }

    // MaxLen against the endpoint's wMaxPacketSize, once the device has told it.
    if (v.port !== null && v.td.ctrl & TD_CTRL.bit.ACTIVE) {
      const key = `${v.addr}|${v.td.token}`;
      if (!this.maxLenChecked.has(key)) {
        this.maxLenChecked.add(key);
        const pid = tokenPid(v.td.token);
        const ep = tokenEndpoint(v.td.token);
        const devaddr = tokenDevAddr(v.td.token);
        const mps = this.book.maxPacket(v.port, ep, pid === PID_IN);
        const maxLen = tokenMaxLen(v.td.token);
        if (mps !== null && maxLen > mps) {
          this.flag(
            'maxlen-exceeds-max-packet',
            key,
            f,
            v.addr,
            `TD@${hex(v.addr)} asks for ${maxLen} bytes on dev ${devaddr} ep ${ep} ${pid === PID_IN ? 'IN' : pid === PID_SETUP ? 'SETUP' : 'OUT'}, whose wMaxPacketSize is ${mps} (${ep === 0 ? 'bMaxPacketSize0 of the device descriptor' : 'endpoint descriptor'})`,
            [formatTd(v.addr, v.td)],
          );
        }
      }
    }
  }

  /** A TD the controller retired. */
  transaction(t: Transaction, f: FrameRecord): void {
    if (t.iso) return; // isochronous data is always DATA0; no handshake, no toggle
    const port = t.port ?? this.book.portOf(t.devaddr);
    const ok = t.result === 'ok' || t.result === 'short';
    const dev = `${port ?? '?'}:${t.devaddr}`;
    const dirIn = t.pid === PID_IN;
    if (t.endpoint === 0) {
      if (!ok) {
        this.ep0.delete(dev);
        return;
      }
      if (t.pid === PID_SETUP) {
        // USB 2.0 §8.5.3: SETUP is always DATA0; the data stage starts with DATA1.
        if (t.toggle !== 0) this.flag('data-toggle', `${t.td}|setup`, f, t.td, `SETUP TD@${hex(t.td)} to dev ${t.devaddr} uses DATA1 (a SETUP is always DATA0)`);
        const wLength = t.data.length >= 8 ? t.data[6]! | (t.data[7]! << 8) : 0;
        this.ep0.set(dev, { expect: 1, dataIn: wLength > 0 ? (t.data[0]! & 0x80) !== 0 : null, lastTd: t.td, lastFrame: t.frame });
        return;
      }
      const st = this.ep0.get(dev);
      if (!st) return;
      if (st.dataIn !== null && dirIn === st.dataIn) {
        if (t.toggle !== st.expect) {
          this.flag(
            'data-toggle',
            `${t.td}|${t.toggle}`,
            f,
            t.td,
            `control data stage TD@${hex(t.td)} (dev ${t.devaddr} ep 0 ${dirIn ? 'IN' : 'OUT'}) uses DATA${t.toggle}, but DATA${st.expect} was due after TD@${hex(st.lastTd)} (frame ${st.lastFrame})`,
          );
        }
        st.expect = t.toggle ^ 1;
        st.lastTd = t.td;
        st.lastFrame = t.frame;
        return;
      }
      // Status stage: always DATA1 (USB 2.0 §8.5.3).
      if (t.toggle !== 1) this.flag('data-toggle', `${t.td}|status`, f, t.td, `control status stage TD@${hex(t.td)} (dev ${t.devaddr} ep 0 ${dirIn ? 'IN' : 'OUT'}) uses DATA0 (the status stage is always DATA1)`);
      this.ep0.delete(dev);
      return;
    }
    const key = `${dev}:${t.endpoint}:${dirIn ? 'in' : 'out'}`;
    if (!ok) {
      this.toggles.delete(key);
      return;
    }
    const prev = this.toggles.get(key);
    if (prev && prev.toggle === t.toggle) {
      this.flag(
        'data-toggle',
        `${key}|${t.td}`,
        f,
        t.td,
        `data toggle mismatch on dev ${t.devaddr} ep ${t.endpoint} ${dirIn ? 'IN' : 'OUT'}: TD@${hex(t.td)} uses DATA${t.toggle}, as did the previous successful transaction (TD@${hex(prev.td)}, frame ${prev.frame})`,
      );
    }
    this.toggles.set(key, { toggle: t.toggle, td: t.td, frame: t.frame });
  }

  /** A transfer completed: requests that reset data toggles (USB 2.0 §9.4.5, §9.4.7, §9.4.10). */
  urb(u: Urb): void {
    if (!u.setup || u.status !== 0) return;
    const s = u.setup;
    const dev = `${u.port ?? '?'}:${u.devaddr}:`;
    if ((s.bRequest === REQ_SET_CONFIGURATION && s.bmRequestType === 0) || (s.bRequest === REQ_SET_INTERFACE && s.bmRequestType === 1)) {
      for (const k of [...this.toggles.keys()]) if (k.startsWith(dev)) this.toggles.delete(k);
    } else if (s.bRequest === REQ_CLEAR_FEATURE && s.bmRequestType === 2 && s.wValue === 0) {
      this.toggles.delete(`${dev}${s.wIndex & 0xf}:${s.wIndex & 0x80 ? 'in' : 'out'}`);
    }
  }

  /** Everything on a port is new (USB reset, plug, unplug). */
  private clearPort(port: number): void {
    const p = `${port}:`;
    for (const k of [...this.toggles.keys()]) if (k.startsWith(p)) this.toggles.delete(k);
    for (const k of [...this.ep0.keys()]) if (k.startsWith(p)) this.ep0.delete(k);
  }

  // --------------------------------------------------------- per frame

  frameEnd(f: FrameRecord): void {
    this.checkStructure(f);
    // TDs not reached through a parent the walk did visit: unlinked (or behind a stopped TD).
    const visitedParents = new Set<number>();
    for (const s of f.steps) {
      if (s.kind === 'qh') visitedParents.add(s.addr);
      else if (s.kind === 'fl') visitedParents.add(s.addr);
    }
    for (const p of visitedParents) {
      const set = this.byParent.get(p);
      if (!set) continue;
      const reached = this.reachedThisFrame.get(p);
      for (const td of set) {
        if (reached?.has(td)) continue;
        const s = this.sightings.get(td);
        if (s && s.parent === p) s.unlinked = true;
        set.delete(td);
      }
    }
    this.reachedThisFrame = new Map();

    // IOC storm.
    const w = this.iocRing.length;
    const slot = f.serial % w;
    this.iocCount -= this.iocRing[slot]!;
    // An IOC interrupt is one that reaches the guest: the line rises at the end of the frame.
    // (IOC causes while the line is still high from an earlier one deliver nothing new.)
    this.iocRing[slot] = f.ioc && f.irq === 1 ? 1 : 0;
    this.iocCount += this.iocRing[slot]!;
    if (this.iocCount > this.opts.iocMax) {
      if (!this.inStorm) {
        this.inStorm = true;
        this.flag('ioc-storm', `${f.serial}`, f, null, `IOC storm: ${this.iocCount} IOC interrupts in the last ${w} frames (limit ${this.opts.iocMax})`, this.iocCulprits(f));
      }
    } else if (this.iocCount <= this.opts.iocMax / 2) this.inStorm = false;

    if (f.irq === 1) this.irqEdge(1, f.serial);
    if (this.irqLevel && this.irqSince !== null && !this.irqReported) {
      const seen = this.irqSeenAt !== null && this.accessesSinceSeen > 0 && f.serial - this.irqSeenAt > this.opts.irqFrames;
      const silent = f.serial - this.irqSince > this.opts.irqSilentFrames;
      if (seen || silent) {
        this.irqReported = true;
        const why = seen
          ? `the guest read USBSTS (${hex(this.lastStatus)}) in frame ${this.irqSeenAt} but has not written it back to acknowledge, ${f.serial - this.irqSeenAt!} frames later`
          : `the guest has not accessed USBSTS in ${f.serial - this.irqSince} frames (interrupts enabled but never serviced)`;
        this.flag('irq-not-acknowledged', `${this.irqSince}`, f, null, `INTx has been asserted since frame ${this.irqSince}: ${why} (USBINTR=${hex(this.lastIntr)})`);
      }
    }
  }

  private iocCulprits(f: FrameRecord): string[] {
    const out: string[] = [];
    for (const s of f.steps) {
      if (s.kind === 'td' && s.visit.td.ctrl & TD_CTRL.bit.IOC) {
        const v = s.visit;
        out.push(`${v.result === 'inactive' ? 'inactive TD with IOC left linked' : 'TD with IOC'}: ${formatTd(v.addr, v.td)}`);
      }
    }
    return out.slice(0, 4);
  }

  private irqEdge(level: number, frame: number): void {
    this.irqLevel = level;
    if (level) {
      if (this.irqSince === null) this.irqSince = frame;
    } else {
      this.irqSince = null;
      this.irqSeenAt = null;
      this.irqReported = false;
    }
  }

  event(e: BoundaryEvent): void {
    switch (e.kind) {
      case 'irq':
        this.irqEdge(e.level, e.frame);
        return;
      case 'io':
        if (this.irqSeenAt !== null) this.accessesSinceSeen++;
        if (e.write) {
          // A write that covers USBSTS (offset 2) acknowledges.
          if (e.offset <= 2 && e.offset + e.size > 2) {
            this.irqSince = this.irqLevel ? e.frame : null;
            this.irqSeenAt = null;
            this.irqReported = false;
          }
          if (e.offset === 4 || (e.offset <= 4 && e.offset + e.size > 4)) this.lastIntr = e.offset === 4 ? e.value & 0xffff : (e.value >>> ((4 - e.offset) * 8)) & 0xffff;
        } else if (e.offset <= 2 && e.offset + e.size > 2) {
          this.lastStatus = e.offset === 2 ? e.value & 0xffff : (e.value >>> 16) & 0xffff;
          if (this.irqLevel && this.irqSeenAt === null) {
            this.irqSeenAt = e.frame;
            this.accessesSinceSeen = 0;
          }
        }
        return;
      case 'device-reset':
        this.clearPort(e.port);
        return;
      case 'attach':
      case 'detach':
        this.clearPort(e.port);
        return;
      case 'pci-reset':
        this.irqEdge(0, e.frame);
        return;
      default:
        return;
    }
  }

  // -------------------------------------------------- schedule structure

  private checkStructure(f: FrameRecord): void {
    interface Node {
      kind: 'qh' | 'td';
      edges: { to: number; via: 'head' | 'element' | 'link' }[];
      empty: boolean;
      active: boolean;
    }
    const nodes = new Map<number, Node>();
    let start = -1;
    let lastHolder = -1;
    for (const s of f.steps) {
      switch (s.kind) {
        case 'fl':
          lastHolder = s.addr;
          if (!(s.link & LINK.bit.T)) {
            start = (s.link & LINK.bit.PTR) >>> 0;
            if (s.link & 0xc) this.flag('reserved-link-bits', `${s.addr}|${s.link}`, f, s.addr, `frame list entry ${s.index} @${hex(s.addr)} = ${hex(s.link)} has reserved bits 3:2 set (a pointer that is not 16-byte aligned?)`);
          }
          break;
        case 'qh': {
          lastHolder = s.addr;
          if (!(s.head & LINK.bit.T) && s.head & 0xc)
            this.flag('reserved-link-bits', `${s.addr}|h${s.head}`, f, s.addr, `QH@${hex(s.addr)} head link ${hex(s.head)} has reserved bits 3:2 set (the QH it means is not 16-byte aligned?)`);
          if (!(s.element & LINK.bit.T) && s.element & 0x8)
            this.flag('reserved-link-bits', `${s.addr}|e${s.element}`, f, s.addr, `QH@${hex(s.addr)} element link ${hex(s.element)} has reserved bit 3 set (a TD/QH that is not 16-byte aligned?)`);
          if (!nodes.has(s.addr)) {
            const edges: Node['edges'] = [];
            if (!(s.element & LINK.bit.T)) edges.push({ to: (s.element & LINK.bit.PTR) >>> 0, via: 'element' });
            if (!(s.head & LINK.bit.T)) edges.push({ to: (s.head & LINK.bit.PTR) >>> 0, via: 'head' });
            nodes.set(s.addr, { kind: 'qh', edges, empty: (s.element & LINK.bit.T) !== 0, active: false });
          }
          break;
        }
        case 'td': {
          const v = s.visit;
          lastHolder = v.addr;
          if (!(v.td.link & LINK.bit.T) && v.td.link & 0x8)
            this.flag('reserved-link-bits', `${v.addr}|l${v.td.link}`, f, v.addr, `TD@${hex(v.addr)} link ${hex(v.td.link)} has reserved bit 3 set (the TD/QH it means is not 16-byte aligned?)`);
          if (!nodes.has(v.addr)) {
            nodes.set(v.addr, {
              kind: 'td',
              edges: v.td.link & LINK.bit.T ? [] : [{ to: (v.td.link & LINK.bit.PTR) >>> 0, via: 'link' }],
              empty: false,
              active: (v.td.ctrl & TD_CTRL.bit.ACTIVE) !== 0,
            });
          }
          break;
        }
        case 'fault': {
          // Memory the model used before and cannot reach now went away under the guest
          // (the transport unmapped it, e.g. at teardown): not a pointer the guest got wrong.
          if (s.wasMapped) break;
          const from = s.from >= 0 ? s.from : lastHolder;
          this.flag(
            'memory-fault',
            `${s.addr}|${from}`,
            f,
            s.addr,
            `${s.write ? 'write to' : 'fetch of'} ${s.what} at ${hex(s.addr)} (${s.length} bytes) faulted: no guest RAM there${from >= 0 ? ` (pointer held by ${s.what === 'data buffer' ? 'TD' : 'the structure'} @${hex(from)})` : ''}; the controller stops with Host System Error`,
          );
          break;
        }
        default:
          break;
      }
    }
    // A QH is "empty" (a terminating skeleton QH) when its element is T or an inactive TD.
    for (const n of nodes.values()) {
      if (n.kind !== 'qh' || n.empty) continue;
      const el = n.edges.find((e) => e.via === 'element');
      const t = el ? nodes.get(el.to) : undefined;
      if (t && t.kind === 'td' && !t.active) n.empty = true;
    }
    if (start < 0 || !nodes.has(start) || nodes.size < 1) return;
    // Depth-first search in walk order; a back edge closes a loop.
    const state = new Map<number, 1 | 2>();
    const stack: { node: number; i: number }[] = [{ node: start, i: 0 }];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const n = nodes.get(top.node)!;
      if (top.i >= n.edges.length) {
        state.set(top.node, 2);
        stack.pop();
        continue;
      }
      const e = n.edges[top.i++]!;
      if (!nodes.has(e.to)) continue;
      const st = state.get(e.to);
      if (st === undefined) {
        state.set(e.to, 1);
        stack.push({ node: e.to, i: 0 });
      } else if (st === 1) {
        // The loop: the search path from the target of the back edge to here.
        let k = stack.length - 1;
        while (k > 0 && stack[k]!.node !== e.to) k--;
        const cycle = stack.slice(k).map((x) => nodes.get(x.node)!);
        this.loop(f, top.node, n, e, nodes.get(e.to)!, cycle);
      }
    }
  }

  /**
   * A back edge found. QH head links looping through an empty QH are FSBR
   * (Linux: the terminating skeleton QH, element = its inactive "term TD",
   * links back to the first full-speed QH, the last async QH to it). Where
   * the walk enters that loop, and so which edge closes it, is not fixed:
   * Linux links a new QH by writing its predecessor's link and then the
   * terminating QH's, and a walk that read the predecessor before the
   * update and the terminating QH after it enters the loop at the
   * terminating QH (seen on real Xen after a restore, where the guest's
   * vCPU runs while the device model walks).
   */
  private loop(
    f: FrameRecord,
    from: number,
    n: { kind: 'qh' | 'td'; empty: boolean },
    e: { to: number; via: 'head' | 'element' | 'link' },
    target: { kind: 'qh' | 'td' },
    cycle: readonly { kind: 'qh' | 'td'; empty: boolean }[],
  ): void {
    if (n.kind === 'qh' && e.via === 'head' && target.kind === 'qh' && cycle.some((c) => c.kind === 'qh' && c.empty)) return;
    const what =
      n.kind === 'qh' && from === e.to
        ? `QH@${hex(from)} ${e.via} links to itself${e.via === 'head' ? ' while it holds an active TD' : ''}`
        : n.kind === 'td' && target.kind === 'td'
          ? `TD chain loop: TD@${hex(from)} links back to TD@${hex(e.to)}`
          : `${n.kind.toUpperCase()}@${hex(from)} ${e.via} link points back to ${target.kind.toUpperCase()}@${hex(e.to)}${n.kind === 'qh' && e.via === 'head' ? ', and no QH in the loop is an empty terminating QH (FSBR loops hold one)' : ''}`;
    this.flag('schedule-loop', `${from}|${e.to}|${e.via}`, f, from, `schedule loop: ${what}; a real controller keeps re-walking it until the end of the frame`);
  }
}
