/**
 * Map: an image's allocation (data, zero, unallocated, and at which depth of the chain), walked by block status as
 * `qemu-img map` prints it, and the same drawn into a fixed number of buckets for the app's picture.
 */
import type { MapEntry, MapPicture } from '../../src-shared/api';
import { deepStatus } from '../block/chain';
import { throwIfAborted } from '../block/errors';
import { openImage } from '../registry';
import type { BackingPolicy, BlockDevice } from '../block/types';

export interface MapOptions {
  format?: string;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Open encrypted images of the chain whose key is not held (the map reads no data: registry's withoutKey). */
  withoutKey?: boolean;
}

/** One status query covers at most this much, so progress and cancel stay responsive. */
const STATUS_STEP = 1 << 30;

/** Walks the allocation of the whole chain, calling `visit` for each run as qemu-img map would print it (and whether it is stored compressed). */
export async function walkMap(dev: BlockDevice, visit: (e: MapEntry, file: string, compressed: boolean) => void, opts: MapOptions = {}): Promise<void> {
  let pos = 0;
  while (pos < dev.size) {
    throwIfAborted(opts.signal);
    const ext = await deepStatus(dev, pos, Math.min(STATUS_STEP, dev.size - pos));
    const entry: MapEntry = {
      start: pos,
      length: ext.length,
      depth: ext.depth,
      present: ext.kind !== 'unallocated',
      zero: ext.kind !== 'data' || ext.readsAsZero === true,
      data: ext.kind === 'data',
      ...(ext.hostOffset !== undefined ? { offset: ext.hostOffset } : {}),
    };
    visit(entry, ext.file, ext.compressed === true);
    pos += ext.length;
    opts.onProgress?.(pos, dev.size);
  }
}

/** The merged map of an image, in qemu-img's JSON shape: adjacent runs with the same state are joined. */
export async function mapImage(path: string, opts: MapOptions = {}): Promise<Array<MapEntry & { filename: string }>> {
  // The allocation is not encrypted: an encrypted image is mapped without its key (qemu-img needs one).
  const dev = await openImage(path, { format: opts.format, readOnly: true, backingPolicy: opts.backingPolicy, withoutKey: true });
  const out: Array<MapEntry & { filename: string }> = [];
  try {
    await walkMap(
      dev,
      (e, file) => {
        const last = out[out.length - 1];
        if (
          last &&
          last.depth === e.depth &&
          last.present === e.present &&
          last.zero === e.zero &&
          last.data === e.data &&
          last.filename === file &&
          (last.offset === undefined) === (e.offset === undefined) &&
          (e.offset === undefined || last.offset! + last.length === e.offset)
        ) {
          last.length += e.length;
        } else {
          out.push({ ...e, filename: file });
        }
      },
      opts,
    );
  } finally {
    await dev.close();
  }
  return out;
}

/**
 * The map drawn into `buckets` equal parts with the share of data, zero and unallocated bytes in each, and
 * of the data the bytes a backing file provides (depth > 0) and the bytes stored compressed (where the
 * format's status says so). The two optional shares are only set on buckets that have some.
 */
export async function mapPicture(path: string, buckets: number, opts: MapOptions & { snapshot?: string } = {}): Promise<MapPicture> {
  const dev = await openImage(path, { format: opts.format, readOnly: true, backingPolicy: opts.backingPolicy, snapshot: opts.snapshot, withoutKey: opts.withoutKey });
  try {
    const n = Math.max(1, Math.min(4096, Math.floor(buckets)));
    const bucketSize = Math.max(1, Math.ceil(dev.size / n));
    const pic: MapPicture = { virtualSize: dev.size, bucketSize, buckets: Array.from({ length: n }, () => ({ data: 0, zero: 0, unallocated: 0 })) };
    await walkMap(
      dev,
      (e, _file, compressed) => {
        const kind = e.data ? 'data' : e.present ? 'zero' : 'unallocated';
        const backing = e.data && e.depth > 0;
        let pos = e.start;
        const end = e.start + e.length;
        while (pos < end) {
          const b = Math.floor(pos / bucketSize);
          const bEnd = Math.min(end, (b + 1) * bucketSize);
          const bucket = pic.buckets[b];
          bucket[kind] += bEnd - pos;
          if (backing) bucket.backing = (bucket.backing ?? 0) + bEnd - pos;
          if (compressed && e.data) bucket.compressed = (bucket.compressed ?? 0) + bEnd - pos;
          pos = bEnd;
        }
      },
      opts,
    );
    return pic;
  } finally {
    await dev.close();
  }
}
