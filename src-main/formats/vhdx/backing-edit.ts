/**
 * What commit and rebase change in a differencing VHDX image, as pages for the journal (bat.ts), so that a crash
 * leaves the old or the new state once the log is replayed:
 * - the parent locator (rebase, and the new parent_linkage after a commit changed the parent): the item is
 *   rewritten in place when the new one fits in the old one's bytes, else placed after the last item of the
 *   metadata region, and its table entry updated; a region without room is refused plainly;
 * - the BAT emptied (commit): every payload and sector-bitmap entry NOT_PRESENT (all zero bytes), so every
 *   sector reads the parent again and later writes start new bitmaps.
 */
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { VhdxFile, VhdxLayout } from './image';
import { readHeaders } from './image';
import { METADATA_TABLE_SIZE, PARENT_LOCATOR_GUID, serializeMetadataTable, serializeParentLocator, type ParentLocator } from './layout';

const PAGE = 4096;

/** The 4 KiB pages that hold the new locator and its table entry, keyed by file offset (for Journal.commit). */
export async function locatorPages(vhdxFile: VhdxFile, layout: VhdxLayout, loc: ParentLocator): Promise<Map<number, Uint8Array>> {
  const bytes = serializeParentLocator(loc);
  const items = layout.items.map((e) => ({ ...e }));
  const entry = items.find((e) => e.itemId === PARENT_LOCATOR_GUID && !e.isUser);
  if (!entry) throw new DiskError('EUNSUPPORTED', `${vhdxFile.path}: the image has no parent locator to rewrite`, vhdxFile.path);
  if (bytes.length > entry.length) {
    const end = items.reduce((m, e) => Math.max(m, e.length > 0 ? e.offset + e.length : METADATA_TABLE_SIZE), METADATA_TABLE_SIZE);
    // The last item grows where it is (a commit's handover adds parent_linkage2 and takes it out again, so
    // moving it each time would walk it through the region); another moves past the last.
    const last = entry.length > 0 && entry.offset + entry.length === end;
    if (last && entry.offset + bytes.length <= layout.metadata.length) {
      // grows in place
    } else if (end + bytes.length > layout.metadata.length) {
      throw new DiskError('EUNSUPPORTED', `${vhdxFile.path}: the new parent's names (${bytes.length} bytes) do not fit in the image's metadata region`, vhdxFile.path);
    } else entry.offset = end;
  }
  entry.length = bytes.length;
  const base = layout.metadata.fileOffset;
  const pages = new Map<number, Uint8Array>();
  /** Copies `data` to file offset `at` through the pages it touches (read first, so their other bytes stay). */
  const put = async (at: number, data: Uint8Array) => {
    for (let pos = at; pos < at + data.length; ) {
      const off = pos - (pos % PAGE);
      let page = pages.get(off);
      if (!page) {
        page = await vhdxFile.readBlock(off, PAGE, 'vhdx metadata page');
        pages.set(off, page);
      }
      const n = Math.min(off + PAGE, at + data.length) - pos;
      page.set(data.subarray(pos - at, pos - at + n), pos - off);
      pos += n;
    }
  };
  await put(base + entry.offset, bytes);
  // The table is rewritten from its parsed entries; only the pages holding entries are journaled.
  const table = serializeMetadataTable(items);
  await put(base, table.subarray(0, Math.ceil((32 + items.length * 32) / PAGE) * PAGE));
  layout.items = items;
  layout.parentLocator = loc;
  return pages;
}

/** The current data write GUID of the VHDX at `path` (what a child's parent_linkage must name). */
export async function dataWriteGuidOf(path: string): Promise<string> {
  const file = await ImageFile.open(path, false);
  try {
    return (await readHeaders(file)).header.dataWriteGuid;
  } finally {
    await file.close();
  }
}

/** File offsets of the BAT's pages, with the byte range of each that holds entries. */
export function* batPages(layout: VhdxLayout): Generator<{ off: number; from: number; to: number }> {
  const start = layout.bat.fileOffset;
  const end = start + layout.batEntries * 8;
  for (let off = start - (start % PAGE); off < end; off += PAGE) {
    yield { off, from: Math.max(start, off) - off, to: Math.min(end, off + PAGE) - off };
  }
}
