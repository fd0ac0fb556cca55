/**
 * `checksum`: one fingerprint of what the guest sees, equal for the same content in any format (qcow2
 * compressed or not, VMDK, VHDX, VHD, VDI, raw, a backing chain), so "is this the same disk?" has one answer
 * whatever the images' layouts. A block hash, as nirs/blkhash makes one, documented exactly in
 * docs/checksum.md with a script that recomputes it from a raw file:
 *
 *   digest(i) = SHA-256(block i)         blocks of 64 KiB; the last one is shorter when the size is not a multiple
 *   checksum  = SHA-256(digest(0) ‖ … ‖ digest(n−1) ‖ size as 8 bytes little-endian)
 *
 * Why blocks: a range the image says is unallocated or zero is never read — its blocks' digest is the digest
 * of a zero block, computed once — so a 64 GiB sparse image takes the time of its data, and the data blocks
 * are hashed on several threads (block/hash-pool.ts) while the next ones are read.
 */
import { createHash, hash } from 'node:crypto';
import { deepStatus } from '../block/chain';
import { isZero } from '../block/bytes';
import { throwIfAborted } from '../block/errors';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { openImage, takesConcurrentCalls } from '../registry';

/** The algorithm's name as `--output json` reports it: change it whenever the definition above changes. */
export const CHECKSUM_ALGORITHM = 'blk-sha256-64k';
export const CHECKSUM_BLOCK = 64 * 1024;
const DIGEST = 32;
/** How much is read at once: whole blocks, so a read is hashed block by block as it stands. */
const READ = 16 * CHECKSUM_BLOCK;
/** Reads kept under way ahead of the hashing. */
const AHEAD = 4;

export interface ChecksumRequest {
  path: string;
  format?: string;
  backingPolicy?: BackingPolicy;
  acceptChangedBacking?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface ChecksumResult {
  checksum: string;
  algorithm: string;
  /** The guest size in bytes (it is part of the checksum). */
  size: number;
}

export async function checksumImage(req: ChecksumRequest): Promise<ChecksumResult> {
  const dev = await openImage(req.path, { format: req.format, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere', acceptChangedBacking: req.acceptChangedBacking });
  try {
    return await checksumDevice(dev, req.signal, req.onProgress);
  } finally {
    await dev.close();
  }
}

/** A run of blocks to hash: read (data) or known to be zero. */
interface Run {
  first: number;
  count: number;
  buf?: Uint8Array;
  ready?: Promise<void>;
}

export async function checksumDevice(dev: BlockDevice, signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<ChecksumResult> {
  const size = dev.size;
  const blocks = Math.ceil(size / CHECKSUM_BLOCK);
  const zeroDigest = createHash('sha256').update(new Uint8Array(CHECKSUM_BLOCK)).digest();
  const tail = size % CHECKSUM_BLOCK;
  const tailZeroDigest = tail ? createHash('sha256').update(new Uint8Array(tail)).digest() : zeroDigest;
  const root = createHash('sha256');
  // Zero runs are fed as many copies of the zero digest at once.
  const ZEROS_AT_ONCE = 1024;
  const zeroRun = Buffer.alloc(ZEROS_AT_ONCE * DIGEST);
  for (let i = 0; i < ZEROS_AT_ONCE; i++) zeroDigest.copy(zeroRun, i * DIGEST);
  const feedZeros = (first: number, count: number) => {
    if (count === 0) return;
    let n = count;
    // The short last block has a digest of its own.
    const endsShort = tail !== 0 && first + count === blocks;
    if (endsShort) n--;
    while (n > 0) {
      const k = Math.min(n, ZEROS_AT_ONCE);
      root.update(zeroRun.subarray(0, k * DIGEST));
      n -= k;
    }
    if (endsShort) root.update(tailZeroDigest);
  };

  const concurrent = takesConcurrentCalls(dev);
  const free: Uint8Array[] = [];
  let planned = 0;
  /** The next run from block `planned`: blocks wholly inside a zero or unallocated extent, else up to READ of data. */
  const plan = async (): Promise<Run> => {
    const first = planned;
    // Runs are queued ahead of their planning: the last ones may find nothing left.
    if (first >= blocks) return { first, count: 0 };
    const pos = first * CHECKSUM_BLOCK;
    const ext = await deepStatus(dev, pos, size - pos);
    const zero = ext.kind !== 'data' || ext.readsAsZero === true;
    const whole = ext.length >= size - pos ? blocks - first : Math.floor(ext.length / CHECKSUM_BLOCK);
    if (zero && whole > 0) {
      planned += whole;
      return { first, count: whole };
    }
    const count = Math.min(blocks - first, READ / CHECKSUM_BLOCK, Math.max(1, Math.ceil(ext.length / CHECKSUM_BLOCK)));
    planned += count;
    const buf = (free.pop() ?? new Uint8Array(READ)).subarray(0, Math.min(count * CHECKSUM_BLOCK, size - pos));
    return { first, count, buf, ready: dev.read(pos, buf) };
  };

  const queue: Promise<Run>[] = [];
  // Devices that take one call at a time are read one run ahead; the others up to AHEAD runs ahead.
  const depth = concurrent ? AHEAD : 1;
  let chained: Promise<unknown> = Promise.resolve();
  const enqueue = () => {
    // Status queries stay in order; with one call at a time, the next plan waits for the last read.
    const p = chained.then(plan);
    // (The chain only orders the planning: a failure reaches the caller through the queue, not through it.)
    chained = (concurrent ? p : p.then((r) => r.ready)).catch(() => undefined);
    queue.push(p);
  };
  try {
    while (queue.length < depth && planned < blocks) enqueue();
    let done = 0;
    while (queue.length) {
      throwIfAborted(signal);
      const run = await queue.shift()!;
      if (run.buf) {
        await run.ready;
        for (let i = 0; i < run.count; i++) {
          const block = run.buf.subarray(i * CHECKSUM_BLOCK, (i + 1) * CHECKSUM_BLOCK);
          // A block of zeros inside data (a file system's hole) costs a compare, not a hash.
          if (isZero(block)) root.update(block.length === CHECKSUM_BLOCK ? zeroDigest : tailZeroDigest);
          else root.update(hash('sha256', block, 'buffer'));
        }
        free.push(new Uint8Array(run.buf.buffer, run.buf.byteOffset, READ));
      } else feedZeros(run.first, run.count);
      done += run.count;
      onProgress?.(Math.min(size, done * CHECKSUM_BLOCK), size);
      while (queue.length < depth && planned < blocks) enqueue();
    }
  } finally {
    await Promise.allSettled(queue);
  }
  const sizeField = Buffer.alloc(8);
  sizeField.writeBigUInt64LE(BigInt(size));
  root.update(sizeField);
  return { checksum: root.digest('hex'), algorithm: CHECKSUM_ALGORITHM, size };
}
