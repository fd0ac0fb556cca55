/**
 * The crash-safe way a snapshot operation (create, apply, delete) changes a qcow2 image: every structure it
 * changes is written anew beside the live ones, and one write of the header switches to them all at once.
 *
 * Why not in place, in qemu's order: taking a snapshot raises a data cluster's refcount from 1 to 2, and at
 * that moment the active L2 entry must lose OFLAG_COPIED; qemu-img check calls a mismatch either way a
 * corruption ("ERROR OFLAG_COPIED data cluster … refcount=2", or "… refcount=1" when deleting). The refcount
 * and the flag live in different clusters, so no order of in-place writes keeps them in step, and the dirty
 * bit does not help either (qemu-img check still counts the mismatch on a dirty image). What does keep them
 * in step: the header holds both the active L1 table's offset and the refcount table's (and the snapshot
 * table's and the virtual size), all within bytes 24..72 of its first sector, which one write replaces.
 *
 * So a commit writes, in clusters free before and after it (placement.ts) or past the end of the file: copies of
 * the active L2 tables whose OFLAG_COPIED flags must change, a new active L1 table pointing at them and at the
 * tables it shares, the new snapshot table, and a complete new set of refcount structures (table and blocks)
 * counting exactly the state after the switch, in which the old structures that are no longer reachable
 * already count zero. It syncs, writes the header fields in one write, syncs. A crash before the header write
 * leaves the old image untouched (the new clusters are free in it); after it, the new image complete. Nothing
 * is left to free afterwards.
 *
 * Sharing, as qemu does: an L2 table whose flags are already right under the new counts (every entry's flag
 * clear because its cluster stays shared, as after an earlier snapshot with no write since) is not copied:
 * the new active L1 points at it and its refcount goes up by one. A write later copies it (tables.ts
 * l2ForWrite). So a snapshot costs copies only of the tables written since the last one.
 *
 * Cost: those L2 copies, the L1 table and the refcount structures (metadata only, about 1/8192 of the data
 * with 64 KiB clusters); the clusters the old ones used are free for the next switch and for later writes.
 */
import { corrupt, DiskError } from '../../../block/errors';
import { compressedExtent, getRefcount, maxRefcount, setRefcount } from '../layout';
import { entryBig, HI_COPIED, hostOf, isCompressedEntry, l1Offset as l1EntryOffset, putEntry, readEntry, type L2Entry } from '../entry';
import { writeHeaderFields } from '../header';
import { ClusterPlacer, mergePieces } from './placement';
import { serializeSnapshotTable, type SnapshotEntry, type SnapshotTable } from './table-codec';
import type { Qcow2State } from '../state';

/** An L1 table as stored: its offset, its number of entries and its bytes (big-endian entries). */
export interface L1Ref {
  offset: number;
  entries: number;
  bytes: Uint8Array;
}

export interface SnapshotCommit {
  /** The L1 table whose L2 tables the new active L1 copies (the old active one, or a snapshot's). */
  activeFrom: Uint8Array;
  /** Entries of the new active L1 table (at least activeFrom's). */
  activeEntries: number;
  /** L1 tables no longer referenced after the switch: they and all they reach lose one reference. */
  release: L1Ref[];
  /** The snapshot table after the switch, when it changes; `oldTable` is the one in the file. */
  snapshots?: SnapshotEntry[];
  oldTable: SnapshotTable;
  /** The virtual size after the switch (apply of a snapshot taken at another size). */
  virtualSize?: number;
  /**
   * The refcounts the changes apply to, when not the stored ones: the check's repair passes the counts it
   * computed from the references (check/switch.ts), so that the switch also repairs.
   */
  base?: { get(cluster: number): number; readonly size: number };
}

function l1At(l1: Uint8Array, i: number): number {
  const v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  return l1EntryOffset(v.getUint32(i * 8), v.getUint32(i * 8 + 4));
}

/** Where each new structure of a switch goes (cluster indexes), and the end of everything in use after it. */
interface Placement {
  copies: number[];
  l1: number;
  snap: number;
  rt: number;
  rtClusters: number;
  blocks: number[];
  end: number;
  /** The new clusters placed below the old end. */
  taken: Set<number>;
}

function placeAll(placer: ClusterPlacer, copies: number, l1Clusters: number, snapClusters: number, rtClusters: number, blocks: number): Placement {
  const taken = new Set<number>();
  const take = (n: number) => {
    const at = placer.take(n);
    for (let i = at; i < at + n; i++) taken.add(i);
    return at;
  };
  const copyAt: number[] = [];
  for (let i = 0; i < copies; i++) copyAt.push(take(1));
  const l1 = l1Clusters ? take(l1Clusters) : 0;
  const snap = snapClusters ? take(snapClusters) : 0;
  const rt = take(rtClusters);
  const blockAt: number[] = [];
  for (let t = 0; t < blocks; t++) blockAt.push(take(1));
  return { copies: copyAt, l1, snap, rt, rtClusters, blocks: blockAt, end: placer.beyond, taken };
}

/** Writes the commit and switches the header to it (see the file comment). */
export async function commitSnapshotChange(dev: Qcow2State, c: SnapshotCommit): Promise<void> {
  const refs = await dev.refcounts();
  await dev.cache.writeRefcounts();
  const file = dev.file;
  const g = dev.geometry;
  const cs = g.clusterSize;
  const bits = refs.bits;
  const perBlock = refs.perBlock;
  const fileClusters = g.sizeToClusters(file.size);

  // The old refcounts, block by block (bounded by the file: each block is one cluster inside it).
  const oldBlocks = new Map<number, Uint8Array>();
  let lastUsed = -1;
  for (let t = 0; t < refs.table.length; t++) {
    const off = refs.table[t];
    if (!off) continue;
    const b = await file.readBlock(off, cs, `refcount block ${t}`);
    oldBlocks.set(t, b);
    for (let k = perBlock - 1; k >= 0; k--) {
      if (getRefcount(b, k, bits) !== 0) {
        lastUsed = Math.max(lastUsed, t * perBlock + k);
        break;
      }
    }
  }
  const oldRef = (i: number): number => {
    const b = oldBlocks.get(Math.floor(i / perBlock));
    return b ? getRefcount(b, i % perBlock, bits) : 0;
  };
  const start = Math.max(fileClusters, lastUsed + 1, c.base?.size ?? 0);
  const baseRef = c.base ? (i: number) => (i < c.base!.size ? c.base!.get(i) : 0) : oldRef;

  // Changes of references, per host cluster below `start`.
  const delta = new Int32Array(start);
  const bump = (cluster: number, by: number, what: string) => {
    if (!Number.isSafeInteger(cluster) || cluster < 0 || cluster >= start) throw corrupt(`${dev.path}: ${what} points past the end of the file; repair the image first`, dev.path);
    delta[cluster] += by;
  };
  const bumpRange = (offset: number, length: number, by: number, what: string) => {
    if (length <= 0) return;
    const { first, last } = g.clusterRange(offset, length);
    for (let k = first; k <= last; k++) bump(k, by, what);
  };
  // Every cluster reached through an L1 table's L2 tables (the tables themselves with `withTables`).
  const reach = async (l1: Uint8Array, by: number, withTables: boolean, keep?: Map<number, Uint8Array>) => {
    for (let i = 0; i < l1.length / 8; i++) {
      const l2 = l1At(l1, i);
      if (!l2) continue;
      if (g.offsetInCluster(l2) !== 0) throw corrupt(`${dev.path}: L1 entry ${i} points to an unaligned L2 table; repair the image first`, dev.path);
      if (withTables) bump(g.clusterIndex(l2), by, 'an L1 entry');
      const table = keep?.get(l2) ?? (await file.readBlock(l2, cs, 'L2 table'));
      keep?.set(l2, table);
      for (let k = 0; k < g.l2Entries; k++) {
        const e = readEntry(table, k, g.extendedL2);
        if (isCompressedEntry(e.hi)) {
          const { offset, length } = compressedExtent(entryBig(e), g.clusterBits);
          bumpRange(offset - (offset % 512), length + (offset % 512), by, 'a compressed cluster');
        } else if (hostOf(e)) {
          if (g.offsetInCluster(hostOf(e)) !== 0) throw corrupt(`${dev.path}: an L2 entry points to an unaligned cluster; repair the image first`, dev.path);
          bump(g.clusterIndex(hostOf(e)), by, 'an L2 entry');
        }
      }
    }
  };
  for (const r of c.release) {
    bumpRange(r.offset, r.entries * 8, -1, 'an L1 table');
    await reach(r.bytes, -1, true);
  }
  const activeTables = new Map<number, Uint8Array>();
  await reach(c.activeFrom, +1, false, activeTables);
  const tableBytes = c.snapshots?.length ? serializeSnapshotTable(c.snapshots, dev.version) : undefined;
  if (c.snapshots && c.oldTable.entries.length && c.oldTable.byteLength) bumpRange(dev.header.snapshotsOffset, c.oldTable.byteLength, -1, 'the snapshot table');
  bumpRange(refs.tableOffset, refs.tableClusters * cs, -1, 'the refcount table');
  for (const t of oldBlocks.keys()) bump(g.clusterIndex(refs.table[t]), -1, 'a refcount block');

  const newRef = (i: number): number => {
    if (i >= start) return 1;
    const v = baseRef(i) + delta[i];
    if (v < 0) throw corrupt(`${dev.path}: the refcount of cluster ${i} is lower than its references; repair the image first (check -r all)`, dev.path);
    if (v > maxRefcount(bits)) throw new DiskError('EUNSUPPORTED', `${dev.path}: its ${bits}-bit refcounts cannot count clusters shared by another snapshot (the largest is ${maxRefcount(bits)}); convert it with a larger refcount_bits`, dev.path);
    return v;
  };
  // OFLAG_COPIED exactly where a data cluster's new refcount is 1 (never on compressed entries).
  const wantCopied = (e: L2Entry) => {
    const host = isCompressedEntry(e.hi) ? 0 : hostOf(e);
    return host !== 0 && newRef(g.clusterIndex(host)) === 1;
  };
  const flagsRight = (table: Uint8Array) => {
    for (let k = 0; k < g.l2Entries; k++) {
      const e = readEntry(table, k, g.extendedL2);
      if (((e.hi & HI_COPIED) !== 0) !== wantCopied(e)) return false;
    }
    return true;
  };

  // The new active L1 shares an L2 table as it is (one more reference to it) when its flags are already right
  // under the new counts: as qemu shares them, with no copy (a later write copies it, tables.ts l2ForWrite).
  // A table whose flags must change is copied, since the flags and the counts must change in one write.
  const l2Sources: number[] = [];
  for (let i = 0; i < c.activeFrom.length / 8; i++) l2Sources.push(l1At(c.activeFrom, i));
  const shared = new Set<number>();
  for (const src of new Set(l2Sources)) {
    if (src && flagsRight(activeTables.get(src)!)) shared.add(src);
  }
  for (const src of l2Sources) if (src && shared.has(src)) bump(g.clusterIndex(src), +1, 'an L1 entry');

  // The new clusters (L2 copies, the active L1, the snapshot table, the refcount table and its blocks), placed
  // in clusters free before and after the switch (placement.ts), else past `start`. Where the counts are the
  // check's (`base`), nothing is reused: the new structures go past everything the file holds.
  const isFree = c.base ? () => false : (i: number) => oldRef(i) === 0 && delta[i] === 0;
  const copies = l2Sources.filter((o) => o !== 0 && !shared.has(o)).length;
  const l1Clusters = g.sizeToClusters(c.activeEntries * 8);
  const snapClusters = tableBytes ? g.sizeToClusters(tableBytes.length) : 0;
  let blocks = Math.max(1, Math.ceil(start / perBlock));
  let plan: ReturnType<typeof placeAll>;
  for (;;) {
    const rtClusters = Math.max(1, g.sizeToClusters(blocks * 8));
    plan = placeAll(new ClusterPlacer(start, isFree), copies, l1Clusters, snapClusters, rtClusters, blocks);
    const need = Math.ceil(plan.end / perBlock);
    if (need <= blocks) break;
    blocks = need;
  }
  const isNew = (i: number) => (i >= start ? true : plan.taken.has(i));
  const refOf = (i: number): number => (isNew(i) ? 1 : newRef(i));

  const pieces: Array<{ cluster: number; bytes: Uint8Array }> = [];
  // Active L2 copies, with the flags recomputed.
  const l1Bytes = new Uint8Array(l1Clusters * cs);
  const l1View = new DataView(l1Bytes.buffer);
  let copyIndex = 0;
  for (let i = 0; i < l2Sources.length; i++) {
    const src = l2Sources[i];
    if (!src) continue;
    if (shared.has(src)) {
      const copied = newRef(g.clusterIndex(src)) === 1;
      l1View.setBigUint64(i * 8, BigInt(src) | (copied ? 1n << 63n : 0n));
      continue;
    }
    const at = plan.copies[copyIndex++];
    const table = activeTables.get(src)!.slice();
    for (let k = 0; k < g.l2Entries; k++) {
      const e = readEntry(table, k, g.extendedL2);
      const hi = (wantCopied(e) ? e.hi | HI_COPIED : e.hi & ~HI_COPIED) >>> 0;
      if (hi !== e.hi) putEntry(table, k, { ...e, hi }, g.extendedL2);
    }
    pieces.push({ cluster: at, bytes: table });
    l1View.setBigUint64(i * 8, BigInt(at * cs) | (1n << 63n)); // each copy is the active layer's alone
  }
  if (l1Clusters) pieces.push({ cluster: plan.l1, bytes: l1Bytes });
  if (tableBytes) {
    const snap = new Uint8Array(snapClusters * cs);
    snap.set(tableBytes);
    pieces.push({ cluster: plan.snap, bytes: snap });
  }
  const rtBytes = new Uint8Array(plan.rtClusters * cs);
  const rtView = new DataView(rtBytes.buffer);
  for (let t = 0; t < blocks; t++) {
    const at = plan.blocks[t];
    rtView.setBigUint64(t * 8, BigInt(at * cs));
    const block = new Uint8Array(cs);
    for (let k = 0; k < perBlock; k++) {
      const i = t * perBlock + k;
      if (i >= plan.end) break;
      const v = refOf(i);
      if (v) setRefcount(block, k, bits, v);
    }
    pieces.push({ cluster: at, bytes: block });
  }
  pieces.push({ cluster: plan.rt, bytes: rtBytes });

  // Everything new is written and on disk before the one header write that makes it live.
  for (const w of mergePieces(pieces, cs)) await file.write(w.offset, w.bytes);
  await file.sync();
  const rtAt = plan.rt;
  const rtClusters = plan.rtClusters;
  const l1At0 = plan.l1;
  const snapAt = plan.snap;
  const h = dev.header;
  const size = c.virtualSize ?? h.size;
  const nb = c.snapshots ? c.snapshots.length : h.nbSnapshots;
  const snapOffset = c.snapshots ? (tableBytes ? snapAt * cs : 0) : h.snapshotsOffset;
  await writeHeaderFields(file, {
    size,
    cryptMethod: h.cryptMethod,
    l1Size: c.activeEntries,
    l1TableOffset: c.activeEntries ? l1At0 * cs : 0,
    refcountTableOffset: rtAt * cs,
    refcountTableClusters: rtClusters,
    nbSnapshots: nb,
    snapshotsOffset: snapOffset,
  });
  await file.sync();
  h.size = size;
  h.l1Size = c.activeEntries;
  h.l1TableOffset = c.activeEntries ? l1At0 * cs : 0;
  h.refcountTableOffset = rtAt * cs;
  h.refcountTableClusters = rtClusters;
  h.nbSnapshots = nb;
  h.snapshotsOffset = snapOffset;
  dev.dropCaches();
}

/**
 * After a create: the old active tables now belong to the snapshot alone, and still carry OFLAG_COPIED from
 * when they were active. qemu's check ignores the flag outside the active tables, but qemu leaves snapshot
 * tables without it; so do we. They are no longer active, so these writes are safe at any point.
 */
export async function clearCopiedFlags(dev: Qcow2State, l1: L1Ref): Promise<void> {
  const g = dev.geometry;
  const bytes = l1.bytes.slice();
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < l1.entries; i++) {
    const l2 = l1At(bytes, i);
    if (!l2) continue;
    v.setUint32(i * 8, v.getUint32(i * 8) & ~HI_COPIED);
    const table = await dev.file.readBlock(l2, g.clusterSize, 'L2 table');
    let changed = false;
    for (let k = 0; k < g.l2Entries; k++) {
      const e = readEntry(table, k, g.extendedL2);
      if (e.hi & HI_COPIED) {
        putEntry(table, k, { ...e, hi: (e.hi & ~HI_COPIED) >>> 0 }, g.extendedL2);
        changed = true;
      }
    }
    if (changed) await dev.file.write(l2, table);
  }
  if (l1.entries) await dev.file.write(l1.offset, bytes);
}
