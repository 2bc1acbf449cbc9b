/**
 * An error whose message is meant for the person running uhci-dm (a missing
 * package, a bad device name, an unreachable hypervisor): the CLI prints
 * the message alone on one line and exits 1, without a stack.
 */
export abstract class UserFacingError extends Error {
  readonly userFacing = true;
  constructor(msg: string) {
    super(msg);
    this.name = new.target.name;
  }
}
