/**
 * Opening a VHDX file: the current header, the log (replayed into the file when writable, into an in-memory
 * overlay when read-only), then the region table and metadata read through that overlay, every offset bounded
 * by the file's length. Also the header updates a writer makes (new write GUIDs, the log GUID), always written
 * to the older slot first so that a crash leaves one valid newest header.
 */
import { randomUuidQuick } from '../../block/random';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import {
  BAT_GUID,
  FILE_PARAMETERS_GUID,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SIZE,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_GUID,
  METADATA_TABLE_SIZE,
  MiB,
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
  parseCreator,
  parseFileParameters,
  parseMetadataTable,
  parseParentLocator,
  parseRegionTable,
  parseSectorSize,
  parseVirtualDiskSize,
  probeVhdx,
  readGuid,
  serializeHeader,
  type MetadataEntry,
  type ParentLocator,
  type RegionEntry,
  type VhdxHeader,
} from './layout';
import { activeSequence, checkReplayable, type LogEntry } from './log';

/** The log is read whole when it has to be searched; larger logs than this are not written by anyone. */
const MAX_LOG_READ = 256 * MiB;

/**
 * The file as the image reads it: the file's bytes with the replayed log entries laid over them (only when a
 * log was replayed in memory), and bytes past the end reading as zeros up to the size the log promises.
 */
export class VhdxFile {
  private readonly ops: Array<{ start: number; end: number; data?: Uint8Array }> = [];
  private promisedSize = 0;
  /** The end of the furthest bytes the overlay holds: structures may be read up to here, not to the promised size. */
  private dataEnd = 0;
  constructor(readonly file: ImageFile) {}

  get path(): string {
    return this.file.path;
  }
  /** The length the image has: the file's, or the longer one a replayed log entry names. */
  get size(): number {
    return Math.max(this.file.size, this.promisedSize);
  }
  get overlaid(): boolean {
    return this.ops.length > 0 || this.promisedSize > this.file.size;
  }

  /** Lays one log entry over the file, in memory. */
  overlay(e: LogEntry): void {
    for (const w of e.writes) {
      const len = w.data ? w.data.length : w.zeroLength!;
      this.ops.push({ start: w.fileOffset, end: w.fileOffset + len, data: w.data });
      if (w.data) this.dataEnd = Math.max(this.dataEnd, w.fileOffset + len);
    }
    this.promisedSize = Math.max(this.promisedSize, Math.ceil(e.lastFileOffset / MiB) * MiB);
  }

  async read(pos: number, into: Uint8Array): Promise<void> {
    await this.file.readZeroPadded(pos, into);
    const end = pos + into.length;
    for (const op of this.ops) {
      const a = Math.max(op.start, pos);
      const b = Math.min(op.end, end);
      if (a >= b) continue;
      if (op.data) into.set(op.data.subarray(a - op.start, b - op.start), a - pos);
      else into.fill(0, a - pos, b - pos);
    }
  }

  /**
   * Where the file itself says [pos, pos + max) is a hole (reads as zeros) or data, and for how many bytes from
   * pos (at least 1, at most max); undefined where it cannot tell: no hole detection on this system, or a log
   * entry laid over the file in memory (its bytes are not in the file's allocation).
   */
  allocationAt(pos: number, max: number): { hole: boolean; length: number } | undefined {
    if (!this.file.seesHoles || this.overlaid) return undefined;
    if (pos >= this.file.size) return { hole: true, length: max };
    const a = this.file.allocationAt(pos);
    return { hole: !a.data, length: Math.min(max, Math.max(1, a.end - pos)) };
  }

  /**
   * Reads as read() does, but fills the file's holes with zeros instead of reading them: a 32 MiB block holding
   * 1 MiB of data is otherwise read whole, and the kernel copies zeros for the rest (2 GiB of them, 3.7 s of
   * system time, for a 1 TiB image qemu-img wrote 64 MiB into).
   */
  async readSkippingHoles(pos: number, into: Uint8Array): Promise<void> {
    for (let done = 0; done < into.length; ) {
      const a = this.allocationAt(pos + done, into.length - done);
      const part = into.subarray(done, done + (a?.length ?? into.length - done));
      if (a?.hole) part.fill(0);
      else await this.read(pos + done, part);
      done += part.length;
    }
  }

  /** Reads a structure whose place and size came from the file, refusing any that lies past its end. */
  async readBlock(pos: number, length: number, what: string): Promise<Uint8Array> {
    const limit = Math.max(this.file.size, this.dataEnd);
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(length) || pos < 0 || length < 0 || pos + length > limit) {
      throw corrupt(`${this.path}: ${what} at offset ${pos} (${length} bytes) lies past the end of the file (${limit} bytes)`, this.path);
    }
    const buf = new Uint8Array(length);
    await this.read(pos, buf);
    return buf;
  }
}

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
  /** The log entries that were pending when the file was opened (replayed into the file or in memory). */
  replayed: LogEntry[];
}

/** Reads the two headers and returns the current one. */
export async function readHeaders(file: ImageFile): Promise<{ header: VhdxHeader; index: 0 | 1 }> {
  const path = file.path;
  if (file.size < REGION_TABLE2_OFFSET + REGION_TABLE_SIZE) throw corrupt(`${path}: the file is too small to be a VHDX image (${file.size} bytes)`, path);
  const ident = await file.readBlock(0, 8, 'vhdx file identifier');
  if (!probeVhdx(ident)) throw new DiskError('EINVAL', `${path}: not a VHDX image (no 'vhdxfile' signature)`, path);
  const h1 = await file.readBlock(HEADER1_OFFSET, HEADER_SIZE, 'vhdx header');
  const h2 = await file.readBlock(HEADER2_OFFSET, HEADER_SIZE, 'vhdx header');
  const chosen = chooseHeader(h1, h2, path);
  const h = chosen.header;
  if (h.logVersion !== 0) throw new DiskError('EUNSUPPORTED', `${path}: the vhdx log version ${h.logVersion} is not known (only 0 is)`, path);
  if (h.logLength > 0 && (h.logLength % MiB !== 0 || h.logOffset % MiB !== 0 || h.logOffset < MiB || h.logOffset + h.logLength > file.size)) {
    throw corrupt(`${path}: the vhdx log (${h.logLength} bytes at ${h.logOffset}) is misaligned or lies outside the file`, path);
  }
  return chosen;
}

/** The pending log entries named by the header's log GUID (empty when the log is empty or holds nothing valid). */
export async function pendingLog(file: ImageFile, header: VhdxHeader): Promise<LogEntry[]> {
  if (header.logGuid === ZERO_GUID || header.logLength === 0) return [];
  if (header.logLength > MAX_LOG_READ) throw new DiskError('EUNSUPPORTED', `${file.path}: the vhdx log (${header.logLength} bytes) is too large to replay`, file.path);
  const log = await file.readBlock(header.logOffset, header.logLength, 'vhdx log');
  const entries = activeSequence(log, header.logGuid, file.path);
  checkReplayable(entries, file.size, file.path);
  return entries;
}

/** Writes the entries into the file in order and extends it to the size they name (qemu's and Hyper-V's replay). */
export async function replayIntoFile(file: ImageFile, entries: LogEntry[]): Promise<void> {
  let last = 0;
  for (const e of entries) {
    for (const w of e.writes) {
      if (w.data) await file.write(w.fileOffset, w.data);
      else {
        const zero = new Uint8Array(Math.min(w.zeroLength!, MiB));
        for (let p = 0; p < w.zeroLength!; p += zero.length) await file.write(w.fileOffset + p, zero.subarray(0, Math.min(zero.length, w.zeroLength! - p)));
      }
    }
    last = Math.max(last, e.lastFileOffset);
  }
  if (file.size < last) await file.truncate(Math.ceil(last / MiB) * MiB);
  await file.sync();
}

/**
 * Writes a new current header: sequence number one higher, written over the older slot, then the other slot too,
 * so both copies agree (as qemu does) and a crash between the two leaves the newer one valid. `syncs` false
 * (cache=unsafe) leaves the flushes out.
 */
export async function updateHeaders(file: ImageFile, current: { header: VhdxHeader; index: 0 | 1 }, change: Partial<VhdxHeader>, syncs = true): Promise<{ header: VhdxHeader; index: 0 | 1 }> {
  let cur = current;
  for (let i = 0; i < 2; i++) {
    const slot: 0 | 1 = cur.index === 0 ? 1 : 0;
    const header: VhdxHeader = { ...cur.header, ...change, sequenceNumber: cur.header.sequenceNumber + 1n };
    await file.write(slot === 0 ? HEADER1_OFFSET : HEADER2_OFFSET, serializeHeader(header));
    if (syncs) await file.sync();
    cur = { header, index: slot };
  }
  return cur;
}

export const newGuid = (): string => randomUuidQuick();

/** Reads the region table, falling back to the second copy when the first fails its checks. */
async function readRegions(vhdxFile: VhdxFile): Promise<RegionEntry[]> {
  const path = vhdxFile.path;
  try {
    return parseRegionTable(await vhdxFile.readBlock(REGION_TABLE1_OFFSET, REGION_TABLE_SIZE, 'vhdx region table'), path, vhdxFile.size);
  } catch (first) {
    if (!(first instanceof DiskError)) throw first;
    try {
      return parseRegionTable(await vhdxFile.readBlock(REGION_TABLE2_OFFSET, REGION_TABLE_SIZE, 'vhdx region table'), path, vhdxFile.size);
    } catch {
      throw first;
    }
  }
}

/**
 * Reads the layout. The log is replayed first: into the file when it is writable, else in memory (the overlay
 * of `vhdxFile`), so that what follows reads the image as Hyper-V would after replaying it.
 */
export async function readVhdxLayout(vhdxFile: VhdxFile, replayIntoTheFile = false): Promise<VhdxLayout> {
  const file = vhdxFile.file;
  const path = vhdxFile.path;
  let current = await readHeaders(file);
  const replayed = await pendingLog(file, current.header);
  if (replayIntoTheFile && current.header.logGuid !== ZERO_GUID) {
    await replayIntoFile(file, replayed);
    current = await updateHeaders(file, current, { logGuid: ZERO_GUID });
  } else {
    for (const e of replayed) vhdxFile.overlay(e);
  }
  const { header, index } = current;
  const ident = await vhdxFile.readBlock(0, 8 + 512, 'vhdx file identifier');

  const regions = await readRegions(vhdxFile);
  const bat = regions.find((r) => r.guid === BAT_GUID);
  const metadata = regions.find((r) => r.guid === METADATA_GUID);
  const unknownRequired = regions.find((r) => r.required && r !== bat && r !== metadata);
  if (unknownRequired) throw new DiskError('EUNSUPPORTED', `${path}: the vhdx image needs region ${unknownRequired.guid}, which this build does not know`, path);
  if (!bat || !metadata) throw corrupt(`${path}: the vhdx region table lacks the ${bat ? 'metadata' : 'BAT'} region`, path);
  if (metadata.length < METADATA_TABLE_SIZE) throw corrupt(`${path}: the vhdx metadata region is smaller than its table`, path);
  const logEnd = header.logOffset + header.logLength;
  for (const r of [bat, metadata]) {
    if (header.logLength > 0 && r.fileOffset < logEnd && header.logOffset < r.fileOffset + r.length) throw corrupt(`${path}: vhdx region ${r.guid} overlaps the log`, path);
  }

  const table = await vhdxFile.readBlock(metadata.fileOffset, METADATA_TABLE_SIZE, 'vhdx metadata table');
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
    return vhdxFile.readBlock(metadata.fileOffset + e.offset, e.length, `vhdx ${what}`);
  };
  const params = parseFileParameters((await item(FILE_PARAMETERS_GUID, 'file parameters', true))!, path);
  const virtualSize = parseVirtualDiskSize((await item(VIRTUAL_DISK_SIZE_GUID, 'virtual disk size', true))!, path);
  const logicalSectorSize = parseSectorSize((await item(LOGICAL_SECTOR_SIZE_GUID, 'logical sector size', true))!, path, 'logical sector size');
  const physicalSectorSize = parseSectorSize((await item(PHYSICAL_SECTOR_SIZE_GUID, 'physical sector size', true))!, path, 'physical sector size');
  const page83 = await item(PAGE83_GUID, 'page 83 data', true);
  const diskId = page83 && page83.length >= 16 ? readGuid(page83, 0) : undefined;
  let parentLocator: ParentLocator | undefined;
  if (params.hasParent) parentLocator = parseParentLocator((await item(PARENT_LOCATOR_GUID, 'parent locator', true))!, path);
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
    replayed,
  };
}
