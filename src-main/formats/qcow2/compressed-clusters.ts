/**
 * The compressed clusters of an open qcow2 image: decompression (zlib raw deflate, or zstd for
 * compression_type=zstd) with a tiny cache of inflated clusters, and where the next compressed cluster goes
 * (qemu's free_byte_offset: compressed clusters are packed one after another into host clusters). The writes
 * themselves are compress.ts.
 */
import type * as Fzstd from 'fzstd';
import { LruCache } from '../../block/cache';
import { Inflater } from '../../block/inflate';
import { corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { Qcow2Geometry } from './geometry';
import { COMPRESSION_ZSTD, compressedExtent, type Qcow2Header } from './layout';
import type { Refcounts } from './refcount';

// zstd is loaded on first use: most commands never meet a compressed cluster, and start-up time counts.
let fzstdModule: typeof Fzstd | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fzstd = (): typeof Fzstd => (fzstdModule ??= require('fzstd') as typeof Fzstd);

/** One raw-deflate stream for every compressed cluster this process reads (reads are synchronous, one at a time). */
const inflater = new Inflater(true);

/** What the compressed clusters use of the image (the device hands in itself). */
export interface CompressedParts {
  readonly file: ImageFile;
  readonly geometry: Qcow2Geometry;
  /** For compression_type. */
  readonly header: Qcow2Header;
  refcounts(): Promise<Refcounts>;
}

/** The image's compressed-cluster state: the last clusters inflated, and where the next compressed one may go. */
export class CompressedClusters {
  private readonly inflated = new LruCache<number, Uint8Array>(2);
  /** Buffers for compressed bytes read from the file, reused (reads of several clusters may be under way). */
  private readonly scratch: Uint8Array[] = [];
  /** Where the next compressed cluster may go (qemu's free_byte_offset); 0 = start a new cluster. */
  private freeByteOffset = 0;

  constructor(private readonly d: CompressedParts) {}

  /** A host cluster was freed: forget what was inflated, and stop packing into it. */
  onFreed(off: number): void {
    this.inflated.clear();
    if (this.freeByteOffset && this.d.geometry.startOfCluster(this.freeByteOffset) === off) this.freeByteOffset = 0;
  }

  clear(): void {
    this.inflated.clear();
  }

  /**
   * Puts bytes [inner, inner + into.length) of a compressed cluster into `into`. A whole cluster is inflated
   * straight into the caller's buffer (a convert's read); a part goes through the small cache, since the
   * rest of that cluster is usually read next.
   */
  async readInto(entry: bigint, inner: number, into: Uint8Array): Promise<void> {
    const g = this.d.geometry;
    const { offset } = compressedExtent(entry, g.clusterBits);
    if (inner === 0 && into.length === g.clusterSize && !this.inflated.get(offset)) {
      await this.inflateTo(entry, into);
      return;
    }
    let cluster = this.inflated.get(offset);
    if (!cluster) {
      cluster = new Uint8Array(g.clusterSize);
      await this.inflateTo(entry, cluster);
      this.inflated.set(offset, cluster);
    }
    into.set(cluster.subarray(inner, inner + into.length));
  }

  /** Decompresses one compressed cluster into `out` (one cluster long), reading at most its stored bytes. */
  private async inflateTo(entry: bigint, out: Uint8Array): Promise<void> {
    const d = this.d;
    const path = d.file.path;
    const { offset, length } = compressedExtent(entry, d.geometry.clusterBits);
    if (offset >= d.file.size) throw corrupt(`${path}: a compressed cluster lies past the end of the file (host offset 0x${offset.toString(16)})`, path);
    const n = Math.min(length, d.file.size - offset);
    // The compressed bytes go into a scratch buffer kept for the next cluster (length ≤ 2 clusters by the
    // entry's format), so a convert of compressed clusters does not leave one garbage buffer per cluster.
    const src = this.scratch.pop() ?? new Uint8Array(2 * d.geometry.clusterSize);
    try {
      await d.file.readZeroPadded(offset, src.subarray(0, n));
      const data = src.subarray(0, n);
      if (d.header.compressionType === COMPRESSION_ZSTD) {
        if (!inflateZstd(data, out)) throw corrupt(`${path}: the zstd-compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, path);
        return;
      }
      // Raw deflate, as qemu writes it; the stream may be cut at a sector end once a cluster is produced.
      const got = inflater.inflate(data, out);
      if (got < 0) throw corrupt(`${path}: the compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, path);
      if (got !== out.length) throw corrupt(`${path}: the compressed cluster at host offset 0x${offset.toString(16)} holds ${got} bytes, not a cluster`, path);
    } finally {
      if (this.scratch.length < 8) this.scratch.push(src);
    }
  }

  /** Allocates `size` bytes for compressed data, packing clusters one after another as qemu does. */
  async allocBytes(size: number, defer = false): Promise<number> {
    const refs = await this.d.refcounts();
    const g = this.d.geometry;
    const cs = g.clusterSize;
    let offset = this.freeByteOffset;
    let freeIn = offset ? cs - g.offsetInCluster(offset) : 0;
    if (freeIn === cs) {
      offset = 0;
      freeIn = 0;
    }
    // A cluster whose refcount is at its width's maximum (1-bit refcounts: one user) takes no more: start a new one, as qemu does.
    if (offset && (await refs.get(g.clusterIndex(offset))) >= refs.max) {
      offset = 0;
      freeIn = 0;
    }
    if (!offset || freeIn < size) {
      const next = await refs.findFreeClusters(1);
      if (!offset || g.alignUp(offset) !== next) offset = next;
    }
    await refs.update(offset, size, +1, defer);
    this.freeByteOffset = offset + size;
    return offset;
  }
}

/** The largest zstd window we accept: a frame header from the file decides how much the decoder allocates. */
const MAX_ZSTD_WINDOW = 8 << 20;

/**
 * Decompresses one zstd-compressed cluster (qemu's compression_type=zstd): a single frame, possibly followed
 * by sector padding, producing exactly one cluster into `out`. Returns false when the data is not such a frame.
 */
function inflateZstd(src: Uint8Array, out: Uint8Array): boolean {
  const clusterSize = out.length;
  if (src.length < 6 || src[0] !== 0x28 || src[1] !== 0xb5 || src[2] !== 0x2f || src[3] !== 0xfd) return false;
  const flags = src[4];
  const singleSegment = (flags >> 5) & 1;
  const sizeFlag = flags >> 6;
  const dictBytes = [0, 1, 2, 4][flags & 3];
  if (singleSegment) {
    // The window is the content size, given right after the dictionary id.
    const at = 5 + dictBytes;
    const n = sizeFlag ? 1 << sizeFlag : 1;
    if (src.length < at + n) return false;
    let size = 0;
    for (let i = n - 1; i >= 0; i--) size = size * 256 + src[at + i];
    if (sizeFlag === 1) size += 256;
    if (size > clusterSize) return false;
  } else {
    const base = 2 ** (10 + (src[5] >> 3));
    if (base + (base / 8) * (src[5] & 7) > MAX_ZSTD_WINDOW) return false;
  }
  let got = 0;
  const dec = new (fzstd().Decompress)((chunk: Uint8Array) => {
    const take = Math.min(chunk.length, clusterSize - got);
    out.set(chunk.subarray(0, take), got);
    got += take;
  });
  try {
    dec.push(src, true);
  } catch {
    // The padding after the frame is not another frame; what counts is a whole cluster produced before it.
  }
  return got === clusterSize;
}

