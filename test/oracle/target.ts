/**
 * What the differential oracle drives: a PC-like machine with the UHCI
 * function at PCI 00:05.0 and a usb-tablet on its first root port. QEMU 7.2
 * (over qtest, in real time) and our model (in virtual time) both implement
 * it; a program runs against each and the observations are compared.
 */
export type IoSize = 1 | 2 | 4;

export interface Target {
  /** Short name for reports: 'qemu' or 'model'. */
  readonly name: string;
  /** Time per `settle` poll while waiting for a schedule to go quiet (ms). */
  readonly pollMs: number;
  portIn(port: number, size: IoSize): Promise<number>;
  portOut(port: number, size: IoSize, value: number): Promise<void>;
  readMem(addr: number, len: number): Promise<Uint8Array>;
  writeMem(addr: number, bytes: Uint8Array): Promise<void>;
  /** Set `len` bytes at `addr` to `byte`. */
  fillMem(addr: number, len: number, byte: number): Promise<void>;
  /** Level of the function's INTx line as the interrupt controller sees it now. */
  irqLevel(): Promise<boolean>;
  /** Let `ms` of machine time pass (QEMU: real time; model: the manual clock). */
  settle(ms: number): Promise<void>;
  /** Release the target (kill QEMU). */
  close(): Promise<void>;
}
