/**
 * The check's in-memory refcount table (qemu's IMRT): one counter per cluster of the file, rebuilt from the
 * metadata and compared with the refcounts the image stores. Memory is refused before it is allocated when
 * the image has more clusters than we check in memory.
 */
import { DiskError } from '../../../block/errors';

/** qemu refuses to check images with more clusters than this (INT_MAX). */
export const MAX_CLUSTERS = 2 ** 31 - 1;
/** Our own ceiling on the in-memory refcount array. */
const MAX_REFCOUNT_ARRAY_BYTES = 1024 * 1024 * 1024;
const TWO32 = 2 ** 32;

type Counters = Uint8Array | Uint16Array | Uint32Array;

/** Runs of one value per counter width (key: value * 8 + bytes per counter), grown on demand, for sameRun(). */
const patterns = new Map<number, Buffer>();

function pattern(value: number, bytesPer: number, count: number): Buffer {
  const key = value * 8 + bytesPer;
  let p = patterns.get(key);
  if (!p || p.length < count * bytesPer) {
    const n = Math.max(count, 8192);
    const arr = bytesPer === 1 ? new Uint8Array(n) : bytesPer === 2 ? new Uint16Array(n) : new Uint32Array(n);
    arr.fill(value);
    p = Buffer.from(arr.buffer);
    patterns.set(key, p);
  }
  return p;
}

/** Byte views of the arrays sameRun() looks at (one per array buffer). */
const views = new WeakMap<ArrayBufferLike, Uint8Array>();

/**
 * Whether counters [first, first+count) all hold `value`: one native compare. The walks meet data clusters
 * in long runs (qemu-img lays them out one after another), and a run met for the first time is all zeros.
 */
export function sameRun(arr: Counters, first: number, count: number, value: number): boolean {
  const bytesPer = arr.BYTES_PER_ELEMENT;
  let view = views.get(arr.buffer);
  if (!view) {
    view = new Uint8Array(arr.buffer);
    views.set(arr.buffer, view);
  }
  const start = arr.byteOffset + first * bytesPer;
  return pattern(value, bytesPer, count).compare(view, start, start + count * bytesPer, 0, count * bytesPer) === 0;
}

/**
 * The in-memory refcount table (qemu's IMRT): one counter per cluster, in the narrowest typed array that
 * holds the image's refcount width, saturating at the largest refcount the image can store.
 */
export class RefcountArray {
  private data: Uint8Array | Uint16Array | Uint32Array;
  private length: number;
  /** The largest value an entry holds; reaching it again is qemu's "overflow". */
  readonly max: number;
  private readonly bytesPer: 1 | 2 | 4;

  /** `size` clusters; a little spare capacity saves a full copy when a reference lands just past the end. */
  constructor(refcountBits: number, size: number) {
    this.bytesPer = refcountBits <= 8 ? 1 : refcountBits <= 16 ? 2 : 4;
    this.max = refcountBits >= 32 ? TWO32 - 1 : 2 ** refcountBits - 1;
    this.checkedSize(size);
    this.data = this.make(size + 2);
    this.length = size;
  }

  private make(n: number): Uint8Array | Uint16Array | Uint32Array {
    return this.bytesPer === 1 ? new Uint8Array(n) : this.bytesPer === 2 ? new Uint16Array(n) : new Uint32Array(n);
  }

  /** Refuses sizes that would not fit our memory budget, before allocating. */
  private checkedSize(size: number): number {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_CLUSTERS || size * this.bytesPer > MAX_REFCOUNT_ARRAY_BYTES) {
      throw new DiskError('EUNSUPPORTED', `the image has too many clusters (${size}) to check in memory`);
    }
    return size;
  }

  get size(): number {
    return this.length;
  }

  /** The counters themselves, for the walk's inline path; replaced when the array grows (resize()). */
  get counts(): Uint8Array | Uint16Array | Uint32Array {
    return this.data;
  }

  get(i: number): number {
    return i < this.length ? this.data[i] : 0;
  }

  /**
   * Adds one reference to each of clusters [first, first+count) when they all hold 0, or all 1 (a run of data
   * clusters met for the first or second time), with a native compare and fill. Returns false, changing
   * nothing, otherwise: the caller then counts them one by one (with qemu's messages where one overflows).
   */
  incSameRun(first: number, count: number): boolean {
    if (first + count > this.length) return false;
    for (let v = 0; v <= 1 && v < this.max; v++) {
      if (sameRun(this.data, first, count, v)) {
        this.data.fill(v + 1, first, first + count);
        return true;
      }
    }
    return false;
  }

  /**
   * The counters of clusters [first, end) as bytes, when each counter is exactly `bits` wide (8, 16 or 32
   * bits, in this host's byte order), for comparing a whole refcount block at once; undefined otherwise.
   */
  bytesOf(first: number, end: number, bits: number): Uint8Array | undefined {
    if (bits !== this.bytesPer * 8 || end > this.length) return undefined;
    const d = this.data;
    return new Uint8Array(d.buffer, d.byteOffset + first * this.bytesPer, (end - first) * this.bytesPer);
  }

  /** The last cluster in [first, end) with a non-zero counter, or -1. */
  lastUsed(first: number, end: number): number {
    const d = this.data;
    for (let k = Math.min(end, this.length) - 1; k >= first; k--) if (d[k] !== 0) return k;
    return -1;
  }

  set(i: number, v: number): void {
    if (i >= this.length) this.resize(i + 1);
    this.data[i] = v;
  }

  /** Grows (never shrinks) the logical size; new entries are zero. */
  resize(n: number): void {
    if (n <= this.length) return;
    if (n > this.data.length) {
      const grown = this.make(this.checkedSize(Math.max(n, Math.min(MAX_CLUSTERS, Math.ceil(this.data.length * 1.5)))));
      grown.set(this.data);
      this.data = grown;
    }
    this.length = n;
  }

  clear(): void {
    this.data.fill(0);
  }
}
