/** Guest bytes read, written and discarded by offset (through the backing chain): for scripts and tests. */
import { checkRange } from '../block/bytes';
import { DiskError } from '../block/errors';
import { openImage } from '../registry';
import type { BackingPolicy } from '../block/types';

export interface ByteRange {
  path: string;
  format?: string;
  offset: number;
  backingPolicy?: BackingPolicy;
}

/** Reads guest bytes (through the backing chain); for scripts and tests. */
export async function readBytes(req: ByteRange & { length: number }): Promise<Uint8Array> {
  if (req.length > 1 << 30) throw new DiskError('EINVAL', 'read at most 1 GiB at a time');
  const dev = await openImage(req.path, { format: req.format, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    checkRange(dev.size, req.offset, req.length, req.path);
    const out = new Uint8Array(req.length);
    await dev.read(req.offset, out);
    return out;
  } finally {
    await dev.close();
  }
}

/** Writes guest bytes into an existing image. */
export async function writeBytes(req: ByteRange & { data: Uint8Array }): Promise<void> {
  const dev = await openImage(req.path, { format: req.format, readOnly: false, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    checkRange(dev.size, req.offset, req.data.length, req.path);
    await dev.write(req.offset, req.data);
    await dev.flush();
  } finally {
    await dev.close();
  }
}

export interface DiscardResult {
  /** The format's allocation unit: only whole units are released. */
  granularity: number;
  /** Bytes of the range that cover whole units (the rest, at the edges, keeps its content). */
  wholeUnitBytes: number;
}

/**
 * Discards a guest range: the whole allocation units inside it are released (see BlockDevice.discard for
 * what they read afterwards). Formats that cannot release space refuse with EUNSUPPORTED.
 */
export async function discardBytes(req: ByteRange & { length: number }): Promise<DiscardResult> {
  const dev = await openImage(req.path, { format: req.format, readOnly: false, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    checkRange(dev.size, req.offset, req.length, req.path);
    // A format that cannot release space either lacks discard or says why in its own words (raw).
    if (!dev.discard) throw new DiskError('EUNSUPPORTED', `${req.path}: ${dev.format} images cannot discard in this build`, req.path);
    await dev.discard(req.offset, req.length);
    await dev.flush();
    const unit = dev.clusterSize ?? 1;
    const end = req.offset + req.length;
    const a = Math.ceil(req.offset / unit) * unit;
    const b = end === dev.size ? end : Math.floor(end / unit) * unit;
    return { granularity: unit, wholeUnitBytes: Math.max(0, b - a) };
  } finally {
    await dev.close();
  }
}
