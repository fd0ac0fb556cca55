/**
 * The block allocation table and the sector bitmaps, read in 4 KiB pages through a bounded cache, and the
 * journal that changes them: every change of a metadata page is written to the log first, flushed, then
 * written in place and flushed again, so a crash at any step leaves a file whose log replays to the old or
 * the new state.
 */
import { LruCache } from '../../block/cache';
import { corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { VhdxFile, VhdxLayout } from './image';
import { newGuid, updateHeaders } from './image';
import {
  MiB,
  ZERO_GUID,
  bitmapBatIndex,
  chunkRatio,
  parseBatEntry,
  payloadBatIndex,
  PAYLOAD_NOT_PRESENT,
  serializeBatEntry,
  type BatEntry,
  type VhdxHeader,
  ZERO_STATES,
} from './layout';
import { encodeLogEntry, LOG_SECTOR } from './log';
import { leadingMatches } from './bat-runs';

const PAGE = LOG_SECTOR;
const CACHED_PAGES = 2048; // 8 MiB of BAT and bitmap pages

/** Reads and changes metadata pages (BAT and sector bitmaps) of one image. */
export class MetaPages {
  private readonly cache = new LruCache<number, Uint8Array>(CACHED_PAGES);
  /** Pages changed by the transaction under way, not yet journaled. */
  private staged = new Map<number, Uint8Array>();
  /** Counts the pages staged: what was learned from the pages holds while it stays the same. */
  version = 0;
  constructor(private readonly f: VhdxFile) {}

  async page(off: number): Promise<Uint8Array> {
    const s = this.staged.get(off);
    if (s) return s;
    let p = this.cache.get(off);
    if (!p) {
      p = await this.f.readBlock(off, PAGE, 'vhdx metadata page');
      this.cache.set(off, p);
    }
    return p;
  }

  /** A copy of the page to change; it is journaled by the next commit. */
  async stage(off: number): Promise<Uint8Array> {
    let s = this.staged.get(off);
    this.version++;
    if (!s) {
      s = (await this.page(off)).slice();
      this.staged.set(off, s);
    }
    return s;
  }

  get pending(): number {
    return this.staged.size;
  }

  /** Hands over the staged pages (to the journal); the cache sees them only once they are in place. */
  take(): Map<number, Uint8Array> {
    const s = this.staged;
    this.staged = new Map();
    return s;
  }

  settle(pages: Map<number, Uint8Array>): void {
    for (const [off, p] of pages) this.cache.set(off, p);
  }

  discardStaged(): void {
    this.staged = new Map();
  }
}

/** The BAT of one image: payload and sector-bitmap entries by block and chunk. */
export class Bat {
  readonly ratio: number;
  constructor(
    private readonly layout: VhdxLayout,
    private readonly pages: MetaPages,
    private readonly fileSize: () => number,
  ) {
    this.ratio = chunkRatio(layout.blockSize, layout.logicalSectorSize);
  }

  private where(index: number): { off: number; at: number } {
    if (index >= this.layout.batEntries) throw corrupt(`vhdx BAT index ${index} is past the table's ${this.layout.batEntries} entries`);
    const byte = this.layout.bat.fileOffset + index * 8;
    return { off: byte - (byte % PAGE), at: byte % PAGE };
  }

  async entry(index: number): Promise<BatEntry> {
    const { off, at } = this.where(index);
    return parseBatEntry(await this.pages.page(off), at);
  }

  async set(index: number, e: BatEntry): Promise<void> {
    const { off, at } = this.where(index);
    serializeBatEntry(e, await this.pages.stage(off), at);
  }

  /** The 8 bytes of block `block`'s payload entry, as the pages hold them now (a copy). */
  async rawPayload(block: number): Promise<Uint8Array> {
    const { off, at } = this.where(this.payloadIndex(block));
    return (await this.pages.page(off)).slice(at, at + 8);
  }

  /**
   * The payload entry that following blocks must hold to join a run (no data) begun in block `block`: its own
   * where it is NOT_PRESENT or a ZERO state, else, after unallocated sectors of a partial block, NOT_PRESENT
   * with no offset (zeros); undefined where none joins that way.
   */
  async runEntry(block: number, unallocated: boolean): Promise<Uint8Array | undefined> {
    const e = await this.payload(block);
    if (e.state === PAYLOAD_NOT_PRESENT || ZERO_STATES.includes(e.state)) return this.rawPayload(block);
    return unallocated ? new Uint8Array(8) : undefined;
  }

  /** Blocks [from, end) whose payload entries are `entry` (hex), as pages version `version` hold them. */
  private sameRun = { from: 0, end: 0, entry: '', version: -1 };

  /**
   * The first block at or past `block` (at most `limit`) whose payload entry is not `entry` (8 bytes), found by
   * comparing BAT pages with a template of it (bat-runs.ts): the status of a sparse 1 TiB image (32 Ki blocks of
   * 32 MiB, NOT_PRESENT or ZERO), asked a gigabyte at a time or all at once, costs one walk over its pages, not a
   * call per block. A sector bitmap entry that is not zero ends the run too (sooner than needed, never wrongly).
   */
  async sameEntriesEnd(entry: Uint8Array, block: number, limit: number): Promise<number> {
    const key = Buffer.from(entry).toString('hex');
    const r = this.sameRun;
    if (r.version === this.pages.version && r.entry === key && block >= r.from && block <= r.end) return Math.min(limit, r.end);
    const blocks = Math.ceil(this.layout.virtualSize / this.layout.blockSize);
    const period = this.ratio + 1;
    const lastIndex = this.payloadIndex(blocks - 1) + 1;
    let b = block;
    while (b < blocks) {
      const idx = this.payloadIndex(b);
      const { off, at } = this.where(idx);
      const page = await this.pages.page(off);
      const n = Math.min((PAGE - at) / 8, lastIndex - idx);
      const m = leadingMatches(page, at, n, idx % period, period, entry);
      b = Math.max(b, this.blockAtOrAfter(idx + m));
      if (m < n) break;
    }
    b = Math.min(b, blocks);
    this.sameRun = { from: block, end: b, entry: key, version: this.pages.version };
    return Math.min(limit, b);
  }

  /** The first payload block whose entry is at BAT index `index` or later. */
  private blockAtOrAfter(index: number): number {
    const period = this.ratio + 1;
    const chunk = Math.floor(index / period);
    const r = index % period;
    return r < this.ratio ? chunk * this.ratio + r : (chunk + 1) * this.ratio;
  }

  payloadIndex(block: number): number {
    return payloadBatIndex(block, this.ratio);
  }

  bitmapIndex(block: number): number {
    return bitmapBatIndex(Math.floor(block / this.ratio), this.ratio);
  }

  /** A block's entry, with a present block's offset checked against the file (a truncated file is damage). */
  async payload(block: number): Promise<BatEntry> {
    return this.checked(await this.entry(this.payloadIndex(block)), `block ${block}`);
  }

  async bitmap(block: number): Promise<BatEntry> {
    return this.checked(await this.entry(this.bitmapIndex(block)), `sector bitmap of block ${block}`);
  }

  private checked(e: BatEntry, what: string): BatEntry {
    if (e.state === 6 || e.state === 7) {
      if (e.offset < MiB || e.offset >= this.fileSize()) {
        throw corrupt(`the vhdx BAT entry for ${what} points to offset ${e.offset}, outside the file (${this.fileSize()} bytes); the image was probably truncated`);
      }
    }
    return e;
  }
}

/** The bit of logical sector `sector` (counted within its chunk) in a sector bitmap page starting at `pageSector`. */
export function bitmapBit(page: Uint8Array, bit: number): boolean {
  return (page[bit >>> 3] & (1 << (bit & 7))) !== 0;
}

/**
 * Journals metadata page changes through the log. One log GUID serves a session: it is written into the headers
 * before the first entry and cleared again by `settle()` (flush/close) once everything is in place.
 */
export class Journal {
  private position = 0;
  private sequence = 1n;
  private guid?: string;
  /** Off after skipFlushes() (convert -t unsafe): order is kept, durability is the system's business. */
  syncs = true;
  constructor(
    private readonly file: ImageFile,
    private headers: { header: VhdxHeader; index: 0 | 1 },
  ) {}

  get header(): VhdxHeader {
    return this.headers.header;
  }

  async setHeader(change: Partial<VhdxHeader>): Promise<void> {
    this.headers = await updateHeaders(this.file, this.headers, change, this.syncs);
  }

  /** Writes `pages` (4 KiB, file offset → bytes) through the log and then in place. */
  async writeThroughLog(pages: Map<number, Uint8Array>): Promise<void> {
    if (pages.size === 0) return;
    const h = this.headers.header;
    const all = [...pages].sort((a, b) => a[0] - b[0]);
    // An entry must leave the previous one intact: keep each under half the log.
    const perEntry = Math.max(1, Math.floor(h.logLength / 2 / PAGE) - 2);
    if (h.logLength < 2 * PAGE * 2) throw corrupt(`${this.file.path}: the vhdx log is too small to write through`, this.file.path);
    if (!this.guid) {
      this.guid = newGuid();
      await this.setHeader({ logGuid: this.guid });
    }
    // Data written before this change (a newly allocated block's contents) must be on disk before the entry.
    await this.sync();
    for (let i = 0; i < all.length; i += perEntry) {
      const part = all.slice(i, i + perEntry);
      const entry = encodeLogEntry({
        logGuid: this.guid,
        sequence: this.sequence,
        tail: this.position,
        flushedFileOffset: this.file.size,
        lastFileOffset: this.file.size,
        writes: part.map(([fileOffset, data]) => ({ fileOffset, data })),
      });
      const len = h.logLength;
      const first = Math.min(entry.length, len - this.position);
      await this.file.write(h.logOffset + this.position, entry.subarray(0, first));
      if (first < entry.length) await this.file.write(h.logOffset, entry.subarray(first));
      await this.sync();
      for (const [off, data] of part) await this.file.write(off, data);
      await this.sync();
      this.position = (this.position + entry.length) % len;
      this.sequence++;
    }
  }

  private async sync(): Promise<void> {
    if (this.syncs) await this.file.sync();
  }

  /**
   * Marks the log empty once everything it held is in place (flush and close). Without syncs (cache=unsafe,
   * which gives up crash safety as qemu-img convert's default does) the data is not flushed first: that flush
   * of the whole new file was most of a -t unsafe convert's time.
   */
  async settle(): Promise<void> {
    await this.sync();
    if (this.guid || this.headers.header.logGuid !== ZERO_GUID) {
      await this.setHeader({ logGuid: ZERO_GUID });
      this.guid = undefined;
      this.position = 0;
    }
  }
}
