import { constants as fsc, fdatasync, readSync, writeSync } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError, toDiskError, corrupt } from './errors';
import { lockImage, type ImageLock } from './lock';
import { nativeFileOps } from './native';
import { blockingIoOn, lstatPath, openFile, readLink, readTextFile, realPath, setBlockingIo, statPath, type OpenFile } from './open-file';

/**
 * A file opened for image work. Every metadata read goes through readExact, which bounds the offset and
 * length by the file's length first, so a damaged header can never make us allocate or seek past the end.
 */
export class ImageFile {
  /** Bytes written since the last writeback was started (startWriteback). */
  private unsent = 0;
  /** That fdatasync while it runs on the thread pool: close waits for it, since it uses the descriptor. */
  private writeback: Promise<void> | undefined;
  /**
   * What a writeback's fdatasync failed with, for the next sync to report: the kernel tells a write-back error
   * once per open file, so the final fdatasync on this descriptor would otherwise succeed over lost data.
   */
  private writebackError: NodeJS.ErrnoException | undefined;
  /** Set by skipWriteback: nothing of this file is flushed (cache=unsafe). */
  private noWriteback = false;

  private constructor(
    readonly path: string,
    private readonly fh: OpenFile,
    readonly writable: boolean,
    private length: number,
    private readonly lock: ImageLock,
  ) {}

  /**
   * Opens an image file: a regular file or a block device, refused before it is opened otherwise (opening a
   * FIFO for reading would wait forever for a writer). It is locked as qemu locks images (block/lock.ts):
   * shared for reading, exclusive of other writers and readers for writing.
   */
  static async open(path: string, writable: boolean): Promise<ImageFile> {
    // A name read from a damaged header can hold a NUL, which no file name can: say so, not Node's TypeError.
    if (path.includes('\0')) throw new DiskError('ECORRUPT', `${JSON.stringify(path).slice(1, -1)}: a file name cannot contain a NUL byte (a damaged name in an image's header?)`);
    const st = await statPath(path).catch((err) => {
      throw toDiskError(err, path);
    });
    if (st.isDirectory()) throw new DiskError('EISDIR', `${path}: is a directory, not an image`, path);
    if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EINVAL', `${path}: not a regular file or a block device, so not a disk image`, path);
    let fh: OpenFile;
    try {
      fh = await openFile(path, writable ? fsc.O_RDWR : fsc.O_RDONLY);
    } catch (err) {
      throw toDiskError(err, path);
    }
    let lock: ImageLock | undefined;
    try {
      const fst = await fh.stat();
      // The path may have been swapped for something else between the two looks.
      if (!fst.isFile() && !fst.isBlockDevice()) throw new DiskError('EINVAL', `${path}: not a regular file or a block device, so not a disk image`, path);
      if (checkedPaths.size > 0) {
        const checked = nodePath.resolve(path);
        if (checkedPaths.has(checked)) await verifyLanding(fh, fst, checked);
      }
      const size = fst.isBlockDevice() ? await blockDeviceSize(fh, fst.rdev, path) : fst.size;
      lock = await lockImage(path, fst.dev, fst.ino, writable ? 'write' : 'read');
      return new ImageFile(path, fh, writable, size, lock);
    } catch (err) {
      await lock?.release();
      await fh.close().catch(() => undefined);
      throw toDiskError(err, path);
    }
  }

  /** Creates (or truncates) a file for writing, locked for writing. */
  static async create(path: string): Promise<ImageFile> {
    let fh: OpenFile | undefined;
    try {
      fh = await openFile(path, 'w+');
      const st = await fh.stat();
      const lock = await lockImage(path, st.dev, st.ino, 'write');
      return new ImageFile(path, fh, true, 0, lock);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      throw toDiskError(err, path);
    }
  }

  get size(): number {
    return this.length;
  }

  /** Blocks actually used on disk, in bytes. */
  async allocatedSize(): Promise<number> {
    const st = await this.fh.stat();
    return st.blocks * 512;
  }

  /** Reads exactly into.length bytes at pos; a range past the end of the file is corruption. */
  async readExact(pos: number, into: Uint8Array, what = 'metadata'): Promise<Uint8Array> {
    if (!Number.isSafeInteger(pos) || pos < 0 || pos + into.length > this.length) {
      throw corrupt(`${this.path}: ${what} at offset ${pos} (${into.length} bytes) lies past the end of the file (${this.length} bytes)`, this.path);
    }
    await this.readInto(pos, into);
    return into;
  }

  /** Allocates and reads a metadata structure whose size came from the file; bounded by the file length. */
  async readBlock(pos: number, length: number, what = 'metadata'): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0 || !Number.isSafeInteger(pos) || pos < 0 || pos + length > this.length) {
      throw corrupt(`${this.path}: ${what} at offset ${pos} (${length} bytes) lies past the end of the file (${this.length} bytes)`, this.path);
    }
    return this.readExact(pos, new Uint8Array(length), what);
  }

  /** Reads what exists at pos; bytes past the end of the file read as zero (a sparse tail). */
  async readZeroPadded(pos: number, into: Uint8Array): Promise<void> {
    const avail = Math.max(0, Math.min(into.length, this.length - pos));
    if (avail < into.length) into.fill(0, avail);
    if (avail > 0) await this.readInto(pos, into.subarray(0, avail));
  }

  private async readInto(pos: number, into: Uint8Array): Promise<void> {
    let done = 0;
    if (blockingIoOn()) await yieldNow();
    try {
      while (done < into.length) {
        const bytesRead = blockingIoOn() ? readSync(this.fh.fd, into, done, into.length - done, pos + done) : (await this.fh.read(into, done, into.length - done, pos + done)).bytesRead;
        if (bytesRead === 0) {
          into.fill(0, done);
          return;
        }
        done += bytesRead;
      }
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /** True when this system can ask the file system where a sparse file's holes are. */
  get seesHoles(): boolean {
    return nativeFileOps !== undefined;
  }

  /**
   * The file's allocation at pos: whether pos is in data or a hole, and where that run ends (capped at the
   * file's length). Only valid when seesHoles is true.
   */
  allocationAt(pos: number): { data: boolean; end: number } {
    const b = nativeFileOps;
    if (!b) throw new DiskError('EUNSUPPORTED', 'hole detection is not available on this system');
    if (pos >= this.length) return { data: false, end: pos };
    const nextData = b.seekData(this.fh.fd, pos);
    if (nextData === pos) {
      const hole = b.seekHole(this.fh.fd, pos);
      return { data: true, end: Math.min(hole < 0 ? this.length : hole, this.length) };
    }
    return { data: false, end: nextData < 0 ? this.length : Math.min(nextData, this.length) };
  }

  async write(pos: number, data: Uint8Array): Promise<void> {
    if (!this.writable) throw new DiskError('EREADONLY', `${this.path}: opened read-only`, this.path);
    let done = 0;
    if (blockingIoOn()) await yieldNow();
    try {
      while (done < data.length) {
        const bytesWritten = blockingIoOn() ? writeSync(this.fh.fd, data, done, data.length - done, pos + done) : (await this.fh.write(data, done, data.length - done, pos + done)).bytesWritten;
        done += bytesWritten;
      }
    } catch (err) {
      throw toDiskError(err, this.path);
    }
    if (pos + data.length > this.length) this.length = pos + data.length;
    this.unsent += data.length;
    if (this.unsent >= WRITEBACK_STEP) this.startWriteback();
  }

  /**
   * Starts an fdatasync of this file on the thread pool (one at a time), where the dirty pages would otherwise
   * wait for the flush at the end (or for the dirty memory to reach a tenth of the machine's): the disk then works
   * while the copy goes on, and the final flush finds little left. Nothing is durable sooner for it: sync still
   * decides that, and reports a failure of this one. A file nobody will flush (under skipSyncs: convert -t
   * unsafe's target) is left to the kernel, as qemu-img leaves it.
   */
  private startWriteback(): void {
    this.unsent = 0;
    if (this.noWriteback || this.writeback !== undefined || syncsSkippedFor(this.path)) return;
    this.writeback = new Promise((resolve) =>
      fdatasync(this.fh.fd, (err) => {
        if (err) this.writebackError ??= err;
        this.writeback = undefined;
        resolve();
      }),
    );
  }

  /**
   * No writeback while writing (an image under cache=unsafe: its device's skipFlushes, for a target that is not
   * under skipSyncs, e.g. convert -n -t unsafe into an existing image). Its own syncs are the device's business.
   */
  skipWriteback(): void {
    this.noWriteback = true;
  }

  /** True when this system can punch holes (the native helper has fallocate PUNCH_HOLE). */
  get punchesHoles(): boolean {
    return typeof nativeFileOps?.punchHole === 'function';
  }

  /**
   * Gives [pos, pos+length) back to the host file system (fallocate PUNCH_HOLE | KEEP_SIZE): it reads as zeros
   * afterwards and the file keeps its length. False where this system or file system cannot (nothing changed).
   */
  async punchHole(pos: number, length: number): Promise<boolean> {
    if (!this.writable) throw new DiskError('EREADONLY', `${this.path}: opened read-only`, this.path);
    const punch = nativeFileOps?.punchHole;
    const end = Math.min(pos + length, this.length);
    if (!punch) return false;
    if (end <= pos) return true;
    const err = punch(this.fh.fd, pos, end - pos);
    if (err === 0) return true;
    if (err === 95 /* EOPNOTSUPP */ || err === 38 /* ENOSYS */) return false;
    throw new DiskError('EIO', `${this.path}: cannot punch a hole at ${pos} (${end - pos} bytes): errno ${err}`, this.path);
  }

  /** True when this system can copy between files inside the kernel (copyFrom may still decline a given pair). */
  get copiesInKernel(): boolean {
    return nativeFileOps?.copyRange !== undefined;
  }

  /**
   * Copies `length` bytes of `source` at `sourcePos` to `pos` in this file inside the kernel (copy_file_range:
   * a reflink where the file system shares blocks, else a copy that never enters this process). Returns how
   * many bytes from the start of the range it copied: fewer than `length` (often 0) when the kernel cannot do
   * it for these files (another file system, no support) or stopped part-way; the caller writes the rest.
   */
  async copyFrom(source: ImageFile, sourcePos: number, pos: number, length: number): Promise<number> {
    if (!this.writable) throw new DiskError('EREADONLY', `${this.path}: opened read-only`, this.path);
    const copyRange = nativeFileOps?.copyRange;
    if (!copyRange || length <= 0 || sourcePos + length > source.length) return 0;
    const n = Math.max(0, Math.min(length, await copyRange(source.fh.fd, sourcePos, this.fh.fd, pos, length)));
    if (pos + n > this.length) this.length = pos + n;
    return n;
  }

  async truncate(length: number): Promise<void> {
    if (!this.writable) throw new DiskError('EREADONLY', `${this.path}: opened read-only`, this.path);
    try {
      await this.fh.truncate(length);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
    this.length = length;
  }

  async sync(): Promise<void> {
    if (syncsSkippedFor(this.path)) return;
    if (!this.writable) return;
    await this.writeback;
    const failed = this.writebackError;
    this.writebackError = undefined;
    if (failed) throw toDiskError(failed, this.path);
    await this.fh.datasync().catch((err) => { throw toDiskError(err, this.path); });
  }

  async close(): Promise<void> {
    await this.writeback;
    await this.fh.close().catch(() => undefined);
    await this.lock.release();
  }
}

/**
 * Blocking reads and writes (the command line's choice, never the app's): a process that does one job and
 * nothing else copies faster with pread/pwrite on its own thread than through libuv's thread pool, where each
 * 1 MiB piece crosses to another core and back (a 1 GiB page-cached copy: 220 ms against 307, half the system
 * CPU; docs/performance.md). The event loop still turns at least every YIELD_MS, so Ctrl-C, progress and
 * timers are not starved while a long copy runs on resolved promises.
 */
let lastYield = 0;
const YIELD_MS = 20;

/**
 * Bytes written between two writebacks of a file (ImageFile.startWriteback; one runs at a time, so a fast copy
 * starts fewer): 32 MiB, the step convert used when it alone did this (a second handle's fdatasync).
 */
const WRITEBACK_STEP = 32 * 1024 * 1024;

/**
 * Whether reads and writes block (useBlockingIo): a copy then gains nothing from several pieces under way (each
 * call is done when it returns) and keeps one buffer, not four (each fresh MiB is 256 page faults).
 */
export { blockingIoOn as blockingIoInUse };

/** Also opens files as plain descriptors (block/open-file.ts): no node:fs/promises at the command line's start. */
export { setBlockingIo as useBlockingIo };

function yieldNow(): Promise<void> | undefined {
  // Date.now, not performance.now: the first use of `performance` loads perf_hooks (2-3 ms of start-up). A clock
  // set back counts as time gone by.
  const now = Date.now();
  if (now - lastYield < YIELD_MS && now >= lastYield) return undefined;
  lastYield = now;
  return new Promise((resolve) => setImmediate(resolve));
}

/*
 * skipSyncs and openingChecked are scoped by path, not by async context: an AsyncLocalStorage would do it, but
 * in Node 20 one run() turns on promise hooks for the whole process, and every promise after it pays for them
 * (12 ms of a 1 GiB compaction's 180 ms copy, measured with --cpu-prof). Both scopes are names no other job
 * uses: a temporary target's random stem, a path whose check is under way.
 */

/** Stems (resolved) of the files whose syncs are skipped, with how many skipSyncs calls hold each. */
const unsyncedStems = new Map<string, number>();

/** Whether syncs of the file at `path` are skipped now (a file under a skipSyncs stem). */
export function syncsSkippedFor(path: string): boolean {
  if (unsyncedStems.size === 0) return false;
  const full = nodePath.resolve(path);
  for (const stem of unsyncedStems.keys()) if (full.startsWith(stem)) return true;
  return false;
}

/** Adds one holder of `key` in `counts` until the returned release is called. */
function hold(counts: Map<string, number>, key: string): () => void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
  return () => {
    const n = (counts.get(key) ?? 1) - 1;
    if (n > 0) counts.set(key, n);
    else counts.delete(key);
  };
}

/**
 * Skips ImageFile.sync for every file whose path starts with `stem` until the returned function is called:
 * convert -t unsafe's target under its temporary name (as qemu-img's unsafe target, nothing of it is flushed; a
 * crash before the rename leaves only temporaries to remove). The stem is the temporary's own, random
 * (services/atomic.ts temporaryStem), so it covers the files written beside it and inside a bundle folder, and
 * nothing of another job.
 */
export function skipSyncs(stem: string): () => void {
  return hold(unsyncedStems, nodePath.resolve(stem));
}

/** Real paths whose folder policy was just checked, with how many openingChecked calls hold each. */
const checkedPaths = new Map<string, number>();

/**
 * Runs `open` (the opening of an image whose real path `path` was just checked against a folder policy:
 * a backing file, a bundle member) so that every ImageFile.open of exactly `path` while it runs verifies, after
 * opening, that the descriptor it holds is the file at `path`: same device and inode as `path` itself (not
 * followed, so a link put there since the check does not match), and, where /proc tells it, opened under that
 * very path (so a folder on the way swapped for a link does not pass either). Another job's open of the same
 * path in that time is verified too: the file there is the one it names, so it passes unless it was swapped.
 */
export async function openingChecked<T>(path: string, open: () => Promise<T>): Promise<T> {
  const release = hold(checkedPaths, nodePath.resolve(path));
  try {
    return await open();
  } finally {
    release();
  }
}

async function verifyLanding(fh: OpenFile, fst: { dev: number; ino: number }, expected: string): Promise<void> {
  const there = await lstatPath(expected).catch(() => undefined);
  const landed = await readLink(`/proc/self/fd/${fh.fd}`).catch(() => realPath(expected).catch(() => undefined));
  if (there === undefined || there.dev !== fst.dev || there.ino !== fst.ino || landed !== expected) {
    throw new DiskError('EOUTSIDE', `${expected}: the file changed while it was being opened, so it is not the file the folder rule allowed; not opening it`, expected);
  }
}

/** A block device's size: stat says 0, lseek to its end (native helper) or the kernel's count of sectors says it. */
async function blockDeviceSize(fh: OpenFile, rdev: number, path: string): Promise<number> {
  if (nativeFileOps) return nativeFileOps.sizeOf(fh.fd);
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  const text = await readTextFile(`/sys/dev/block/${major}:${minor}/size`).catch(() => undefined);
  const sectors = text === undefined ? NaN : Number(text.trim());
  if (!Number.isSafeInteger(sectors)) throw new DiskError('EUNSUPPORTED', `${path}: the size of this block device cannot be read on this system`, path);
  return sectors * 512;
}
