import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { headerOnlyDriver } from '../../block/header-only';
import type { HeaderInfo } from '../../block/types';
import {
  BAT_GUID,
  FILE_PARAMETERS_GUID,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SIZE,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_GUID,
  METADATA_TABLE_SIZE,
  PAGE83_GUID,
  PARENT_LOCATOR_GUID,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
  VIRTUAL_DISK_SIZE_GUID,
  ZERO_GUID,
  batEntries,
  chooseHeader,
  parentFileName,
  parseCreator,
  parseFileParameters,
  parseMetadataTable,
  parseParentLocator,
  parseRegionTable,
  parseSectorSize,
  parseVirtualDiskSize,
  probeVhdx,
  readGuid,
  type MetadataEntry,
  type ParentLocator,
  type RegionEntry,
  type VhdxHeader,
} from './layout';

/** Everything the header area says about an image, bounded by the file length. */
export interface VhdxLayout {
  creator: string;
  header: VhdxHeader;
  headerIndex: 0 | 1;
  regions: RegionEntry[];
  bat: RegionEntry;
  metadata: RegionEntry;
  items: MetadataEntry[];
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  diskId?: string;
  parentLocator?: ParentLocator;
  batEntries: number;
}

/** Reads the region table, falling back to the second copy when the first fails its checks. */
async function readRegions(file: ImageFile): Promise<RegionEntry[]> {
  const path = file.path;
  try {
    return parseRegionTable(await file.readBlock(REGION_TABLE1_OFFSET, REGION_TABLE_SIZE, 'vhdx region table'), path, file.size);
  } catch (first) {
    if (!(first instanceof DiskError)) throw first;
    try {
      return parseRegionTable(await file.readBlock(REGION_TABLE2_OFFSET, REGION_TABLE_SIZE, 'vhdx region table'), path, file.size);
    } catch {
      throw first;
    }
  }
}

export async function readVhdxLayout(file: ImageFile): Promise<VhdxLayout> {
  const path = file.path;
  if (file.size < REGION_TABLE2_OFFSET + REGION_TABLE_SIZE) throw corrupt(`${path}: the file is too small to be a VHDX image (${file.size} bytes)`, path);
  const ident = await file.readBlock(0, 8 + 512, 'vhdx file identifier');
  if (!probeVhdx(ident)) throw new DiskError('EINVAL', `${path}: not a VHDX image (no 'vhdxfile' signature)`, path);
  const h1 = await file.readBlock(HEADER1_OFFSET, HEADER_SIZE, 'vhdx header');
  const h2 = await file.readBlock(HEADER2_OFFSET, HEADER_SIZE, 'vhdx header');
  const { header, index } = chooseHeader(h1, h2, path);
  if (header.logGuid !== ZERO_GUID && (header.logOffset + header.logLength > file.size || header.logOffset % (1024 * 1024) !== 0)) {
    throw corrupt(`${path}: the vhdx log lies outside the file`, path);
  }

  const regions = await readRegions(file);
  const bat = regions.find((r) => r.guid === BAT_GUID);
  const metadata = regions.find((r) => r.guid === METADATA_GUID);
  const unknownRequired = regions.find((r) => r.required && r !== bat && r !== metadata);
  if (unknownRequired) throw new DiskError('EUNSUPPORTED', `${path}: the vhdx image needs region ${unknownRequired.guid}, which this build does not know`, path);
  if (!bat || !metadata) throw corrupt(`${path}: the vhdx region table lacks the ${bat ? 'metadata' : 'BAT'} region`, path);
  if (metadata.length < METADATA_TABLE_SIZE) throw corrupt(`${path}: the vhdx metadata region is smaller than its table`, path);

  const table = await file.readBlock(metadata.fileOffset, METADATA_TABLE_SIZE, 'vhdx metadata table');
  const items = parseMetadataTable(table, path, metadata.length);
  const known = [FILE_PARAMETERS_GUID, VIRTUAL_DISK_SIZE_GUID, PAGE83_GUID, LOGICAL_SECTOR_SIZE_GUID, PHYSICAL_SECTOR_SIZE_GUID, PARENT_LOCATOR_GUID];
  const unknown = items.find((e) => e.isRequired && (e.isUser || !known.includes(e.itemId)));
  if (unknown) throw new DiskError('EUNSUPPORTED', `${path}: the vhdx image needs metadata item ${unknown.itemId}, which this build does not know`, path);
  const item = async (guid: string, what: string, required: boolean): Promise<Uint8Array | undefined> => {
    const e = items.find((x) => x.itemId === guid && !x.isUser);
    if (!e) {
      if (required) throw corrupt(`${path}: the vhdx metadata lacks the ${what}`, path);
      return undefined;
    }
    return file.readBlock(metadata.fileOffset + e.offset, e.length, `vhdx ${what}`);
  };
  const params = parseFileParameters((await item(FILE_PARAMETERS_GUID, 'file parameters', true))!, path);
  const virtualSize = parseVirtualDiskSize((await item(VIRTUAL_DISK_SIZE_GUID, 'virtual disk size', true))!, path);
  const logicalSectorSize = parseSectorSize((await item(LOGICAL_SECTOR_SIZE_GUID, 'logical sector size', true))!, path, 'logical sector size');
  const physicalSectorSize = parseSectorSize((await item(PHYSICAL_SECTOR_SIZE_GUID, 'physical sector size', true))!, path, 'physical sector size');
  const page83 = await item(PAGE83_GUID, 'page 83 data', true);
  const diskId = page83 && page83.length >= 16 ? readGuid(page83, 0) : undefined;
  let parentLocator: ParentLocator | undefined;
  if (params.hasParent) {
    const raw = await item(PARENT_LOCATOR_GUID, 'parent locator', true);
    parentLocator = parseParentLocator(raw!, path);
  }
  if (virtualSize % logicalSectorSize !== 0) throw corrupt(`${path}: vhdx virtual size ${virtualSize} is not a multiple of the sector size ${logicalSectorSize}`, path);
  const entries = batEntries(virtualSize, params.blockSize, logicalSectorSize, params.hasParent);
  if (entries * 8 > bat.length) throw corrupt(`${path}: the vhdx BAT region (${bat.length} bytes) is too small for ${entries} entries`, path);
  return {
    creator: parseCreator(ident),
    header,
    headerIndex: index,
    regions,
    bat,
    metadata,
    items,
    blockSize: params.blockSize,
    leaveBlocksAllocated: params.leaveBlocksAllocated,
    hasParent: params.hasParent,
    virtualSize,
    logicalSectorSize,
    physicalSectorSize,
    diskId,
    parentLocator,
    batEntries: entries,
  };
}

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const l = await readVhdxLayout(file);
  const backing = l.parentLocator ? parentFileName(l.parentLocator) : undefined;
  // A non-zero log GUID means the log holds entries that must be replayed before the image is consistent.
  const dirty = l.header.logGuid !== ZERO_GUID;
  return {
    format: 'vhdx',
    'virtual-size': l.virtualSize,
    'cluster-size': l.blockSize,
    ...(backing !== undefined ? { 'backing-filename': backing, 'backing-filename-format': 'vhdx' } : {}),
    'dirty-flag': dirty,
    'format-specific': {
      type: 'vhdx',
      data: {
        subformat: l.hasParent ? 'differencing' : l.leaveBlocksAllocated ? 'fixed' : 'dynamic',
        'block-size': l.blockSize,
        'logical-sector-size': l.logicalSectorSize,
        'physical-sector-size': l.physicalSectorSize,
        'log-size': l.header.logLength,
        'log-guid': l.header.logGuid,
        'data-write-guid': l.header.dataWriteGuid,
        ...(l.diskId !== undefined ? { 'disk-id': l.diskId } : {}),
        ...(l.creator ? { creator: l.creator } : {}),
        ...(l.parentLocator ? { 'parent-locator': l.parentLocator.entries } : {}),
      },
    },
    'data-readable': false,
  };
}

export const vhdxDriver = headerOnlyDriver('vhdx', { label: 'VHDX', description: 'Hyper-V virtual hard disk: fixed, dynamic or differencing', extensions: ['vhdx'] }, (head) => probeVhdx(head), describe);
