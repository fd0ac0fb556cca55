/**
 * The VHDX BlockDevice: reads through the BAT (payload block states, sector bitmaps of differencing images and
 * their parent), writes data in place or into blocks allocated at the end of the file (1 MiB aligned), and
 * changes the BAT and bitmaps only through the journal (bat.ts). Calls come one at a time (concurrentCalls false).
 */
import { readBelow } from '../../block/chain';
import { checkRange } from '../../block/bytes';
import { corrupt, DiskError, toDiskError, readOnlyError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, ContentChange, Extent, OpenOptions } from '../../block/types';
import { Bat, bitmapBit, Journal, MetaPages } from './bat';
import { newGuid, readVhdxLayout, VhdxFile, type VhdxLayout } from './image';
import {
  MiB,
  PAYLOAD_FULLY_PRESENT as FULL,
  PAYLOAD_NOT_PRESENT,
  PAYLOAD_PARTIALLY_PRESENT as PARTIAL,
  PAYLOAD_ZERO,
  ZERO_STATES,
  SB_PRESENT,
  SECTOR_BITMAP_SIZE,
  type BatEntry,
} from './layout';
import { linkageGuid, openParent } from './parent';
import { batPages, dataWriteGuidOf, locatorPages } from './backing-edit';
import { parentFacts } from './create';

/** Reads of a read-only image at least this long ask the file where its holes are and read only its data. */
const HOLE_SKIP_MIN = 64 * 1024;
/** Zeroed blocks are journaled in batches of this many changed BAT pages. */
const ZERO_BATCH_PAGES = 64;

export class VhdxDevice implements BlockDevice {
  readonly format = 'vhdx' as const;
  readonly size: number;
  readonly clusterSize: number;
  private readonly pages: MetaPages;
  private readonly bat: Bat;
  private readonly journal?: Journal;
  private firstWrite = true;
  /** The data write GUID the first write gives (chosen early by planContentChange, so that a child can accept it first). */
  private nextDataWriteGuid?: string;
  /** The logical sector size: the unit a differencing image marks present. */
  private readonly sectorSize: number;

  constructor(
    private readonly vhdxFile: VhdxFile,
    readonly layout: VhdxLayout,
    readonly readOnly: boolean,
    readonly backing?: BlockDevice,
    /** The parent's path, when it was followed (makeEmpty links to it again). */
    private parentPath?: string,
  ) {
    this.size = layout.virtualSize;
    this.clusterSize = layout.blockSize;
    this.sectorSize = layout.logicalSectorSize;
    this.pages = new MetaPages(vhdxFile);
    this.bat = new Bat(layout, this.pages, () => vhdxFile.size);
    if (!readOnly) this.journal = new Journal(vhdxFile.file, { header: layout.header, index: layout.headerIndex });
  }

  get path(): string {
    return this.vhdxFile.path;
  }
  /** The data write GUID children link to (the current header's, which the first write changes). */
  get dataWriteGuid(): string {
    return this.journal?.header.dataWriteGuid ?? this.layout.header.dataWriteGuid;
  }

  /** Runs one call, turning anything thrown into a DiskError naming this image. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.pages.discardStaged();
      const e = toDiskError(err, this.path);
      if (e.code === 'ECORRUPT' && !e.message.startsWith(this.path)) throw corrupt(`${this.path}: ${e.message}`, this.path);
      throw e;
    }
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    await this.guard(async () => {
      let done = 0;
      while (done < into.length) {
        const pos = offset + done;
        const block = Math.floor(pos / this.clusterSize);
        const inb = pos % this.clusterSize;
        const dst = into.subarray(done, done + Math.min(this.clusterSize - inb, into.length - done));
        await this.readInBlock(block, pos, inb, dst);
        done += dst.length;
      }
    });
  }

  private async readInBlock(block: number, pos: number, inb: number, dst: Uint8Array): Promise<void> {
    const e = await this.bat.payload(block);
    if (e.state === FULL || (e.state === PARTIAL && !this.layout.hasParent)) {
      // A read-only image cannot change under us (the lock), so what the file calls a hole stays one until read.
      if (this.readOnly && dst.length >= HOLE_SKIP_MIN) return this.vhdxFile.readSkippingHoles(e.offset + inb, dst);
      return this.vhdxFile.read(e.offset + inb, dst);
    }
    if (e.state === PARTIAL) {
      let done = 0;
      while (done < dst.length) {
        const run = await this.bitmapRun(block, inb + done, dst.length - done);
        const part = dst.subarray(done, done + run.length);
        if (run.set) await this.vhdxFile.read(e.offset + inb + done, part);
        else await readBelow(this.backing, pos + done, part);
        done += run.length;
      }
      return;
    }
    if (e.state === PAYLOAD_NOT_PRESENT) return readBelow(this.backing, pos, dst);
    if (ZERO_STATES.includes(e.state)) {
      dst.fill(0);
      return;
    }
    throw corrupt(`${this.path}: vhdx BAT entry of block ${block} has the unknown state ${e.state}`, this.path);
  }

  /** From byte `inb` of a partially present block: how many bytes (up to `max`) share the bit of its first sector. */
  private async bitmapRun(block: number, inb: number, max: number): Promise<{ set: boolean; length: number }> {
    const sb = await this.bat.bitmap(block);
    const sectorSize = this.sectorSize;
    const first = Math.floor(inb / sectorSize);
    const last = Math.floor((inb + max - 1) / sectorSize);
    if (sb.state !== SB_PRESENT) return { set: false, length: max };
    const chunkSector = (block % this.bat.ratio) * (this.clusterSize / sectorSize);
    let set: boolean | undefined;
    let s = first;
    for (; s <= last; s++) {
      const bit = chunkSector + s;
      const byte = sb.offset + (bit >>> 3);
      const pageOff = byte - (byte % 4096);
      const page = await this.pages.page(pageOff);
      const v = bitmapBit(page, (byte - pageOff) * 8 + (bit & 7));
      if (set === undefined) set = v;
      else if (v !== set) break;
    }
    return { set: set!, length: Math.min(max, s * sectorSize - inb) };
  }

  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    return this.guard(async () => {
      const bs = this.clusterSize;
      const first = await this.blockStatus(offset, length);
      let len = first.length;
      // Following blocks whose entry is the first's (NOT_PRESENT, ZERO: no data of their own) join without a
      // call each; after unallocated sectors of a partial block, blocks not present do.
      const like = first.kind === 'data' ? undefined : await this.bat.runEntry(Math.floor(offset / bs), first.kind === 'unallocated');
      // Whole following blocks in the same state join the extent (data only when contiguous in the file).
      while (len < length && (offset + len) % bs === 0) {
        if (like) {
          const block = (offset + len) / bs;
          const end = await this.bat.sameEntriesEnd(like, block, Math.ceil((offset + length) / bs));
          len = Math.min(length, len + (end - block) * bs);
          if (end > block) continue;
        }
        const next = await this.blockStatus(offset + len, length - len);
        if (next.kind !== first.kind) break;
        if (first.kind === 'data' && (next.hostOffset !== first.hostOffset! + len || next.readsAsZero !== first.readsAsZero)) break;
        len += next.length;
      }
      return { ...first, length: len };
    });
  }

  private async blockStatus(pos: number, max: number): Promise<Extent> {
    const block = Math.floor(pos / this.clusterSize);
    const inb = pos % this.clusterSize;
    const n = Math.min(this.clusterSize - inb, max);
    const e = await this.bat.payload(block);
    if (e.state === FULL || (e.state === PARTIAL && !this.layout.hasParent)) return this.dataAt(e.offset + inb, n);
    if (e.state === PARTIAL) {
      const run = await this.bitmapRun(block, inb, n);
      return run.set ? { kind: 'data', length: run.length, hostOffset: e.offset + inb } : { kind: 'unallocated', length: run.length };
    }
    if (e.state === PAYLOAD_NOT_PRESENT) return { kind: 'unallocated', length: n };
    if (ZERO_STATES.includes(e.state)) return { kind: 'zero', length: n };
    throw corrupt(`${this.path}: vhdx BAT entry of block ${block} has the unknown state ${e.state}`, this.path);
  }

  /**
   * Data stored at `host`: where the file has a hole there it reads as zeros, which the extent says (as VDI and
   * VPC say it, and as qemu's map shows such data), so that convert and map need not read it.
   */
  private dataAt(host: number, n: number): Extent {
    const a = this.vhdxFile.allocationAt(host, n);
    if (!a) return { kind: 'data', length: n, hostOffset: host };
    return a.hole ? { kind: 'data', length: a.length, hostOffset: host, readsAsZero: true } : { kind: 'data', length: a.length, hostOffset: host };
  }

  // ---- writing ----

  /** The journal, which only a writable image has: a read-only one refuses the change here. */
  private journalForWriting(): Journal {
    if (!this.journal) throw readOnlyError(this.path);
    return this.journal;
  }

  /** The first change of guest data gets new file and data write GUIDs in the header (the spec; qemu does it too). */
  private async beginWrite(): Promise<void> {
    if (!this.firstWrite) return;
    await this.journalForWriting().setHeader({ fileWriteGuid: newGuid(), dataWriteGuid: this.nextDataWriteGuid ?? newGuid() });
    this.firstWrite = false;
  }

  /** The data write GUID now and the one the first write will give (none to plan once it happened). */
  planContentChange(): ContentChange | undefined {
    if (!this.journal || !this.firstWrite) return undefined;
    this.nextDataWriteGuid ??= newGuid();
    return { now: this.dataWriteGuid, next: this.nextDataWriteGuid };
  }

  /** Takes the planned data write GUID now (the header update is synced). */
  async adoptContentChange(): Promise<void> {
    await this.guard(() => this.beginWrite());
  }

  /**
   * Commit's handover (BlockDevice.beginParentChange): the locator links to the parent's next data write GUID
   * and keeps the present one as parent_linkage2, which the spec has a parent match as well as parent_linkage
   * (and which this driver's open accepts). One locator write through the log.
   */
  async beginParentChange(change: ContentChange | undefined): Promise<void> {
    this.journalForWriting();
    if (!change || !this.layout.hasParent) return;
    await this.guard(() => this.relink({ ...this.layout.parentLocator!.entries, parent_linkage: `{${change.next}}`, parent_linkage2: `{${change.now}}` }));
  }

  /** Ends the handover: the locator links to the parent as it is now, without parent_linkage2 (one log write). */
  async endParentChange(): Promise<void> {
    this.journalForWriting();
    if (!this.layout.hasParent || this.parentPath === undefined) return;
    await this.guard(async () => {
      const entries: Record<string, string> = { ...this.layout.parentLocator!.entries, parent_linkage: `{${await dataWriteGuidOf(this.parentPath!)}}` };
      delete entries.parent_linkage2;
      await this.relink(entries);
    });
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.journalForWriting();
    checkRange(this.size, offset, data.length, this.path);
    if (data.length === 0) return;
    await this.guard(async () => {
      await this.beginWrite();
      // A differencing image marks whole logical sectors present: widen the write with what they read now.
      if (this.layout.hasParent && (offset % this.sectorSize !== 0 || data.length % this.sectorSize !== 0)) {
        const a = offset - (offset % this.sectorSize);
        const b = Math.min(this.size, Math.ceil((offset + data.length) / this.sectorSize) * this.sectorSize);
        const buf = new Uint8Array(b - a);
        await this.read(a, buf);
        buf.set(data, offset - a);
        offset = a;
        data = buf;
      }
      let done = 0;
      while (done < data.length) {
        const pos = offset + done;
        const block = Math.floor(pos / this.clusterSize);
        const inb = pos % this.clusterSize;
        const piece = data.subarray(done, done + Math.min(this.clusterSize - inb, data.length - done));
        await this.writeInBlock(block, inb, piece);
        done += piece.length;
      }
    });
  }

  /** Journals the staged metadata pages, then lets the cache see them. */
  private async journalStagedPages(): Promise<void> {
    const pages = this.pages.take();
    await this.journal!.writeThroughLog(pages);
    this.pages.settle(pages);
  }

  /** Extends the file by `length` bytes at the next 1 MiB boundary and returns where they start. */
  private async allocate(length: number): Promise<number> {
    const file = this.vhdxFile.file;
    const at = Math.ceil(file.size / MiB) * MiB;
    await file.truncate(at + length);
    return at;
  }

  private blockEnd(block: number): number {
    return Math.min(this.clusterSize, this.size - block * this.clusterSize);
  }

  private async writeInBlock(block: number, inb: number, piece: Uint8Array): Promise<void> {
    const file = this.vhdxFile.file;
    const e = await this.bat.payload(block);
    if (e.state === FULL || (e.state === PARTIAL && !this.layout.hasParent)) return file.write(e.offset + inb, piece);
    if (e.state === PARTIAL) {
      await file.write(e.offset + inb, piece);
      await this.markPresent(block, inb, piece.length);
      return this.journalStagedPages();
    }
    if (!ZERO_STATES.includes(e.state) && e.state !== PAYLOAD_NOT_PRESENT) {
      throw corrupt(`${this.path}: vhdx BAT entry of block ${block} has the unknown state ${e.state}`, this.path);
    }
    const at = await this.allocate(this.clusterSize);
    await file.write(at + inb, piece); // the rest of the new block reads as the zeros the extension gave
    const whole = inb === 0 && piece.length >= this.blockEnd(block);
    if (this.layout.hasParent && e.state === PAYLOAD_NOT_PRESENT && !whole) {
      // The rest of the block still comes from the parent: partially present, with this piece's sectors marked.
      await this.bat.set(this.bat.payloadIndex(block), { state: PARTIAL, offset: at });
      await this.markPresent(block, inb, piece.length);
    } else {
      await this.bat.set(this.bat.payloadIndex(block), { state: FULL, offset: at });
    }
    await this.journalStagedPages();
  }

  /** Sets the sector bitmap bits of [inb, inb + length) of a block (staged), allocating the chunk's bitmap first. */
  private async markPresent(block: number, inb: number, length: number): Promise<void> {
    let sb: BatEntry = await this.bat.bitmap(block);
    if (sb.state !== SB_PRESENT) {
      sb = { state: SB_PRESENT, offset: await this.allocate(SECTOR_BITMAP_SIZE) };
      await this.bat.set(this.bat.bitmapIndex(block), sb);
    }
    const chunkSector = (block % this.bat.ratio) * (this.clusterSize / this.sectorSize);
    const first = chunkSector + Math.floor(inb / this.sectorSize);
    const last = chunkSector + Math.ceil((inb + length) / this.sectorSize);
    for (let bit = first; bit < last; bit++) {
      const byte = sb.offset + (bit >>> 3);
      const pageOff = byte - (byte % 4096);
      const mask = 1 << (bit & 7);
      // Sectors already marked need no log entry: only pages whose bits change are staged.
      if (((await this.pages.page(pageOff))[byte - pageOff] & mask) === 0) (await this.pages.stage(pageOff))[byte - pageOff] |= mask;
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.journalForWriting();
    checkRange(this.size, offset, length, this.path);
    if (length === 0) return;
    await this.guard(async () => {
      await this.beginWrite();
      let done = 0;
      while (done < length) {
        const pos = offset + done;
        const block = Math.floor(pos / this.clusterSize);
        const inb = pos % this.clusterSize;
        const n = Math.min(this.clusterSize - inb, length - done);
        const e = inb === 0 && n >= this.blockEnd(block) ? await this.bat.payload(block) : undefined;
        if (e && e.state === FULL && this.layout.leaveBlocksAllocated) {
          // A fixed image keeps its blocks where they are (the spec's LeaveBlocksAllocated): zeros are written.
          await this.journalStagedPages();
          await this.writeZeroBytes(pos, n);
        } else if (e) {
          // A whole block: the ZERO state says it reads as zeros (over a parent too); its old space is left unused.
          if (e.state !== PAYLOAD_ZERO) await this.bat.set(this.bat.payloadIndex(block), { state: PAYLOAD_ZERO, offset: 0 });
          if (this.pages.pending >= ZERO_BATCH_PAGES) await this.journalStagedPages();
        } else {
          await this.journalStagedPages();
          const e = await this.bat.payload(block);
          const readsZero = ZERO_STATES.includes(e.state) || (e.state === PAYLOAD_NOT_PRESENT && !this.layout.hasParent);
          if (!readsZero) await this.writeZeroBytes(pos, n);
        }
        done += n;
      }
      await this.journalStagedPages();
    });
  }

  private async writeZeroBytes(pos: number, n: number): Promise<void> {
    const zero = new Uint8Array(Math.min(n, MiB));
    for (let done = 0; done < n; done += zero.length) await this.write(pos + done, zero.subarray(0, Math.min(zero.length, n - done)));
  }

  /**
   * Releases the whole blocks inside the range: they take the ZERO state and read as zeros, over a parent too.
   * Once the BAT change is through the log, the blocks' old space is punched out of the file (where this system
   * can): the file keeps its length (VHDX blocks are not moved in place) but takes less room on the host.
   * A fixed image keeps its blocks: EUNSUPPORTED, in discardRefusal's words.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.journalForWriting();
    checkRange(this.size, offset, length, this.path);
    const refusal = this.discardRefusal();
    if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: ${refusal}`, this.path);
    const bs = this.clusterSize;
    const first = Math.ceil(offset / bs);
    const endBlock = offset + length >= this.size ? Math.ceil(this.size / bs) : Math.floor((offset + length) / bs);
    if (first >= endBlock) return;
    const held: Array<[number, number]> = [];
    for (let b = first; b < endBlock; b++) {
      const e = await this.bat.payload(b);
      if ((e.state === FULL || e.state === PARTIAL) && e.offset > 0) held.push([b, e.offset]);
    }
    await this.writeZeroes(first * bs, Math.min(this.size, endBlock * bs) - first * bs);
    // writeZeroes journals the BAT (log written and synced, then applied): only then is the old space unreferenced.
    const file = this.vhdxFile.file;
    for (const [b, at] of held) if ((await this.bat.payload(b)).offset !== at) await file.punchHole(at, bs);
  }

  /** BlockDevice.discardRefusal, from the header alone: a fixed image (the spec's LeaveBlocksAllocated) keeps its blocks. */
  discardRefusal(): string | undefined {
    return this.layout.leaveBlocksAllocated ? 'a fixed VHDX image keeps every block allocated; nothing can be discarded' : undefined;
  }

  /**
   * Rebase: the locator names the new parent (relative_path, absolute_win32_path) and links to its current data
   * write GUID. Only a differencing image has a locator, and one cannot stand alone without rewriting its blocks.
   */
  async setBackingFile(name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<void> {
    this.journalForWriting();
    if (!this.layout.hasParent) throw new DiskError('EUNSUPPORTED', `${this.path}: this VHDX image was not made as a differencing image, so it cannot be given a parent`, this.path);
    if (name === undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: a differencing VHDX image cannot be made to stand alone in place; convert it instead`, this.path);
    await this.guard(async () => {
      const p = await parentFacts(this.path, resolvedPath ?? name, format);
      if (p.logicalSectorSize !== this.sectorSize || p.virtualSize < this.size) {
        throw new DiskError('EUNSUPPORTED', `${this.path}: the new parent must have ${this.sectorSize}-byte sectors and at least ${this.size} bytes (it has ${p.logicalSectorSize}-byte sectors and ${p.virtualSize} bytes)`, this.path);
      }
      await this.relink({ parent_linkage: p.linkage, relative_path: p.relative, absolute_win32_path: p.absolute });
      this.parentPath = p.absolute;
    });
  }

  /** Writes a new parent locator through the journal (backing-edit.ts). */
  private async relink(entries: Record<string, string>): Promise<void> {
    await this.beginWrite();
    await this.journalStagedPages();
    const loc = { type: this.layout.parentLocator!.type, entries };
    await this.journal!.writeThroughLog(await locatorPages(this.vhdxFile, this.layout, loc));
  }

  /**
   * Commit: every BAT entry becomes NOT_PRESENT, so every sector reads the parent again; then the locator links
   * to the parent's data write GUID as it is now (the commit wrote into the parent, which changed it).
   */
  async makeEmpty(): Promise<void> {
    this.journalForWriting();
    if (!this.layout.hasParent) throw new DiskError('EUNSUPPORTED', `${this.path}: only a differencing VHDX image can be emptied into its parent`, this.path);
    await this.guard(async () => {
      await this.beginWrite();
      for (const { off, from, to } of batPages(this.layout)) {
        const page = await this.pages.page(off);
        if (page.subarray(from, to).every((b) => b === 0)) continue;
        (await this.pages.stage(off)).fill(0, from, to);
        if (this.pages.pending >= ZERO_BATCH_PAGES) await this.journalStagedPages();
      }
      await this.journalStagedPages();
      if (this.parentPath !== undefined) {
        const entries = this.layout.parentLocator!.entries;
        const theirs = await dataWriteGuidOf(this.parentPath);
        // After commit's handover the locator names the parent as it is already.
        if (linkageGuid(entries.parent_linkage) !== linkageGuid(theirs) || entries.parent_linkage2 !== undefined) await this.endParentChange();
      }
    });
  }

  /** convert -t unsafe: metadata updates keep their order through the log but are not synced one by one. */
  skipFlushes(): void {
    if (this.journal) this.journal.syncs = false;
    this.vhdxFile.file.skipWriteback();
  }

  async flush(): Promise<void> {
    if (this.journal) await this.guard(() => this.journal!.settle());
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.vhdxFile.file.close();
      await this.backing?.close();
    }
  }
}

/** Opens the image at `path` (and, for a differencing image, its parent through opts.openBacking). */
export async function openVhdx(path: string, opts: OpenOptions): Promise<VhdxDevice> {
  const file = await ImageFile.open(path, !opts.readOnly);
  return openVhdxFile(file, opts);
}

/** Opens an image on an already open file (the crash tests hand in a file that fails on purpose). */
export async function openVhdxFile(file: ImageFile, opts: OpenOptions): Promise<VhdxDevice> {
  const path = file.path;
  let parent: BlockDevice | undefined;
  try {
    const f = new VhdxFile(file);
    const l = await readVhdxLayout(f, !opts.readOnly);
    if (l.hasParent && opts.backingPolicy !== 'none') {
      parent = await openParent(path, l.parentLocator!, l.virtualSize, opts, (p) => (p instanceof VhdxDevice ? p.dataWriteGuid : undefined));
    }
    return new VhdxDevice(f, l, opts.readOnly, parent, parent?.path);
  } catch (err) {
    await parent?.close().catch(() => undefined);
    await file.close();
    throw toDiskError(err, path);
  }
}
