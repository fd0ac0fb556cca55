/**
 * What the operations on an open qcow2 image need from it (QEMU's BDRVQcow2State in qcow2.h): the file, the
 * header and its cluster arithmetic (Qcow2Geometry, geometry.ts), and the parts that hold the image's
 * metadata — mapping tables (tables.ts), refcounts (refcount.ts), the write-back metadata cache (cache.ts),
 * the order of mutations (write-order.ts), compressed clusters (compressed-clusters.ts) and the header's state
 * (header.ts). device.ts implements it; read, write, zero, discard, compress, resize, backing-edit and the
 * snapshot commit import only this file, so none of them imports the device and no import runs in a circle.
 */
import type { ImageFile } from '../../block/file';
import type { BlockDevice } from '../../block/types';
import type { WriteBackCache } from './cache';
import type { CompressedClusters } from './compressed-clusters';
import type { QcowEncryption } from './encryption';
import type { Qcow2Geometry } from './geometry';
import type { HeaderState } from './header';
import type { WriteOrder } from './write-order';
import type { Qcow2Header, Qcow2Layout } from './layout';
import type { Refcounts } from './refcount';
import type { Tables } from './tables';

export { Qcow2Geometry } from './geometry';

export interface Qcow2State {
  readonly path: string;
  readonly file: ImageFile;
  readonly layout: Qcow2Layout;
  /** The header as in memory; tables.ts keeps its L1 fields current. */
  readonly header: Qcow2Header;
  readonly headerState: HeaderState;
  readonly geometry: Qcow2Geometry;
  /** Virtual size in bytes. */
  readonly size: number;
  readonly version: 2 | 3;
  readonly readOnly: boolean;
  readonly backing: BlockDevice | undefined;
  readonly cache: WriteBackCache;
  readonly order: WriteOrder;
  readonly tables: Tables;
  readonly compressed: CompressedClusters;
  /** Whether the image looks preallocated with metadata only (read.ts decides it once). */
  preallocDetected?: boolean;
  /** The data cipher of an encrypted image (encryption.ts): read.ts decrypts what it reads with it. */
  encryption?: QcowEncryption;
  /** Data as it goes to host offset `host` (guest `guest`): encrypted in a copy when the image is encrypted. */
  sealed(data: Uint8Array, host: number, guest: number): Uint8Array;
  /** The refcount structures, loaded on first use. */
  refcounts(): Promise<Refcounts>;
  /** Before the first change (header.ts): refcounts loaded, autoclear bits cleared, dirty bit set with lazy refcounts. */
  beginWrite(): Promise<void>;
  /** Throws unless [offset, offset + length) lies within the virtual size. */
  checkRange(offset: number, length: number): void;
  /** Throws when the image is read-only or closed. */
  checkWritable(): void;
  /** Drops cached L2 tables and inflated clusters (after another actor rewrote them). */
  dropCaches(): void;
}
