/**
 * Compressed clusters of an open qcow2 image: decompression (zlib raw deflate, or zstd for
 * compression_type=zstd) with a tiny cache of inflated clusters, and compressed writes (convert -c): large
 * clusters are deflated on the thread pool before their turn in the job queue, so that the clusters of a
 * convert are compressed side by side, then packed one after another into host clusters as qemu packs them.
 */
import type * as Zlib from 'node:zlib';
import type * as Fzstd from 'fzstd';
import { LruCache } from '../../block/cache';
import { Inflater } from '../../block/inflate';
import { compressBlock, type Packed } from '../../block/deflate-pool';
import { corrupt, DiskError, toDiskError } from '../../block/errors';
import type { Qcow2Device } from './device';
import { fromBig, hostOf, isCompressedEntry, putEntry, readEntry } from './entry';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD, compressedExtent, encodeCompressedEntry } from './layout';
import { releaseEntry, writeData } from './write';

// The codecs are loaded on first use: most commands never meet a compressed cluster, and start-up time counts.
let zlibModule: typeof Zlib | undefined;
let fzstdModule: typeof Fzstd | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zlib = (): typeof Zlib => (zlibModule ??= require('node:zlib') as typeof Zlib);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fzstd = (): typeof Fzstd => (fzstdModule ??= require('fzstd') as typeof Fzstd);

/** One raw-deflate stream for every compressed cluster this process reads (reads are synchronous, one at a time). */
const inflater = new Inflater(true);

/** qemu's deflate parameters for compressed clusters: raw deflate, 4 KiB window, default level. */
const DEFLATE_OPTIONS = { windowBits: 12, memLevel: 9 };

/** Clusters at least this large are compressed on the worker pool (measured: smaller ones are faster inline). */
const ASYNC_DEFLATE_MIN = 32 * 1024;

/** Compresses one cluster (block/deflate-pool.ts); undefined when it does not shrink (then stored plain). */
async function deflateCluster(data: Uint8Array): Promise<Packed | undefined> {
  const packed = await compressBlock(data, data.length, true, DEFLATE_OPTIONS);
  if (packed.data.length < data.length) return packed;
  packed.release();
  return undefined;
}

/** The image's compressed-cluster state: the last clusters inflated, and where the next compressed one may go. */
export class CompressedClusters {
  private readonly inflated = new LruCache<number, Uint8Array>(2);
  /** Buffers for compressed bytes read from the file, reused (reads of several clusters may be under way). */
  private readonly scratch: Uint8Array[] = [];
  /** Where the next compressed cluster may go (qemu's free_byte_offset); 0 = start a new cluster. */
  private freeByteOffset = 0;

  constructor(private readonly d: Qcow2Device) {}

  /** A host cluster was freed: forget what was inflated, and stop packing into it. */
  onFreed(off: number): void {
    this.inflated.clear();
    if (this.freeByteOffset && Math.floor(this.freeByteOffset / this.d.clusterSize) * this.d.clusterSize === off) this.freeByteOffset = 0;
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
    const d = this.d;
    const { offset } = compressedExtent(entry, d.clusterBits);
    if (inner === 0 && into.length === d.clusterSize && !this.inflated.get(offset)) {
      await this.inflateTo(entry, into);
      return;
    }
    let cluster = this.inflated.get(offset);
    if (!cluster) {
      cluster = new Uint8Array(d.clusterSize);
      await this.inflateTo(entry, cluster);
      this.inflated.set(offset, cluster);
    }
    into.set(cluster.subarray(inner, inner + into.length));
  }

  /** Decompresses one compressed cluster into `out` (one cluster long), reading at most its stored bytes. */
  private async inflateTo(entry: bigint, out: Uint8Array): Promise<void> {
    const d = this.d;
    const { offset, length } = compressedExtent(entry, d.clusterBits);
    if (offset >= d.file.size) throw corrupt(`${d.path}: a compressed cluster lies past the end of the file (host offset 0x${offset.toString(16)})`, d.path);
    const n = Math.min(length, d.file.size - offset);
    // The compressed bytes go into a scratch buffer kept for the next cluster (length ≤ 2 clusters by the
    // entry's format), so a convert of compressed clusters does not leave one garbage buffer per cluster.
    const src = this.scratch.pop() ?? new Uint8Array(2 * d.clusterSize);
    try {
      await d.file.readZeroPadded(offset, src.subarray(0, n));
      const data = src.subarray(0, n);
      if (d.header.compressionType === COMPRESSION_ZSTD) {
        if (!inflateZstd(data, out)) throw corrupt(`${d.path}: the zstd-compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, d.path);
        return;
      }
      // Raw deflate, as qemu writes it; the stream may be cut at a sector end once a cluster is produced.
      const got = inflater.inflate(data, out);
      if (got < 0) throw corrupt(`${d.path}: the compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, d.path);
      if (got !== out.length) throw corrupt(`${d.path}: the compressed cluster at host offset 0x${offset.toString(16)} holds ${got} bytes, not a cluster`, d.path);
    } finally {
      if (this.scratch.length < 8) this.scratch.push(src);
    }
  }

  /** Allocates `size` bytes for compressed data, packing clusters one after another as qemu does. */
  async allocBytes(size: number, defer = false): Promise<number> {
    const refs = await this.d.refcounts();
    const cs = this.d.clusterSize;
    let offset = this.freeByteOffset;
    let freeIn = offset ? cs - (offset % cs) : 0;
    if (freeIn === cs) {
      offset = 0;
      freeIn = 0;
    }
    // A cluster whose refcount is at its width's maximum (1-bit refcounts: one user) takes no more: start a new one, as qemu does.
    if (offset && (await refs.get(Math.floor(offset / cs))) >= refs.max) {
      offset = 0;
      freeIn = 0;
    }
    if (!offset || freeIn < size) {
      const next = await refs.findFreeClusters(1);
      if (!offset || Math.ceil(offset / cs) * cs !== next) offset = next;
    }
    await refs.update(offset, size, +1, defer);
    this.freeByteOffset = offset + size;
    return offset;
  }
}

/** BlockDevice.writeCompressed: whole clusters (or the image's last, partial one) stored compressed. */
export async function writeCompressed(d: Qcow2Device, offset: number, data: Uint8Array): Promise<void> {
  d.checkWritable();
  d.checkRange(offset, data.length);
  const cs = d.clusterSize;
  if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== d.size)) {
    throw new DiskError('EINVAL', `${d.path}: compressed writes must cover whole clusters`, d.path);
  }
  // This build compresses with zlib only; in a zstd image such clusters are stored uncompressed (valid).
  const zlibImage = d.header.compressionType === COMPRESSION_ZLIB;
  const full = data.length === cs ? data : (() => { const b = new Uint8Array(cs); b.set(data); return b; })();
  // Large clusters are compressed on the worker pool before this write's turn in the queue comes, so that
  // the clusters of a convert are compressed side by side; allocation still happens in call order. Below
  // 32 KiB a round trip to a worker costs more than it saves.
  const packing: Promise<Packed | undefined> | undefined = !zlibImage
    ? undefined
    : cs >= ASYNC_DEFLATE_MIN
      ? deflateCluster(full)
      : Promise.resolve(((b: Buffer) => (b.length < cs ? { data: b, release: () => undefined } : undefined))(zlib().deflateRawSync(full, DEFLATE_OPTIONS)));
  packing?.catch(() => undefined);
  await d.jobs.serial(async () => {
    await d.beginWrite();
    if (!packing) {
      await writeData(d, offset, data);
      return;
    }
    // Data that does not shrink is stored plain.
    const packed = await packing;
    if (!packed) {
      await writeData(d, offset, data);
      return;
    }
    // The refcount raise is deferred (written before any L2 entry, see cache.ts); the data is written now.
    const packedLength = packed.data.length;
    const host = await d.compressed.allocBytes(packedLength, true);
    try {
      await d.file.write(host, packed.data);
    } finally {
      packed.release();
    }
    await d.jobs.awaitLanding(offset / cs, offset / cs);
    const { offset: l2off, table } = await d.tables.l2ForWrite(Math.floor(offset / cs / d.l2Entries));
    const idx = (offset / cs) % d.l2Entries;
    const old = readEntry(table, idx, d.extendedL2);
    putEntry(table, idx, fromBig(encodeCompressedEntry(host, packedLength, d.clusterBits)), d.extendedL2);
    if (!isCompressedEntry(old.hi) && hostOf(old) === 0) {
      // Nothing is freed, so nothing waits for the L2 write: it goes with the others of its table.
      d.tables.deferEntries(l2off, table, idx, 1);
      return;
    }
    await d.tables.writeEntries(l2off, table, idx, 1);
    await releaseEntry(d, old);
  }, true).catch((err) => {
    throw toDiskError(err, d.path);
  }).finally(() => {
    // The compressed bytes' slot in the pool goes back even when the write failed before reaching them.
    packing?.then((p) => p?.release(), () => undefined);
  });
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
