/**
 * A queue that runs a device's mutations one at a time, in the order they were called, so that the VMDK devices
 * can take overlapping calls (FormatDriver.concurrentCalls): convert keeps reads and writes under way while an
 * earlier write is still allocating grains. Reads do not wait in it: they touch only the grain table cache.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every mutation queued before it has settled; its result or error is the caller's. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}
