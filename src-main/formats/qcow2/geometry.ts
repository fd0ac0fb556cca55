/**
 * The cluster arithmetic of a qcow2 image, as QEMU's qcow2.h spells it (offset_to_l1_index,
 * offset_to_l2_index, offset_into_cluster, size_to_clusters, size_to_l1, offset_to_sc_index): one object per
 * open image, built from its cluster size and whether L2 entries are extended, so that no operation writes the
 * divisions out again. Offsets are numbers (exact to 2^53) and cluster sizes are powers of two up to 2 MiB,
 * so plain division is exact where qemu shifts.
 *
 * Kept apart from state.ts (which re-exports it) so that the parts the state holds (tables.ts,
 * compressed-clusters.ts) and the check can use it without importing the state that imports them.
 */
import { SUBCLUSTERS } from './entry';
import type { Qcow2Layout } from './layout';

export class Qcow2Geometry {
  readonly clusterSize: number;
  /** Bytes per L2 entry: 8, or 16 with extended L2 entries (subcluster bitmaps). */
  readonly l2EntrySize: number;
  /** Entries per L2 table (one cluster of them). */
  readonly l2Entries: number;
  /** Guest bytes one L2 table maps. */
  readonly l2Span: number;
  /** Bytes per subcluster (a cluster has 32 with extended L2 entries; meaningless without). */
  readonly subclusterSize: number;

  constructor(
    readonly clusterBits: number,
    readonly extendedL2: boolean,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.l2EntrySize = extendedL2 ? 16 : 8;
    this.l2Entries = this.clusterSize / this.l2EntrySize;
    this.l2Span = this.l2Entries * this.clusterSize;
    this.subclusterSize = this.clusterSize / SUBCLUSTERS;
  }

  static of(layout: Qcow2Layout): Qcow2Geometry {
    return new Qcow2Geometry(layout.header.clusterBits, layout.extendedL2);
  }

  /** The index of the cluster holding byte `offset` (offset >> cluster_bits). */
  clusterIndex(offset: number): number {
    return Math.floor(offset / this.clusterSize);
  }

  /** offset_into_cluster. */
  offsetInCluster(offset: number): number {
    return offset % this.clusterSize;
  }

  /** start_of_cluster. */
  startOfCluster(offset: number): number {
    return offset - (offset % this.clusterSize);
  }

  /** The offset where the cluster holding `offset` ends. */
  clusterEnd(offset: number): number {
    return (this.clusterIndex(offset) + 1) * this.clusterSize;
  }

  /** size_to_clusters: clusters needed to hold `size` bytes (rounded up). */
  sizeToClusters(size: number): number {
    return Math.ceil(size / this.clusterSize);
  }

  /** `size` rounded up to whole clusters, in bytes. */
  alignUp(size: number): number {
    return this.sizeToClusters(size) * this.clusterSize;
  }

  /** The clusters bytes [offset, offset + length) touch, first and last (length > 0). */
  clusterRange(offset: number, length: number): { first: number; last: number } {
    return { first: this.clusterIndex(offset), last: this.clusterIndex(offset + length - 1) };
  }

  /** offset_to_l1_index: the L1 entry whose L2 table maps guest byte `offset`. */
  l1Index(offset: number): number {
    return Math.floor(offset / this.l2Span);
  }

  /** offset_to_l2_index: the entry of that L2 table for guest byte `offset`. */
  l2Index(offset: number): number {
    return this.clusterIndex(offset) % this.l2Entries;
  }

  /** The L1 entry whose table maps guest cluster `cluster`. */
  l1IndexOfCluster(cluster: number): number {
    return Math.floor(cluster / this.l2Entries);
  }

  /** The entry of its L2 table for guest cluster `cluster`. */
  l2IndexOfCluster(cluster: number): number {
    return cluster % this.l2Entries;
  }

  /** The guest offset where the range mapped by the L2 table of guest byte `offset` ends. */
  l2SpanEnd(offset: number): number {
    return (this.l1Index(offset) + 1) * this.l2Span;
  }

  /** size_to_l1: L1 entries needed to map a guest of `size` bytes. */
  l1EntriesFor(size: number): number {
    return Math.ceil(size / this.l2Span);
  }

  /** offset_to_sc_index: the subcluster holding byte `offsetInCluster` of its cluster. */
  subclusterIndex(offsetInCluster: number): number {
    return Math.floor(offsetInCluster / this.subclusterSize);
  }
}
