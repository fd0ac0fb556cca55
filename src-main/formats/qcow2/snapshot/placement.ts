/**
 * Where a snapshot switch (commit.ts) puts the structures it writes anew: first fit in clusters that are free
 * both before and after the switch, then past the end of everything in use.
 *
 * Why free clusters are safe: until the header write, the image in the file counts them free, so a crash
 * leaves free clusters holding garbage (nothing points at them); after it, the new refcounts count them.
 * Clusters that the switch itself frees (the old refcount structures, the old snapshot table) are still in
 * use until the header write, so they are not free here: they are taken by the next switch, or by writes.
 * Reusing them keeps a run of snapshots from growing the file by a set of structures each time.
 */

/** Finds room for new clusters below `end` where `isFree` says so, and past `end` when none fits. */
export class ClusterPlacer {
  private readonly taken: Uint8Array;
  /** No free cluster lies below this index (first fit starts here). */
  private low = 0;
  /** The next cluster past everything in use. */
  beyond: number;

  constructor(
    private readonly end: number,
    private readonly isFree: (cluster: number) => boolean,
  ) {
    this.taken = new Uint8Array(end);
    this.beyond = end;
  }

  private free(i: number): boolean {
    return this.taken[i] === 0 && this.isFree(i);
  }

  /** The first cluster of a run of `n` new clusters, marked taken. */
  take(n: number): number {
    while (this.low < this.end && !this.free(this.low)) this.low++;
    let run = 0;
    for (let i = this.low; i < this.end; i++) {
      if (!this.free(i)) {
        run = 0;
        continue;
      }
      if (++run === n) {
        const first = i - n + 1;
        this.taken.fill(1, first, i + 1);
        return first;
      }
    }
    const first = this.beyond;
    this.beyond += n;
    return first;
  }
}

/** Byte pieces to write at cluster indexes, merged where adjacent so that they go out in few writes. */
export function mergePieces(pieces: Array<{ cluster: number; bytes: Uint8Array }>, clusterSize: number): Array<{ offset: number; bytes: Uint8Array }> {
  const sorted = [...pieces].sort((a, b) => a.cluster - b.cluster);
  const out: Array<{ offset: number; parts: Uint8Array[]; length: number }> = [];
  for (const p of sorted) {
    const offset = p.cluster * clusterSize;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === offset) {
      last.parts.push(p.bytes);
      last.length += p.bytes.length;
    } else out.push({ offset, parts: [p.bytes], length: p.bytes.length });
  }
  return out.map((w) => {
    if (w.parts.length === 1) return { offset: w.offset, bytes: w.parts[0] };
    const bytes = new Uint8Array(w.length);
    let at = 0;
    for (const part of w.parts) {
      bytes.set(part, at);
      at += part.length;
    }
    return { offset: w.offset, bytes };
  });
}
