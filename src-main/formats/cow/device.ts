/**
 * An open UML COW file as a BlockDevice. Guest sector i lives at data_offset + i * sector_size when its
 * bitmap bit is set; otherwise it reads through to the backing file (a raw image), or as zeros without one.
 * Writes put whole sectors in the data area first, make them durable, and only then set their bits, so a
 * crash leaves every sector with its old content or its new one, never a mix of a bit and stale data.
 */
import { promises as fsp } from 'node:fs';
import { readBelow } from '../../block/chain';
import { checkRange } from '../../block/bytes';
import { DiskError, toDiskError, readOnlyError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent, OpenOptions } from '../../block/types';
import { backingFacts, locateBacking, readCowHeader, verifyBacking } from './backing';
import { CowBitmap } from './bitmap';
import { commitMarkOf, hasRoomForMark, withCommitMark } from './commit-mark';
import { absoluteBackingName } from './create';
import { patchBackingFacts, patchBackingName, sectorsWithBits, type CowHeader } from './layout';

/** writeZeroes writes zeros in pieces of this size (a COW file has no way to mark sectors zero). */
const ZERO_CHUNK = 1 << 20;

export class CowDevice implements BlockDevice {
  readonly format = 'cow' as const;
  private readonly ss: number;
  private noFlush = false;
  /** During commit's handover: the mtime the header records for the backing file, set back after each write into it. */
  private pinnedMtime?: number;

  constructor(
    private readonly file: ImageFile,
    readonly header: CowHeader,
    private readonly bitmap: CowBitmap,
    readonly readOnly: boolean,
    readonly backing?: BlockDevice,
    /** The backing file's absolute path (the recorded one, or the override), when it was followed. */
    private readonly backingPath?: string,
  ) {
    this.ss = header.sectorSize;
  }

  get path(): string {
    return this.file.path;
  }
  get size(): number {
    return this.header.size;
  }

  /** The run of sectors sharing the state of the one holding `offset`, cut at `end`, in bytes. */
  private async runAt(offset: number, end: number): Promise<{ set: boolean; end: number }> {
    const r = await this.bitmap.run(Math.floor(offset / this.ss), Math.ceil(end / this.ss));
    return { set: r.set, end: Math.min(end, r.end * this.ss) };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    const end = offset + into.length;
    let pos = offset;
    while (pos < end) {
      const run = await this.runAt(pos, end);
      const part = into.subarray(pos - offset, run.end - offset);
      if (run.set) await this.file.readZeroPadded(this.header.dataOffset + pos, part);
      else await readBelow(this.backing, pos, part);
      pos = run.end;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    checkRange(this.size, offset, data.length, this.path);
    if (data.length === 0) return;
    const ss = this.ss;
    const first = Math.floor(offset / ss);
    const last = Math.ceil((offset + data.length) / ss); // one past
    if (last > this.bitmap.bits) {
      throw new DiskError('EUNSUPPORTED', `${this.path}: the last sectors of this old (version ${this.header.version}) COW file have no bitmap bits and cannot be written`, this.path);
    }
    // Whole sectors go to the data area: the edges of a partial write keep what the sector reads now.
    const start = first * ss;
    const stop = Math.min(last * ss, this.size);
    let buf = data;
    if (start !== offset || stop !== offset + data.length) {
      buf = new Uint8Array(stop - start);
      if (start !== offset) await this.read(start, buf.subarray(0, Math.min(ss, buf.length)));
      const tail = Math.max(start, (last - 1) * ss);
      if (stop !== offset + data.length && tail >= start) await this.read(tail, buf.subarray(tail - start));
      buf.set(data, offset - start);
    }
    try {
      // Which sectors are new: their bits are set only after their data is on disk.
      const fresh: Array<[number, number]> = [];
      for (let s = first; s < last; ) {
        const r = await this.bitmap.run(s, last);
        if (!r.set) fresh.push([s, r.end]);
        s = r.end;
      }
      await this.file.write(this.header.dataOffset + start, buf);
      if (fresh.length) {
        // cache=unsafe (skipFlushes) gives up crash safety for speed, this ordering sync included, as qemu does.
        if (!this.noFlush) await this.file.sync();
        for (const [a, b] of fresh) await this.bitmap.set(a, b);
      }
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    checkRange(this.size, offset, length, this.path);
    const zero = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let pos = offset; pos < offset + length; pos += zero.length) {
      await this.write(pos, zero.subarray(0, Math.min(zero.length, offset + length - pos)));
    }
  }

  /** Sectors with their bit set are data (at data_offset + offset); the others are unallocated. */
  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    const run = await this.runAt(offset, offset + length);
    return run.set ? { kind: 'data', length: run.end - offset, hostOffset: this.header.dataOffset + offset } : { kind: 'unallocated', length: run.end - offset };
  }

  /**
   * Rebase: records the new backing file as uml_mkcow would (its absolute name, its mtime and size). A UML COW
   * file cannot stand alone, UML reads its backing file as raw, and its size is its backing file's: a name of
   * none, another format or another size is refused.
   */
  async setBackingFile(name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    if (name === undefined || resolvedPath === undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: a UML COW file always has a backing file; convert it to stand alone`, this.path);
    if (format !== undefined && format !== 'raw') throw new DiskError('EUNSUPPORTED', `${this.path}: UML reads a COW file's backing file as a raw disk, not ${format}`, this.path);
    try {
      const facts = await backingFacts(this.path, resolvedPath);
      if (facts.size !== this.size) throw new DiskError('EUNSUPPORTED', `${this.path}: a UML COW file is as large as its backing file; ${resolvedPath} is ${facts.size} bytes, this disk ${this.size}`, this.path);
      const recorded = await absoluteBackingName(this.path, name);
      const { head } = await readCowHeader(this.file);
      await this.file.write(0, patchBackingName(head, this.header, recorded, facts.mtime, facts.size));
      await this.file.sync();
      Object.assign(this.header, { backingFile: recorded, mtime: facts.mtime });
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /**
   * Commit: clears the bitmap, so every sector reads the backing file, which now holds the data. Then, since an
   * empty COW file fits its backing file whatever it holds, the backing file's mtime (changed by the commit) is
   * recorded, so UML takes the pair again; a crash in between leaves the pair refused until it is accepted.
   */
  async makeEmpty(): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    try {
      await this.bitmap.clearAll();
      await this.file.sync();
      if (this.backingPath === undefined) return;
      const facts = await backingFacts(this.path, this.backingPath);
      if (facts.size !== this.size) return; // another size is the user's to accept (acceptBackingChange)
      const { head } = await readCowHeader(this.file);
      await this.file.write(0, patchBackingFacts(head, this.header, facts.mtime, facts.size));
      await this.file.sync();
      Object.assign(this.header, { mtime: facts.mtime });
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /**
   * Commit's handover (BlockDevice.beginParentChange; commit-mark.ts says why): the header records the mtime the
   * commit will leave the backing file with (now, or just after its present one) and the mark, in one write,
   * synced; then the backing file's mtime is set to it. UML COW backing files are raw: `change` is none.
   */
  async beginParentChange(): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    if (this.backingPath === undefined) return;
    try {
      const { head } = await readCowHeader(this.file);
      if (!hasRoomForMark(this.header)) {
        throw new DiskError('EUNSUPPORTED', `${this.path}: its backing file name leaves no room in the header to mark a commit in progress; rebase it onto a shorter name first`, this.path);
      }
      const facts = await backingFacts(this.path, this.backingPath);
      const since = Math.floor(Date.now() / 1000) >>> 0;
      const pinned = Math.max(since, (facts.mtime + 1) >>> 0) >>> 0;
      const marked = withCommitMark(patchBackingFacts(head, this.header, pinned, facts.size), this.header, { previousMtime: facts.mtime, since });
      await this.file.write(0, marked);
      await this.file.sync();
      Object.assign(this.header, { mtime: pinned });
      this.pinnedMtime = pinned;
      await this.parentWritten();
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /** Sets the backing file's mtime back to the one the header records (a write into it has just changed it). */
  async parentWritten(): Promise<void> {
    if (this.pinnedMtime === undefined || this.backingPath === undefined) return;
    await fsp.utimes(this.backingPath, new Date(), this.pinnedMtime).catch((err: unknown) => {
      throw toDiskError(err, this.backingPath);
    });
  }

  /** Ends the handover: the backing file's mtime set once more, and the mark cleared with the facts recorded, in one write. */
  async endParentChange(): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    if (this.pinnedMtime === undefined || this.backingPath === undefined) return;
    try {
      await this.parentWritten();
      const facts = await backingFacts(this.path, this.backingPath);
      const { head } = await readCowHeader(this.file);
      await this.file.write(0, withCommitMark(patchBackingFacts(head, this.header, facts.mtime, facts.size), this.header, undefined));
      await this.file.sync();
      Object.assign(this.header, { mtime: facts.mtime });
      this.pinnedMtime = undefined;
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async flush(): Promise<void> {
    if (!this.noFlush) await this.file.sync();
  }

  async close(): Promise<void> {
    try {
      if (!this.readOnly && !this.noFlush) await this.file.sync();
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }
}

/**
 * Opens a COW file and, when the policy allows, its backing file as a raw image (UML reads it as one). The
 * backing file must still have the recorded size and mtime unless `acceptChangedBacking` says otherwise.
 */
export async function openCow(path: string, opts: OpenOptions): Promise<CowDevice> {
  const file = await ImageFile.open(path, !opts.readOnly);
  let backing: BlockDevice | undefined;
  try {
    const { head, header: h } = await readCowHeader(file);
    const full = locateBacking(path, h, opts.backingPolicy, opts.backingOverride);
    if (full !== undefined) {
      await verifyBacking(path, h, full, opts.acceptChangedBacking === true, commitMarkOf(head, h));
      backing = await opts.openBacking(full, 'raw', true);
    }
    return new CowDevice(file, h, new CowBitmap(file, h.bitmapOffset, sectorsWithBits(h)), opts.readOnly, backing, full);
  } catch (err) {
    await file.close();
    await backing?.close().catch(() => undefined);
    throw toDiskError(err, path);
  }
}
