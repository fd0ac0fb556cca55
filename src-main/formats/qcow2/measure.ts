/**
 * qemu-img measure for qcow2 targets: the same figures as qemu's qcow2_measure (block/qcow2.c). "fully allocated"
 * is qcow2_calc_prealloc_size: header, L2 and L1 tables for every cluster, the refcount structures that count
 * them all (found as a fixed point), and the data clusters. "required" is that minus the data clusters the source
 * leaves unallocated or zero, so it over-counts metadata on purpose, exactly as qemu does.
 */
import { touchedUnits } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { bitmapDirectory, MAX_BITMAP_DIRECTORY_BYTES, MAX_L1_BYTES, readLayout } from './layout';
import { luksHeaderBytes } from './encryption';
import { decodeQcow2Settings } from './settings';

const L1E_SIZE = 8;
const REFTABLE_ENTRY_SIZE = 8;
/** qemu's L2E_SIZE_NORMAL and L2E_SIZE_EXTENDED (block/qcow2.h). */
const L2E_SIZE_NORMAL = 8;
const L2E_SIZE_EXTENDED = 16;
/** Extended L2 needs 32 subclusters of at least 512 bytes (qemu's validate_cluster_size). */
const MIN_EXTL2_CLUSTER = 512 * 32;

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
const divRoundUp = (n: number, d: number) => Math.ceil(n / d);

/** qemu's qcow2_refcount_metadata_size without the generous increase: refcount blocks plus table, in bytes. */
export function refcountMetadataSize(clusters: number, clusterSize: number, refcountOrder: number): number {
  const blocksPerTableCluster = clusterSize / REFTABLE_ENTRY_SIZE;
  const refcountsPerBlock = (clusterSize * 8) / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  // Refcount blocks count themselves and the table too: iterate until the count stops growing.
  do {
    last = n;
    blocks = divRoundUp(clusters + table + blocks, refcountsPerBlock);
    table = divRoundUp(blocks, blocksPerTableCluster);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * clusterSize;
}

/** qemu's qcow2_calc_prealloc_size: every byte of a fully allocated image of `totalSize` guest bytes. */
export function preallocSize(totalSize: number, clusterSize: number, refcountOrder: number, extendedL2: boolean): number {
  const aligned = roundUp(totalSize, clusterSize);
  const l2eSize = extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
  let meta = clusterSize; // the header cluster
  const nl2e = roundUp(aligned / clusterSize, clusterSize / l2eSize);
  meta += nl2e * l2eSize;
  const nl1e = roundUp((nl2e * l2eSize) / clusterSize, clusterSize / L1E_SIZE);
  meta += nl1e * L1E_SIZE;
  meta += refcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder);
  return meta + aligned;
}

export async function measureQcow2(size: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const { extendedL2, clusterSize, version, refcountBits, preallocation: prealloc, backingFile, encryption } = decodeQcow2Settings(opts.options, opts);
  if (extendedL2 && clusterSize < MIN_EXTL2_CLUSTER) {
    throw new DiskError('EINVAL', `Extended L2 entries are only supported with cluster sizes of at least ${MIN_EXTL2_CLUSTER} bytes`);
  }
  if (version < 3 && refcountBits !== 16) {
    throw new DiskError('EINVAL', 'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
  }
  const hasBacking = backingFile !== undefined;
  const virtualSize = roundUp(size, clusterSize);
  const l2eSize = extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
  // qemu checks the L1 size for --size only (with a source its size option is still 0 at that point).
  if (data === undefined && divRoundUp(virtualSize / clusterSize, clusterSize / l2eSize) * L1E_SIZE > MAX_L1_BYTES) {
    throw new DiskError('EINVAL', 'The image size is too large (try using a larger cluster size)');
  }
  let required = 0;
  if (data !== undefined) {
    // With a backing file qemu cannot know what the target shares with it and counts every cluster.
    required = hasBacking ? virtualSize : touchedUnits(data, clusterSize) * clusterSize;
  }
  if (prealloc === 'full' || prealloc === 'falloc') required = virtualSize;
  const luks = luksHeaderBytes(encryption, clusterSize);
  const fullyAllocated = preallocSize(virtualSize, clusterSize, Math.log2(refcountBits), extendedL2) + luks;
  return { required: fullyAllocated - virtualSize + required, fullyAllocated };
}

/** qemu's calc_dir_entry_size: a bitmap directory entry with its name, padded to 8 bytes. */
const dirEntrySize = (nameSize: number, extra: number) => roundUp(24 + nameSize + extra, 8);

/**
 * qemu's qcow2_get_persistent_dirty_bitmap_size: what the persistent bitmaps of the qcow2 source `file` take in a
 * qcow2 target with `clusterSize` clusters (each bitmap fully allocated, its table, and the directory).
 * Undefined for a version 2 image, which cannot keep persistent bitmaps: qemu then leaves the figure out.
 */
export async function persistentBitmapsSize(file: ImageFile, clusterSize: number): Promise<number | undefined> {
  const layout = await readLayout(file);
  if (layout.header.version < 3) return undefined;
  const dir = bitmapDirectory(layout);
  if (!dir || dir.count === 0) return 0;
  if (dir.size > MAX_BITMAP_DIRECTORY_BYTES || dir.offset + dir.size > file.size) {
    throw new DiskError('ECORRUPT', `${file.path}: the bitmap directory lies outside the file`, file.path);
  }
  const buf = new Uint8Array(dir.size);
  await file.readExact(dir.offset, buf, 'bitmap directory');
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = layout.header.size;
  let total = 0;
  let dirSize = 0;
  let at = 0;
  for (let i = 0; i < dir.count; i++) {
    if (at + 24 > buf.length) throw new DiskError('ECORRUPT', `${file.path}: the bitmap directory is truncated`, file.path);
    const granularityBits = v.getUint8(at + 17);
    const nameSize = v.getUint16(at + 18);
    const extra = v.getUint32(at + 20);
    if (granularityBits > 63 || at + dirEntrySize(nameSize, extra) > buf.length) {
      throw new DiskError('ECORRUPT', `${file.path}: bitmap directory entry ${i} is damaged`, file.path);
    }
    const bytes = divRoundUp(divRoundUp(len, 2 ** granularityBits), 8);
    const clusters = divRoundUp(bytes, clusterSize);
    total += clusters * clusterSize + roundUp(clusters * 8, clusterSize);
    dirSize += dirEntrySize(nameSize, 0);
    at += dirEntrySize(nameSize, extra);
  }
  return total + roundUp(dirSize, clusterSize);
}
