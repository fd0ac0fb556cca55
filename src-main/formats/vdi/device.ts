/**
 * The open VDI image (a BlockDevice). The block map is kept in memory (4 bytes a MiB of guest). Writes to a
 * block not yet allocated take the next data block (index blocks_allocated, as qemu), write the whole block
 * (the data, and zeros or the parent's data around it), then the header with the new count, then the block
 * map's sectors that changed: qemu's order, so that a crash between the two leaves a count one too high (a
 * leaked block that the next allocation writes over, which check reports and repair corrects), never an entry
 * naming a block that a later allocation would reuse.
 */
import * as nodePath from 'node:path';
import { checkRange } from '../../block/bytes';
import { readBelow } from '../../block/chain';
import { corrupt, DiskError, readOnlyError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent, OpenOptions } from '../../block/types';
import { readHeader, readImage, writeRefusal } from './image';
import {
  blockExtraRefusal,
  blockHostOffset,
  bmapAsStored,
  DISCARDED,
  guestSize,
  isAllocated,
  isDifferencing,
  SECTOR,
  serializeHeader,
  TYPE_DIFFERENCING,
  TYPE_DYNAMIC,
  TYPE_STATIC,
  UNALLOCATED,
  ZERO_UUID,
  type VdiHeader,
} from './layout';
import { discardRefusal, packBlocks, releaseBlocks, type VdiSpace } from './discard';
import { resolveParent } from './parent';
import { RunMemo } from '../../block/table-scan';

/** Entries per block-map sector: qemu rewrites the map a sector at a time. */
const ENTRIES_PER_SECTOR = SECTOR / 4;

export class VdiDevice implements BlockDevice {
  readonly format = 'vdi' as const;
  readonly size: number;
  /**
   * The allocation unit: a dynamic image's block. A static image has every block in place already, so it has
   * none, and convert detects zeros in 4 KiB pieces into it as qemu-img does (its file stays as sparse as theirs).
   */
  readonly clusterSize?: number;
  private readonly bs: number;
  /** Bytes from here on read as zeros: the file's end at open, then past our own allocations. */
  private zeroFrom: number;
  private noFlush = false;
  /** Guest blocks [unpublishedFrom, unpublishedTo] allocated in memory, header and map not yet written (skipFlushes only). */
  private unpublishedFrom = Infinity;
  private unpublishedTo = -1;
  private closed = false;
  /** A discard left data blocks unreferenced: the next flush packs them (discard.ts). */
  private toPack = false;
  /**
   * Mutations run one after another, in call order (an allocation reads and moves blocks_allocated); reads do
   * not wait: the map entries of a new block are set only once its data is written, so a read sees the block
   * before or after, never half-made. So the driver takes overlapping calls (convert keeps reads in flight).
   */
  private queue: Promise<unknown> = Promise.resolve();
  /** The last run of one unallocated value run() found in the map. */
  private readonly runs: RunMemo;

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    // A mutation may change the map: what runs() remembers is forgotten before and after it (a read that
    // overlaps the mutation sees the map before or after, as it would without the memo).
    const changing = async () => {
      this.runs.forget();
      try {
        return await fn();
      } finally {
        this.runs.forget();
      }
    };
    const run = this.queue.then(changing, changing);
    this.queue = run.catch(() => undefined);
    return run;
  }

  constructor(
    private readonly file: ImageFile,
    /** The header as it is now on disk (blocks_allocated grows with every allocation). */
    readonly header: VdiHeader,
    private headerBytes: Uint8Array,
    private readonly bmap: Uint32Array,
    readonly readOnly: boolean,
    readonly backing?: BlockDevice,
  ) {
    this.size = guestSize(header);
    this.runs = new RunMemo(bmap);
    this.bs = header.blockSize;
    if (header.imageType !== TYPE_STATIC) this.clusterSize = header.blockSize;
    this.zeroFrom = file.size;
  }

  get path(): string {
    return this.file.path;
  }

  /** True when unallocated blocks read through to a parent (a differencing image) rather than as zeros. */
  private get readsThrough(): boolean {
    return isDifferencing(this.header);
  }

  /** The run from guest `pos` (≤ `len` bytes) over blocks with one state: host-contiguous data, or the same unallocated value. */
  private run(pos: number, len: number): { entry: number; host: number; n: number } {
    const bs = this.bs;
    const idx = Math.floor(pos / bs);
    const within = pos - idx * bs;
    const entry = this.bmap[idx];
    const last = Math.ceil((pos + len) / bs); // past the last block the range touches
    let end = idx + 1;
    if (!isAllocated(entry)) end = this.runs.endOf(idx, last, entry); // without a loop over a sparse disk's map
    else if (this.header.blockExtra === 0) while (end < last && this.bmap[end] === entry + (end - idx)) end++;
    return { entry, host: isAllocated(entry) ? blockHostOffset(this.header, entry) + within : 0, n: Math.min(len, (end - idx) * bs - within) };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    for (let done = 0; done < into.length; ) {
      const { entry, host, n } = this.run(offset + done, into.length - done);
      const part = into.subarray(done, done + n);
      // A block past the end of the file reads as zeros, as qemu reads it.
      if (isAllocated(entry)) await this.file.readZeroPadded(host, part);
      else if (entry === UNALLOCATED && this.readsThrough) await readBelow(this.backing, offset + done, part);
      else part.fill(0);
      done += n;
    }
  }

  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    const { entry, host, n } = this.run(offset, length);
    if (!isAllocated(entry)) return { kind: entry === UNALLOCATED && this.readsThrough ? 'unallocated' : 'zero', length: n };
    // A static image's blocks are data; qemu asks the file where they are holes, and map shows those as zeros.
    if (this.header.imageType === TYPE_STATIC && this.file.seesHoles) {
      if (host >= this.file.size) return { kind: 'data', length: n, hostOffset: host, readsAsZero: true };
      const a = this.file.allocationAt(host);
      const m = Math.min(n, Math.max(1, a.end - host));
      return { kind: 'data', length: m, hostOffset: host, ...(a.data ? {} : { readsAsZero: true }) };
    }
    return { kind: 'data', length: n, hostOffset: host };
  }

  private writable(): void {
    if (this.readOnly) throw readOnlyError(this.path);
  }

  /** A differencing image opened without its parent cannot fill a new block: what lies around the write is the parent's. */
  private noParent(): DiskError {
    return new DiskError('EUNSUPPORTED', `${this.path}: this differencing VDI was opened without its parent, so a new block cannot be filled with the parent's data; open it with its parent`, this.path);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.serial(() => this.writeNow(offset, data));
  }

  private async writeNow(offset: number, data: Uint8Array): Promise<void> {
    this.writable();
    checkRange(this.size, offset, data.length, this.path);
    let firstNew = -1;
    let lastNew = -1;
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const { entry, host, n } = this.run(pos, data.length - done);
      const part = data.subarray(done, done + n);
      if (isAllocated(entry)) {
        await this.file.write(host, part);
      } else {
        const [a, b] = await this.allocate(pos, part, entry);
        if (firstNew < 0) firstNew = a;
        lastNew = b;
      }
      done += n;
    }
    if (firstNew < 0) return;
    if (this.noFlush) {
      // Nothing will be flushed, so no order of writes is kept anyway (cache=unsafe): the header and map go out
      // with the next flush or at close, instead of two 512-byte writes after every new block.
      this.unpublishedFrom = Math.min(this.unpublishedFrom, firstNew);
      this.unpublishedTo = Math.max(this.unpublishedTo, lastNew);
    } else await this.publish(firstNew, lastNew);
  }

  /** Publishes what writeNow left unpublished (under skipFlushes). Runs inside serial. */
  private async publishPending(): Promise<void> {
    if (this.unpublishedFrom > this.unpublishedTo) return;
    const [first, last] = [this.unpublishedFrom, this.unpublishedTo];
    this.unpublishedFrom = Infinity;
    this.unpublishedTo = -1;
    await this.publish(first, last);
  }

  /**
   * Gives the guest blocks under [pos, pos + data.length) (all with the unallocated value `entry`) the next data
   * blocks and writes them whole; the header and map are written afterwards by publish(). Returns the first and
   * last guest block allocated.
   */
  private async allocate(pos: number, data: Uint8Array, entry: number): Promise<[number, number]> {
    const h = this.header;
    const bs = this.bs;
    const first = Math.floor(pos / bs);
    const count = Math.ceil((pos + data.length) / bs) - first;
    const extra = blockExtraRefusal(h);
    if (extra !== undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: ${extra}`, this.path);
    const index = h.blocksAllocated;
    if (index + count > h.blocksInImage) {
      // Only a count left too high (a crash, or damage) gets here: the new block would lie past the map's range.
      throw corrupt(`${this.path}: the header counts ${index} allocated blocks, too many for a new one among ${h.blocksInImage}; repair it first (check -r all)`, this.path);
    }
    const host = blockHostOffset(h, index);
    const within = pos - first * bs;
    if (entry === UNALLOCATED && this.readsThrough && !this.backing) throw this.noParent();
    const throughParent = entry === UNALLOCATED && this.readsThrough;
    if (!throughParent && host >= this.zeroFrom) {
      // Past everything ever written: the rest of the blocks already reads as zeros.
      await this.file.write(host + within, data);
    } else {
      const buf = new Uint8Array(count * bs);
      if (throughParent) await readBelow(this.backing, first * bs, buf.subarray(0, Math.min(buf.length, this.size - first * bs)));
      buf.set(data, within);
      await this.file.write(host, buf);
    }
    const end = host + count * bs;
    if (this.file.size < end) await this.file.truncate(end);
    this.zeroFrom = Math.max(this.zeroFrom, end);
    for (let k = 0; k < count; k++) this.bmap[first + k] = index + k;
    h.blocksAllocated += count;
    return [first, first + count - 1];
  }

  /** Writes the header (its count of allocated blocks), then the block-map sectors holding entries [first, last]. */
  private async publish(first: number, last: number): Promise<void> {
    await this.writeHeader();
    const from = Math.floor(first / ENTRIES_PER_SECTOR) * ENTRIES_PER_SECTOR;
    const to = Math.min(this.bmap.length, (Math.floor(last / ENTRIES_PER_SECTOR) + 1) * ENTRIES_PER_SECTOR);
    await this.file.write(this.header.offsetBmap + from * 4, bmapAsStored(this.bmap, from, to));
  }

  private async writeHeader(): Promise<void> {
    this.headerBytes = serializeHeader(this.header, this.headerBytes);
    await this.file.write(0, this.headerBytes);
  }

  /**
   * Zeros: blocks already allocated are zeroed in place; an unallocated block already reads as zeros, unless it
   * reads a parent: then a whole block is marked discarded (zeros without data) and a part is written.
   */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.serial(() => this.zeroNow(offset, length));
  }

  private async zeroNow(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.size, offset, length, this.path);
    const bs = this.bs;
    const zero = new Uint8Array(Math.min(length, bs));
    let marked = -1;
    let lastMarked = -1;
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const idx = Math.floor(pos / bs);
      const n = Math.min(bs - (pos - idx * bs), length - done);
      const e = this.bmap[idx];
      if (isAllocated(e)) {
        await this.file.write(blockHostOffset(this.header, e) + pos - idx * bs, zero.subarray(0, n));
      } else if (e === UNALLOCATED && this.readsThrough) {
        if (!this.backing) throw this.noParent();
        if (pos >= this.backing.size) {
          done += n;
          continue;
        }
        if (n === bs || (pos === idx * bs && pos + n === this.size)) {
          this.bmap[idx] = DISCARDED;
          if (marked < 0) marked = idx;
          lastMarked = idx;
        } else {
          await this.writeNow(pos, zero.subarray(0, n));
        }
      }
      done += n;
    }
    if (marked >= 0) await this.publish(marked, lastMarked);
  }

  /**
   * Rebase: the image now names `resolvedPath` (a VDI in the image's folder, where open looks for it) by its
   * image UUID and its last-modification UUID; no name (stand alone) makes it a dynamic image whose
   * unallocated blocks read as zeros.
   */
  setBackingFile(name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<void> {
    return this.serial(() => this.relink(name, format, resolvedPath));
  }

  private async relink(name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<void> {
    this.writable();
    const h = this.header;
    if (name === undefined) {
      h.uuidLink = ZERO_UUID;
      h.uuidParent = ZERO_UUID;
      if (h.imageType === TYPE_DIFFERENCING) h.imageType = TYPE_DYNAMIC;
    } else {
      if (format !== undefined && format !== 'vdi') throw new DiskError('EUNSUPPORTED', `${this.path}: a VDI image's parent must be a VDI image (not ${format})`, this.path);
      if (h.imageType === TYPE_STATIC) throw new DiskError('EUNSUPPORTED', `${this.path}: a static VDI image has every block allocated; it cannot read through to a parent`, this.path);
      const full = nodePath.resolve(nodePath.dirname(nodePath.resolve(this.path)), resolvedPath ?? name);
      if (nodePath.dirname(full) !== nodePath.dirname(nodePath.resolve(this.path))) {
        throw new DiskError('EUNSUPPORTED', `${this.path}: a VDI names its parent by UUID, and the parent is looked for among the .vdi files beside it; put ${full} in the image's folder first`, this.path);
      }
      const parent = await ImageFile.open(full, false);
      try {
        const p = (await readHeader(parent)).header;
        h.uuidLink = p.uuidImage;
        h.uuidParent = p.uuidLastSnap;
      } finally {
        await parent.close();
      }
      h.imageType = TYPE_DIFFERENCING;
    }
    await this.writeHeader();
    await this.file.sync();
  }

  /**
   * Commit: every block reads the parent again. The map is emptied first and the count second (a crash between
   * leaves a count too high, which only leaks), then the file is cut back to the data area's start.
   */
  makeEmpty(): Promise<void> {
    return this.serial(() => this.emptyNow());
  }

  private async emptyNow(): Promise<void> {
    this.writable();
    if (!this.readsThrough) throw new DiskError('EUNSUPPORTED', `${this.path}: only a differencing VDI image can be emptied into its parent`, this.path);
    this.bmap.fill(UNALLOCATED);
    await this.file.write(this.header.offsetBmap, bmapAsStored(this.bmap));
    await this.file.sync();
    this.header.blocksAllocated = 0;
    await this.writeHeader();
    await this.file.sync();
    const end = Math.max(this.header.offsetData, this.header.offsetBmap + this.bmap.length * 4);
    if (this.file.size > end) await this.file.truncate(end);
    this.zeroFrom = this.file.size;
  }

  /**
   * Releases the whole blocks inside the range (discard.ts): they read as zeros, over a parent too. Their data
   * blocks are given back at the next flush, which moves the last blocks into the holes and cuts the file.
   */
  discard(offset: number, length: number): Promise<void> {
    return this.serial(async () => {
      this.writable();
      checkRange(this.size, offset, length, this.path);
      if (await releaseBlocks(this.space(), offset, length)) this.toPack = true;
    });
  }

  /**
   * BlockDevice.discardRefusal: discard.ts's, from the header; a read-only device adds what opening it for
   * writing refuses (a damaged block map), so a look before writing says it in the run's words.
   */
  discardRefusal(): string | undefined {
    const refusal = discardRefusal(this.header, this.file.punchesHoles);
    if (refusal !== undefined || !this.readOnly) return refusal;
    return writeRefusal(this.header, this.bmap, this.path)?.message.replace(`${this.path}: `, '');
  }

  private space(): VdiSpace {
    return { file: this.file, header: this.header, bmap: this.bmap, size: this.size, readsThrough: this.readsThrough, noFlush: this.noFlush, writeHeader: () => this.writeHeader() };
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async flush(): Promise<void> {
    await this.serial(() => this.publishPending());
    if (this.toPack) {
      await this.serial(async () => {
        if (!this.toPack) return;
        this.toPack = false;
        await packBlocks(this.space());
        this.zeroFrom = this.file.size;
      });
    }
    await this.queue;
    if (!this.noFlush && !this.readOnly) await this.file.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }
}

/** Opens a differencing image's parent (found by UUID beside it) and checks that it is the state the child was made on. */
async function openParent(path: string, h: VdiHeader, opts: OpenOptions): Promise<BlockDevice | undefined> {
  if (!isDifferencing(h) || opts.backingPolicy === 'none') return undefined;
  const full = opts.backingOverride !== undefined ? nodePath.resolve(opts.backingOverride) : await resolveParent(path, h.uuidLink, opts.backingPolicy);
  const parent = await opts.openBacking(full, 'vdi', true);
  const theirs = parent instanceof VdiDevice ? parent.header.uuidLastSnap : undefined;
  if (theirs !== undefined && h.uuidParent !== ZERO_UUID && theirs !== h.uuidParent && !opts.acceptChangedBacking) {
    await parent.close().catch(() => undefined);
    throw new DiskError(
      'EBACKINGCHANGED',
      `${path}: the chain is stale: the parent ${full} was modified after this image was made from it (its modification UUID is ${theirs}, this image expects ${h.uuidParent}); VirtualBox refuses such a chain, so it is read only if you accept that the parent changed`,
      path,
    );
  }
  return parent;
}

/** Opens a VDI image (and, for a differencing image, its parent through opts.openBacking). */
export async function openVdi(path: string, opts: OpenOptions): Promise<BlockDevice> {
  const file = await ImageFile.open(path, !opts.readOnly);
  let parent: BlockDevice | undefined;
  try {
    const img = await readImage(file);
    if (!opts.readOnly) {
      const refusal = writeRefusal(img.header, img.bmap, path);
      if (refusal) throw refusal;
    }
    // A parent shorter than the image reads as zeros past its end (readBelow), as VirtualBox reads it.
    parent = await openParent(path, img.header, opts);
    return new VdiDevice(file, img.header, img.headerBytes, img.bmap, opts.readOnly, parent);
  } catch (err) {
    await parent?.close().catch(() => undefined);
    await file.close();
    throw toDiskError(err, path);
  }
}
