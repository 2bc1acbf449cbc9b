/**
 * Xen lab, the domU's report channel. Capturing an HVM domU's consoles from
 * dom0 (`xl console` on the QEMU-xen serial pty, xenconsoled's PV-console
 * log) gave 0 bytes in every variant tried, so the domU reports through a
 * path that needs neither dom0 nor QEMU-xen: I/O port 0xE9. Xen handles an
 * HVM guest's byte writes to port 0xE9 itself (hvm_print_line) and prints
 * each line as "(dN) text" on its own console (with `guest_loglvl=all`),
 * which is the outer QEMU's serial: the same channel that shows hvmloader's
 * and SeaBIOS's output. (Linux's `earlyprintk=xen` would be another way in,
 * but newer kernels' early Xen console refuses HVM guests, so we do not rely
 * on the kernel: a user-space writer does it.)
 *
 * The lab /init runs under a wrapper (`rdinit=/xeninit`) that pipes its
 * output through a relay into a tiny static program (E9_WRITER: every
 * byte read from stdin is written to port 0xE9 through /dev/port). The relay numbers the lines
 * and cuts them into chunks short enough for Xen's per-domain line buffer:
 * `@@<n>+<part>` for a continued line, `@@<n>=<rest>` for its end. The host
 * reassembles them per domain and reports missing numbers.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { buildCpio } from './cpio.js';
import { GUEST_INIT } from './guest-init.js';
import { GuestReportParser, type GuestReport } from './lab-report.js';

/** Characters of a report line per chunk (Xen's per-domain line buffer is short). */
export const DOMU_CHUNK = 60;

/** Kernel command-line options of the lab domU (the wrapper as init). */
export const DOMU_E9_CMDLINE = 'rdinit=/xeninit nokaslr';

/**
 * x86-64 machine code of the port-0xE9 writer (assembled with GNU as from):
 *   sub rsp, 4096; fd = open("/dev/port", O_WRONLY) [eax=2]; js fail
 *   loop: n = read(0, rsp, 4096); if n <= 0 exit(0)
 *         for each byte: pwrite64(fd, p, 1, 0xE9) [eax=18]; jmp loop
 *   fail: exit(1)
 *   "/dev/port"
 * The kernel does the `out` (drivers/char/mem.c write_port, one byte per
 * port from the file offset), in ring 0. The first writer did `ioperm` and
 * `out` itself in ring 3: after an `xl save`/`xl restore` of the domU none
 * of its bytes arrived any more, while the guest went on and powered off
 * normally (measured twice); with the kernel doing the `out` the restored
 * domU's report arrives complete. (A ring-3 `out` depends on the TSS
 * I/O-permission bitmap, which QEMU TCG checks only for a TSS whose cached
 * type is "available"; a restored TR marked busy would explain it — not
 * verified.)
 */
const E9_CODE = [
  0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00, 0xb8, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0x61, 0x00, 0x00, 0x00, 0xbe, 0x01, 0x00, 0x00, 0x00,
  0x31, 0xd2, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x78, 0x47, 0x49, 0x89, 0xc4, 0x31, 0xc0, 0x31, 0xff, 0x48, 0x89, 0xe6, 0xba, 0x00, 0x10, 0x00, 0x00,
  0x0f, 0x05, 0x48, 0x85, 0xc0, 0x7e, 0x28, 0x49, 0x89, 0xc5, 0x49, 0x89, 0xe6, 0xb8, 0x12, 0x00, 0x00, 0x00, 0x4c, 0x89, 0xe7, 0x4c, 0x89, 0xf6,
  0xba, 0x01, 0x00, 0x00, 0x00, 0x41, 0xba, 0xe9, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x49, 0xff, 0xc6, 0x49, 0xff, 0xcd, 0x75, 0xe0, 0xeb, 0xc5, 0xb8,
  0x3c, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x2f, 0x64, 0x65, 0x76,
  0x2f, 0x70, 0x6f, 0x72, 0x74, 0x00,
];

/**
 * E9_CODE as a static ELF64 executable: the ELF header (64 bytes) and one
 * PT_LOAD program header (56 bytes, R+X, the whole file at 0x400000), then
 * the code (System V gABI, ELF-64 object file format).
 */
export function e9Writer(): Uint8Array {
  const base = 0x400000;
  const code = 64 + 56;
  const size = code + E9_CODE.length;
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]); // magic, ELFCLASS64, little endian, version 1, System V ABI
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true); // EV_CURRENT
  v.setBigUint64(24, BigInt(base + code), true); // e_entry
  v.setBigUint64(32, 64n, true); // e_phoff
  v.setUint16(52, 64, true); // e_ehsize
  v.setUint16(54, 56, true); // e_phentsize
  v.setUint16(56, 1, true); // e_phnum
  v.setUint32(64, 1, true); // PT_LOAD
  v.setUint32(68, 5, true); // PF_R | PF_X
  v.setBigUint64(72, 0n, true); // p_offset
  v.setBigUint64(80, BigInt(base), true); // p_vaddr
  v.setBigUint64(88, BigInt(base), true); // p_paddr
  v.setBigUint64(96, BigInt(size), true); // p_filesz
  v.setBigUint64(104, BigInt(size), true); // p_memsz
  v.setBigUint64(112, 0x1000n, true); // p_align
  b.set(E9_CODE, code);
  return b;
}

/** The lab guest's /init (guest-init.ts) without its final power-off: the wrapper powers off once the relay has drained. */
export function xenLabInit(): string {
  const tail = '\npoweroff -f\n';
  if (!GUEST_INIT.endsWith(tail)) throw new Error('GUEST_INIT no longer ends with "poweroff -f": update xen-domu.ts');
  return GUEST_INIT.slice(0, -tail.length + 1);
}

/** rdinit of the Xen lab domU: run the lab init, relay its output to port 0xE9, power off. */
export const DOMU_XEN_INIT = `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
relay() {
  n=0
  while IFS= read -r l; do
    n=$((n+1))
    while [ \${#l} -gt ${DOMU_CHUNK} ]; do
      echo "@@$n+\${l:0:${DOMU_CHUNK}}"
      l=\${l:${DOMU_CHUNK}}
    done
    echo "@@$n=$l"
  done
}
/bin/busybox sh /lab/init-xen.sh 2>&1 | relay | /lab/e9
/bin/busybox sleep 1
/bin/busybox poweroff -f
`;

function stamp(path: string): string {
  const s = statSync(path);
  return `${path}:${s.size}:${s.mtimeMs}`;
}

/**
 * The domU's initramfs: the lab guest's (prepareGuestImage) with a second
 * cpio archive appended (the kernel unpacks concatenated archives in order)
 * that adds /xeninit and /lab/init-xen.sh. Cached next to the base.
 */
export function prepareXenDomUInitrd(cacheDir: string, baseInitrd: string): string {
  const init = xenLabInit();
  const key = createHash('sha256').update(['domu-v2', stamp(baseInitrd), DOMU_XEN_INIT, init, Buffer.from(e9Writer()).toString('hex')].join('\n')).digest('hex').slice(0, 16);
  const out = join(cacheDir, `domU-initrd-${key}.cpio`);
  if (existsSync(out)) return out;
  const enc = new TextEncoder();
  const overlay = buildCpio([
    { type: 'file', path: 'xeninit', data: enc.encode(DOMU_XEN_INIT), mode: 0o755 },
    { type: 'file', path: 'lab/init-xen.sh', data: enc.encode(init), mode: 0o755 },
    { type: 'file', path: 'lab/e9', data: e9Writer(), mode: 0o755 },
  ]);
  const base = readFileSync(baseInitrd);
  const pad = new Uint8Array((4 - (base.length % 4)) % 4);
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, Buffer.concat([base, pad, overlay]));
  renameSync(tmp, out);
  return out;
}

/** Xen's console line for an HVM guest's port-0xE9 output: "(dN) text" (text may carry a printk timestamp). */
const E9_LINE = /\(d(\d+)\) (?:\[\s*\d+\.\d+\] )?(.*)$/;
const CHUNK = /^@@(\d+)([+=])(.*)$/;

/** Reassembles the domUs' report lines from the outer serial (Xen's console). */
export class XenGuestChannel {
  private readonly doms = new Map<number, { lines: Map<number, string>; partial: Map<number, string> }>();

  /** Feed one serial line. Returns [domid, report line] when it completed one. */
  line(raw: string): [number, string] | null {
    const m = E9_LINE.exec(raw.replace(/\r/g, ''));
    if (!m) return null;
    const c = CHUNK.exec(m[2]!);
    if (!c) return null;
    const domid = Number(m[1]);
    let d = this.doms.get(domid);
    if (!d) this.doms.set(domid, (d = { lines: new Map(), partial: new Map() }));
    const n = Number(c[1]);
    const text = (d.partial.get(n) ?? '') + c[3]!;
    if (c[2] === '+') {
      d.partial.set(n, text);
      return null;
    }
    d.partial.delete(n);
    d.lines.set(n, text);
    return [domid, text];
  }

  domains(): number[] {
    return [...this.doms.keys()];
  }

  /** Line number -> text of the given domains together (one guest under several domids: save/restore keeps the relay's numbering). */
  private merged(domids: readonly number[]): { lines: Map<number, string>; partial: Map<number, string> } {
    const lines = new Map<number, string>();
    const partial = new Map<number, string>();
    for (const id of domids) {
      const d = this.doms.get(id);
      if (!d) continue;
      for (const [n, l] of d.lines) lines.set(n, l);
      for (const [n, l] of d.partial) partial.set(n, l);
    }
    for (const n of lines.keys()) partial.delete(n);
    return { lines, partial };
  }

  /** The report lines in order (of one domain, or of one guest that ran as several domains). */
  lines(...domids: number[]): string[] {
    return [...this.merged(domids).lines.entries()].sort((a, b) => a[0] - b[0]).map(([, l]) => l);
  }

  /** Line numbers that never arrived (below the highest seen), and lines left unfinished. */
  lost(...domids: number[]): number[] {
    const d = this.merged(domids);
    const max = Math.max(0, ...d.lines.keys(), ...d.partial.keys());
    const out: number[] = [];
    for (let i = 1; i <= max; i++) if (!d.lines.has(i)) out.push(i);
    return out;
  }

  /** The lab report of one domain (or of one guest that ran as several domains). */
  report(...domids: number[]): GuestReport {
    const p = new GuestReportParser();
    for (const l of this.lines(...domids)) p.line(l);
    return p.report;
  }
}
