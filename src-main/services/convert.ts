import { promises as fsp } from 'node:fs';
import { deepStatus } from '../block/chain';
import { DiskError, throwIfAborted } from '../block/errors';
import { driverFor, openImage } from '../block/registry';
import { isZero } from '../block/sizes';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { createImage } from './create';
import { tempPathFor } from './atomic';

export interface ConvertRequest {
  source: string;
  sourceFormat?: string;
  target: string;
  targetFormat: string;
  options?: Record<string, string | number | boolean | undefined>;
  /** Write compressed clusters (qemu-img convert -c). */
  compress?: boolean;
  /** Give the target this backing file and copy only what the source's top image holds (-B). */
  backingFile?: string;
  backingFormat?: string;
  /** The target exists already: write into it instead of creating it (-n). */
  existingTarget?: boolean;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Work is done in runs of at most this many bytes: memory stays flat whatever the image size. */
const CHUNK = 2 * 1024 * 1024;
/** Granularity of zero detection inside data: all-zero 4 KiB blocks are not written (qemu-img's -S 4k). */
const ZERO_GRAIN = 4096;

/**
 * Copies the guest-visible content of `source` (its whole chain) into a new image of `targetFormat`.
 * A new target is written beside its final name and renamed into place only when complete.
 */
export async function convertImage(req: ConvertRequest): Promise<void> {
  const targetDriver = driverFor(req.targetFormat);
  if (req.compress && targetDriver.name !== 'qcow2') throw new DiskError('EUNSUPPORTED', `compression (-c) is not supported for ${req.targetFormat}`);
  const src = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  let tmp: string | undefined;
  let dst: BlockDevice | undefined;
  try {
    if (req.existingTarget) {
      dst = await openImage(req.target, { format: req.targetFormat, readOnly: false, backingPolicy: 'anywhere' });
      if (dst.size < src.size) throw new DiskError('EINVAL', `${req.target} (${dst.size} bytes) is smaller than ${req.source} (${src.size} bytes)`);
    } else {
      tmp = tempPathFor(req.target);
      await createImage({ path: tmp, format: req.targetFormat, size: src.size, options: req.options, backingFile: req.backingFile, backingFormat: req.backingFormat });
      dst = await openImage(tmp, { format: req.targetFormat, readOnly: false, backingPolicy: 'anywhere' });
    }
    await copyContent(src, dst, req);
    await dst.flush();
    await dst.close();
    dst = undefined;
    if (tmp) {
      await fsp.rename(tmp, req.target);
      tmp = undefined;
    }
  } finally {
    await dst?.close().catch(() => undefined);
    await src.close().catch(() => undefined);
    if (tmp) await fsp.rm(tmp, { force: true }).catch(() => undefined);
  }
}

async function copyContent(src: BlockDevice, dst: BlockDevice, req: ConvertRequest): Promise<void> {
  const fresh = !req.existingTarget; // a fresh target reads as zeros everywhere already
  const withBacking = req.backingFile !== undefined;
  const grain = req.compress ? dst.clusterSize ?? 65536 : ZERO_GRAIN;
  const chunk = Math.max(CHUNK, grain);
  const buf = new Uint8Array(chunk);
  let pos = 0;
  while (pos < src.size) {
    throwIfAborted(req.signal);
    // Keep runs aligned to the grain so compressed clusters are whole.
    const maxLen = Math.min(chunk - (pos % grain), src.size - pos);
    let kind: 'data' | 'zero' | 'skip';
    let len: number;
    if (withBacking) {
      // -B: only what the source's top image holds is copied; the rest comes from the new backing file.
      const ext = await src.status(pos, maxLen);
      len = ext.length;
      kind = ext.kind === 'unallocated' ? 'skip' : ext.kind;
    } else {
      const ext = await deepStatus(src, pos, maxLen);
      len = ext.length;
      kind = ext.kind === 'data' ? 'data' : 'zero';
    }
    if (req.compress && kind === 'data') {
      // A compressed cluster must be written whole: extend the run to the end of its grain.
      const grainEnd = Math.min(src.size, Math.ceil((pos + len) / grain) * grain);
      len = Math.min(grainEnd - pos, maxLen);
    }
    if (kind === 'zero') {
      if (!fresh || withBacking) await dst.writeZeroes(pos, len);
    } else if (kind === 'data') {
      const view = buf.subarray(0, len);
      await src.read(pos, view);
      await writeNonZero(dst, pos, view, grain, fresh && !withBacking, req.compress === true);
    }
    pos += len;
    req.onProgress?.(pos, src.size);
  }
}

/** Writes `data` at `pos`, leaving out all-zero grains when the target already reads as zero there. */
async function writeNonZero(dst: BlockDevice, pos: number, data: Uint8Array, grain: number, skipZeros: boolean, compress: boolean): Promise<void> {
  let runStart = -1;
  const flush = async (end: number) => {
    if (runStart < 0) return;
    const run = data.subarray(runStart, end);
    if (compress) await writeCompressedRun(dst, pos + runStart, run, grain);
    else await dst.write(pos + runStart, run);
    runStart = -1;
  };
  for (let off = 0; off < data.length; ) {
    const n = Math.min(grain - ((pos + off) % grain), data.length - off);
    const piece = data.subarray(off, off + n);
    if (isZero(piece)) {
      await flush(off);
      if (!skipZeros) await dst.writeZeroes(pos + off, n);
    } else if (runStart < 0) runStart = off;
    off += n;
  }
  await flush(data.length);
}

async function writeCompressedRun(dst: BlockDevice, pos: number, run: Uint8Array, cluster: number): Promise<void> {
  for (let off = 0; off < run.length; off += cluster) {
    const piece = run.subarray(off, Math.min(off + cluster, run.length));
    if (dst.writeCompressed && piece.length === cluster) await dst.writeCompressed(pos + off, piece);
    else await dst.write(pos + off, piece); // the image's last, partial cluster is stored uncompressed
  }
}
