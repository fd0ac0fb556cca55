/**
 * Rebase: gives an image a new backing file, as `qemu-img rebase` does (qemu-img.c img_rebase):
 * - safe mode: wherever the image itself holds nothing, the old backing chain and the new backing file are
 *   compared, and what differs is copied from the old chain into the image, so that the guest reads the same
 *   afterwards; then the backing file's name (and format) in the header are rewritten;
 * - -u (unsafe): only the name is rewritten; the old backing file need not exist;
 * - -b "": the image stands alone; safe mode copies in whatever the old chain held (where it is not zeros).
 * qemu-img 7.2 refuses a new backing file without its format ("backing format must be specified"); so do we,
 * before anything is written. A relative new name is relative to the image's folder, and is written as given.
 *
 * A failure or a cancel in safe mode leaves the image reading as before (what was copied in is what the old
 * chain read there) and still naming its old backing file.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import type { FormatName, RebasePlan, RebaseResult } from '../../src-shared/api';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { driverFor, openImage } from '../registry';

export interface RebaseRequest {
  path: string;
  format?: string;
  /** The new backing file's name as it is to be written ('' = none). */
  newBacking: string;
  newBackingFormat?: string;
  /** -u: rewrite the name only. */
  unsafe: boolean;
  backingPolicy?: BackingPolicy;
  acceptChangedBacking?: boolean;
  signal?: AbortSignal;
  /** Guest bytes looked at, done ≤ total. */
  onProgress?: (done: number, total: number) => void;
}

/** Guest bytes looked at per step (status asked, progress reported, cancel checked). */
const STEP = 4 << 20;
/**
 * Bytes compared at a time: the size of each of the two buffers. Each fresh MiB costs 256 first-touch page faults
 * (~3 ms on a VM), so two of 1 MiB rather than two of STEP.
 */
const PIECE = 1 << 20;

/** The new backing file's path (relative names are relative to the image's folder), or undefined for none. */
function newBackingPath(req: RebaseRequest): string | undefined {
  return req.newBacking === '' ? undefined : nodePath.resolve(nodePath.dirname(nodePath.resolve(req.path)), req.newBacking);
}

export async function rebasePlan(req: RebaseRequest): Promise<RebasePlan> {
  const top = await openImage(req.path, { format: req.format, readOnly: true, backingPolicy: req.unsafe ? 'none' : req.backingPolicy ?? 'anywhere', acceptChangedBacking: req.acceptChangedBacking });
  try {
    return { image: top.path, oldBacking: top.backing?.path, newBacking: newBackingPath(req) };
  } finally {
    await top.close();
  }
}

/** Reads [pos, pos + into.length) of `dev` as a backing file reads to its child: zeros past its end, or without one. */
async function readAsBacking(dev: BlockDevice | undefined, pos: number, into: Uint8Array): Promise<void> {
  const n = dev ? Math.max(0, Math.min(into.length, dev.size - pos)) : 0;
  if (n > 0) await dev!.read(pos, into.subarray(0, n));
  into.fill(0, n);
}

/**
 * Copies into `top`, at the granules where they differ, what its old chain reads over [pos, pos + len) (at most
 * the buffers' length).
 */
async function copyDifferences(top: BlockDevice, fresh: BlockDevice | undefined, pos: number, len: number, oldBuf: Buffer, newBuf: Buffer, grain: number): Promise<number> {
  const o = oldBuf.subarray(0, len);
  const n = newBuf.subarray(0, len);
  await top.read(pos, o); // unallocated in the image: this is what the old chain reads
  await readAsBacking(fresh, pos, n);
  if (o.equals(n)) return 0; // the usual case: one memcmp for the piece
  let copied = 0;
  let runStart = -1;
  const flushRun = async (end: number) => {
    if (runStart < 0) return;
    await top.write(pos + runStart, o.subarray(runStart, end));
    copied += end - runStart;
    runStart = -1;
  };
  // Granules aligned to the guest address, so a qcow2 overlay allocates whole clusters once.
  for (let a = 0; a < len; ) {
    const b = Math.min(len, Math.floor((pos + a) / grain) * grain + grain - pos);
    const same = o.compare(n, a, b, a, b) === 0;
    if (same) await flushRun(a);
    else if (runStart < 0) runStart = a;
    a = b;
  }
  await flushRun(len);
  return copied;
}

/**
 * When the new backing file is an image of the old chain (rebasing onto a base further down, the usual case), the
 * layers of the old chain above it: a range none of them allocates reads the same through the old chain and the
 * new backing file, so it needs no comparison (qemu-img rebase does the same since 4.1: "in-chain rebase").
 * Undefined when the new backing file is not in the chain (or is a different format of the same file).
 */
async function layersAboveNewBacking(top: BlockDevice, fresh: BlockDevice | undefined): Promise<BlockDevice[] | undefined> {
  if (!fresh) return undefined;
  const id = async (path: string) => {
    const st = await fsp.stat(path).catch(() => undefined);
    return st ? `${st.dev}:${st.ino}` : undefined;
  };
  const want = await id(fresh.path);
  if (want === undefined) return undefined;
  const layers: BlockDevice[] = [];
  for (let d = top.backing; d; d = d.backing) {
    if (d.format === fresh.format && (await id(d.path)) === want) return layers;
    layers.push(d);
  }
  return undefined;
}

/**
 * Whether any of `layers` (top first) allocates the start of [pos, pos + len), and for how long that answer holds.
 * Past a layer's end the old chain reads zeros whatever lies below, so that counts as allocated (compared).
 */
async function allocatedAbove(layers: BlockDevice[], pos: number, len: number): Promise<{ allocated: boolean; length: number }> {
  for (const d of layers) {
    if (pos >= d.size) return { allocated: true, length: len };
    len = Math.min(len, d.size - pos);
    const st = await d.status(pos, len);
    len = Math.min(len, st.length);
    if (st.kind !== 'unallocated') return { allocated: true, length: len };
  }
  return { allocated: false, length: len };
}

export async function rebaseImage(req: RebaseRequest): Promise<RebaseResult> {
  const target = newBackingPath(req);
  if (target !== undefined && req.newBackingFormat === undefined) {
    throw new DiskError('EINVAL', `Could not change the backing file to '${req.newBacking}': backing format must be specified`, req.path);
  }
  if (req.newBackingFormat !== undefined) driverFor(req.newBackingFormat);
  const policy = req.backingPolicy ?? 'anywhere';
  // -u opens the image without its chain, as qemu-img does: the old backing file may be gone.
  const top = await openImage(req.path, { format: req.format, readOnly: false, backingPolicy: req.unsafe ? 'none' : policy, acceptChangedBacking: req.acceptChangedBacking });
  let fresh: BlockDevice | undefined;
  let copied = 0;
  try {
    if (!top.setBackingFile) throw new DiskError('EUNSUPPORTED', `${top.path}: ${top.format} images cannot change their backing file`, top.path);
    if (target !== undefined && !req.unsafe) {
      // Unsafe mode writes the name only, as qemu-img -u does: the file need not exist yet.
      fresh = await openImage(target, { format: req.newBackingFormat, readOnly: true, backingPolicy: policy });
    }
    if (!req.unsafe) {
      const oldBuf = Buffer.allocUnsafeSlow(PIECE);
      const newBuf = Buffer.allocUnsafeSlow(PIECE);
      const grain = Math.min(PIECE, Math.max(512, top.clusterSize ?? 65536));
      const above = await layersAboveNewBacking(top, fresh);
      for (let pos = 0; pos < top.size; ) {
        throwIfAborted(req.signal);
        const stepEnd = Math.min(top.size, pos + STEP);
        while (pos < stepEnd) {
          const st = await top.status(pos, stepEnd - pos);
          if (st.kind !== 'unallocated') {
            pos += st.length;
            continue;
          }
          const end = pos + st.length;
          while (pos < end) {
            const a = above ? await allocatedAbove(above, pos, end - pos) : { allocated: true, length: end - pos };
            // Pieces end at PIECE-aligned guest offsets, so that no granule (a power of two up to PIECE) spans two.
            const n = a.allocated ? Math.min(a.length, PIECE - (pos % PIECE)) : a.length;
            if (a.allocated) copied += await copyDifferences(top, fresh, pos, n, oldBuf, newBuf, grain);
            pos += n;
          }
        }
        req.onProgress?.(pos, top.size);
      }
      // The copied data is durable before the header stops naming the old backing file.
      await top.flush();
    }
    await top.setBackingFile(target === undefined ? undefined : req.newBacking, req.newBackingFormat as FormatName | undefined, target);
    await top.flush();
    return { copiedBytes: copied };
  } catch (err) {
    throw toDiskError(err, req.path);
  } finally {
    await fresh?.close().catch(() => undefined);
    await top.close();
  }
}
