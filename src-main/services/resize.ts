/** Resize: changes an image's virtual size, as `qemu-img resize` (shrinking only when asked to). */
import { DiskError } from '../block/errors';
import type { BackingPolicy } from '../block/types';
import { openImage } from '../registry';

export interface ResizeRequest {
  path: string;
  format?: string;
  /** The new virtual size in bytes, or a change of it: { delta: +N | -N }. */
  size: number | { delta: number };
  /** Shrinking throws data away: only done when asked for (qemu-img resize --shrink). */
  shrink?: boolean;
  backingPolicy?: BackingPolicy;
}

/** Changes an image's virtual size, as qemu-img resize does. Returns the new size. */
export async function resizeImage(req: ResizeRequest): Promise<number> {
  const dev = await openImage(req.path, { format: req.format, readOnly: false, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    if (!dev.resize) throw new DiskError('EUNSUPPORTED', `${dev.format} images cannot be resized by this build`);
    const size = typeof req.size === 'number' ? req.size : dev.size + req.size.delta;
    if (size < 0) throw new DiskError('EINVAL', 'resize: the new size would be negative');
    await dev.resize(size, req.shrink ?? false);
    await dev.flush();
    return size;
  } finally {
    await dev.close();
  }
}
