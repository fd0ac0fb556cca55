/**
 * The check's leak repair when it would make a cluster exclusive (stored refcount above 1, one reference
 * left). Fixed in place, as qemu does, the refcount drops to 1 in one write and the active entry gains
 * OFLAG_COPIED in another; a crash between the two leaves what qemu-img check calls a corruption. So the
 * in-place repair runs dry (context.ts `dry`: its messages and counts, as qemu-img's, but no write),
 * and the repair is made by snapshot/commit.ts's switch: new refcount structures holding the computed
 * counts, copies of the active L2 tables with the flags those counts call for, one header write.
 */
import type { Checker, Result } from './context';
import type { RefcountArray } from './imrt';
import { checkOflagCopied, compare } from './repair';
import { Qcow2Device } from '../device';
import { classify, ClusterType, hostOffset, isCopiedEntry, l1Offset } from '../entry';
import { commitSnapshotChange } from '../snapshot/commit';

/**
 * Whether fixing leaks in place would open that window: some cluster the active tables reach without
 * OFLAG_COPIED has more references stored than the one it has. (Where the flag is already set, lowering the
 * refcount to 1 repairs both in one write, and the in-place repair is kept.)
 */
export async function leakMakesExclusive(c: Checker, imrt: RefcountArray): Promise<boolean> {
  const risky = async (cluster: number, copied: boolean) => {
    if (copied || cluster >= imrt.size || imrt.get(cluster) !== 1) return false;
    const stored = await c.stored.get(cluster);
    return stored !== undefined && stored > 1;
  };
  const es = c.l2EntrySize;
  for (let i = 0; i < c.l1.length / 2; i++) {
    const hi = c.l1[2 * i];
    const l2 = l1Offset(hi, c.l1[2 * i + 1]);
    if (!l2) continue;
    if (await risky(Math.floor(l2 / c.clusterSize), isCopiedEntry(hi))) return true;
    const table = await c.readPadded(l2, c.l2Entries * es);
    const v = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let j = 0; j < c.l2Entries; j++) {
      const ehi = v.getUint32(j * es);
      const elo = v.getUint32(j * es + 4);
      const type = classify(ehi, elo, c.extL2, c.dataFile);
      if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
      if (await risky(Math.floor(hostOffset(ehi, elo) / c.clusterSize), isCopiedEntry(ehi))) return true;
    }
  }
  return false;
}

/** The repair by one switch (see the file comment). Returns the highest cluster in use, as compare() does. */
export async function repairBySwitch(c: Checker, res: Result, fix: number, imrt: RefcountArray): Promise<number> {
  c.dry = new Map();
  let highest: number;
  try {
    highest = await compare(c, res, fix, imrt);
    await checkOflagCopied(c, res, fix);
  } finally {
    c.dry = undefined;
  }
  const h = c.layout.header;
  const dev = new Qcow2Device(c.file, c.layout, false, undefined);
  await dev.tables.loadL1();
  const active = { offset: h.l1TableOffset, entries: h.l1Size, bytes: dev.tables.l1.slice() };
  await commitSnapshotChange(dev, { activeFrom: active.bytes, activeEntries: active.entries, release: [active], oldTable: c.snapshots, base: imrt });
  // The checker reads the new structures from here on (the flags are right in them: nothing more to fix).
  c.reftableOffset = h.refcountTableOffset;
  c.reftableClusters = h.refcountTableClusters;
  await c.load();
  return highest;
}
