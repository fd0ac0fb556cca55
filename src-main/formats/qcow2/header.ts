/**
 * The header of an open qcow2 image: in-place patches of header fields (through layout.ts's field table), the
 * feature bits this driver accepts, the work before the first change (autoclear bits, the dirty bit of lazy
 * refcounts) and the clean mark at close, and what qemu's backing format names mean to us.
 */
import { FORMAT_NAMES, type FormatName } from '../../../src-shared/api';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import {
  COMPAT_LAZY_REFCOUNTS,
  COMPRESSION_ZLIB,
  COMPRESSION_ZSTD,
  encodeHeaderFields,
  INCOMPAT_COMPRESSION,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  type HeaderField,
  type Qcow2Header,
  type Qcow2Layout,
} from './layout';

/** Rewrites adjacent header fields in one write (the rest of the header is untouched). */
export async function writeHeaderFields(file: ImageFile, fields: Partial<Record<HeaderField, number | bigint>>): Promise<void> {
  const { offset, bytes } = encodeHeaderFields(fields);
  await file.write(offset, bytes);
}

/** The header state of an open image that writes: the changes made before the first write, undone at close. */
export class HeaderState {
  private writeBegun = false;
  private dirtySetByUs = false;

  constructor(
    private readonly file: ImageFile,
    readonly header: Qcow2Header,
  ) {}

  /**
   * Before the first change: clear the autoclear feature bits (we keep none of what they vouch for, e.g.
   * persistent bitmaps, so they must not claim to be consistent), and with lazy refcounts mark the image
   * dirty until it is closed cleanly. `loadRefcounts` runs first (the refcounts are needed by every write).
   */
  async beginWrite(loadRefcounts: () => Promise<unknown>): Promise<void> {
    if (this.writeBegun) return;
    this.writeBegun = true;
    await loadRefcounts();
    const h = this.header;
    if (h.version !== 3) return;
    if (h.autoclearFeatures !== 0n) {
      h.autoclearFeatures = 0n;
      await writeHeaderFields(this.file, { autoclearFeatures: 0n });
    }
    if ((h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n && (h.incompatibleFeatures & INCOMPAT_DIRTY) === 0n) {
      h.incompatibleFeatures |= INCOMPAT_DIRTY;
      await writeHeaderFields(this.file, { incompatibleFeatures: h.incompatibleFeatures });
      await this.file.sync();
      this.dirtySetByUs = true;
    }
  }

  /**
   * At close, after everything else is written: clears the dirty bit we set (synced first unless `noFlush`).
   * True when it wrote the header.
   */
  async markClean(noFlush: boolean): Promise<boolean> {
    if (!this.dirtySetByUs) return false;
    if (!noFlush) await this.file.sync();
    this.header.incompatibleFeatures &= ~INCOMPAT_DIRTY;
    await writeHeaderFields(this.file, { incompatibleFeatures: this.header.incompatibleFeatures });
    return true;
  }

  /** Rewrites nb_snapshots and snapshots_offset together (one write). */
  async setSnapshotLocation(count: number, offset: number): Promise<void> {
    await writeHeaderFields(this.file, { nbSnapshots: count, snapshotsOffset: offset });
    this.header.nbSnapshots = count;
    this.header.snapshotsOffset = offset;
  }

  async setVirtualSize(size: number): Promise<void> {
    await writeHeaderFields(this.file, { size });
    this.header.size = size;
  }

  /** Writes the refcount table location (one write, so the switch is atomic). */
  async setRefcountTable(offset: number, clusters: number): Promise<void> {
    await writeHeaderFields(this.file, { refcountTableOffset: offset, refcountTableClusters: clusters });
    this.header.refcountTableOffset = offset;
    this.header.refcountTableClusters = clusters;
  }
}

/** What qemu's backing format names mean to us. */
export function backingFormatName(name: string | undefined, path: string): FormatName | undefined {
  if (name === undefined || name === '') return undefined;
  if (name === 'file' || name === 'host_device') return 'raw';
  if ((FORMAT_NAMES as readonly string[]).includes(name)) return name as FormatName;
  throw new DiskError('EUNSUPPORTED', `${path}: its backing file has format '${name}', which is not supported`, path);
}

/** Checks the header's feature bits against what this driver handles; `writable` adds the write-time rules. */
/**
 * The header checks every command makes the same way (info, check, map, convert…), so that they agree on a
 * damaged header as qemu does: it refuses to open such an image for anything.
 */
export function validateHeader(layout: Qcow2Layout, path: string): void {
  const h = layout.header;
  if (h.cryptMethod > 2) throw corrupt(`${path}: unknown encryption method ${h.cryptMethod} in the qcow2 header`, path);
  const typeBit = (h.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (typeBit !== (h.compressionType !== COMPRESSION_ZLIB)) {
    throw corrupt(`${path}: the compression type field (${h.compressionType}) disagrees with the compression type feature bit`, path);
  }
  if (h.compressionType !== COMPRESSION_ZLIB && h.compressionType !== COMPRESSION_ZSTD) {
    throw new DiskError('EUNSUPPORTED', `${path}: unknown compression type ${h.compressionType}`, path);
  }
  if (layout.extendedL2 && h.clusterBits < 14) throw corrupt(`${path}: extended L2 entries need clusters of at least 16 KiB`, path);
}

/** validateHeader, then what this build cannot do (external data files) and what writing needs (encryption: encryption.ts). */
export function checkFeatures(layout: Qcow2Layout, path: string, writable: boolean): void {
  validateHeader(layout, path);
  const h = layout.header;
  if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) {
    throw new DiskError('EUNSUPPORTED', `${path}: the image keeps its data in an external data file${layout.dataFile ? ` (${layout.dataFile})` : ''}, which is not supported`, path);
  }
  if (writable) {
    if (h.incompatibleFeatures & INCOMPAT_DIRTY) {
      throw new DiskError('EUNCLEAN', `${path}: the image was not closed cleanly; repair it with check -r all first`, path);
    }
    if (h.incompatibleFeatures & INCOMPAT_CORRUPT) {
      throw new DiskError('ECORRUPT', `${path}: the image is marked corrupt; it can only be opened read-only (repair it with check -r all)`, path);
    }
  }
}
