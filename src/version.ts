/**
 * The version of uhci-dm: printed by `uhci-dm version` and written into
 * every trace header. A leaf module (it imports nothing), so anything may
 * use it without tying itself to the command line; it must equal
 * package.json's "version" (test/version.test.ts checks).
 */
export const VERSION = '0.1.0';
