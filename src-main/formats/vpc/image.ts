/**
 * Reading a VHD's structures from its file, every offset and count bounded by the file's length: the footer
 * (the copy at offset 0 of a dynamic or differencing image first, as qemu reads it, else the one in the last
 * 512 bytes), the dynamic header and the BAT. The refusals are qemu's (a bad footer checksum, a bad block
 * size, a BAT too small for the disk, blocks past the end of the file), in plain words.
 */
import { endianness } from 'node:os';
import { corrupt, DiskError } from '../../block/errors';
import { forEachUsed } from '../../block/table-scan';
import type { ImageFile } from '../../block/file';
import {
  BAT_UNUSED,
  bitmapSize,
  DISK_DIFFERENCING,
  DISK_DYNAMIC,
  DISK_FIXED,
  FOOTER_SIZE,
  footerChecksumOk,
  HEADER_SIZE,
  headerChecksumOk,
  locatorSpaceBytes,
  MAX_SECTORS,
  parseDynamicHeader,
  parseFooter,
  SECTOR,
  virtualSizeOf,
  type DynamicHeader,
  type Footer,
} from './layout';

/** The most BAT bytes read into memory (a 2040 GiB disk of 2 MiB blocks needs 4 MiB; 4 KiB blocks 2 GiB). */
const MAX_BAT_BYTES = 512 * 1024 * 1024;

export interface VpcLayout {
  footer: Footer;
  /** The footer's bytes as stored (the copy that was used). */
  footerBytes: Uint8Array;
  /** Where the footer that was used lies: 'start' (the copy at offset 0) or 'end'. */
  footerFrom: 'start' | 'end';
  /** True when the last 512 bytes of the file are a valid footer (allocation then starts there). */
  endFooterOk: boolean;
  /** True when offset 0 holds a valid footer copy. */
  startFooterOk: boolean;
  diskType: number;
  virtualSize: number;
  /** Found but tolerated, as qemu tolerates them (check reports them): e.g. a dynamic header with a bad checksum. */
  warnings: string[];
  dyn?: DynamicLayout;
}

export interface DynamicLayout {
  header: DynamicHeader;
  headerOffset: number;
  blockSize: number;
  bitmapSize: number;
  batOffset: number;
  /** The BAT as read: sector numbers of each block's bitmap, BAT_UNUSED for a block not allocated. */
  bat: Uint32Array;
  /** qemu's free_data_block_offset: the end of the BAT (rounded to a sector) or of the last block, whichever is later. */
  dataEnd: number;
  /** The end of the metadata other than blocks: the header, the BAT, the parent locators' data. */
  metaEnd: number;
}

async function readFooterAt(file: ImageFile, at: number): Promise<{ bytes: Uint8Array; footer?: Footer; ok: boolean }> {
  const bytes = await file.readBlock(at, FOOTER_SIZE, 'VHD footer');
  const footer = parseFooter(bytes);
  return { bytes, footer, ok: footer !== undefined && footerChecksumOk(bytes) };
}

function toNumber(x: bigint, what: string, path: string): number {
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${path}: the VHD ${what} (${x}) is impossibly large`, path);
  return Number(x);
}

/** Reads the footer, and for a dynamic or differencing image its header and BAT. */
export async function readVpcLayout(file: ImageFile): Promise<VpcLayout> {
  const path = file.path;
  if (file.size < FOOTER_SIZE) throw new DiskError('EINVAL', `${path}: the file is too small (${file.size} bytes) for a VHD footer`, path);
  const start = await readFooterAt(file, 0);
  const end = file.size >= 2 * FOOTER_SIZE ? await readFooterAt(file, file.size - FOOTER_SIZE) : { bytes: start.bytes, footer: undefined, ok: false };
  const startDyn = start.ok && (start.footer!.diskType === DISK_DYNAMIC || start.footer!.diskType === DISK_DIFFERENCING);
  let used: { bytes: Uint8Array; footer?: Footer };
  let from: 'start' | 'end';
  if (startDyn) {
    used = start;
    from = 'start';
  } else if (end.ok) {
    used = end;
    from = 'end';
  } else if (start.footer || end.footer) {
    // qemu refuses a footer whose checksum fails ("Incorrect header checksum"); so do we.
    throw corrupt(`${path}: the VHD footer's checksum is incorrect`, path);
  } else {
    throw new DiskError('EINVAL', `${path}: not a VHD image (no "conectix" footer at its start or its end)`, path);
  }
  const footer = used.footer!;
  const warnings: string[] = [];
  if (![DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING].includes(footer.diskType)) {
    throw new DiskError('EUNSUPPORTED', `${path}: VHD disk type ${footer.diskType} is not one of fixed (2), dynamic (3) or differencing (4)`, path);
  }
  const virtualSize = virtualSizeOf(footer);
  if (virtualSize / SECTOR > MAX_SECTORS) throw new DiskError('EUNSUPPORTED', `${path}: the VHD disk is larger (${virtualSize} bytes) than the 2040 GiB qemu and the format allow`, path);
  const layout: VpcLayout = {
    footer,
    footerBytes: used.bytes,
    footerFrom: from,
    endFooterOk: end.ok,
    startFooterOk: start.ok,
    diskType: footer.diskType,
    virtualSize,
    warnings,
  };
  if (footer.diskType !== DISK_FIXED) {
    if (from === 'end') warnings.push('the footer copy at offset 0 is missing or damaged; the footer at the end was used');
    layout.dyn = await readDynamic(file, footer, virtualSize, warnings);
  }
  return layout;
}

async function readDynamic(file: ImageFile, footer: Footer, virtualSize: number, warnings: string[]): Promise<DynamicLayout> {
  const path = file.path;
  const headerOffset = toNumber(footer.dataOffset, 'dynamic header offset', path);
  const hb = await file.readBlock(headerOffset, HEADER_SIZE, 'VHD dynamic header');
  const header = parseDynamicHeader(hb);
  if (!header) throw corrupt(`${path}: the VHD dynamic header at offset ${headerOffset} has no "cxsparse" cookie`, path);
  // qemu does not check the header's checksum; it reads the image anyway, and so do we (check reports it).
  if (!headerChecksumOk(hb)) warnings.push(`the dynamic header's checksum is incorrect`);
  const bs = header.blockSize;
  if (bs < SECTOR || (bs & (bs - 1)) !== 0) throw corrupt(`${path}: invalid VHD block size ${bs} (a power of two of at least 512 bytes)`, path);
  const entries = header.maxTableEntries;
  if (entries * bs < virtualSize) throw corrupt(`${path}: the VHD BAT (${entries} entries of ${bs}-byte blocks) is too small for the ${virtualSize}-byte disk`, path);
  if (entries * 4 > MAX_BAT_BYTES) throw new DiskError('EUNSUPPORTED', `${path}: the VHD BAT (${entries} entries) is larger than this program reads`, path);
  const batOffset = toNumber(header.tableOffset, 'BAT offset', path);
  // Read straight into the table and put its big-endian entries in host order natively (swap32), then visit only
  // the blocks in use (forEachUsed): a 1 TiB image's 2 MiB BAT is read once, with no JavaScript loop over its half
  // million entries (such a loop gets compiled by V8, megabytes that stay resident: block/table-scan.ts).
  const bat = new Uint32Array(entries);
  await file.readExact(batOffset, new Uint8Array(bat.buffer), 'VHD BAT');
  if (endianness() === 'LE') Buffer.from(bat.buffer, bat.byteOffset, bat.byteLength).swap32();
  const bm = bitmapSize(bs);
  let dataEnd = Math.ceil((batOffset + entries * 4) / SECTOR) * SECTOR;
  forEachUsed(bat, BAT_UNUSED, (_, e) => {
    dataEnd = Math.max(dataEnd, e * SECTOR + bm + bs);
  });
  if (dataEnd > file.size) {
    throw corrupt(`${path}: a VHD block lies past the end of the file (blocks reach ${dataEnd} bytes, the file has ${file.size}); the image has been truncated`, path);
  }
  let metaEnd = Math.max(headerOffset + HEADER_SIZE, Math.ceil((batOffset + entries * 4) / SECTOR) * SECTOR);
  for (const l of header.locators) {
    if (l.platformCode === 0) continue;
    const end = l.dataOffset + Math.max(locatorSpaceBytes(l), l.dataLength);
    if (Number.isSafeInteger(end) && end <= file.size) metaEnd = Math.max(metaEnd, end);
  }
  return { header, headerOffset, blockSize: bs, bitmapSize: bm, batOffset, bat, dataEnd, metaEnd };
}
