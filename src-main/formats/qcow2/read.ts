/**
 * Reads and block status of an open qcow2 image: guest reads through data, zero, unallocated (backing file)
 * and compressed clusters, with host-contiguous runs read in one go; and status(), the extents `map` shows,
 * including qemu-img's refinement of metadata-preallocated images by the file's holes.
 */
import { readBelow } from '../../block/chain';
import { corrupt } from '../../block/errors';
import type { Extent } from '../../block/types';
import type { Qcow2State } from './state';
import type { MappedRun } from './tables';

/** Reads guest bytes; bytes past the virtual size read as zero (for the tail of the last cluster). */
export async function readAt(d: Qcow2State, offset: number, into: Uint8Array): Promise<void> {
  const tables = d.tables;
  const end = offset + into.length;
  const limit = Math.min(end, d.size);
  if (limit < end) into.fill(0, Math.max(0, limit - offset));
  let pos = offset;
  // A pending run of host-contiguous data, read in one go.
  let runHost = -1;
  let runStart = 0;
  let runLen = 0;
  const flushRun = async () => {
    if (runLen > 0) {
      if (runHost >= d.file.size) throw corrupt(`${d.path}: guest offset ${runStart} is mapped past the end of the file (host offset 0x${runHost.toString(16)})`, d.path);
      const run = into.subarray(runStart - offset, runStart - offset + runLen);
      await d.file.readZeroPadded(runHost, run);
      d.encryption?.decrypt(run, runHost, runStart);
    }
    runLen = 0;
  };
  // A pending run of ranges that read through to the backing file.
  let bStart = 0;
  let bLen = 0;
  const flushBacking = async () => {
    if (bLen > 0) await readBelow(d.backing, bStart, into.subarray(bStart - offset, bStart - offset + bLen));
    bLen = 0;
  };
  while (pos < limit) {
    const p = tables.mappedRunIfCached(pos, limit - pos) ?? (await tables.mappedRun(pos, limit - pos));
    const dst = into.subarray(pos - offset, pos - offset + p.length);
    if (p.kind !== 'data') await flushRun();
    if (p.kind !== 'unallocated') await flushBacking();
    switch (p.kind) {
      case 'data':
        if (runLen > 0 && runHost + runLen === p.host) runLen += p.length;
        else {
          await flushRun();
          runHost = p.host!;
          runStart = pos;
          runLen = p.length;
        }
        break;
      case 'zero':
        dst.fill(0);
        break;
      case 'unallocated':
        if (bLen > 0) bLen += p.length;
        else {
          bStart = pos;
          bLen = p.length;
        }
        break;
      case 'compressed': {
        await d.compressed.readInto(p.entry!, d.geometry.offsetInCluster(pos), dst);
        break;
      }
    }
    pos += p.length;
  }
  await flushRun();
  await flushBacking();
}


/** The extent at `offset`: the mapped runs of one kind (and, for data, contiguous on the host). */
export async function statusAt(d: Qcow2State, offset: number, length: number): Promise<Extent> {
  const tables = d.tables;
  const end = offset + length;
  const kindOf = (p: MappedRun): Extent['kind'] => (p.kind === 'compressed' ? 'data' : p.kind);
  const first = tables.mappedRunIfCached(offset, length) ?? (await tables.mappedRun(offset, length));
  const kind = kindOf(first);
  // Compressed data has no host offset that qemu-img map would show.
  const host = first.kind === 'compressed' ? undefined : first.host;
  let pos = offset + first.length;
  while (pos < end) {
    const p = tables.mappedRunIfCached(pos, end - pos) ?? (await tables.mappedRun(pos, end - pos));
    if (kindOf(p) !== kind) break;
    const pHost = p.kind === 'compressed' ? undefined : p.host;
    if ((host === undefined) !== (pHost === undefined)) break;
    if (host !== undefined && pHost !== host + (pos - offset)) break;
    pos += p.length;
  }
  // A run of compressed clusters stays apart from plain data (the host-offset test above splits them).
  const ext: Extent = { kind, length: pos - offset, ...(host !== undefined ? { hostOffset: host } : {}), ...(first.kind === 'compressed' ? { compressed: true } : {}) };
  if (kind === 'data' && host !== undefined && (await metadataPreallocated(d))) return refineByHostHoles(d, ext, host);
  return ext;
}

/**
 * qemu-img detects images whose clusters were preallocated without data (preallocation=metadata: far
 * more clusters are counted in use than the file has blocks) and then asks the file system which of
 * those clusters are holes, reporting them as data that reads as zero. We do the same so that `map`
 * agrees with qemu-img's.
 */
async function metadataPreallocated(d: Qcow2State): Promise<boolean> {
  if (d.preallocDetected === undefined) {
    d.preallocDetected = false;
    if (d.file.seesHoles) {
      const realClusters = d.geometry.clusterIndex(await d.file.allocatedSize());
      const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
      const endCluster = d.geometry.sizeToClusters(d.file.size);
      // No more clusters can be in use than the file holds: a file not sparse (nearly every image) cannot pass
      // the threshold, and its refcounts need not be loaded for the answer (10 ms of a small image's map).
      if (endCluster > threshold) {
        const refs = await d.refcounts();
        d.preallocDetected = (await refs.countInUse(endCluster, threshold)) > threshold;
      }
    }
  }
  return d.preallocDetected;
}

function refineByHostHoles(d: Qcow2State, ext: Extent, host: number): Extent {
  const size = d.file.size;
  if (host >= size) return { ...ext, readsAsZero: true };
  const a = d.file.allocationAt(host);
  if (!a.data && a.end >= size) return { ...ext, readsAsZero: true }; // a hole to the end of the file
  const len = Math.min(ext.length, a.end - host);
  return a.data ? { ...ext, length: len } : { ...ext, length: len, readsAsZero: true };
}
