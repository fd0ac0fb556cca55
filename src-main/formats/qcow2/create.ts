/**
 * Creating qcow2 images with qemu-img's defaults and layout: the header (with the feature name table when it
 * is roomy enough, as qemu writes it), the refcount table in cluster 1, the first refcount block in cluster 2,
 * then the L1 table allocated like any other cluster (cluster 3 for a fresh image), sized for the disk.
 */
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { QCOW2_CREATE_OPTIONS } from './create-options';
import { openQcow2 } from './device';
import { CRYPTO_EXT_PLACEHOLDER, CRYPT_LUKS, type EncryptionSettings } from './encryption-settings';
import { decodeQcow2Settings } from './settings';
import {
  COMPAT_LAZY_REFCOUNTS,
  EXT_BACKING_FORMAT,
  EXT_FEATURE_TABLE,
  featureNameTable,
  INCOMPAT_EXTL2,
  MAX_BACKING_NAME,
  MAX_L1_BYTES,
  serializeExtensions,
  serializeHeader,
  setRefcount,
  type HeaderExtension,
  type Qcow2Header,
} from './layout';


interface Qcow2CreateSettings {
  version: 2 | 3;
  clusterBits: number;
  refcountOrder: number;
  lazyRefcounts: boolean;
  extendedL2: boolean;
  preallocation: 'off' | 'metadata' | 'full';
  backingFile?: string;
  backingFormat?: string;
  encryption?: EncryptionSettings;
}

/** The decoded options (settings.ts) checked with qemu-img create's rules, as the header fields they become. */
function settingsFrom(opts: CreateOptions): Qcow2CreateSettings {
  const { version, clusterSize, refcountBits, lazyRefcounts, extendedL2, backingFile, backingFormat, encryption, ...rest } = decodeQcow2Settings(opts.options, opts);
  const preallocation = rest.preallocation as Qcow2CreateSettings['preallocation'];
  if (!Number.isInteger(Math.log2(clusterSize)) || clusterSize < 512 || clusterSize > 2 * 1024 * 1024) {
    throw new DiskError('EINVAL', 'cluster_size must be a power of two between 512 bytes and 2 MiB');
  }
  if (![1, 2, 4, 8, 16, 32, 64].includes(refcountBits)) throw new DiskError('EINVAL', 'refcount_bits must be a power of two from 1 to 64');
  // The same rules, and nearly the same words, as qemu-img.
  if (version === 2) {
    if (lazyRefcounts) throw new DiskError('EINVAL', 'lazy refcounts are only supported with compat=1.1');
    if (refcountBits !== 16) throw new DiskError('EINVAL', 'refcount widths other than 16 bits require compat=1.1');
    if (extendedL2) throw new DiskError('EINVAL', 'extended L2 entries are only supported with compat=1.1');
  }
  if (extendedL2 && clusterSize < 16384) throw new DiskError('EINVAL', 'extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  if (backingFile !== undefined && preallocation !== 'off' && !extendedL2) {
    throw new DiskError('EINVAL', 'a backing file and preallocation can only be used together with extended_l2=on');
  }
  if (backingFile !== undefined && (backingFile === '' || new TextEncoder().encode(backingFile).length > MAX_BACKING_NAME)) {
    throw new DiskError('EINVAL', `the backing file name must be 1 to ${MAX_BACKING_NAME} bytes long`);
  }
  return { version, clusterBits: Math.log2(clusterSize), refcountOrder: Math.log2(refcountBits), lazyRefcounts, extendedL2, preallocation, backingFile, backingFormat, encryption };
}

/** Where the L1 table goes in a new image (none: it is made by growing it, as for a resize). */
interface NewL1 {
  size: number;
  entries: number;
  offset: number;
}

/** The first cluster: header, extensions, end marker, then the backing file name. */
function headerCluster(s: Qcow2CreateSettings, l1?: NewL1): Uint8Array {
  const cs = 2 ** s.clusterBits;
  const enc = new TextEncoder();
  const h: Qcow2Header = {
    version: s.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: s.clusterBits,
    size: l1?.size ?? 0,
    cryptMethod: 0,
    l1Size: l1?.entries ?? 0,
    l1TableOffset: l1?.entries ? l1.offset : 0,
    refcountTableOffset: cs,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: s.extendedL2 ? INCOMPAT_EXTL2 : 0n,
    compatibleFeatures: s.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: 0n,
    refcountOrder: s.refcountOrder,
    headerLength: 112,
    compressionType: 0,
    extraHeaderBytes: new Uint8Array(0),
  };
  const exts: HeaderExtension[] = [];
  if (s.backingFile !== undefined && s.backingFormat !== undefined) exts.push({ type: EXT_BACKING_FORMAT, data: enc.encode(s.backingFormat) });
  // Filled in once the LUKS header has its clusters (encrypt-new.ts).
  if (s.encryption?.method === CRYPT_LUKS) exts.push(CRYPTO_EXT_PLACEHOLDER);
  const headerLen = s.version === 2 ? 72 : 112;
  const name = s.backingFile !== undefined ? enc.encode(s.backingFile) : new Uint8Array(0);
  // qemu leaves the feature name table out of small (4 KiB and below) header clusters.
  if (s.version === 3 && cs > 4096) {
    const withTable = [...exts, { type: EXT_FEATURE_TABLE, data: featureNameTable() }];
    if (headerLen + serializeExtensions(withTable).length + name.length <= cs) exts.push(withTable[withTable.length - 1]);
  }
  const extBytes = serializeExtensions(exts);
  const nameOffset = headerLen + extBytes.length;
  if (nameOffset + name.length > cs) {
    throw new DiskError('EINVAL', `the backing file name (${name.length} bytes) does not fit in the first cluster; use a shorter name or a larger cluster_size`);
  }
  if (name.length) {
    h.backingFileOffset = nameOffset;
    h.backingFileSize = name.length;
  }
  const buf = new Uint8Array(nameOffset + name.length);
  buf.set(serializeHeader(h), 0);
  buf.set(extBytes, headerLen);
  buf.set(name, nameOffset);
  return buf;
}

/**
 * The L1 table of a new image of `size` bytes at cluster 3, where growing it would put it (qemu's layout), when
 * the first refcount block can count it; undefined otherwise (then it is grown as by a resize).
 */
function directL1(s: Qcow2CreateSettings, size: number): NewL1 | undefined {
  const cs = 2 ** s.clusterBits;
  const l2Span = (cs / (s.extendedL2 ? 16 : 8)) * cs;
  const entries = Math.ceil(size / l2Span);
  const perBlock = (cs * 8) / 2 ** s.refcountOrder;
  if (entries * 8 > MAX_L1_BYTES || 3 + Math.ceil((entries * 8) / cs) > perBlock) return undefined;
  return { size, entries, offset: 3 * cs };
}

/**
 * Creates the image. Durability: the file is new, under a temporary name until its caller renames it into
 * place (services/atomic.ts, convert), so no sync while it is written keeps anything safe: a crash leaves only
 * a temporary, removed by the next job to that target. What counts is one fdatasync before the rename, made
 * here at the end, or by the caller when it asks for none here (`durable: false`: convert syncs the image it
 * has filled, or nothing under -t unsafe).
 */
export async function createQcow2(path: string, size: number, opts: CreateOptions): Promise<void> {
  const s = settingsFrom(opts);
  if (s.encryption && !opts.passphrase) throw new DiskError('EINVAL', "encrypt.key-secret is required: the image's passphrase");
  if (!Number.isSafeInteger(size) || size < 0) throw new DiskError('EINVAL', `invalid image size ${size}`);
  const durable = opts.durable !== false;
  // qemu-img rounds the virtual size up to whole 512-byte sectors.
  const virtualSize = Math.ceil(size / 512) * 512;
  const cs = 2 ** s.clusterBits;
  const l1 = directL1(s, virtualSize);
  const file = await ImageFile.create(path);
  const needsDevice = !l1 || s.encryption !== undefined || s.preallocation !== 'off';
  try {
    // Cluster 0: header. Cluster 1: refcount table pointing at cluster 2, the refcount block counting 0-2
    // (and the L1 table from cluster 3, when it is made here).
    await file.write(0, headerCluster(s, l1));
    const table = new Uint8Array(cs);
    new DataView(table.buffer).setBigUint64(0, BigInt(2 * cs));
    await file.write(cs, table);
    const block = new Uint8Array(cs);
    const bits = 2 ** s.refcountOrder;
    const l1Clusters = l1 ? Math.ceil((l1.entries * 8) / cs) : 0;
    for (let i = 0; i < 3 + l1Clusters; i++) setRefcount(block, i, bits, 1);
    await file.write(2 * cs, block);
    // Exactly the table's bytes, as qemu writes it (the file ends there).
    if (l1?.entries) await file.write(l1.offset, new Uint8Array(l1.entries * 8));
    if (durable && !needsDevice) await file.sync();
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await file.close();
  }
  if (!needsDevice) return;
  // The L1 table (when not made above), encryption and preallocation are made by the driver itself, as
  // qemu-img does by resizing.
  const dev = await openQcow2(path, {
    readOnly: false,
    backingPolicy: 'none',
    openBacking: async () => {
      throw new DiskError('EINVAL', 'no backing file is opened while creating an image');
    },
  });
  // Its close syncs once, unless the caller syncs (see above).
  if (!durable) dev.skipFlushes();
  try {
    if (virtualSize > dev.size) await dev.resize(virtualSize, false);
    // Loaded only for an encrypted image: it brings the ciphers and node:crypto (~10 ms to load).
    if (s.encryption) dev.encryption = await (await import('./encrypt-new')).encryptNewImage(dev, s.encryption, opts.passphrase);
    if (s.preallocation !== 'off') await dev.preallocate(s.preallocation === 'full');
  } finally {
    await dev.close();
  }
}

export { QCOW2_CREATE_OPTIONS };
