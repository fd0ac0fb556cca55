/**
 * The VMDK BlockDevice: guest ranges are cut at extent boundaries and each piece is read, written or reported
 * by its extent. Unallocated grains read through to the parent (or as zeros). The first write changes the CID
 * in the descriptor, as qemu does, so that children made against the old content see their chain is stale; the
 * commit/rebase hooks record a new parent and empty the image.
 */
import { readBelow } from '../../block/chain';
import { randomBytesQuick } from '../../block/random';
import * as nodePath from 'node:path';
import { SECTOR, checkRange } from '../../block/bytes';
import { DiskError, corrupt, readOnlyError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { BlockDevice, ContentChange, Extent, FormatName } from '../../block/types';
import { checkParentName, hexCid, PARENT_CID_BEFORE_COMMIT, readPlaceText, withCid, withDdb, withParent, writePlaceText } from './descriptor';
import { FlatExtent, GTE_ZEROED, SparseExtent, type Piece, type VmdkExtent } from './extent';
import { parseDescriptor, type Descriptor } from './layout';
import { cidOf, type DescriptorPlace } from './open';
import { MutationQueue } from '../../block/mutation-queue';

/** The parentCID of an image without a parent. */
const NO_PARENT_CID = 0xffffffff;
/** Flat extents release whole pages of their file. */
const PAGE = 4096;

/** `parts` as one buffer of `bytes` bytes; no copy when they lie one after another in one buffer (a long write's grains). */
function join(parts: Uint8Array[], bytes: number): Uint8Array {
  const first = parts[0];
  let next = first.byteOffset;
  if (parts.every((p) => p.buffer === first.buffer && p.byteOffset === next && ((next += p.length), true))) {
    return new Uint8Array(first.buffer, first.byteOffset, bytes);
  }
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const OVER_PARENT_REFUSAL = "this VMDK lies over a parent and its extent has no zeroed-grain entries, so a released grain would read the parent's data";

/** The most one status answer covers, to bound the work of one call. */
const STATUS_MAX = 1 << 30;

export class VmdkDevice implements BlockDevice {
  readonly format = 'vmdk' as const;
  /** Guest byte where each extent starts. */
  private readonly starts: number[] = [];
  private cidUpdated = false;
  /** The CID the first change gives (chosen early by planContentChange, so that a child can accept it first). */
  private nextCid?: number;
  private noFlush = false;
  /** Mutations run one at a time, in call order (reads do not wait). */
  private readonly mutations = new MutationQueue();

  constructor(
    readonly path: string,
    readonly size: number,
    readonly readOnly: boolean,
    private readonly extents: VmdkExtent[],
    private readonly files: ImageFile[],
    private descriptor: Descriptor,
    private readonly place: DescriptorPlace | undefined,
    readonly backing?: BlockDevice,
  ) {
    let at = 0;
    for (const e of extents) {
      this.starts.push(at);
      at += e.bytes;
    }
  }

  /** The content ID in the descriptor (a child's parentCID names it). */
  get cid(): number | undefined {
    return this.descriptor.cid;
  }

  /** The grain size when every extent is sparse with the same grain (convert aligns to it). */
  get clusterSize(): number | undefined {
    const g = this.extents.map((e) => (e instanceof SparseExtent ? e.grainBytes : 0));
    return g.length > 0 && g[0] > 0 && g.every((x) => x === g[0]) ? g[0] : undefined;
  }

  /** The extent holding guest byte `pos`, and where in it. */
  private locate(pos: number): { e: VmdkExtent; off: number; room: number } {
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    const e = this.extents[lo];
    const off = pos - this.starts[lo];
    return { e, off, room: e.bytes - off };
  }

  /** Calls `fn` for each piece of [offset, offset+length), in order. */
  private async walk(offset: number, length: number, fn: (e: VmdkExtent, p: Piece, guest: number) => Promise<void>): Promise<void> {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const { e, off, room } = this.locate(pos);
      const p = await e.lookup(off, Math.min(room, end - pos));
      if (p.length <= 0) throw corrupt(`${this.path}: vmdk lookup made no progress at ${pos}`, this.path);
      await fn(e, p, pos);
      pos += p.length;
    }
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    await this.walk(offset, into.length, async (e, p, guest) => {
      const dst = into.subarray(guest - offset, guest - offset + p.length);
      switch (p.kind) {
        case 'data':
          await e.file!.readZeroPadded(p.host, dst);
          break;
        case 'compressed': {
          // The grain's inflated bytes; past them a short grain reads as zeros.
          const g = await (e as SparseExtent).grain(p.grainHost);
          const have = Math.max(0, Math.min(p.inGrain + p.length, g.length) - p.inGrain);
          if (have > 0) dst.set(g.subarray(p.inGrain, p.inGrain + have));
          dst.fill(0, have);
          break;
        }
        case 'zero':
          dst.fill(0);
          break;
        case 'unallocated':
          await readBelow(this.backing, guest, dst);
      }
    });
  }

  /** What an unallocated range reads: the parent's data where it reaches, zeros beyond it or without one. */
  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    const { e, off, room } = this.locate(offset);
    const p = await e.lookup(off, Math.min(room, length, STATUS_MAX), true);
    switch (p.kind) {
      case 'data': {
        // A flat extent is a plain file: its holes read as zeros, and qemu-img map says so (data, zero).
        const f = e.file!;
        if (e instanceof FlatExtent && f.seesHoles) {
          const a = f.allocationAt(p.host);
          const len = a.data ? Math.min(p.length, a.end - p.host) : p.host >= f.size ? p.length : Math.min(p.length, a.end - p.host);
          return { kind: 'data', length: Math.max(1, len), hostOffset: p.host, ...(a.data ? {} : { readsAsZero: true }) };
        }
        return { kind: 'data', length: p.length, hostOffset: p.host };
      }
      case 'compressed':
        return { kind: 'data', length: p.length };
      case 'zero':
        return { kind: 'zero', length: p.length };
      case 'unallocated':
        return { kind: 'unallocated', length: p.length };
    }
  }

  private writableCheck(): void {
    if (this.readOnly) throw readOnlyError(this.path);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.mutations.run(() => this.writeNow(offset, data));
  }

  private async writeNow(offset: number, data: Uint8Array): Promise<void> {
    this.writableCheck();
    checkRange(this.size, offset, data.length, this.path);
    await this.updateCid();
    let pos = offset;
    const end = offset + data.length;
    while (pos < end) {
      const { e, off, room } = this.locate(pos);
      const n = Math.min(room, end - pos);
      const src = data.subarray(pos - offset, pos - offset + n);
      if (e instanceof FlatExtent) {
        if (!e.writable) throw new DiskError('EREADONLY', `${this.path}: extent ${e.file.path} is read-only`, this.path);
        await e.file.write(e.start + off, src);
      } else if (e instanceof SparseExtent) await this.writeSparse(e, off, pos, src, false);
      else throw new DiskError('EUNSUPPORTED', `${this.path}: a ${e.type} extent cannot be written`, this.path);
      pos += n;
    }
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.mutations.run(() => this.writeZeroesNow(offset, length));
  }

  private async writeZeroesNow(offset: number, length: number): Promise<void> {
    this.writableCheck();
    checkRange(this.size, offset, length, this.path);
    await this.updateCid();
    let pos = offset;
    const end = offset + length;
    const chunk = new Uint8Array(1 << 20);
    while (pos < end) {
      const { e, off, room } = this.locate(pos);
      const n = Math.min(room, end - pos, chunk.length);
      if (e instanceof FlatExtent) {
        if (!e.writable) throw new DiskError('EREADONLY', `${this.path}: extent ${e.file.path} is read-only`, this.path);
        await e.file.write(e.start + off, chunk.subarray(0, n));
      } else if (e instanceof SparseExtent) await this.writeSparse(e, off, pos, chunk.subarray(0, n), true);
      else if (e.type !== 'ZERO') throw new DiskError('EUNSUPPORTED', `${this.path}: a ${e.type} extent cannot be written`, this.path);
      pos += n;
    }
  }

  /**
   * Writes into a sparse extent. An allocated grain is written in place; new grains are written whole at the end
   * of the file, their untouched part filled from the parent (copy on write), then pointed to. Neighbouring
   * grains are gathered so that a long write costs few I/Os: allocated grains lying one after another in the
   * file take one write, and a run of new grains in one grain table takes one data write plus one entry write
   * per table copy (extent.ts writeNewGrains, which also orders them for crash safety). Zeros (`zeros`) over a
   * whole grain become a zeroed grain entry when the extent has them, and cost nothing over an unallocated grain
   * without a parent.
   */
  private async writeSparse(e: SparseExtent, off: number, guest: number, data: Uint8Array, zeros: boolean): Promise<void> {
    e.checkWritable();
    const gb = e.grainBytes;
    const perTable = e.facts.numGtes;
    let inPlace: { host: number; parts: Uint8Array[]; bytes: number } | undefined;
    let fresh: { g: number; parts: Uint8Array[] } | undefined;
    const flushInPlace = async () => {
      if (inPlace) await e.file.write(inPlace.host, join(inPlace.parts, inPlace.bytes));
      inPlace = undefined;
    };
    const flushFresh = async () => {
      if (fresh) await e.writeNewGrains(fresh.g, fresh.parts.length, join(fresh.parts, fresh.parts.length * gb));
      fresh = undefined;
    };
    let done = 0;
    while (done < data.length) {
      const at = off + done;
      const inGrain = at % gb;
      const n = Math.min(gb - inGrain, data.length - done);
      const g = Math.floor(at / gb);
      const entry = await e.entry(g);
      const piece = data.subarray(done, done + n);
      const whole = inGrain === 0 && n === gb;
      const zeroed = entry === GTE_ZEROED && e.facts.zeroGrain;
      if (zeros && (zeroed || (entry === 0 && !this.backing))) {
        // Reads as zeros already.
      } else if (zeros && whole && e.facts.zeroGrain) {
        // As qemu does: the grain's entry says zero (an allocated grain's space is left unused).
        await flushFresh();
        await e.setEntry(g, GTE_ZEROED);
      } else if (entry !== 0 && !zeroed) {
        await flushFresh();
        const host = entry * SECTOR + inGrain;
        if (inPlace && inPlace.host + inPlace.bytes !== host) await flushInPlace();
        inPlace ??= { host, parts: [], bytes: 0 };
        inPlace.parts.push(piece);
        inPlace.bytes += n;
      } else {
        await flushInPlace();
        let grain = piece;
        if (!whole) {
          grain = new Uint8Array(gb);
          const grainGuest = guest + done - inGrain;
          // A grain past the disk's end (the last, partial one) keeps zeros there.
          if (!zeroed) await readBelow(this.backing, grainGuest, grain.subarray(0, Math.max(0, Math.min(gb, this.size - grainGuest))));
          grain.set(piece, inGrain);
        }
        const sameRun = fresh && fresh.g + fresh.parts.length === g && Math.floor(fresh.g / perTable) === Math.floor(g / perTable);
        if (!sameRun) await flushFresh();
        fresh ??= { g, parts: [] };
        fresh.parts.push(grain);
      }
      done += n;
    }
    await flushInPlace();
    await flushFresh();
  }

  /** On the first change, a new random CID in the descriptor (qemu's vmdk_write_cid). */
  private async updateCid(): Promise<void> {
    if (this.cidUpdated || !this.place) return;
    this.cidUpdated = true;
    const cid = this.nextCid ?? this.drawCid();
    await this.rewriteDescriptor((text) => withCid(text, cid));
  }

  /** A random CID other than the present one and other than "no parent". */
  private drawCid(): number {
    let cid = randomBytesQuick(4).readUInt32LE(0);
    while (cid === this.descriptor.cid || cid === NO_PARENT_CID) cid = (cid + 1) >>> 0;
    return cid;
  }

  /** The CID now and the one the first change will give (none to plan once it happened, or without a descriptor). */
  planContentChange(): ContentChange | undefined {
    if (this.readOnly || this.cidUpdated || !this.place || this.descriptor.cid === undefined) return undefined;
    this.nextCid ??= this.drawCid();
    return { now: hexCid(this.descriptor.cid), next: hexCid(this.nextCid) };
  }

  /** Takes the planned CID now, synced. */
  adoptContentChange(): Promise<void> {
    return this.mutations.run(async () => {
      this.writableCheck();
      await this.updateCid();
      await this.flushNow();
    });
  }

  /**
   * Commit's handover (BlockDevice.beginParentChange): parentCID names the parent's next CID and the descriptor
   * keeps the present one as ddb.diskwright.parentCidBeforeCommit, which openParent accepts too; one descriptor
   * write, synced. A VMDK descriptor's ddb lines are free-form keys that readers keep or ignore.
   */
  beginParentChange(change: ContentChange | undefined): Promise<void> {
    return this.mutations.run(async () => {
      this.writableCheck();
      const hint = this.descriptor.parentFileNameHint;
      if (!change || hint === undefined || hint === '') return;
      await this.rewriteDescriptor((text) => withDdb(withParent(text, hint, parseInt(change.next, 16)), PARENT_CID_BEFORE_COMMIT, change.now));
      await this.flushNow();
    });
  }

  /** Ends the handover: parentCID names the parent's CID as it is now, the older one is no longer accepted (one write). */
  endParentChange(): Promise<void> {
    return this.mutations.run(async () => {
      this.writableCheck();
      const hint = this.descriptor.parentFileNameHint;
      const parentPath = this.backing?.path;
      if (hint === undefined || hint === '' || parentPath === undefined) return;
      const cid = await cidOf(parentPath).catch(() => undefined);
      await this.rewriteDescriptor((text) => withDdb(cid !== undefined ? withParent(text, hint, cid) : text, PARENT_CID_BEFORE_COMMIT, undefined));
      await this.flushNow();
    });
  }

  /** Rewrites the descriptor text through `edit`, where it lives (descriptor.ts), and keeps our copy in step. */
  private async rewriteDescriptor(edit: (text: string) => string): Promise<void> {
    const pl = this.place;
    if (!pl) throw new DiskError('EUNSUPPORTED', `${this.path}: this VMDK has no descriptor to record a parent in`, this.path);
    const next = edit(await readPlaceText(pl));
    const descriptor = parseDescriptor(next, this.path);
    const old = await writePlaceText(pl, next, this.path);
    if (old) {
      const i = this.files.indexOf(old);
      if (i >= 0) this.files[i] = pl.file;
      await old.close();
    }
    this.descriptor = descriptor;
  }

  /**
   * Records a new parent (rebase, commit -b) or none: parentFileNameHint and parentCID, the CID of the new parent
   * when it is a VMDK (a child is valid against that content), ffffffff otherwise and without a parent, as a
   * VMDK with no parent has and as qemu takes a non-VMDK parent (it has no CID to hold the child to). The
   * createType stays. Only the descriptor changes.
   */
  setBackingFile(name: string | undefined, format: FormatName | undefined, resolvedPath: string | undefined): Promise<void> {
    return this.mutations.run(() => this.setBackingFileNow(name, format, resolvedPath));
  }

  private async setBackingFileNow(name: string | undefined, format: FormatName | undefined, resolvedPath: string | undefined): Promise<void> {
    this.writableCheck();
    if (name !== undefined) checkParentName(name, this.path);
    let pcid = NO_PARENT_CID;
    if (name !== undefined && (format === undefined || format === 'vmdk')) {
      const full = resolvedPath ?? nodePath.resolve(nodePath.dirname(this.path), name);
      // A parent that does not exist yet (an unsafe rebase may name one) has no CID to hold the child to.
      const cid = await cidOf(full).catch((err: unknown) => {
        if (err instanceof DiskError && err.code === 'ENOENT') return undefined;
        throw err;
      });
      pcid = cid ?? NO_PARENT_CID;
    }
    await this.rewriteDescriptor((text) => withParent(text, name, pcid));
  }

  /**
   * Every grain unallocated again (commit empties the overlay after copying its data down), space given back
   * where the layout allows (extent.ts). The data now read is the parent's: the parent changed under commit
   * (a new CID), so parentCID is brought up to date with it, as an empty child is valid against any content.
   */
  makeEmpty(): Promise<void> {
    return this.mutations.run(() => this.makeEmptyNow());
  }

  private async makeEmptyNow(): Promise<void> {
    this.writableCheck();
    for (const e of this.extents) {
      if (e instanceof SparseExtent) e.checkWritable();
      else if (e.type !== 'ZERO') throw new DiskError('EUNSUPPORTED', `${this.path}: a ${e.type} extent holds all its data and cannot be emptied`, this.path);
    }
    await this.updateCid();
    for (const e of this.extents) if (e instanceof SparseExtent) await e.makeEmpty();
    await this.flushNow();
    const parentPath = this.backing?.path;
    const hint = this.descriptor.parentFileNameHint;
    if (parentPath !== undefined && hint !== undefined && hint !== '') {
      const cid = await cidOf(parentPath).catch(() => undefined);
      if (cid !== undefined && cid !== this.descriptor.parentCid) await this.rewriteDescriptor((text) => withParent(text, hint, cid));
    }
  }

  /**
   * Why discard refuses on this image, from its own facts (undefined: it can release space), asked before
   * anything is written (sparsify's dry run and its in-place run, services/sparsify/refusal.ts). The same
   * conditions discardNow meets extent by extent, taken over every extent.
   */
  discardRefusal(): string | undefined {
    for (const e of this.extents) {
      if (e instanceof SparseExtent) {
        const cannotWrite = e.writeRefusal();
        if (cannotWrite !== undefined) return cannotWrite;
        if (this.backing && !e.facts.zeroGrain) return OVER_PARENT_REFUSAL;
      } else if (e instanceof FlatExtent) {
        if (!e.file.punchesHoles) return `this system cannot punch holes in the flat extent ${e.file.path}`;
      } else if (e.type !== 'ZERO') return `a ${e.type} extent cannot release space`;
    }
    return undefined;
  }

  /**
   * Releases the whole grains inside the range: unallocated (zeros) without a parent, the zeroed-grain entry over
   * one where the extent has that entry (qemu's zeroed_grain=on), else EUNSUPPORTED (the parent's data would
   * show). The tables are synced before the grains' space is punched out of the file (where this system can).
   * A flat extent punches holes in its file, as a raw file does.
   */
  discard(offset: number, length: number): Promise<void> {
    return this.mutations.run(() => this.discardNow(offset, length));
  }

  private async discardNow(offset: number, length: number): Promise<void> {
    this.writableCheck();
    checkRange(this.size, offset, length, this.path);
    const punches: Array<{ file: ImageFile; at: number; length: number }> = [];
    let changed = false;
    for (let pos = offset; pos < offset + length; ) {
      const { e, off, room } = this.locate(pos);
      const n = Math.min(room, offset + length - pos);
      if (e instanceof SparseExtent) {
        e.checkWritable();
        const gb = e.grainBytes;
        const first = Math.ceil(off / gb);
        const end = off + n >= e.bytes ? Math.ceil(e.bytes / gb) : Math.floor((off + n) / gb);
        if (first < end) {
          if (this.backing && !e.facts.zeroGrain) {
            throw new DiskError('EUNSUPPORTED', `${this.path}: ${OVER_PARENT_REFUSAL}`, this.path);
          }
          if (!changed) await this.updateCid();
          changed = true;
          for (const at of await e.releaseGrains(first, end, this.backing !== undefined)) punches.push({ file: e.file, at, length: gb });
        }
      } else if (e instanceof FlatExtent) {
        if (!e.writable) throw new DiskError('EREADONLY', `${this.path}: extent ${e.file.path} is read-only`, this.path);
        const from = Math.ceil((e.start + off) / PAGE) * PAGE;
        const to = Math.floor((e.start + off + n) / PAGE) * PAGE;
        if (to > from) {
          if (!changed) await this.updateCid();
          changed = true;
          if (!(await e.file.punchHole(from, to - from))) throw new DiskError('EUNSUPPORTED', `${this.path}: this system cannot punch holes in the flat extent ${e.file.path}`, this.path);
        }
      } else if (e.type !== 'ZERO') throw new DiskError('EUNSUPPORTED', `${this.path}: a ${e.type} extent cannot release space`, this.path);
      pos += n;
    }
    if (punches.length === 0) return;
    await this.flushNow();
    for (const p of punches) await p.file.punchHole(p.at, p.length);
  }

  skipFlushes(): void {
    this.noFlush = true;
    for (const f of this.files) f.skipWriteback();
  }

  flush(): Promise<void> {
    return this.mutations.run(() => this.flushNow());
  }

  private async flushNow(): Promise<void> {
    if (this.noFlush || this.readOnly) return;
    for (const f of this.files) await f.sync();
  }

  close(): Promise<void> {
    // After every queued mutation, whether it succeeded or not.
    return this.mutations.run(() => this.closeNow());
  }

  private async closeNow(): Promise<void> {
    try {
      if (!this.readOnly && !this.noFlush) for (const f of this.files) await f.sync();
    } finally {
      for (const f of this.files) await f.close();
      await this.backing?.close();
    }
  }
}
