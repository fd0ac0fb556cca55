/**
 * The COW bitmap: one bit per sector, set when the sector lives in the COW file, clear when it reads through
 * to the backing file. Bit i is bit (i % 8) of byte i / 8, least significant first (the kernel tests bits in
 * host longs on little-endian machines, which comes to the same). The bitmap is read in chunks kept in a
 * bounded LRU, so memory stays flat however large the disk (1 TiB of 512-byte sectors = 256 MiB of bitmap).
 */
import { LruCache } from '../../block/cache';
import type { ImageFile } from '../../block/file';

/** Bytes of bitmap per chunk: 4 KiB covers 16 MiB of guest data with 512-byte sectors. */
const CHUNK = 4096;
/** Chunks kept in memory (1 MiB). */
const CACHE_CHUNKS = 256;

export class CowBitmap {
  private readonly cache = new LruCache<number, Uint8Array>(CACHE_CHUNKS);

  /**
   * @param offset where the bitmap starts in the file
   * @param bits how many sectors have a bit (the rest of the disk reads through, and cannot be written)
   */
  constructor(
    private readonly file: ImageFile,
    private readonly offset: number,
    readonly bits: number,
  ) {}

  private get length(): number {
    return Math.ceil(this.bits / 8);
  }

  private async chunk(index: number): Promise<Uint8Array> {
    let c = this.cache.get(index);
    if (c === undefined) {
      const start = index * CHUNK;
      // Bounded by the file's length: open() checked that the whole bitmap lies inside the file.
      c = await this.file.readBlock(this.offset + start, Math.min(CHUNK, this.length - start), 'COW bitmap');
      this.cache.set(index, c);
    }
    return c;
  }

  /**
   * The run of sectors starting at `sector` that share its state, ending at `limit` at most:
   * { set, end } with end the first sector past the run. Sectors without a bit are clear.
   */
  async run(sector: number, limit: number): Promise<{ set: boolean; end: number }> {
    if (sector >= this.bits) return { set: false, end: limit };
    const bitLimit = Math.min(limit, this.bits);
    let c = await this.chunk(Math.floor(sector / 8 / CHUNK));
    let chunkIndex = Math.floor(sector / 8 / CHUNK);
    const byteOf = (s: number) => c[Math.floor(s / 8) - chunkIndex * CHUNK];
    const set = ((byteOf(sector) >> (sector % 8)) & 1) === 1;
    let s = sector + 1;
    while (s < bitLimit) {
      const ci = Math.floor(s / 8 / CHUNK);
      if (ci !== chunkIndex) {
        c = await this.chunk(ci);
        chunkIndex = ci;
      }
      // Whole bytes of the same state are skipped at once.
      if (s % 8 === 0 && s + 8 <= bitLimit) {
        const b = byteOf(s);
        if (b === (set ? 0xff : 0)) {
          s += 8;
          continue;
        }
      }
      if ((((byteOf(s) >> (s % 8)) & 1) === 1) !== set) return { set, end: s };
      s++;
    }
    // Past the last bit everything is clear: a set run stops there.
    return { set, end: set ? bitLimit : limit };
  }

  /** Clears every bit (makeEmpty): every sector reads through to the backing file again. */
  async clearAll(): Promise<void> {
    this.cache.clear();
    const zero = new Uint8Array(Math.min(this.length, 1 << 20));
    for (let at = 0; at < this.length; at += zero.length) {
      await this.file.write(this.offset + at, zero.subarray(0, Math.min(zero.length, this.length - at)));
    }
  }

  /**
   * Sets the bits of sectors [from, to) and writes the bytes that changed. The caller has made the data of
   * those sectors durable first, so a crash leaves each sector either unset (old data) or set (new data).
   */
  async set(from: number, to: number): Promise<void> {
    let s = from;
    while (s < to) {
      const ci = Math.floor(s / 8 / CHUNK);
      const c = await this.chunk(ci);
      const chunkFirst = ci * CHUNK * 8;
      const chunkEnd = Math.min(to, chunkFirst + c.length * 8);
      const firstByte = Math.floor((s - chunkFirst) / 8);
      const lastByte = Math.floor((chunkEnd - 1 - chunkFirst) / 8);
      for (let k = s; k < chunkEnd; k++) c[Math.floor((k - chunkFirst) / 8)] |= 1 << (k % 8);
      try {
        await this.file.write(this.offset + ci * CHUNK + firstByte, c.subarray(firstByte, lastByte + 1));
      } catch (err) {
        this.cache.delete(ci); // the cached bits may not be on disk: read them again next time
        throw err;
      }
      s = chunkEnd;
    }
  }
}
