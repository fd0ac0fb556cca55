/**
 * Compressed writes of an open qcow2 image (convert -c; reading them back is compressed-clusters.ts): large
 * clusters are deflated on the thread pool before their turn in the job queue, so that the clusters of a
 * convert are compressed side by side, then packed one after another into host clusters as qemu packs them.
 */
import type * as Zlib from 'node:zlib';
import { compressBlock, type Packed } from '../../block/deflate-pool';
import { DiskError, toDiskError } from '../../block/errors';
import { fromBig, hostOf, isCompressedEntry, putEntry, readEntry } from './entry';
import { COMPRESSION_ZLIB, encodeCompressedEntry } from './layout';
import type { Qcow2State } from './state';
import { releaseEntry, writeData } from './write';

// zlib is loaded on first use: most commands never write a compressed cluster, and start-up time counts.
let zlibModule: typeof Zlib | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zlib = (): typeof Zlib => (zlibModule ??= require('node:zlib') as typeof Zlib);

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

/** BlockDevice.writeCompressed: whole clusters (or the image's last, partial one) stored compressed. */
export async function writeCompressed(d: Qcow2State, offset: number, data: Uint8Array): Promise<void> {
  d.checkWritable();
  d.checkRange(offset, data.length);
  const g = d.geometry;
  const cs = g.clusterSize;
  if (g.offsetInCluster(offset) !== 0 || (data.length !== cs && offset + data.length !== d.size)) {
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
  await d.order.serial(async () => {
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
    const cluster = g.clusterIndex(offset);
    await d.order.awaitLanding(cluster, cluster);
    const { offset: l2off, table } = await d.tables.l2ForWrite(g.l1Index(offset));
    const idx = g.l2Index(offset);
    const old = readEntry(table, idx, g.extendedL2);
    putEntry(table, idx, fromBig(encodeCompressedEntry(host, packedLength, g.clusterBits)), g.extendedL2);
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
