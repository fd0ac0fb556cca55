/**
 * The VHD BlockDevice. A fixed image is its data followed by the footer. A dynamic image reads through its BAT:
 * an allocated block is a sector bitmap then the block's data; as qemu does, a dynamic image's bitmap is not
 * consulted (every sector of an allocated block is read from the file) and new blocks get a bitmap of all ones.
 * A differencing image consults the bitmap: a clear bit, or a block not allocated, reads the parent.
 *
 * Writes to a new block go to the end of the file: the footer is first written past the new block and synced (so
 * the file always ends with a footer), then the block's bitmap (over the old footer) and its data; the BAT entry, and the
 * bitmap bits a differencing image sets for sectors of blocks already in the BAT, are kept in memory and written
 * after a sync (at flush, close, or every METADATA_BATCH blocks). A crash therefore leaves each block either
 * unreferenced (its space leaked, the old content read) or complete, never a BAT entry over data not yet written.
 */
import { readBelow } from '../../block/chain';
import { checkRange } from '../../block/bytes';
import { LruCache } from '../../block/cache';
import { endOfRun } from '../../block/table-scan';
import { corrupt, DiskError, readOnlyError, toDiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { BlockDevice, Extent } from '../../block/types';
import type { VpcLayout, DynamicLayout } from './image';
import { BAT_UNUSED, bitmapBit, DISK_DIFFERENCING, DISK_FIXED, FOOTER_SIZE, SECTOR, serializeFooter, setBitmapBits } from './layout';

/** Blocks whose BAT entry or bitmap may wait in memory before they are written (after a sync). */
const METADATA_BATCH = 64;
const ZERO_CHUNK = 1 << 20;

export class VpcDevice implements BlockDevice {
  readonly format = 'vpc' as const;
  /** Changes only when a fixed image is resized. */
  size: number;
  readonly clusterSize?: number;
  readonly newUnitsStaySparse?: boolean;
  private readonly dyn?: DynamicLayout;
  private readonly bitmaps = new LruCache<number, Uint8Array>(256);
  /** Blocks whose BAT entry (and bitmap, when dirty) wait to be written. */
  private readonly pendingBat = new Set<number>();
  private readonly dirtyBitmaps = new Map<number, Uint8Array>();
  /** Where the next block goes: the old footer's place, past every block and all metadata. */
  private nextFree = 0;
  private noFlush = false;

  constructor(
    readonly file: ImageFile,
    readonly layout: VpcLayout,
    readonly readOnly: boolean,
    readonly backing?: BlockDevice,
    /** The parent's path when it was followed (makeEmpty records its new time stamp). */
    readonly parentPath?: string,
  ) {
    this.size = layout.virtualSize;
    this.dyn = layout.dyn;
    if (this.dyn) {
      this.clusterSize = this.dyn.blockSize;
      // A new block goes where the footer was, past which the file is a hole: writeInBlock writes its bitmap
      // (over the old footer) and the data, and the rest of the block reads as zeros without being written.
      this.newUnitsStaySparse = true;
      const footerAt = layout.endFooterOk ? file.size - FOOTER_SIZE : Math.ceil(file.size / SECTOR) * SECTOR;
      this.nextFree = Math.max(this.dyn.dataEnd, this.dyn.metaEnd, footerAt);
    }
  }

  /** Read from the layout each time: a rebase may turn a dynamic image into a differencing one and back. */
  private get differencing(): boolean {
    return this.layout.diskType === DISK_DIFFERENCING;
  }

  get path(): string {
    return this.file.path;
  }

  /** The disk's unique id (a child records it as its parent's). */
  get uuid(): string {
    return this.layout.footer.uuid;
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /** The bytes of a fixed image's data area (everything before the footer). */
  private get fixedDataEnd(): number {
    return this.layout.footerFrom === 'end' ? this.file.size - FOOTER_SIZE : this.file.size;
  }

  private blockOffset(block: number): number | undefined {
    const e = this.dyn!.bat[block];
    return e === BAT_UNUSED || e === undefined ? undefined : e * SECTOR;
  }

  private async bitmap(block: number, at: number): Promise<Uint8Array> {
    const dirty = this.dirtyBitmaps.get(block);
    if (dirty) return dirty;
    let b = this.bitmaps.get(block);
    if (!b) {
      b = await this.file.readBlock(at, this.dyn!.bitmapSize, 'VHD sector bitmap');
      this.bitmaps.set(block, b);
    }
    return b;
  }

  /** From byte `inb` of a differencing image's allocated block: how many bytes (up to `max`) share its first sector's bit. */
  private async bitmapRun(block: number, at: number, inb: number, max: number): Promise<{ set: boolean; length: number }> {
    const bm = await this.bitmap(block, at);
    const first = Math.floor(inb / SECTOR);
    const last = Math.floor((inb + max - 1) / SECTOR);
    const set = bitmapBit(bm, first);
    let s = first + 1;
    while (s <= last && bitmapBit(bm, s) === set) s++;
    return { set, length: Math.min(max, s * SECTOR - inb) };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    await this.guard(async () => {
      if (!this.dyn) return this.file.readZeroPadded(offset, into);
      const bs = this.dyn.blockSize;
      for (let done = 0; done < into.length; ) {
        const pos = offset + done;
        const block = Math.floor(pos / bs);
        const inb = pos % bs;
        const dst = into.subarray(done, done + Math.min(bs - inb, into.length - done));
        const at = this.blockOffset(block);
        const data = at === undefined ? 0 : at + this.dyn.bitmapSize;
        if (at === undefined) {
          if (this.differencing) await readBelow(this.backing, pos, dst);
          else dst.fill(0);
        } else if (!this.differencing) {
          await this.file.readExact(data + inb, dst, 'VHD block');
        } else {
          for (let k = 0; k < dst.length; ) {
            const run = await this.bitmapRun(block, at, inb + k, dst.length - k);
            const part = dst.subarray(k, k + run.length);
            if (run.set) await this.file.readExact(data + inb + k, part, 'VHD block');
            else await readBelow(this.backing, pos + k, part);
            k += run.length;
          }
        }
        done += dst.length;
      }
    });
  }

  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    return this.guard(async () => {
      if (!this.dyn) return this.fixedStatus(offset, length);
      const bs = this.dyn.blockSize;
      const block = Math.floor(offset / bs);
      const inb = offset % bs;
      const n = Math.min(bs - inb, length);
      const at = this.blockOffset(block);
      if (at !== undefined) {
        const host = at + this.dyn.bitmapSize + inb;
        if (!this.differencing) return { kind: 'data', length: n, hostOffset: host };
        const run = await this.bitmapRun(block, at, inb, n);
        return run.set ? { kind: 'data', length: run.length, hostOffset: host } : { kind: 'unallocated', length: run.length };
      }
      // Blocks not allocated: qemu reports a dynamic image's as zeros (present), a differencing image's read the
      // parent. The run of unused entries is found by table-scan (no JavaScript loop over a 1 TiB image's table).
      const lastBlock = Math.min(this.dyn.bat.length, Math.ceil((offset + length) / bs));
      const runEnd = endOfRun(this.dyn.bat, block + 1, lastBlock, BAT_UNUSED);
      return { kind: this.differencing ? 'unallocated' : 'zero', length: Math.min(length, runEnd * bs - offset) };
    });
  }

  /** A fixed image maps its data area one to one; holes of a sparse file read as zeros, as qemu-img map shows them. */
  private fixedStatus(offset: number, length: number): Extent {
    const end = this.fixedDataEnd;
    if (offset >= end) return { kind: 'data', length, hostOffset: offset, readsAsZero: true };
    if (!this.file.seesHoles) return { kind: 'data', length: Math.min(length, end - offset), hostOffset: offset };
    const a = this.file.allocationAt(offset);
    const n = Math.min(length, Math.max(a.end, offset + 1) - offset, end - offset);
    // qemu reports the whole data area as data and, below it, the file's holes as zeros: "data" and "zero" both.
    return a.data ? { kind: 'data', length: n, hostOffset: offset } : { kind: 'data', length: n, hostOffset: offset, readsAsZero: true };
  }

  // ---- writing ----

  private writable(): void {
    if (this.readOnly) throw readOnlyError(this.path);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.writable();
    checkRange(this.size, offset, data.length, this.path);
    if (data.length === 0) return;
    await this.guard(async () => {
      if (!this.dyn) {
        if (offset + data.length > this.fixedDataEnd) throw new DiskError('EINVAL', `${this.path}: the write would reach the VHD footer (the data area ends at ${this.fixedDataEnd})`, this.path);
        return this.file.write(offset, data);
      }
      // A differencing image marks whole sectors: widen the write with what they read now.
      if (this.differencing && (offset % SECTOR !== 0 || data.length % SECTOR !== 0)) {
        const a = offset - (offset % SECTOR);
        const b = Math.min(this.size, Math.ceil((offset + data.length) / SECTOR) * SECTOR);
        const buf = new Uint8Array(b - a);
        await this.read(a, buf);
        buf.set(data, offset - a);
        offset = a;
        data = buf;
      }
      const bs = this.dyn.blockSize;
      for (let done = 0; done < data.length; ) {
        const pos = offset + done;
        const block = Math.floor(pos / bs);
        const inb = pos % bs;
        const piece = data.subarray(done, done + Math.min(bs - inb, data.length - done));
        await this.writeInBlock(block, inb, piece);
        done += piece.length;
      }
      if (this.pendingBat.size + this.dirtyBitmaps.size >= METADATA_BATCH) await this.commitMetadata();
    });
  }

  private async writeInBlock(block: number, inb: number, piece: Uint8Array): Promise<void> {
    const dyn = this.dyn!;
    const at = this.blockOffset(block);
    if (at !== undefined) {
      await this.file.write(at + dyn.bitmapSize + inb, piece);
      if (this.differencing) {
        const bm = await this.bitmap(block, at);
        const from = inb / SECTOR;
        const to = Math.ceil((inb + piece.length) / SECTOR);
        let changed = false;
        for (let s = from; s < to && !changed; s++) changed = !bitmapBit(bm, s);
        if (changed) {
          const copy = this.dirtyBitmaps.get(block) ?? bm.slice();
          setBitmapBits(copy, from, to);
          this.dirtyBitmaps.set(block, copy);
          this.bitmaps.delete(block);
        }
      }
      return;
    }
    if (block >= dyn.bat.length) throw corrupt(`${this.path}: guest block ${block} lies past the VHD BAT's ${dyn.bat.length} entries`, this.path);
    const start = this.nextFree;
    const end = start + dyn.bitmapSize + dyn.blockSize;
    if (start / SECTOR >= BAT_UNUSED) throw new DiskError('EIO', `${this.path}: the VHD is full: its BAT cannot address blocks past ${BAT_UNUSED * SECTOR} bytes`, this.path);
    const bm = new Uint8Array(dyn.bitmapSize);
    // A dynamic image's new block gets every bit set, as qemu does (the rest of the block reads as zeros anyway);
    // a differencing image's only this piece's sectors, so the rest still reads the parent.
    if (this.differencing) setBitmapBits(bm, inb / SECTOR, Math.ceil((inb + piece.length) / SECTOR));
    else bm.fill(0xff);
    // The new footer is made durable before the old one (where the bitmap goes) is overwritten: whatever a crash
    // keeps of the writes that follow, the file ends with a footer (qemu syncs here too).
    await this.file.write(end, this.footerBytes());
    if (!this.noFlush) await this.file.sync();
    await this.file.write(start, bm);
    await this.file.write(start + dyn.bitmapSize + inb, piece);
    this.nextFree = end;
    dyn.bat[block] = start / SECTOR;
    this.bitmaps.set(block, bm);
    this.pendingBat.add(block);
  }

  /** The footer as it is written at the end (the one read, checksum recomputed). */
  private footerBytes(): Uint8Array {
    return serializeFooter(this.layout.footer);
  }

  /**
   * Writes the BAT entries and bitmaps kept in memory, after a sync that makes the data they point at durable.
   * Bitmaps go first: a BAT entry written without its bitmap's new bits reads those sectors from the parent (old).
   */
  private async commitMetadata(): Promise<void> {
    if (this.pendingBat.size === 0 && this.dirtyBitmaps.size === 0) return;
    const dyn = this.dyn!;
    if (!this.noFlush) await this.file.sync();
    for (const [block, bm] of this.dirtyBitmaps) {
      await this.file.write(dyn.bat[block] * SECTOR, bm);
      this.bitmaps.set(block, bm);
    }
    this.dirtyBitmaps.clear();
    const blocks = [...this.pendingBat].sort((a, b) => a - b);
    for (let i = 0; i < blocks.length; ) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
      const run = new Uint8Array((j - i) * 4);
      const v = new DataView(run.buffer);
      for (let k = i; k < j; k++) v.setUint32((k - i) * 4, dyn.bat[blocks[k]]);
      await this.file.write(dyn.batOffset + blocks[i] * 4, run);
      i = j;
    }
    this.pendingBat.clear();
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.size, offset, length, this.path);
    const zero = new Uint8Array(Math.min(Math.max(length, 1), ZERO_CHUNK));
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      let n = Math.min(length - done, zero.length);
      if (this.dyn) {
        const bs = this.dyn.blockSize;
        n = Math.min(n, bs - (pos % bs));
        // A dynamic image's unallocated block already reads as zeros; a differencing one's reads the parent.
        if (!this.differencing && this.blockOffset(Math.floor(pos / bs)) === undefined) {
          done += n;
          continue;
        }
      }
      await this.write(pos, zero.subarray(0, n));
      done += n;
    }
  }

  /**
   * Releases the whole blocks inside the range. A dynamic image's BAT entries become unused (zeros, as qemu
   * reads them), written and synced before the blocks' space is punched out of the file (where this system can);
   * when the freed blocks were the last in the file, the footer moves down after the last block left and the
   * file is cut there (the new footer synced first, so the file always ends with one). A fixed image punches
   * holes in its data area, as a raw file. A differencing image refuses: a block not in the BAT reads the parent,
   * and VHD has no entry that reads as zeros.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.size, offset, length, this.path);
    const refusal = this.discardRefusal();
    if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: ${refusal}`, this.path);
    await this.guard(async () => {
      if (!this.dyn) return this.punchFixed(offset, length);
      const dyn = this.dyn;
      const bs = dyn.blockSize;
      const first = Math.ceil(offset / bs);
      const end = Math.min(dyn.bat.length, offset + length >= this.size ? Math.ceil(this.size / bs) : Math.floor((offset + length) / bs));
      if (first >= end) return;
      await this.commitMetadata();
      const freed: number[] = [];
      let lo = -1;
      let hi = -1;
      for (let b = first; b < end; b++) {
        const at = this.blockOffset(b);
        if (at === undefined) continue;
        freed.push(at);
        dyn.bat[b] = BAT_UNUSED;
        this.bitmaps.delete(b);
        if (lo < 0) lo = b;
        hi = b;
      }
      if (lo < 0) return;
      const run = new Uint8Array((hi - lo + 1) * 4);
      const v = new DataView(run.buffer);
      for (let b = lo; b <= hi; b++) v.setUint32((b - lo) * 4, dyn.bat[b]);
      await this.file.write(dyn.batOffset + lo * 4, run);
      if (!this.noFlush) await this.file.sync();
      for (const at of freed) await this.file.punchHole(at, dyn.bitmapSize + bs);
      await this.cutAfterLastBlock();
    });
  }

  /**
   * Why discard refuses on this image, from its own facts (undefined: it can release space), asked before
   * anything is written (sparsify's dry run and its in-place run, services/sparsify/refusal.ts).
   */
  discardRefusal(): string | undefined {
    if (!this.dyn) return this.file.punchesHoles ? undefined : 'a fixed VHD keeps its whole data area, and this system cannot punch holes in the file';
    if (this.differencing) return "a differencing VHD cannot release blocks: a block not in its table reads the parent's data, and VHD has no way to mark one as zeros";
    return undefined;
  }

  /** Moves the footer down to just after the last block (or the metadata) when blocks past it were freed, and cuts the file there. */
  private async cutAfterLastBlock(): Promise<void> {
    const dyn = this.dyn!;
    if (!this.layout.endFooterOk) return;
    let end = Math.max(dyn.metaEnd, Math.ceil((dyn.batOffset + dyn.bat.length * 4) / SECTOR) * SECTOR);
    for (let b = 0; b < dyn.bat.length; b++) if (dyn.bat[b] !== BAT_UNUSED) end = Math.max(end, dyn.bat[b] * SECTOR + dyn.bitmapSize + dyn.blockSize);
    if (end >= this.nextFree) return;
    await this.file.write(end, this.footerBytes());
    if (!this.noFlush) await this.file.sync();
    await this.file.truncate(end + FOOTER_SIZE);
    this.nextFree = end;
  }

  /** A fixed image: holes punched in the 4 KiB pieces of its data area that lie wholly inside the range. */
  private async punchFixed(offset: number, length: number): Promise<void> {
    const PAGE = 4096;
    const from = Math.ceil(offset / PAGE) * PAGE;
    const to = Math.min(this.fixedDataEnd, Math.floor((offset + length) / PAGE) * PAGE);
    if (to <= from) return;
    if (!(await this.file.punchHole(from, to - from))) {
      throw new DiskError('EUNSUPPORTED', `${this.path}: a fixed VHD keeps its whole data area, and this system cannot punch holes in the file`, this.path);
    }
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    await this.guard(async () => {
      if (this.dyn) await this.commitMetadata();
      if (!this.noFlush) await this.file.sync();
    });
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }

  /** Grows a fixed image (resize.ts says how, and why only fixed). */
  async resize(newSize: number): Promise<void> {
    this.writable();
    await this.guard(async () => {
      const { resizeFixed } = await import('./resize');
      // Already right: the size the footer gives, its current size and the data area all agree.
      if (!this.dyn && newSize === this.size && this.layout.footer.currentSize === BigInt(newSize) && this.fixedDataEnd === newSize) return;
      this.layout.footer = await resizeFixed(this.file, this.layout, this.size, newSize, this.noFlush);
      this.layout.virtualSize = newSize;
      this.size = newSize;
    });
  }

  // ---- commit and rebase (backing-edit.ts does the header work) ----

  async setBackingFile(name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<void> {
    this.writable();
    if (this.layout.diskType === DISK_FIXED) throw new DiskError('EUNSUPPORTED', `${this.path}: a fixed VHD cannot have a parent; convert it to a dynamic or differencing VHD`, this.path);
    await this.guard(async () => {
      await this.commitMetadata();
      const edit = await import('./backing-edit');
      this.nextFree = await edit.setParent(this.editContext(), name, format, resolvedPath);
      this.bitmaps.clear();
    });
  }

  async makeEmpty(): Promise<void> {
    this.writable();
    if (!this.differencing) throw new DiskError('EUNSUPPORTED', `${this.path}: only a differencing VHD can be emptied into its parent`, this.path);
    await this.guard(async () => {
      await this.commitMetadata();
      const edit = await import('./backing-edit');
      this.nextFree = await edit.emptyBat(this.editContext(), this.parentPath);
      this.bitmaps.clear();
    });
  }

  private editContext() {
    return { file: this.file, layout: this.layout, nextFree: this.nextFree, noFlush: this.noFlush };
  }
}
