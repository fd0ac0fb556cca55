/**
 * measure, as qemu-img measure: how much room a new image of a format needs, either empty (--size) or holding the
 * data of an existing image. The source is opened read-only and its allocation walked through the whole backing
 * chain, as qemu's bdrv_block_status_above does; the ranges that hold data go to the target driver's measure(),
 * which turns them into the format's figures. Options are checked by the same schema as create.
 */
import type { FormatName } from '../../src-shared/api';
import { deepStatus } from '../block/chain';
import { DiskError, throwIfAborted } from '../block/errors';
import { ImageFile } from '../block/file';
import type { BackingPolicy, BlockDevice, DiffRange } from '../block/types';
import { driverFor, openImage } from '../registry';
import { resolveOptions } from './options';

export interface MeasureRequest {
  /** The target format (-O). */
  format: string;
  /** Create options of the target (-o), as strings (CLI) or typed values (UI). */
  options?: Record<string, string | number | boolean | undefined>;
  /** An empty image of this many bytes (--size); exactly one of size and source. */
  size?: number;
  /** The image whose data the new image would hold. */
  source?: string;
  sourceFormat?: string;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** qemu-img measure's figures under its JSON names; `bitmaps` only where qemu shows it (qcow2 v3 from a qcow2 v3 source). */
export interface MeasureReport {
  required: number;
  'fully-allocated': number;
  bitmaps?: number;
}

/** One status query covers at most this much, so cancel and progress stay responsive on large sources. */
const STATUS_STEP = 1 << 30;

/**
 * The guest ranges of `dev` that hold data, looked up through its backing chain: what qemu's measure counts.
 * Zero clusters, unallocated ranges (reading as zeros at the bottom of the chain) and data known to read as
 * zeros (a preallocated cluster over a file-system hole, which qemu sees as zero) are left out.
 */
export async function dataRanges(dev: BlockDevice, signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<DiffRange[]> {
  const out: DiffRange[] = [];
  let pos = 0;
  while (pos < dev.size) {
    throwIfAborted(signal);
    const ext = await deepStatus(dev, pos, Math.min(STATUS_STEP, dev.size - pos));
    if (ext.kind === 'data' && !ext.readsAsZero) {
      const last = out[out.length - 1];
      if (last && last.start + last.length === pos) last.length += ext.length;
      else out.push({ start: pos, length: ext.length });
    }
    pos += ext.length;
    onProgress?.(pos, dev.size);
  }
  return out;
}

/** Whether the qcow2 options (defaults filled) ask for version 3 (compat=1.1), the only version with bitmaps. */
function qcow2V3(options: Record<string, unknown>): boolean {
  const c = String(options.compat);
  return c !== '0.10' && c !== 'v2';
}

export async function measureImage(req: MeasureRequest): Promise<MeasureReport> {
  const driver = driverFor(req.format);
  if (!driver.measure) throw new DiskError('EUNSUPPORTED', `Format driver '${req.format}' does not support measure`);
  const options = resolveOptions(req.format, driver.createOptions, req.options ?? {});
  if (req.size !== undefined && req.source !== undefined) throw new DiskError('EINVAL', '--size N cannot be used together with a filename');
  if (req.size === undefined && req.source === undefined) throw new DiskError('EINVAL', 'Either --size N or one filename must be specified');
  const backingFile = options.backing_file !== undefined ? String(options.backing_file) : undefined;
  const backingFormat = options.backing_fmt !== undefined ? (String(options.backing_fmt) as FormatName) : undefined;
  const createOpts = { options, backingFile, backingFormat };
  if (req.size !== undefined) {
    if (!Number.isSafeInteger(req.size) || req.size < 0) throw new DiskError('EINVAL', `invalid image size ${req.size}`);
    const r = await driver.measure(req.size, createOpts, undefined);
    return { required: r.required, 'fully-allocated': r.fullyAllocated };
  }
  const dev = await openImage(req.source!, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'inside-folder' });
  try {
    const data = await dataRanges(dev, req.signal, req.onProgress);
    const r = await driver.measure(dev.size, createOpts, data);
    const report: MeasureReport = { required: r.required, 'fully-allocated': r.fullyAllocated };
    // qemu shows bitmaps when the target is qcow2 v3 and the source keeps persistent bitmaps (a qcow2 v3 image).
    const bitmapsOf = driverFor(dev.format).persistentBitmapsSize;
    if (driver.name === 'qcow2' && qcow2V3(options) && bitmapsOf) {
      const file = await ImageFile.open(dev.path, false);
      try {
        const bitmaps = await bitmapsOf(file, Number(options.cluster_size));
        if (bitmaps !== undefined) report.bitmaps = bitmaps;
      } finally {
        await file.close();
      }
    }
    return report;
  } finally {
    await dev.close();
  }
}
