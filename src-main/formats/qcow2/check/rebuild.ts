/**
 * The check's rebuild of the refcount structure (qemu's rebuild_refcount_structure()): new refcount blocks
 * and a new refcount table, encoded from the in-memory refcounts and placed in clusters nothing uses, written
 * before the header is switched to them, so a crash leaves the old (if wrong) structure in place.
 */
import { throwIfAborted, toDiskError } from '../../../block/errors';
import { CheckFailed, type Checker } from './context';
import type { RefcountArray } from './imrt';
import { encodeHeaderFields, MAX_REFTABLE_BYTES, setRefcount } from '../layout';

const TWO32 = 2 ** 32;

/** alloc_clusters_imrt(): finds `count` free clusters in the in-memory table, growing it at the end if needed. */
function allocInImrt(c: Checker, count: number, imrt: RefcountArray, firstFree: { v: number }): number {
  let cluster = firstFree.v;
  let contiguous = 0;
  let firstGap = true;
  for (; cluster < imrt.size && contiguous < count; cluster++) {
    if (imrt.get(cluster) === 0) {
      contiguous++;
      if (firstGap) {
        firstFree.v = cluster;
        firstGap = false;
      }
    } else contiguous = 0;
  }
  if (contiguous < count) imrt.resize(cluster + count - contiguous);
  cluster -= contiguous;
  for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
  return cluster * c.clusterSize;
}

/** The on-disk refcount block `index`, encoded from the in-memory refcounts. */
function encodeRefblock(c: Checker, imrt: RefcountArray, index: number): Uint8Array {
  const block = new Uint8Array(c.clusterSize);
  const first = index * c.refblockEntries;
  const end = Math.min(first + c.refblockEntries, imrt.size);
  for (let k = first; k < end; k++) {
    const rc = imrt.get(k);
    if (rc) setRefcount(block, k - first, c.refcountBits, rc);
  }
  return block;
}

/**
 * rebuild_refcounts_write_refblocks(): writes a refcount block for every used cluster in [first, end),
 * allocating blocks (inside the range they cover where possible) as needed. Returns true when the new
 * refcount table had to grow.
 */
async function writeRefblocks(c: Checker, imrt: RefcountArray, firstCluster: number, endCluster: number, table: { e: number[] }): Promise<boolean> {
  const firstFree = { v: 0 };
  let grown = false;
  let end = endCluster;
  for (let cluster = firstCluster; cluster < end; ) {
    throwIfAborted(c.signal);
    if (imrt.get(cluster) === 0) {
      cluster++;
      continue;
    }
    const index = Math.floor(cluster / c.refblockEntries);
    const start = index * c.refblockEntries;
    let blockOffset = table.e[index] ?? 0;
    if (!blockOffset) {
      // Blocks written earlier already hold their final counts, so allocate from this block's own range.
      if (firstFree.v < start) firstFree.v = start;
      blockOffset = allocInImrt(c, 1, imrt, firstFree);
      const blockCluster = blockOffset / c.clusterSize;
      // The block that counts this new block must be written as well.
      if (blockCluster >= end) end = blockCluster + 1;
      if (table.e.length <= index) {
        const per = c.clusterSize / 8;
        const n = Math.ceil((index + 1) / per) * per;
        if (n * 8 > MAX_REFTABLE_BYTES) throw new CheckFailed('ERROR the new refcount table would be too large');
        while (table.e.length < n) table.e.push(0);
        grown = true;
      }
      table.e[index] = blockOffset;
    }
    try {
      await c.write(blockOffset, encodeRefblock(c, imrt, index));
    } catch (err) {
      throw new CheckFailed(`ERROR writing refblock: ${toDiskError(err).message}`);
    }
    cluster = start + c.refblockEntries;
  }
  return grown;
}

/** rebuild_refcount_structure(): the new structure written in full, then the header switched to it. */
export async function rebuildStructure(c: Checker, imrt: RefcountArray): Promise<void> {
  c.stored.clear();
  const table = { e: [] as number[] };
  await writeRefblocks(c, imrt, 0, imrt.size, table);
  let tableOffset: number;
  let tableClusters: number;
  for (;;) {
    tableClusters = Math.ceil((table.e.length * 8) / c.clusterSize);
    tableOffset = allocInImrt(c, tableClusters, imrt, { v: 0 });
    const start = tableOffset / c.clusterSize;
    // The refcount blocks covering the table now count it; a larger table needs a new place.
    if (!(await writeRefblocks(c, imrt, start, start + tableClusters, table))) break;
  }
  await c.file.sync();
  const buf = new Uint8Array(tableClusters * c.clusterSize);
  const bv = new DataView(buf.buffer);
  table.e.forEach((e, i) => bv.setBigUint64(i * 8, BigInt(e)));
  try {
    await c.write(tableOffset, buf);
  } catch (err) {
    throw new CheckFailed(`ERROR writing reftable: ${toDiskError(err).message}`);
  }
  await c.file.sync();
  const hdr = encodeHeaderFields({ refcountTableOffset: tableOffset, refcountTableClusters: tableClusters });
  await c.write(hdr.offset, hdr.bytes, 'unchecked');
  await c.file.sync();
  c.reftableOffset = tableOffset;
  c.reftableClusters = tableClusters;
  c.reftable = new Uint32Array(table.e.length * 2);
  table.e.forEach((e, i) => {
    c.reftable[2 * i] = Math.floor(e / TWO32);
    c.reftable[2 * i + 1] = e % TWO32;
  });
  c.reftableEntries = table.e.length;
  c.mapMetadata();
}
