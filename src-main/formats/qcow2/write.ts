/**
 * Guest data writes of an open qcow2 image (qemu's qcow2_co_pwritev_part and its allocation): clusters the
 * image owns are written in place; the others get new host clusters (copy-on-write of what is not
 * overwritten), and the host clusters or compressed sectors they held are released.
 *
 * Write order, for crash safety: a new cluster's refcount is raised when it is allocated, then its data is
 * written, then the L2 entry (and L1 entry) that points to it; an old cluster's refcount is lowered only after
 * nothing points to it. A crash at any point leaks clusters at worst.
 *
 * Sequential writes of new clusters (convert) keep that order while batching: the refcount raises and the L2
 * entries wait in the write-back cache (cache.ts) and are written in runs (refcounts first, then entries, only
 * for clusters whose data has landed), before any other kind of job, at flush and at close; and a write's data
 * may still be on its way while the next write allocates, its entries set once it has landed (writeNewClusters).
 */
import { toDiskError } from '../../block/errors';
import {
  ALL_SUBCLUSTERS,
  be32,
  entryBig,
  hasZeroFlag,
  hostOf,
  hostOffset,
  isCompressedEntry,
  isCopiedEntry,
  normalEntry,
  putEntry,
  readEntry,
  touchedMask,
  type L2Entry,
} from './entry';
import { compressedExtent } from './layout';
import { readAt } from './read';
import type { Qcow2State } from './state';

/** BlockDevice.write. New clusters' data may still be landing when the job ends (the next write starts meanwhile); the write is done when they have landed. */
export async function write(d: Qcow2State, offset: number, data: Uint8Array): Promise<void> {
  d.checkWritable();
  d.checkRange(offset, data.length);
  const landings: Array<Promise<void>> = [];
  await d.order.serial(async () => {
    await d.beginWrite();
    await writeData(d, offset, data, landings);
  }, true).catch((err) => {
    throw toDiskError(err, d.path);
  });
  await Promise.all(landings).catch((err) => {
    throw toDiskError(err, d.path);
  });
}

/**
 * Writes guest data, one L2 table's range at a time. With `landings`, the data of new clusters may still be
 * on its way when this returns: their completions are pushed there. Without, this waits for them.
 */
export async function writeData(d: Qcow2State, offset: number, data: Uint8Array, landings?: Array<Promise<void>>): Promise<void> {
  const own = landings ?? [];
  let pos = offset;
  const end = offset + data.length;
  try {
    while (pos < end) {
      const spanEnd = Math.min(end, d.geometry.l2SpanEnd(pos));
      await writeSpan(d, pos, data.subarray(pos - offset, spanEnd - offset), own);
      pos = spanEnd;
    }
  } finally {
    if (!landings) await Promise.allSettled(own);
  }
  if (!landings) await Promise.all(own);
}

/** Releases what an L2 entry held: a host cluster or the sectors of a compressed cluster. */
export async function releaseEntry(d: Qcow2State, e: L2Entry): Promise<void> {
  const refs = await d.refcounts();
  if (isCompressedEntry(e.hi)) {
    const { offset, length } = compressedExtent(entryBig(e), d.geometry.clusterBits);
    const start = offset - (offset % 512);
    await refs.update(start, length + (offset % 512), -1);
    return;
  }
  const host = hostOf(e);
  if (host) await refs.update(host, d.geometry.clusterSize, -1);
}

/**
 * Releases what many L2 entries held, with one refcount write per refcount block touched (Refcounts.dropEach)
 * rather than one per entry. The entries no longer pointing at them must be on disk already.
 */
export async function releaseEntries(d: Qcow2State, entries: L2Entry[]): Promise<void> {
  const g = d.geometry;
  const clusters: number[] = [];
  for (const e of entries) {
    if (isCompressedEntry(e.hi)) {
      const { offset, length } = compressedExtent(entryBig(e), g.clusterBits);
      const start = offset - (offset % 512);
      const { first, last } = g.clusterRange(start, length + (offset % 512));
      for (let c = first; c <= last; c++) clusters.push(c);
    } else {
      const host = hostOf(e);
      if (host) clusters.push(g.clusterIndex(host));
    }
  }
  if (clusters.length) await (await d.refcounts()).dropEach(clusters);
}

/** A change of one L2 entry: its index in its table, the entry it gets, and the one it had. */
export interface EntryChange {
  idx: number;
  next: L2Entry;
  old: L2Entry;
}

/**
 * Puts `changes` (ascending indexes) into L2 table `l1i` (copied first when a snapshot shares it) and writes
 * the changed range; then, once the new entries are on disk, releases what the old ones held. A crash in
 * between leaks clusters, and a freed cluster is never handed out again while an entry on disk points at it.
 */
export async function replaceEntries(d: Qcow2State, l1i: number, changes: EntryChange[]): Promise<void> {
  const ext = d.geometry.extendedL2;
  const { offset: l2off, table } = await d.tables.l2ForWrite(l1i);
  for (const ch of changes) putEntry(table, ch.idx, ch.next, ext);
  const lo = changes[0].idx;
  const hi = changes[changes.length - 1].idx;
  await d.tables.writeEntries(l2off, table, lo, hi - lo + 1);
  const released = changes.filter((ch) => holdsCluster(ch.old));
  if (released.length === 0) return;
  await d.file.sync();
  await releaseEntries(d, released.map((ch) => ch.old));
}

/** Whether the entry holds anything to release: compressed sectors or a host cluster. */
export function holdsCluster(e: L2Entry): boolean {
  return isCompressedEntry(e.hi) || hostOf(e) !== 0;
}

/** True when the cluster can be written where it is: its own (refcount 1) uncompressed host cluster. */
export function ownsCluster(e: L2Entry): boolean {
  return !isCompressedEntry(e.hi) && hostOf(e) !== 0 && isCopiedEntry(e.hi);
}

/** Writes `data` at guest `pos`; the range lies within one L2 table's range. */
async function writeSpan(d: Qcow2State, pos: number, data: Uint8Array, landings: Array<Promise<void>>): Promise<void> {
  const g = d.geometry;
  const ext = g.extendedL2;
  const { first: firstCluster, last: lastCluster } = g.clusterRange(pos, data.length);
  await d.order.awaitLanding(firstCluster, lastCluster);
  const { offset: l2off, table } = await d.tables.l2ForWrite(g.l1Index(pos));
  let c = firstCluster;
  while (c <= lastCluster) {
    const e = readEntry(table, g.l2IndexOfCluster(c), ext);
    if (ownsCluster(e)) {
      // Owned clusters that follow each other on the host go out in one write (a commit into a base that has
      // data there: 1 MiB per call, not 16 of 64 KiB); a zero flag or subclusters take writeInPlace's path.
      const run = ext || hasZeroFlag(e.lo) ? 1 : ownedRunLength(table, g.l2IndexOfCluster(c), lastCluster - c + 1, hostOf(e), g.clusterSize);
      if (run > 1) await writeOwnedRun(d, c, run, hostOf(e), pos, data);
      else await writeInPlace(d, c, e, pos, data, l2off, table);
      c += run;
      continue;
    }
    // A run of clusters that all need new host clusters: allocate them together.
    let n = 1;
    while (c + n <= lastCluster && !ownsCluster(readEntry(table, g.l2IndexOfCluster(c + n), ext))) n++;
    await writeNewClusters(d, c, n, pos, data, l2off, table, landings);
    c += n;
  }
}

/**
 * Gives guest clusters [c0, c0 + n) new host clusters holding `data` (and their old content where `data`
 * covers them only in part). The refcounts are raised first and the L2 entries change only once the data is
 * written. When no old cluster is freed, that last part happens after this returns ("landing", pushed to
 * `landings`), so that the next write's data goes to the file meanwhile, and the refcounts and entries are
 * written later in runs (write-back cache): refcounts before entries, entries after their data.
 */
async function writeNewClusters(d: Qcow2State, c0: number, n: number, pos: number, data: Uint8Array, l2off: number, table: Uint8Array, landings: Array<Promise<void>>): Promise<void> {
  const g = d.geometry;
  const cs = g.clusterSize;
  const end = pos + data.length;
  const refs = await d.refcounts();
  const old: L2Entry[] = [];
  for (let j = 0; j < n; j++) old.push(readEntry(table, g.l2IndexOfCluster(c0 + j), g.extendedL2));
  let buf: Uint8Array;
  if (pos <= c0 * cs && end >= (c0 + n) * cs) {
    // Whole clusters (the usual case in a sequential copy): written straight from the caller's buffer.
    buf = data.subarray(c0 * cs - pos, (c0 + n) * cs - pos);
  } else {
    buf = new Uint8Array(n * cs);
    for (let j = 0; j < n; j++) {
      const start = (c0 + j) * cs;
      const ws = Math.max(pos, start);
      const we = Math.min(end, start + cs);
      const slot = buf.subarray(j * cs, (j + 1) * cs);
      // The parts of the cluster not written keep their current guest content.
      if (ws > start || we < start + cs) await readAt(d, start, slot);
      slot.set(data.subarray(ws - pos, we - pos), ws - start);
    }
  }
  const released = old.filter(holdsCluster);
  if (released.length === 0) {
    // Nothing is freed, so nothing waits for the metadata: the refcounts are raised in memory (written before
    // any L2 entry, see cache.ts), the entries change when the data has landed and are written later with the
    // others of their table; until then no other job touches these clusters (awaitLanding).
    const host = await refs.alloc(n, true);
    const written = d.file.write(host, d.sealed(buf, host, c0 * cs));
    const landing = written.then(() => {
      putNewEntries(d, c0, n, pos, end, host, old, table);
      d.tables.deferEntries(l2off, table, g.l2IndexOfCluster(c0), n);
    });
    d.order.land(c0, n, landing);
    landings.push(landing);
    return;
  }
  // Old clusters are freed: refcount raised, data written, entries written, and only then the old dropped.
  const host = await refs.alloc(n);
  await d.file.write(host, d.sealed(buf, host, c0 * cs));
  putNewEntries(d, c0, n, pos, end, host, old, table);
  await d.tables.writeEntries(l2off, table, g.l2IndexOfCluster(c0), n);
  await releaseEntries(d, released);
}

/** The L2 entries of clusters [c0, c0 + n) newly at `host`, after guest bytes [pos, end) were written there. */
export function putNewEntries(d: Qcow2State, c0: number, n: number, pos: number, end: number, host: number, old: L2Entry[], table: Uint8Array): void {
  const g = d.geometry;
  const cs = g.clusterSize;
  for (let j = 0; j < n; j++) {
    const start = (c0 + j) * cs;
    let zeroBits = 0;
    let allocBits = 0;
    if (g.extendedL2) {
      const touched = touchedMask(Math.max(pos, start) - start, Math.min(end, start + cs) - start, g.subclusterSize);
      const o = old[j];
      if (isCompressedEntry(o.hi)) allocBits = ALL_SUBCLUSTERS;
      else {
        allocBits = (o.allocBits | touched) >>> 0;
        zeroBits = (o.zeroBits & ~touched) >>> 0;
      }
    }
    putEntry(table, g.l2IndexOfCluster(c0 + j), normalEntry(host + j * cs, zeroBits, allocBits), g.extendedL2);
  }
}

/**
 * How many standard entries from `idx` (at most `max`) are owned, plain (no zero flag) data clusters at host
 * offsets following `host` one cluster after another: read from the table's words, no entry object each.
 */
function ownedRunLength(table: Uint8Array, idx: number, max: number, host: number, clusterSize: number): number {
  let n = 1;
  for (; n < max; n++) {
    const p = (idx + n) * 8;
    const hi = be32(table, p);
    const lo = be32(table, p + 4);
    if (isCompressedEntry(hi) || !isCopiedEntry(hi) || hasZeroFlag(lo) || hostOffset(hi, lo) !== host + n * clusterSize) break;
  }
  return n;
}

/** Writes the part of guest bytes [pos, pos + data.length) that falls in clusters [c0, c0 + n), owned and at host offsets from `host` on. */
async function writeOwnedRun(d: Qcow2State, c0: number, n: number, host: number, pos: number, data: Uint8Array): Promise<void> {
  const cs = d.geometry.clusterSize;
  const ws = Math.max(pos, c0 * cs);
  const we = Math.min(pos + data.length, (c0 + n) * cs);
  const at = host + (ws - c0 * cs);
  await d.file.write(at, d.sealed(data.subarray(ws - pos, we - pos), at, ws));
}

/** Writes into cluster `c`, which the image owns (ownsCluster). */
async function writeInPlace(d: Qcow2State, c: number, e: L2Entry, pos: number, data: Uint8Array, l2off: number, table: Uint8Array): Promise<void> {
  const geo = d.geometry;
  const cs = geo.clusterSize;
  const idx = geo.l2IndexOfCluster(c);
  const g = c * cs;
  const ws = Math.max(pos, g) - g;
  const we = Math.min(pos + data.length, g + cs) - g;
  const host = hostOf(e);
  const part = data.subarray(g + ws - pos, g + we - pos);
  if (!geo.extendedL2) {
    if (!hasZeroFlag(e.lo)) {
      await d.file.write(host + ws, d.sealed(part, host + ws, g + ws));
      return;
    }
    // A preallocated zero cluster: the whole cluster is written (zeros around the data), then the zero flag goes.
    const buf = new Uint8Array(cs);
    buf.set(part, ws);
    await d.file.write(host, d.sealed(buf, host, g));
    putEntry(table, idx, normalEntry(host), false);
    await d.tables.writeEntries(l2off, table, idx, 1);
    return;
  }
  // Subclusters not allocated yet are written whole, their untouched edges filled with their old content.
  const sub = geo.subclusterSize;
  const touched = touchedMask(ws, we, sub);
  const a = geo.subclusterIndex(ws) * sub;
  const b = Math.min(cs, Math.ceil(we / sub) * sub);
  const buf = new Uint8Array(b - a);
  if (a < ws) await readAt(d, g + a, buf.subarray(0, ws - a));
  if (we < b) await readAt(d, g + we, buf.subarray(we - a));
  buf.set(part, ws - a);
  await d.file.write(host + a, d.sealed(buf, host + a, g + a));
  const allocBits = (e.allocBits | touched) >>> 0;
  const zeroBits = (e.zeroBits & ~touched) >>> 0;
  if (allocBits !== e.allocBits || zeroBits !== e.zeroBits) {
    putEntry(table, idx, { ...e, allocBits, zeroBits }, true);
    await d.tables.writeEntries(l2off, table, idx, 1);
  }
}
