/**
 * Thrown by a harness around the model (replay's divergence check) to end a
 * run at once. Fault containment lets it through: it is the harness
 * stopping the model, not a fault inside it (UhciController.hostSystemError
 * is for those).
 */
export class HarnessAbort extends Error {}
