/**
 * The write order of an open qcow2 image: its mutations one job at a time in call order (serial, through
 * block/mutation-queue.ts), the writes a plain write starts and no job waits for (posted: L2 writes, and new
 * clusters whose data is on its way), the guest clusters whose new host clusters are being written
 * (landing), and the first failure among posted work, handed to the next job. Every job other than a plain write first waits for all posted work and has the
 * write-back cache written (settle), so that it sees everything before it done, in order.
 */
import { MutationQueue } from '../../block/mutation-queue';

export class WriteOrder {
  private readonly queue = new MutationQueue();
  /** Work that writes started and no job waits for. */
  readonly posted = new Set<Promise<void>>();
  private postedFailure?: { err: unknown };
  /** Guest clusters whose new host clusters are being written; their L2 entries change when that is done. */
  readonly landing = new Map<number, Promise<void>>();
  private writeBackQueued = false;
  /** Jobs started so far (flush and close compare it: was anything run in between?). */
  jobsStarted = 0;

  /** `writeBack` writes the deferred metadata (WriteBackCache.writeBack through the device's L2 writer). */
  constructor(private readonly writeBack: () => Promise<void>) {}

  /**
   * Runs mutations one at a time, in call order. Only plain writes (`posting`) may start while L2 writes
   * posted by earlier writes are still under way; every other job waits for them first, so it sees them
   * done, in order before its own writes and syncs.
   */
  serial<T>(fn: () => Promise<T>, posting: boolean | 'settles-itself' = false): Promise<T> {
    const job = async (): Promise<T> => {
      this.jobsStarted++;
      if (posting === true) this.throwPostedFailure();
      else if (!posting) await this.settle();
      return fn();
    };
    return this.queue.run(job);
  }

  /**
   * Starts a write that the current job does not wait for. Allowed only for entries whose clusters' data and
   * refcounts are already written and when no refcount drop depends on the write: the file then holds either
   * the old or the new entry, and both are consistent.
   */
  post(write: Promise<void>): void {
    const p: Promise<void> = write.then(
      () => {
        this.posted.delete(p);
      },
      (err: unknown) => {
        this.posted.delete(p);
        this.postedFailure ??= { err };
      },
    );
    this.posted.add(p);
  }

  /** Waits until no cluster of [first, last] is landing (a job that touches a cluster sees it done). */
  async awaitLanding(first: number, last: number): Promise<void> {
    if (this.landing.size === 0) return;
    for (let c = first; c <= last; c++) {
      const l = this.landing.get(c);
      if (l) await l.catch(() => undefined);
    }
  }

  /**
   * Marks guest clusters [c0, c0 + n) as landing until `landing` settles, and posts it (its failure goes to
   * the next job).
   */
  land(c0: number, n: number, landing: Promise<void>): void {
    for (let j = 0; j < n; j++) this.landing.set(c0 + j, landing);
    const landed = () => {
      for (let j = 0; j < n; j++) if (this.landing.get(c0 + j) === landing) this.landing.delete(c0 + j);
    };
    this.post(landing.finally(landed));
  }

  /**
   * Waits for every posted write and landing, then writes the deferred metadata; the first failure fails this.
   * Only where no allocation can run meanwhile: at the start of a job, or when no job runs.
   */
  async settle(): Promise<void> {
    while (this.posted.size) await Promise.allSettled(this.posted);
    this.throwPostedFailure();
    await this.writeBack();
  }

  /** Queues an empty job, once at a time: taking its turn in the queue settles, which writes the metadata. */
  queueWriteBack(): void {
    if (this.writeBackQueued) return;
    this.writeBackQueued = true;
    this.serial(async () => undefined).then(
      () => {
        this.writeBackQueued = false;
      },
      (err: unknown) => {
        this.writeBackQueued = false;
        this.postedFailure ??= { err };
      },
    );
  }

  private throwPostedFailure(): void {
    const f = this.postedFailure;
    if (f) {
      this.postedFailure = undefined;
      throw f.err;
    }
  }
}
