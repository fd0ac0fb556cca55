/**
 * Runs a device's mutations one at a time, in the order they were called: each starts once every mutation
 * queued before it has settled (succeeded or failed), and its result or error goes to its own caller only.
 * Devices that may be handed overlapping calls need it (a caller may start a write before the last one
 * ended: FormatDriver.concurrentCalls, or a stray caller that does not wait); devices whose driver declares
 * concurrentCalls: false keep it so that a second caller can never interleave with a write under way.
 * The VMDK devices use it as it is; qcow2's write order (qcow2/write-order.ts) adds its posted writes around it.
 */
export class MutationQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every mutation queued before it has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}
