/**
 * The one way inside/ reads: a bounded window over a read-only byte view (an open BlockDevice, or a slice of
 * it for a partition). Every offset and length read from the disk passes through `bytes`, which refuses what
 * lies past the window's end and caps a single allocation, so a hostile table cannot seek or allocate beyond
 * the disk.
 */
import { DiskError } from '../block/errors';

/** What inside/ needs of a disk: its size and positional reads (a BlockDevice has both). */
export interface ByteSource {
  readonly size: number;
  read(offset: number, into: Uint8Array): Promise<void>;
}

/** The largest single read a reader may ask for (a directory, an allocation bitmap chunk). */
export const MAX_READ = 64 << 20;

export class Window implements ByteSource {
  constructor(
    private readonly base: ByteSource,
    readonly offset: number,
    readonly size: number,
    readonly what = 'the disk',
  ) {
    if (offset < 0 || size < 0 || offset + size > base.size) throw new DiskError('ECORRUPT', `${what} (${offset}+${size}) lies past the end of the disk (${base.size} bytes)`);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.check(offset, into.length);
    await this.base.read(this.offset + offset, into);
  }

  /** Reads `length` bytes at `offset`, refused when they lie outside the window or exceed MAX_READ. */
  async bytes(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    if (length > MAX_READ) throw new DiskError('ECORRUPT', `${this.what}: a structure of ${length} bytes is impossibly large`);
    const buf = new Uint8Array(length);
    await this.base.read(this.offset + offset, buf);
    return buf;
  }

  /** Reads what lies in the window at [offset, offset + length), zero-padding past its end (probes). */
  async bytesPadded(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    const n = Math.max(0, Math.min(length, this.size - offset));
    if (n > 0 && offset >= 0) await this.base.read(this.offset + offset, buf.subarray(0, n));
    return buf;
  }

  /** A window inside this one. */
  sub(offset: number, size: number, what: string): Window {
    this.check(offset, size, what);
    return new Window(this.base, this.offset + offset, size, what);
  }

  private check(offset: number, length: number, what = this.what): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new DiskError('ECORRUPT', `${what}: a read at ${offset}+${length} lies past its end (${this.size} bytes)`);
    }
  }
}

/** The whole disk as a window. */
export function wholeDisk(src: ByteSource): Window {
  return new Window(src, 0, src.size);
}
