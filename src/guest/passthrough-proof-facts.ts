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
