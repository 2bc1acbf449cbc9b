/**
 * Numbers the passthrough proof is judged by (shared by the guest program
 * and its test; the program itself runs on import, so tests import these).
 */

/**
 * Full-speed bulk ceiling: 19 transactions of 64 bytes per 1 ms frame
 * (USB 2.0 Table 5-9, "Full-speed Bulk Transaction Limits"), 1216 bytes per
 * frame — also dummy_hcd's full-speed per-frame budget (64 × 19).
 */
export const FULL_SPEED_BULK_CEILING = 1_216_000;

/**
 * The HID gadget of the passthrough lab: a configfs usb_f_hid function
 * (boot keyboard: subclass 1, protocol 1, 8-byte reports; HID 1.11 §4.2,
 * §4.3 and Appendix B.1) on the second dummy_hcd UDC. 0525:a4ac is the id
 * Linux's legacy HID gadget (g_hid) uses.
 */
export const HID_GADGET = { vendorId: 0x0525, productId: 0xa4ac, product: 'HID keyboard gadget', serial: '4243', reportLength: 8 } as const;

/** HID 1.11 Appendix C / HID Usage Tables §10 (Keyboard page): usage IDs of the letters typed. */
const KEY: Record<string, number> = { u: 0x18, h: 0x0b, c: 0x06, i: 0x0c, '-': 0x2d, d: 0x07, m: 0x10 };

/**
 * Reports written to /dev/hidg0 in the guest, in order: "uhci-dm" typed
 * key by key (press, release), one report with the left shift modifier
 * and all six key slots used, and a final release.
 */
export const HID_REPORTS: readonly (readonly number[])[] = [
  ...[...'uhci-dm'].flatMap((ch) => [
    [0, 0, KEY[ch]!, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
  ]),
  [0x02, 0, KEY.u!, KEY.h!, KEY.c!, KEY.i!, KEY.d!, KEY.m!],
  [0, 0, 0, 0, 0, 0, 0, 0],
];
