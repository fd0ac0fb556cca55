/**
 * Creating VMDK images with qemu-img's options, defaults and layout: monolithicSparse (one file, descriptor
 * embedded), monolithicFlat and twoGbMaxExtent{Sparse,Flat} (a descriptor file plus extent files named as
 * qemu-img names them, beside it), and streamOptimized (an empty stream as VMware writes one, which the
 * stream writer in stream.ts fills in increasing order).
 */
import { ADAPTER_TYPES, SUBFORMATS, VMDK_CREATE_OPTIONS } from './create-options';
import { randomBytesQuick } from '../../block/random';
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { SECTOR } from '../../block/bytes';
import { resolveBackingPath } from '../../block/backing-path';
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreatedFiles, CreateOptions } from '../../block/types';
import { FLAG_NL_DETECT, FLAG_RGD, FLAG_ZERO_GRAIN, serializeVmdk4Header, sparseGeometry, type Vmdk4Header } from './layout';
import { openVmdk } from './open';
import { GRAIN_SECTORS, settingsFrom, SPLIT_BYTES, type Subformat, type VmdkSettings } from './settings';
import { writeEmptyStream } from './stream';

/** A random CID, as qemu draws one (never the "no parent" value). */
export function newCid(): number {
  let c = randomBytesQuick(4).readUInt32LE(0);
  if (c === 0xffffffff || c === 0xfffffffe) c = 0x12345678;
  return c;
}

/**
 * The descriptor text laid out exactly as qemu-img writes it (CIDs in hex without padding). A streamOptimized
 * descriptor also carries what VMware's own stream writer (vmware/open-vmdk) puts there and qemu-img leaves out:
 * `encoding="UTF-8"`, `ddb.longContentID` and `ddb.toolsInstallType = "4"` (tools not managed by VMware,
 * open-vm-tools). Stream files from qemu-img have been refused by ESXi and vSphere imports for want of these;
 * tools that build OVAs from qemu-img output add exactly these lines. qemu-img reads them as any descriptor
 * (unknown keys are ignored).
 */
export function descriptorText(s: VmdkSettings, sectors: number, cid: number, parentCid: number, extentLines: string[]): string {
  const heads = s.adapter === 'ide' ? 16 : 255;
  const cylinders = Math.floor((sectors * SECTOR) / (63 * heads * SECTOR));
  const parent = s.backingFile !== undefined ? `parentFileNameHint="${s.backingFile}"` : '';
  const stream = s.subformat === 'streamOptimized';
  return (
    '# Disk DescriptorFile\n' +
    'version=1\n' +
    (stream ? 'encoding="UTF-8"\n' : '') +
    `CID=${cid.toString(16)}\n` +
    `parentCID=${parentCid.toString(16)}\n` +
    `createType="${s.subformat}"\n` +
    `${parent}\n` +
    '# Extent description\n' +
    extentLines.join('') +
    '\n' +
    '# The Disk Data Base\n' +
    '#DDB\n' +
    '\n' +
    (stream ? `ddb.longContentID = "${randomBytesQuick(16).toString('hex')}"\n` : '') +
    `ddb.virtualHWVersion = "${s.hwversion}"\n` +
    `ddb.geometry.cylinders = "${cylinders}"\n` +
    `ddb.geometry.heads = "${heads}"\n` +
    'ddb.geometry.sectors = "63"\n' +
    `ddb.adapterType = "${s.adapter}"\n` +
    (stream ? 'ddb.toolsInstallType = "4"\n' : '') +
    `ddb.toolsVersion = "${s.toolsversion}"\n`
  );
}

/** A fresh hosted sparse extent of `sectors` (qemu's vmdk_init_extent), with `descriptor` embedded if given. */
async function writeSparseExtent(path: string, sectors: number, zeroedGrain: boolean, descriptor?: string): Promise<void> {
  const g = sparseGeometry(sectors, GRAIN_SECTORS);
  const h: Vmdk4Header = {
    version: zeroedGrain ? 2 : 1,
    flags: FLAG_NL_DETECT | FLAG_RGD | (zeroedGrain ? FLAG_ZERO_GRAIN : 0),
    capacity: sectors,
    granularity: GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSize: 20,
    numGtesPerGt: 512,
    rgdOffset: g.rgdOffset,
    gdOffset: g.gdOffset,
    overhead: g.overhead,
    uncleanShutdown: false,
    checkBytesValid: true,
    compressAlgorithm: 0,
  };
  const head = new Uint8Array(SECTOR * 21);
  head.set(serializeVmdk4Header(h), 0);
  if (descriptor !== undefined) {
    const text = new TextEncoder().encode(descriptor);
    if (text.length > 20 * SECTOR) throw new DiskError('EINVAL', 'the descriptor does not fit in the sparse extent (backing file name too long)');
    head.set(text, SECTOR);
  }
  // Both directories point at their grain tables, laid out right after each directory; the tables are zeros,
  // left to the file's holes (the file is extended to the first grain), so a large disk costs no memory here.
  const dir = (at: number) => {
    const b = new Uint8Array(g.gdSectors * SECTOR);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < g.gtCount; i++) dv.setUint32(i * 4, at + g.gdSectors + i * g.gtSectors, true);
    return b;
  };
  const f = await ImageFile.create(path);
  try {
    await f.write(0, head);
    await f.write(g.rgdOffset * SECTOR, dir(g.rgdOffset));
    await f.write(g.gdOffset * SECTOR, dir(g.gdOffset));
    await f.truncate(g.overhead * SECTOR);
    await f.sync();
  } finally {
    await f.close();
  }
}

async function writeFlatExtent(path: string, bytes: number): Promise<void> {
  const f = await ImageFile.create(path);
  try {
    await f.truncate(bytes);
    await f.sync();
  } finally {
    await f.close();
  }
}

/** The parent's CID, read from its descriptor (qemu-img refuses parents that are not VMDK). */
async function parentCid(path: string, backingFile: string): Promise<number> {
  const full = resolveBackingPath(path, backingFile, 'anywhere');
  const o = await openVmdk(full, false, 'anywhere').catch((err: unknown) => {
    if (err instanceof DiskError && (err.code === 'EINVAL' || err.code === 'ECORRUPT')) {
      throw new DiskError('EINVAL', `${backingFile}: Invalid backing file format. Must be vmdk.`, full);
    }
    throw err;
  });
  for (const f of o.files) await f.close();
  return o.descriptor.cid ?? 0xffffffff;
}

/**
 * The name the image will have. The create service writes a temporary file beside the target
 * (services/atomic.ts: `.NAME.diskwright-XXXXXXXX.tmp`) and renames it; the names written inside the image
 * (its own extent line, the extent files' names) must be the target's, or the renamed descriptor would point
 * at temporary names. Until CreateOptions carries the target's name, it is read back from that pattern.
 */
export function finalName(path: string, targetPath?: string): string {
  if (targetPath !== undefined) return nodePath.basename(targetPath);
  const base = nodePath.basename(path);
  const m = /^\.(.+)\.diskwright-[0-9a-f]{8}\.tmp$/.exec(base);
  return m ? m[1] : base;
}

/** The names qemu-img gives extent files: the image's name without .vmdk, a suffix, .vmdk. */
export function extentNames(path: string, subformat: Subformat, count: number, targetPath?: string): string[] {
  const base = finalName(path, targetPath);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  if (subformat === 'monolithicFlat') return [`${stem}-flat.vmdk`];
  const letter = subformat === 'twoGbMaxExtentSparse' ? 's' : 'f';
  return Array.from({ length: count }, (_, i) => `${stem}-${letter}${String(i + 1).padStart(3, '0')}.vmdk`);
}

/**
 * Where the files written beside the image go while it is written: the image's temporary path
 * (`.NAME.diskwright-TOKEN.tmp`, services/atomic.ts) with the file's final name before `.tmp`, a name the create
 * and convert services recognise (removeStaleTemporaries) and clean up after a killed job. An image written under
 * its own name (no service) gets a token of its own.
 */
export function besideTempStem(path: string): string {
  const base = nodePath.basename(path);
  const m = /^(\..+\.diskwright-[0-9a-f]{8})\.tmp$/.exec(base);
  return nodePath.join(nodePath.dirname(path), m ? m[1] : `.${base}.diskwright-${randomBytesQuick(4).toString('hex')}`);
}

export async function createVmdk(path: string, requested: number, opts: CreateOptions): Promise<void | CreatedFiles> {
  const s = settingsFrom(opts);
  const sectors = Math.ceil(requested / SECTOR);
  const cid = newCid();
  const pcid = s.backingFile !== undefined ? await parentCid(path, s.backingFile) : 0xffffffff;
  if (s.subformat === 'monolithicSparse') {
    const text = descriptorText(s, sectors, cid, pcid, [`RW ${sectors} SPARSE "${finalName(path, opts.targetPath)}"\n`]);
    await writeSparseExtent(path, sectors, s.zeroedGrain, text);
    return;
  }
  if (s.subformat === 'streamOptimized') {
    const text = descriptorText(s, sectors, cid, pcid, [`RW ${sectors} SPARSE "${finalName(path, opts.targetPath)}"\n`]);
    await writeEmptyStream(path, sectors, text);
    return;
  }
  const split = s.subformat.startsWith('twoGb');
  const sparse = s.subformat === 'twoGbMaxExtentSparse';
  const sizes: number[] = [];
  if (!split) sizes.push(sectors * SECTOR);
  else for (let left = sectors * SECTOR; left > 0 || sizes.length === 0; left -= SPLIT_BYTES) sizes.push(Math.min(left, SPLIT_BYTES));
  const names = extentNames(path, s.subformat, sizes.length, opts.targetPath);
  const dir = nodePath.dirname(path);
  // The extents are written under temporary names, which the descriptor names until the job that writes the
  // image is done with it; nameFinal() then names the final ones and the service gives the files those names.
  // A file that already has one of the final names is someone's: it is refused before anything is written.
  for (const n of names) {
    if (await fsp.lstat(nodePath.join(dir, n)).then(() => true, () => false)) {
      throw new DiskError('EEXIST', `${nodePath.join(dir, n)}: exists already, and the new image's extent file would take its name; move it away or choose another image name`, nodePath.join(dir, n));
    }
  }
  const stem = besideTempStem(path);
  const files = names.map((n) => ({ temp: `${stem}.${n}.tmp`, final: nodePath.join(dir, n) }));
  const tempName = (i: number) => nodePath.basename(files[i].temp);
  const lines = (name: (i: number) => string) => sizes.map((b, i) => (sparse ? `RW ${b / SECTOR} SPARSE "${name(i)}"\n` : `RW ${b / SECTOR} FLAT "${name(i)}" 0\n`));
  // The descriptor's file is made first and held (with its write lock) while the extents are written, so that a
  // job cleaning up after a killed one sees an image still being written and leaves its extents alone.
  const desc = await ImageFile.create(path);
  try {
    for (let i = 0; i < sizes.length; i++) {
      if (sparse) await writeSparseExtent(files[i].temp, sizes[i] / SECTOR, s.zeroedGrain);
      else await writeFlatExtent(files[i].temp, sizes[i]);
    }
    await desc.write(0, new TextEncoder().encode(descriptorText(s, sectors, cid, pcid, lines(tempName))));
    await desc.sync();
  } catch (err) {
    for (const f of files) await fsp.rm(f.temp, { force: true }).catch(() => undefined);
    throw err;
  } finally {
    await desc.close();
  }
  const nameFinal = async (): Promise<void> => {
    // The text as it is now (a write since may have changed its CID), with each extent's final name.
    const f = await ImageFile.open(path, true);
    try {
      let text = new TextDecoder().decode(await f.readBlock(0, f.size, 'vmdk descriptor'));
      files.forEach((x, i) => (text = text.split(`"${tempName(i)}"`).join(`"${names[i]}"`)));
      const bytes = new TextEncoder().encode(text);
      await f.write(0, bytes);
      await f.truncate(bytes.length);
      await f.sync();
    } finally {
      await f.close();
    }
  };
  return { extraFiles: files, nameFinal };
}

export { ADAPTER_TYPES, SUBFORMATS, VMDK_CREATE_OPTIONS };
