/**
 * Builds the model side: our UhciPciFunction (PIIX3 variant) with the
 * emulated usb-tablet on root port 1, named as QEMU names it (PCI path
 * 0000:00:05.0, port "1") so the generated serial number matches.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { createDevice } from '../../src/usb/devices.js';
import { ModelTarget } from './model-target.js';
import { UHCI_SLOT } from './qemu-target.js';

export async function createModelTarget(): Promise<ModelTarget> {
  return new ModelTarget({
    createFunction: (parts) => new UhciPciFunction({ ...parts, variant: 'piix3' }),
    createTablet: (parts) =>
      createDevice('usb-tablet', { clock: parts.clock, hcdPath: `0000:00:0${UHCI_SLOT}.0`, portPath: '1' }),
  });
}
