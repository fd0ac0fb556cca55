/**
 * The raw format: the file is the disk, byte for byte. Its device reads and writes the file straight through
 * (bounded by ImageFile), reports data and zero ranges from the file system's holes (SEEK_DATA/SEEK_HOLE
 * through the native helper, else by zero detection in 4 KiB blocks), and resizes by truncating; the driver
 * probes nothing (raw is what an image is when no other format claims it) and creates sparse files.
 */
import { checkRange, isZeroRange } from '../../block/bytes';
import { DiskError, readOnlyError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, Extent, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { measureRaw } from './measure';

/** Zero detection works in blocks of this size when the file system cannot tell us its holes. */
const ZERO_PROBE_BLOCK = 4096;
/** Zero detection reads the file in windows of this size (a multiple of the block), kept for the next query. */
const PROBE_WINDOW = 1 << 20;
const ZERO_WRITE_CHUNK = 1 << 20;
/**
 * qemu sees a raw file in whole 512-byte sectors: a file whose length is not a multiple of 512 has a virtual
 * size rounded up, and its tail reads as zeros. We do the same so sizes, maps and converts agree with qemu-img.
 */
const SECTOR = 512;
const sectorRound = (n: number) => Math.ceil(n / SECTOR) * SECTOR;

/**
 * Discard punches a hole (fallocate PUNCH_HOLE through the native helper), as qemu's raw driver does: the range
 * reads as zeros and its space goes back to the host. Without the helper, or on a file system that cannot punch
 * holes, discard() refuses, saying why: writing zeros instead would allocate the range rather than release it.
 */
class RawDevice implements BlockDevice {
  readonly format = 'raw' as const;
  /** The window last read for zero detection (status without hole detection); dropped by every change. */
  private probe?: { at: number; data: Uint8Array };
  private noFlush = false;
  /** `declaredSize`: the size a container says the disk is (OpenOptions.declaredSize); else the file's length. */
  constructor(
    private readonly file: ImageFile,
    readonly readOnly: boolean,
    private readonly declaredSize?: number,
  ) {}
  get path(): string {
    return this.file.path;
  }
  get size(): number {
    return this.declaredSize ?? sectorRound(this.file.size);
  }

  private checkRange(offset: number, length: number): void {
    checkRange(this.size, offset, length, this.path);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkRange(offset, into.length);
    await this.file.readZeroPadded(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    this.checkRange(offset, data.length);
    this.probe = undefined;
    try {
      await this.file.write(offset, data);
    } finally {
      this.probe = undefined;
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    this.checkRange(offset, length);
    this.probe = undefined;
    const zero = new Uint8Array(Math.min(length, ZERO_WRITE_CHUNK));
    for (let pos = offset; pos < offset + length; pos += zero.length) {
      await this.file.write(pos, zero.subarray(0, Math.min(zero.length, offset + length - pos)));
    }
    this.probe = undefined;
  }

  /** The file is the disk: every guest byte the file holds lies at the same offset in it. */
  async storedAt(offset: number, length: number): Promise<{ file: ImageFile; offset: number; length: number } | undefined> {
    this.checkRange(offset, length);
    const n = Math.min(length, this.file.size - offset);
    return n > 0 ? { file: this.file, offset, length: n } : undefined;
  }

  async copyIn(offset: number, length: number, from: ImageFile, fromOffset: number): Promise<number> {
    if (this.readOnly) throw readOnlyError(this.path);
    this.checkRange(offset, length);
    this.probe = undefined;
    try {
      return await this.file.copyFrom(from, fromOffset, offset, length);
    } finally {
      this.probe = undefined;
    }
  }

  /**
   * Holes of a sparse file read as zero and are reported as 'zero' (qemu-img does the same); everything
   * else is data. Where the system cannot report holes, all-zero 4 KiB blocks are reported as 'zero'.
   */
  async status(offset: number, length: number): Promise<Extent> {
    this.checkRange(offset, length);
    const end = offset + length;
    // The rounded-up tail past the end of the file reads as zeros.
    if (offset >= this.file.size) return { kind: 'zero', length, hostOffset: offset };
    if (this.file.seesHoles) {
      const a = this.file.allocationAt(offset);
      const runEnd = Math.min(end, Math.max(a.end, offset + 1));
      return a.data ? { kind: 'data', length: runEnd - offset, hostOffset: offset } : { kind: 'zero', length: runEnd - offset, hostOffset: offset };
    }
    let pos = offset;
    let zero: boolean | undefined;
    while (pos < end) {
      const w = await this.probeWindow(pos);
      const n = Math.min(ZERO_PROBE_BLOCK - (pos % ZERO_PROBE_BLOCK), end - pos);
      const z = isZeroRange(w.data, pos - w.at, pos - w.at + n);
      if (zero === undefined) zero = z;
      else if (z !== zero) break;
      pos += n;
      if (pos - offset >= 64 * ZERO_WRITE_CHUNK) break; // bound the work of one call
    }
    return zero ? { kind: 'zero', length: pos - offset, hostOffset: offset } : { kind: 'data', length: pos - offset, hostOffset: offset };
  }

  /** The window of the file around `pos` for zero detection: read in one go, block-aligned, kept for the next query. */
  private async probeWindow(pos: number): Promise<{ at: number; data: Uint8Array }> {
    const p = this.probe;
    if (p && pos >= p.at && pos < p.at + p.data.length) return p;
    const at = pos - (pos % ZERO_PROBE_BLOCK);
    const data = new Uint8Array(Math.min(PROBE_WINDOW, this.size - at));
    await this.file.readZeroPadded(at, data);
    const w = { at, data };
    this.probe = w;
    return w;
  }

  async resize(newSize: number, shrink: boolean): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    if (newSize < this.size && !shrink) {
      throw new DiskError('EINVAL', `${this.path}: shrinking would lose data; use --shrink to confirm`, this.path);
    }
    this.probe = undefined;
    await this.file.truncate(newSize);
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.path);
    this.checkRange(offset, length);
    this.probe = undefined;
    if (await this.file.punchHole(offset, length)) return;
    throw new DiskError(
      'EUNSUPPORTED',
      `${this.path}: raw images cannot discard here: this system (or its file system) cannot punch holes, and writing zeros would allocate the range rather than release it`,
      this.path,
    );
  }

  async flush(): Promise<void> {
    if (!this.noFlush) await this.file.sync();
  }
  async close(): Promise<void> {
    await this.file.close();
  }
}

export const rawDriver: FormatDriver = {
  name: 'raw',
  label: 'Raw',
  description: 'Plain byte-for-byte disk: every tool reads it; sparse where the file system allows',
  extensions: ['img', 'raw', 'bin', 'iso'],
  concurrentCalls: true,
  probe: () => 1,
  measure: measureRaw,
  createOptions: [
    { name: 'preallocation', type: 'enum', choices: ['off', 'full'], default: 'off', description: 'Preallocation mode: off leaves the file sparse, full writes zeros over the whole size' },
  ],

  async describe(file: ImageFile): Promise<HeaderInfo> {
    return { format: 'raw', 'virtual-size': sectorRound(file.size), 'dirty-flag': false, 'data-readable': true };
  },

  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    const file = await ImageFile.open(path, !opts.readOnly);
    return new RawDevice(file, opts.readOnly, opts.declaredSize);
  },

  async create(path: string, requested: number, opts: CreateOptions): Promise<void> {
    const size = sectorRound(requested); // qemu-img create rounds up to whole sectors too
    if (opts.backingFile) throw new DiskError('EUNSUPPORTED', 'raw images have no backing file');
    const prealloc = String(opts.options.preallocation ?? 'off');
    const file = await ImageFile.create(path);
    try {
      if (prealloc === 'full') {
        const zero = new Uint8Array(Math.min(size, ZERO_WRITE_CHUNK));
        for (let pos = 0; pos < size; pos += zero.length) await file.write(pos, zero.subarray(0, Math.min(zero.length, size - pos)));
      }
      await file.truncate(size);
      await file.sync();
    } finally {
      await file.close();
    }
  },
};
