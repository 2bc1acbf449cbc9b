/**
 * SeaBIOS (the firmware of QEMU's pc machine) drives our UHCI model through
 * the QEMU proxy: it must find the controller and set up the USB keyboard
 * exactly as it does with QEMU's own piix3-usb-uhci.
 */
import { runBiosLab } from '../../src/lab/bios.js';

test('SeaBIOS finds the controller and the USB keyboard, as with QEMU\'s own UHCI', async () => {
  const [model, reference] = [await runBiosLab({ ports: ['tablet', 'keyboard'] }), await runBiosLab({ ports: ['tablet', 'keyboard'], reference: true })];
  expect(reference.uhciInit).toBe('UHCI init on dev 00:05.0 (io=c000)');
  expect(reference.usbKeyboard).toBe(true);
  expect(model.uhciInit).toBe(reference.uhciInit);
  expect(model.usbKeyboard).toBe(true);
  expect(model.finished).toBe(true);
  const usbLines = (r: typeof model) => r.log.filter((l) => /UHCI|USB/.test(l));
  expect(usbLines(model)).toEqual(usbLines(reference));
}, 120_000);
