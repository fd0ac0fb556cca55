/**
 * Creating VHDX images: dynamic, fixed and differencing, with qemu-img's options and defaults. The file is laid
 * out as Hyper-V lays it out: file identifier, two headers and two region tables in the first MiB, then the log,
 * the metadata region and the BAT, each starting on a 1 MiB boundary; a fixed image's blocks follow the BAT.
 */
import { VHDX_CREATE_OPTIONS } from './create-options';
import * as nodePath from 'node:path';
import { alignUp } from '../../block/sizes';
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { newGuid, readVhdxLayout, VhdxFile } from './image';
import {
  BAT_GUID,
  BLOCK_SIZE_MAX,
  FILE_PARAMETERS_GUID,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  LOGICAL_SECTOR_SIZE_GUID,
  MAX_VIRTUAL_SIZE,
  METADATA_GUID,
  METADATA_TABLE_SIZE,
  MiB,
  PAGE83_GUID,
  PARENT_LOCATOR_GUID,
  PARENT_LOCATOR_VHDX_TYPE,
  PAYLOAD_FULLY_PRESENT,
  PAYLOAD_ZERO,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  VIRTUAL_DISK_SIZE_GUID,
  ZERO_GUID,
  batEntries,
  chunkRatio,
  payloadBatIndex,
  serializeBatEntry,
  serializeFileParameters,
  serializeHeader,
  serializeMetadataTable,
  serializeParentLocator,
  serializeRegionTable,
  writeGuid,
  type MetadataEntry,
} from './layout';
import { autoBlockSize, decodeVhdxSettings } from './settings';

const GiB = 1024 * MiB;

/** What a child records of its parent (the locator's values) and must agree with (sector size, size). */
export interface ParentFacts {
  linkage: string;
  relative: string;
  absolute: string;
  logicalSectorSize: number;
  blockSize: number;
  virtualSize: number;
}

/** Reads the parent at `backing` (relative to the child's folder): its data write GUID and the names the locator gives it. */
export async function parentFacts(path: string, backing: string, format: string | undefined): Promise<ParentFacts> {
  if (format !== undefined && format !== 'vhdx') throw new DiskError('EUNSUPPORTED', `a differencing VHDX image needs a VHDX parent, not ${format}`);
  const dir = nodePath.dirname(nodePath.resolve(path));
  const full = nodePath.resolve(dir, backing);
  const file = await ImageFile.open(full, false);
  try {
    const layout = await readVhdxLayout(new VhdxFile(file));
    let rel = nodePath.relative(dir, full).split(nodePath.sep).join('\\');
    if (!rel.startsWith('..')) rel = `.\\${rel}`;
    return { linkage: `{${layout.header.dataWriteGuid}}`, relative: rel, absolute: full, logicalSectorSize: layout.logicalSectorSize, blockSize: layout.blockSize, virtualSize: layout.virtualSize };
  } finally {
    await file.close();
  }
}

export async function createVhdx(path: string, requested: number, opts: CreateOptions): Promise<void> {
  const s = decodeVhdxSettings(opts.options, opts);
  const parent = s.backingFile !== undefined ? await parentFacts(path, s.backingFile, s.backingFormat) : undefined;
  const subformat = s.subformat;
  if (subformat !== 'dynamic' && subformat !== 'fixed') throw new DiskError('EINVAL', `vhdx subformat '${subformat}' is not known (dynamic or fixed)`);
  if (parent && subformat === 'fixed') throw new DiskError('EINVAL', 'a differencing vhdx image cannot be fixed');
  const sectorSize = parent?.logicalSectorSize ?? s.logicalSectorSize;
  if (sectorSize !== 512 && sectorSize !== 4096) throw new DiskError('EINVAL', `vhdx logical sector size ${sectorSize} is invalid (512 or 4096)`);
  const size = alignUp(requested, sectorSize);
  if (size > MAX_VIRTUAL_SIZE) throw new DiskError('EINVAL', 'vhdx image size too large; the maximum is 64 TiB');
  const blockSize = s.blockSize || (parent?.blockSize ?? autoBlockSize(size));
  if (blockSize > BLOCK_SIZE_MAX || (blockSize & (blockSize - 1)) !== 0) throw new DiskError('EINVAL', `vhdx block size ${blockSize} is invalid: a power of two from 1 MiB to 256 MiB`);
  const logSize = s.logSize;
  if (logSize > 4 * GiB - MiB) throw new DiskError('EINVAL', 'vhdx log size too large');
  const zeroBlocks = s.blockStateZero;
  const fixed = subformat === 'fixed';

  const logOffset = MiB;
  const metadataOffset = logOffset + logSize;
  const metadataLength = MiB;
  const batOffset = metadataOffset + metadataLength;
  const entries = batEntries(size, blockSize, sectorSize, parent !== undefined);
  const batLength = alignUp(Math.max(entries * 8, 1), MiB);
  const dataOffset = batOffset + batLength;

  const file = await ImageFile.create(path);
  try {
    // File identifier with the creator string.
    const ident = new Uint8Array(8 + 512);
    ident.set(new TextEncoder().encode('vhdxfile'));
    ident.set(Buffer.from('diskwright', 'utf16le'), 8);
    await file.write(0, ident);
    const header = { sequenceNumber: 0n, fileWriteGuid: newGuid(), dataWriteGuid: newGuid(), logGuid: ZERO_GUID, logVersion: 0, version: 1, logLength: logSize, logOffset };
    await file.write(HEADER1_OFFSET, serializeHeader(header));
    await file.write(HEADER2_OFFSET, serializeHeader({ ...header, sequenceNumber: 1n }));
    const regions = serializeRegionTable([
      { guid: BAT_GUID, fileOffset: batOffset, length: batLength, required: true },
      { guid: METADATA_GUID, fileOffset: metadataOffset, length: metadataLength, required: true },
    ]);
    await file.write(REGION_TABLE1_OFFSET, regions);
    await file.write(REGION_TABLE2_OFFSET, regions);

    // Metadata items follow the table, in the order and with the flags Hyper-V and qemu give them.
    const items: Array<{ id: string; data: Uint8Array; virtualDisk: boolean }> = [];
    items.push({ id: FILE_PARAMETERS_GUID, data: serializeFileParameters({ blockSize, leaveBlocksAllocated: fixed, hasParent: parent !== undefined }), virtualDisk: false });
    const vsize = new Uint8Array(8);
    new DataView(vsize.buffer).setBigUint64(0, BigInt(size), true);
    items.push({ id: VIRTUAL_DISK_SIZE_GUID, data: vsize, virtualDisk: true });
    const page83 = new Uint8Array(16);
    writeGuid(page83, 0, newGuid());
    items.push({ id: PAGE83_GUID, data: page83, virtualDisk: true });
    const u32 = (n: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n, true);
      return b;
    };
    items.push({ id: LOGICAL_SECTOR_SIZE_GUID, data: u32(sectorSize), virtualDisk: true });
    items.push({ id: PHYSICAL_SECTOR_SIZE_GUID, data: u32(sectorSize === 4096 ? 4096 : 512), virtualDisk: true });
    if (parent) {
      const entriesOut: Record<string, string> = { parent_linkage: parent.linkage, relative_path: parent.relative, absolute_win32_path: parent.absolute };
      items.push({ id: PARENT_LOCATOR_GUID, data: serializeParentLocator({ type: PARENT_LOCATOR_VHDX_TYPE, entries: entriesOut }), virtualDisk: false });
    }
    const table: MetadataEntry[] = [];
    let at = METADATA_TABLE_SIZE;
    for (const it of items) {
      table.push({ itemId: it.id, offset: at, length: it.data.length, isUser: false, isVirtualDisk: it.virtualDisk, isRequired: true });
      await file.write(metadataOffset + at, it.data);
      at += it.data.length;
    }
    await file.write(metadataOffset, serializeMetadataTable(table));

    // The BAT: fixed blocks point at their place after it; dynamic ones are zero (or not present: all zero bytes).
    const blocks = Math.ceil(size / blockSize);
    let end = dataOffset;
    if (fixed || (zeroBlocks && !parent)) {
      const ratio = chunkRatio(blockSize, sectorSize);
      const chunk = 1 << 16; // entries written per step, so memory stays small for 64 TiB disks
      for (let b0 = 0; b0 < blocks; b0 += chunk) {
        const b1 = Math.min(blocks, b0 + chunk);
        const first = payloadBatIndex(b0, ratio);
        const buf = new Uint8Array((payloadBatIndex(b1 - 1, ratio) - first + 1) * 8);
        for (let b = b0; b < b1; b++) {
          const e = fixed ? { state: PAYLOAD_FULLY_PRESENT, offset: dataOffset + b * blockSize } : { state: PAYLOAD_ZERO, offset: 0 };
          serializeBatEntry(e, buf, (payloadBatIndex(b, ratio) - first) * 8);
        }
        await file.write(batOffset + first * 8, buf);
      }
      if (fixed) end = dataOffset + blocks * blockSize;
    }
    await file.truncate(end);
    await file.sync();
  } finally {
    await file.close();
  }
}

export { VHDX_CREATE_OPTIONS };
