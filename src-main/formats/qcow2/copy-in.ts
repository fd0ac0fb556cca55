/**
 * Copy offload for qcow2 (convert -C): where a guest range lies as is in the image file (storedAt), and data
 * copied into new clusters inside the kernel (copyIn: copy_file_range, a reflink on btrfs or XFS, where
 * clusters are file-system-block aligned on both sides). Neither works for an encrypted image. copyIn takes
 * only the convert's case, whole clusters not allocated yet, and otherwise declines (0) before changing
 * anything, so the caller writes the range as usual; once it has allocated, it completes the range itself
 * (reading the source file where the kernel cannot copy), so it never leaves a half-done allocation.
 */
import { toDiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { readEntry, type L2Entry } from './entry';
import type { Qcow2State } from './state';
import { holdsCluster, putNewEntries } from './write';

/** Where guest `offset` lies stored as is in the image file, and for how many bytes of `length`; undefined for anything else. */
export async function storedAt(d: Qcow2State, offset: number, length: number): Promise<{ file: ImageFile; offset: number; length: number } | undefined> {
  d.checkRange(offset, length);
  if (d.encryption || length <= 0) return undefined;
  const run = d.tables.mappedRunIfCached(offset, length) ?? (await d.tables.mappedRun(offset, length));
  if (run.kind !== 'data' || run.host === undefined) return undefined;
  // A host offset past the end of the file reads as zeros (or is damage): no copy from there.
  const n = Math.min(run.length, d.file.size - run.host);
  return n > 0 ? { file: d.file, offset: run.host, length: n } : undefined;
}

/**
 * Writes guest [offset, offset + length) from `from` at `fromOffset` into new clusters, copied in the kernel,
 * one L2 table's range at a time: the bytes done from `offset` on (0 when declined at once).
 */
export async function copyIn(d: Qcow2State, offset: number, length: number, from: ImageFile, fromOffset: number): Promise<number> {
  d.checkWritable();
  d.checkRange(offset, length);
  const cs = d.geometry.clusterSize;
  const end = offset + length;
  // Whole clusters only (the last one may end with the image).
  if (d.encryption || length <= 0 || offset % cs !== 0 || (end % cs !== 0 && end !== d.size)) return 0;
  const landings: Array<Promise<void>> = [];
  let pos = offset;
  try {
    while (pos < end) {
      const spanEnd = Math.min(end, d.geometry.l2SpanEnd(pos));
      const started = await copySpan(d, pos, spanEnd, from, fromOffset + (pos - offset));
      if (!started) break;
      landings.push(started.landing);
      pos = spanEnd;
    }
  } finally {
    await Promise.allSettled(landings);
  }
  await Promise.all(landings).catch((err) => {
    throw toDiskError(err, d.path);
  });
  return pos - offset;
}

/**
 * Allocates the clusters of [pos, end) (one L2 table's range) and starts their copy: its landing (wrapped, so
 * that the job does not wait for it), or undefined when one of them is allocated already.
 */
async function copySpan(d: Qcow2State, pos: number, end: number, from: ImageFile, fromOffset: number): Promise<{ landing: Promise<void> } | undefined> {
  const g = d.geometry;
  const { first: c0, last } = g.clusterRange(pos, end - pos);
  const n = last - c0 + 1;
  return d.order
    .serial(async () => {
      await d.beginWrite();
      await d.order.awaitLanding(c0, last);
      const { offset: l2off, table } = await d.tables.l2ForWrite(g.l1Index(pos));
      const old: L2Entry[] = [];
      for (let j = 0; j < n; j++) old.push(readEntry(table, g.l2IndexOfCluster(c0 + j), g.extendedL2));
      if (old.some(holdsCluster)) return undefined;
      const refs = await d.refcounts();
      const host = await refs.alloc(n, true);
      // As a plain write of new clusters: refcounts raised (deferred), data, then the entries once it has landed.
      const landing = copyData(d.file, host, from, fromOffset, end - pos).then(() => {
        putNewEntries(d, c0, n, pos, end, host, old, table);
        d.tables.deferEntries(l2off, table, g.l2IndexOfCluster(c0), n);
      });
      d.order.land(c0, n, landing);
      return { landing };
    }, true)
    .catch((err) => {
      throw toDiskError(err, d.path);
    });
}

/** Copies [fromOffset, +length) of `from` to `host` in `file`: in the kernel where it can, the rest read and written here. */
async function copyData(file: ImageFile, host: number, from: ImageFile, fromOffset: number, length: number): Promise<void> {
  const copied = await file.copyFrom(from, fromOffset, host, length);
  const step = 1 << 20;
  for (let done = copied; done < length; ) {
    const piece = new Uint8Array(Math.min(step, length - done));
    await from.readZeroPadded(fromOffset + done, piece);
    await file.write(host + done, piece);
    done += piece.length;
  }
}
