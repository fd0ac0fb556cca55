/**
 * The qcow2 FormatDriver: wiring of probe, describe (info), open, create, check and snapshots. Only what every
 * start-up needs (the probe and the option list) is loaded with it; the rest is loaded on first use (`await
 * import`), so a command that never touches a qcow2 image does not compile the qcow2 code.
 */
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { QCOW2_CREATE_OPTIONS } from './create-options';
import { COMPAT_LAZY_REFCOUNTS, COMPRESSION_ZSTD, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, QCOW2_MAGIC, readLayout } from './layout';

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const [{ checkFeatures, validateHeader }, { readSnapshotTable }, { snapshotInfo }] = await Promise.all([
    import('./header'),
    import('./snapshot/table-codec'),
    import('./snapshot/entry-to-info'),
  ]);
  const layout = await readLayout(file);
  const h = layout.header;
  validateHeader(layout, file.path);
  /** Whether this build can read the image's data (external-data-file images it cannot). */
  let dataReadable = true;
  try {
    checkFeatures(layout, file.path, false);
  } catch {
    dataReadable = false;
  }
  const snapshots = (await readSnapshotTable(file, layout)).entries;
  // The ciphers (and node:crypto) are loaded only for an encrypted image: info of a plain one stays quick.
  const encrypt = h.cryptMethod !== 0 ? await (await import('./encryption')).describeEncryption(file, layout) : undefined;
  const data: Record<string, unknown> =
    h.version === 2
      ? { compat: '0.10', 'compression-type': 'zlib', 'refcount-bits': layout.refcountBits, ...(encrypt ? { encrypt } : {}) }
      : {
          compat: '1.1',
          'compression-type': h.compressionType === COMPRESSION_ZSTD ? 'zstd' : 'zlib',
          'lazy-refcounts': (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
          'refcount-bits': layout.refcountBits,
          ...(encrypt ? { encrypt } : {}),
          corrupt: (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
          'extended-l2': layout.extendedL2,
        };
  if (layout.dataFile !== undefined) data['data-file'] = layout.dataFile;
  return {
    format: 'qcow2',
    'virtual-size': h.size,
    'cluster-size': layout.clusterSize,
    ...(layout.backingFile !== undefined ? { 'backing-filename': layout.backingFile } : {}),
    ...(layout.backingFormat !== undefined ? { 'backing-filename-format': layout.backingFormat } : {}),
    ...(encrypt ? { encrypted: true as const } : {}),
    'dirty-flag': (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    ...(snapshots.length ? { snapshots: snapshots.map(snapshotInfo) } : {}),
    'format-specific': { type: 'qcow2', data },
    'data-readable': dataReadable,
  };
}

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  label: 'QCOW2',
  description: 'QEMU/KVM disk: grows as written, snapshots, compression, backing files',
  extensions: ['qcow2', 'qcow', 'img'],
  preload: async () => {
    await Promise.all([import('./device'), import('./header'), import('./snapshot/table-codec'), import('./snapshot/entry-to-info')]);
  },
  concurrentCalls: true,
  writesCompressed: true,
  backingFiles: 'optional',
  check: async (path, repair, opts) => (await import('./check/check')).checkQcow2(path, repair, opts),
  probe(head: Uint8Array): number {
    if (head.length < 8) return 0;
    const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
    // Version 1 (the original qcow) is claimed too, so that it is refused by name instead of read as raw.
    return v.getUint32(0) === QCOW2_MAGIC && v.getUint32(4) >= 1 ? 100 : 0;
  },
  describe,
  measure: async (size, opts, data) => (await import('./measure')).measureQcow2(size, opts, data),
  persistentBitmapsSize: async (file, clusterSize) => (await import('./measure')).persistentBitmapsSize(file, clusterSize),
  createOptions: QCOW2_CREATE_OPTIONS,
  snapshots: {
    list: async (path) => (await import('./snapshot/operations')).qcow2Snapshots.list(path),
    create: async (path, name, meta) => (await import('./snapshot/operations')).qcow2Snapshots.create(path, name, meta),
    apply: async (path, nameOrId) => (await import('./snapshot/operations')).qcow2Snapshots.apply(path, nameOrId),
    delete: async (path, nameOrId) => (await import('./snapshot/operations')).qcow2Snapshots.delete(path, nameOrId),
    diff: async (path, a, b) => (await import('./snapshot/operations')).qcow2Snapshots.diff(path, a, b),
    exclusiveBytes: async (path, signal) => (await import('./snapshot/space')).exclusiveBytes(path, signal),
    listWithSizes: async (path) => (await import('./snapshot/operations')).listWithSizes(path),
  },
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await import('./device')).openQcow2(path, opts);
  },
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createQcow2(path, size, opts);
  },
};
