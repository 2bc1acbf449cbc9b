/**
 * Standard USB control request codes (USB 2.0 Table 9-4), declared once:
 * the emulated devices answer them (device-base.ts), the inspector names
 * them (inspect/usb-requests.ts).
 */
export const REQ_GET_STATUS = 0x00;
export const REQ_CLEAR_FEATURE = 0x01;
export const REQ_SET_FEATURE = 0x03;
export const REQ_SET_ADDRESS = 0x05;
export const REQ_GET_DESCRIPTOR = 0x06;
export const REQ_SET_DESCRIPTOR = 0x07;
export const REQ_GET_CONFIGURATION = 0x08;
export const REQ_SET_CONFIGURATION = 0x09;
export const REQ_GET_INTERFACE = 0x0a;
export const REQ_SET_INTERFACE = 0x0b;
export const REQ_SYNCH_FRAME = 0x0c;

/** Request names by code. */
export const STANDARD_REQUEST_NAMES: Readonly<Record<number, string>> = {
  [REQ_GET_STATUS]: 'GET_STATUS',
  [REQ_CLEAR_FEATURE]: 'CLEAR_FEATURE',
  [REQ_SET_FEATURE]: 'SET_FEATURE',
  [REQ_SET_ADDRESS]: 'SET_ADDRESS',
  [REQ_GET_DESCRIPTOR]: 'GET_DESCRIPTOR',
  [REQ_SET_DESCRIPTOR]: 'SET_DESCRIPTOR',
  [REQ_GET_CONFIGURATION]: 'GET_CONFIGURATION',
  [REQ_SET_CONFIGURATION]: 'SET_CONFIGURATION',
  [REQ_GET_INTERFACE]: 'GET_INTERFACE',
  [REQ_SET_INTERFACE]: 'SET_INTERFACE',
  [REQ_SYNCH_FRAME]: 'SYNCH_FRAME',
};
