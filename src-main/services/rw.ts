import { DiskError } from '../block/errors';
import { openImage } from '../block/registry';
import type { BackingPolicy } from '../block/types';

export interface ByteRange {
  path: string;
  format?: string;
  offset: number;
  backingPolicy?: BackingPolicy;
}

function checkRange(size: number, offset: number, length: number, path: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || offset + length > size) {
    throw new DiskError('EINVAL', `${path}: range ${offset}+${length} lies outside the image (virtual size ${size})`, path);
  }
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
