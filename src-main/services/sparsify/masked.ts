/**
 * The source of a compaction as the new image sees it: the disk with the file systems' free ranges reading as
 * zeros (and reported as zero by status), everything else read through unchanged. Read-only; closing it closes
 * the source.
 */
import { readOnlyError } from '../../block/errors';
import type { BlockDevice, Extent } from '../../block/types';
import type { ByteRange } from '../../inside';

export class FreeMaskedDevice implements BlockDevice {
  readonly readOnly = true;
  constructor(
    private readonly inner: BlockDevice,
    /** Sorted, merged, inside the disk. */
    private readonly free: readonly ByteRange[],
  ) {}
  get format() {
    return this.inner.format;
  }
  get path(): string {
    return this.inner.path;
  }
  get size(): number {
    return this.inner.size;
  }
  get backing(): BlockDevice | undefined {
    return this.inner.backing;
  }
  get clusterSize(): number | undefined {
    return this.inner.clusterSize;
  }

  /** Index of the first free range that ends after `pos`. */
  private firstAfter(pos: number): number {
    let lo = 0;
    let hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const r = this.free[mid];
      if (r.start + r.length <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    await this.inner.read(offset, into);
    const end = offset + into.length;
    for (let i = this.firstAfter(offset); i < this.free.length && this.free[i].start < end; i++) {
      const r = this.free[i];
      into.fill(0, Math.max(r.start, offset) - offset, Math.min(r.start + r.length, end) - offset);
    }
  }

  async status(offset: number, length: number): Promise<Extent> {
    const i = this.firstAfter(offset);
    const r = this.free[i];
    if (r && r.start <= offset) return { kind: 'zero', length: Math.min(length, r.start + r.length - offset) };
    const upTo = r ? Math.min(length, r.start - offset) : length;
    return this.inner.status(offset, upTo);
  }

  async write(): Promise<void> {
    throw readOnlyError(this.path);
  }
  async writeZeroes(): Promise<void> {
    throw readOnlyError(this.path);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {
    await this.inner.close();
  }
}
