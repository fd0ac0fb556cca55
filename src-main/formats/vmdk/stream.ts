/**
 * streamOptimized output laid out as VMware's writers lay it out: a version 3 header saying GD_AT_END, the
 * descriptor, then compressed grains each behind a grain marker, each grain table behind its marker after the
 * grains it maps, and at the end the grain directory behind its marker, a footer (marker + header copy that
 * locates the directory) and the end-of-stream marker. Such a file can only be written front to back, so the
 * writer accepts writes in increasing guest order only; it is given by open() for a freshly created (empty)
 * stream, and any other stream refuses writes (extent.ts). Grains are deflated on the thread pool, several at
 * once, and written in guest order as they come out.
 */
import { compressBlock, type Packed } from '../../block/deflate-pool';
import { SECTOR, checkRange, isZero } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent } from '../../block/types';
import type { SparseFacts } from './extent';
import { MutationQueue } from '../../block/mutation-queue';
import {
  COMPRESSION_DEFLATE,
  FLAG_COMPRESS,
  FLAG_MARKER,
  FLAG_NL_DETECT,
  GRAIN_MARKER_BYTES,
  MARKER_GRAIN_DIRECTORY,
  MARKER_GRAIN_TABLE,
  serializeFooter,
  serializeGrainMarker,
  serializeMetaMarker,
  serializeVmdk4Header,
  type Vmdk4Header,
} from './layout';
import { GRAIN_SECTORS } from './settings';

const NUM_GTES = 512;
/** Grains start here (64 KiB): header, descriptor, padding, as VMware's files do. */
const STREAM_OVERHEAD = 128;

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/**
 * Grains handed to compression ahead of their turn to be written (1 MiB of input). The worker pool
 * (block/deflate-pool.ts) compresses them side by side on every core, with no buffer made per grain: the
 * libuv thread pool's zlib.deflate made a zlib stream and an output Buffer per grain, and that garbage held
 * peak RSS at 118 MB converting an ext4 image (2 GiB, 707 MiB of data) to streamOptimized.
 * Measured before the pool (1 GiB ext4 image, 13 rounds interleaved with qemu-img, load 2.2–13): wall median
 * 10.2 s on the thread pool, 12.1 s deflating inline, qemu-img 10.9 s.
 */
const GRAINS_IN_FLIGHT = 16;
/** Compressed grains that are ready go to the file together, in one write of up to this many bytes. */
const WRITE_BATCH = 1 << 20;

/** A grain handed to compression: it is written, in its turn, once compressed. */
interface PendingGrain {
  grainNo: number;
  /** The grain's data, given back to the writer's spare buffers once compressed. */
  input: Uint8Array;
  packed: Promise<Packed>;
  /** Set when `packed` has settled: the grains ready behind the first are written with it. */
  ready?: Packed;
}


function streamHeader(sectors: number, descriptorSectors: number, gdOffset: number | undefined): Vmdk4Header {
  return {
    version: 3,
    flags: FLAG_NL_DETECT | FLAG_COMPRESS | FLAG_MARKER,
    capacity: sectors,
    granularity: GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSize: descriptorSectors,
    numGtesPerGt: NUM_GTES,
    rgdOffset: 0,
    gdOffset,
    overhead: STREAM_OVERHEAD,
    uncleanShutdown: false,
    checkBytesValid: true,
    compressAlgorithm: COMPRESSION_DEFLATE,
  };
}

/** Writes the end of a stream at sector `at`: directory marker + directory, footer, end-of-stream. Returns the end sector. */
async function writeTail(file: ImageFile, at: number, gd: Uint32Array, header: Vmdk4Header): Promise<number> {
  const gdSectors = Math.max(1, Math.ceil((gd.length * 4) / SECTOR));
  const buf = new Uint8Array((1 + gdSectors) * SECTOR + 3 * SECTOR);
  buf.set(serializeMetaMarker(MARKER_GRAIN_DIRECTORY, gdSectors), 0);
  const v = new DataView(buf.buffer);
  for (let i = 0; i < gd.length; i++) v.setUint32(SECTOR + i * 4, gd[i], true);
  buf.set(serializeFooter({ ...header, gdOffset: at + 1 }), (1 + gdSectors) * SECTOR);
  await file.write(at * SECTOR, buf);
  const end = at + buf.length / SECTOR;
  await file.truncate(end * SECTOR);
  return end;
}

/** An empty stream: header, descriptor, and the tail with an all-zero directory (every grain unallocated). */
export async function writeEmptyStream(path: string, sectors: number, descriptor: string): Promise<void> {
  const text = new TextEncoder().encode(descriptor);
  const descSectors = Math.max(1, Math.ceil(text.length / SECTOR));
  if (1 + descSectors > STREAM_OVERHEAD) throw new DiskError('EINVAL', 'the descriptor does not fit in the stream header area (backing file name too long)');
  const h = streamHeader(sectors, descSectors, undefined);
  const gtCount = Math.ceil(sectors / (NUM_GTES * GRAIN_SECTORS));
  const f = await ImageFile.create(path);
  try {
    const head = new Uint8Array(STREAM_OVERHEAD * SECTOR);
    head.set(serializeVmdk4Header(h), 0);
    head.set(text, SECTOR);
    await f.write(0, head);
    await writeTail(f, STREAM_OVERHEAD, new Uint32Array(gtCount), h);
    await f.sync();
  } finally {
    await f.close();
  }
}

/** True for a stream that holds no grain yet (all of its directory is zero): the writer may fill it. */
export function isEmptyStream(facts: SparseFacts, gd: Uint32Array): boolean {
  return facts.footer && facts.compressed && facts.markers && facts.header !== undefined && gd.every((x) => x === 0);
}

/** Fills an empty stream front to back; close() writes the grain tables' tail, the directory and the footer. */
export class StreamWriter implements BlockDevice {
  readonly format = 'vmdk' as const;
  readonly readOnly = false;
  readonly clusterSize: number;
  /** Guest bytes below this were written (or skipped) already. */
  private pos = 0;
  private grainNo = -1;
  private grain: Uint8Array;
  /** Grains compressing, in guest order: written to the file in that order (see flushGrain). */
  private readonly pending: PendingGrain[] = [];
  /** Grain buffers whose data was compressed already, zeroed for the next grains. */
  private readonly spareGrains: Uint8Array[] = [];
  /** The buffer ready grains are gathered in for one write (a batch may end one grain past WRITE_BATCH). */
  private batchBuf?: Uint8Array;
  private grainUsed = false;
  private gtIndex = -1;
  private gt: Uint32Array;
  private readonly gd: Uint32Array;
  /** The sector where the next grain or table goes. */
  private next: number;
  private finished = false;
  private noFlush = false;
  /** Writes run one at a time, in call order: the stream is laid out in that order. */
  private readonly mutations = new MutationQueue();

  constructor(
    readonly path: string,
    private readonly file: ImageFile,
    private readonly header: Vmdk4Header,
    readonly size: number,
    readonly backing?: BlockDevice,
  ) {
    this.clusterSize = header.granularity * SECTOR;
    this.grain = new Uint8Array(this.clusterSize);
    this.gt = new Uint32Array(header.numGtesPerGt);
    this.gd = new Uint32Array(Math.ceil(header.capacity / (header.numGtesPerGt * header.granularity)));
    this.next = header.overhead;
  }

  private order(offset: number): void {
    if (this.finished) throw new DiskError('EINVAL', `${this.path}: the stream was closed`, this.path);
    if (offset < this.pos) {
      throw new DiskError(
        'EUNSUPPORTED',
        `${this.path}: a streamOptimized VMDK is written front to back only: a write at ${offset} comes after one that reached ${this.pos}`,
        this.path,
      );
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.mutations.run(() => this.writeNow(offset, data));
  }

  private async writeNow(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length, this.path);
    this.order(offset);
    const gb = this.clusterSize;
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      await this.select(Math.floor(at / gb));
      const n = Math.min(gb - (at % gb), data.length - done);
      this.grain.set(data.subarray(done, done + n), at % gb);
      this.grainUsed = true;
      done += n;
    }
    this.pos = offset + data.length;
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.mutations.run(() => this.writeZeroesNow(offset, length));
  }

  private async writeZeroesNow(offset: number, length: number): Promise<void> {
    checkRange(this.size, offset, length, this.path);
    this.order(offset);
    if (this.backing) {
      // Over a parent, zeros must be stored (a stream has no zeroed-grain entries here).
      const chunk = new Uint8Array(Math.min(length, 1 << 20));
      for (let p = offset; p < offset + length; p += chunk.length) await this.writeNow(p, chunk.subarray(0, Math.min(chunk.length, offset + length - p)));
      return;
    }
    // Without a parent, unwritten grains read as zeros and the buffered grain is zero where not written.
    this.pos = offset + length;
  }

  /** Makes grain `g` the buffered one, writing out the previous grain (and its table, when `g` is past it). */
  private async select(g: number): Promise<void> {
    if (g === this.grainNo) return;
    await this.flushGrain();
    const t = Math.floor(g / this.header.numGtesPerGt);
    if (t !== this.gtIndex) {
      await this.flushTable();
      this.gtIndex = t;
    }
    this.grainNo = g;
  }

  /**
   * Hands the buffered grain to the thread pool (all-zero grains are left out: they read as zeros unwritten)
   * and writes out compressed grains once more than GRAINS_IN_FLIGHT are under way, so that several grains
   * compress at once, on other cores, while the caller reads the next data. Grains reach the file in guest order.
   */
  private async flushGrain(): Promise<void> {
    if (this.grainNo < 0 || !this.grainUsed) return;
    this.grainUsed = false;
    if (isZero(this.grain) && !this.backing) return; // the buffer is all zeros again already
    const item: PendingGrain = { grainNo: this.grainNo, input: this.grain, packed: compressBlock(this.grain, this.clusterSize, false, {}) };
    item.packed.then(
      (p) => (item.ready = p),
      () => undefined,
    );
    this.pending.push(item);
    // The buffer now belongs to the compression; the next grain is assembled in a spare one.
    this.grain = this.spareGrains.pop() ?? new Uint8Array(this.clusterSize);
    if (this.pending.length > GRAINS_IN_FLIGHT) await this.writePending(false);
  }

  /**
   * Writes the first pending grain once compressed, with those behind it that are ready too, in one file write;
   * `all`: every pending grain (before a grain table is written, and at the end).
   */
  private async writePending(all: boolean): Promise<void> {
    while (this.pending.length > 0) {
      await this.pending[0].packed;
      const batch: Array<{ grainNo: number; packed: Packed }> = [];
      let bytes = 0;
      while (this.pending.length > 0 && this.pending[0].ready && bytes < WRITE_BATCH) {
        const { grainNo, ready, input } = this.pending.shift()!;
        batch.push({ grainNo, packed: ready! });
        bytes += roundUp(GRAIN_MARKER_BYTES + ready!.data.length, SECTOR);
        input.fill(0);
        this.spareGrains.push(input);
      }
      this.batchBuf ??= new Uint8Array(WRITE_BATCH + 2 * this.clusterSize);
      const buf = this.batchBuf.subarray(0, bytes);
      let at = 0;
      for (const { grainNo, packed } of batch) {
        const n = packed.data.length;
        buf.set(serializeGrainMarker(grainNo * this.header.granularity, n), at);
        buf.set(packed.data, at + GRAIN_MARKER_BYTES);
        // The compressed bytes are copied: their slot in the pool goes back now.
        packed.release();
        this.gt[grainNo % this.header.numGtesPerGt] = this.next + at / SECTOR;
        const end = at + GRAIN_MARKER_BYTES + n;
        at = roundUp(end, SECTOR);
        buf.fill(0, end, at); // the reused buffer's padding up to the sector
      }
      await this.file.write(this.next * SECTOR, buf);
      this.next += bytes / SECTOR;
      if (!all) return;
    }
  }

  /** Writes the buffered grain table behind its marker (after its grains), if it maps any grain. */
  private async flushTable(): Promise<void> {
    await this.writePending(true);
    if (this.gtIndex < 0 || this.gt.every((x) => x === 0)) {
      this.gt.fill(0);
      return;
    }
    const gtSectors = Math.ceil((this.gt.length * 4) / SECTOR);
    const buf = new Uint8Array((1 + gtSectors) * SECTOR);
    buf.set(serializeMetaMarker(MARKER_GRAIN_TABLE, gtSectors), 0);
    const v = new DataView(buf.buffer);
    for (let i = 0; i < this.gt.length; i++) v.setUint32(SECTOR + i * 4, this.gt[i], true);
    await this.file.write(this.next * SECTOR, buf);
    this.gd[this.gtIndex] = this.next + 1;
    this.next += 1 + gtSectors;
    this.gt.fill(0);
  }

  /** Ends the stream: last grain, last table, directory, footer, end-of-stream marker. */
  private async finish(): Promise<void> {
    if (this.finished) return;
    await this.flushGrain();
    await this.flushTable();
    this.finished = true;
    await writeTail(this.file, this.next, this.gd, this.header);
  }

  async read(): Promise<void> {
    throw new DiskError('EUNSUPPORTED', `${this.path}: a streamOptimized VMDK being written cannot be read until it is closed`, this.path);
  }

  async status(): Promise<Extent> {
    throw new DiskError('EUNSUPPORTED', `${this.path}: a streamOptimized VMDK being written cannot be read until it is closed`, this.path);
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  /** Data reaches the file as grains fill; the stream's tail can only be written once, at close. */
  flush(): Promise<void> {
    return this.mutations.run(async () => {
      await this.writePending(true);
      if (!this.noFlush) await this.file.sync();
    });
  }

  close(): Promise<void> {
    return this.mutations.run(() => this.closeNow());
  }

  private async closeNow(): Promise<void> {
    try {
      await this.finish();
      if (!this.noFlush) await this.file.sync();
    } finally {
      // Grains never written (a failed or cancelled convert) give their slots in the pool back.
      for (const g of this.pending.splice(0)) g.packed.then((p) => p.release(), () => undefined);
      await this.file.close();
      await this.backing?.close();
    }
  }
}
