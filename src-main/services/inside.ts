/**
 * What is inside a disk image, for the CLI's `partitions`, `ls` and `cp` (and later the app): the partition
 * table with each file system, a folder's listing, a file or folder copied out, and (for the app's map) where the
 * image holds data its file systems mark free. The image is opened
 * read-only, in any format; nothing in it is ever written.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import type { BackingPolicy } from '../block/types';
import { diskFreeMap, inspectDisk, openVolume, readFileData, type DiskLayout, type FileEntry, type FileSystemReader, type OpenVolume, type PartitionFree } from '../inside';
import { openImage } from '../registry';
import { writeAtomically } from './atomic';
import { walkMap } from './map';

export interface InsideRequest {
  path: string;
  format?: string;
  backingPolicy?: BackingPolicy;
}

async function withImage<T>(req: InsideRequest, fn: (dev: Awaited<ReturnType<typeof openImage>>) => Promise<T>): Promise<T> {
  const dev = await openImage(req.path, { format: req.format, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    return await fn(dev);
  } catch (err) {
    throw toDiskError(err, req.path);
  } finally {
    await dev.close();
  }
}

/** The partition table and the file system of each partition. */
export function listPartitions(req: InsideRequest): Promise<DiskLayout> {
  return withImage(req, (dev) => inspectDisk(dev));
}

export interface InsidePath extends InsideRequest {
  /** The partition number (sfdisk's), or undefined for the only readable one. */
  partition?: number;
  /** The path inside the file system. */
  inner: string;
}

/** A folder's entries (sorted by name), or the one entry of a file. */
export function listFiles(req: InsidePath): Promise<{ entry: FileEntry; children?: FileEntry[] }> {
  return withImage(req, async (dev) => {
    const { fs } = await openVolume(dev, req.partition);
    const entry = await fs.stat(req.inner);
    if (entry.type !== 'dir') return { entry };
    const children = (await fs.list(req.inner)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { entry, children };
  });
}

export interface CopyOutRequest extends InsidePath {
  /** A new file or folder, or an existing folder to copy into. */
  dest: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface CopyOutResult {
  target: string;
  files: number;
  bytes: number;
  /** Entries not copied (special files, names that cannot be files here), in plain words. */
  skipped: string[];
}

/** A name from the disk that cannot name a file here safely ('/', NUL, '.', '..'). */
function unsafeName(name: string): boolean {
  return name === '' || name === '.' || name === '..' || /[/\0]/.test(name) || (process.platform === 'win32' && /[\\:*?"<>|]/.test(name));
}

/**
 * Copies a file or a folder out of the image. The copy is written under a temporary name and renamed into place,
 * so a cancel or a failure leaves nothing behind. Holes stay holes (the file is extended, not written with zeros).
 * Symlinks are recreated as symlinks with the same target text; they are never followed.
 */
export function copyOut(req: CopyOutRequest): Promise<CopyOutResult> {
  return withImage(req, async (dev) => {
    const vol = await openVolume(dev, req.partition);
    const top = await vol.fs.stat(req.inner);
    const destStat = await fsp.stat(req.dest).catch(() => undefined);
    const baseName = top.name === '/' ? `partition-${vol.partition.number}` : top.name;
    const target = destStat?.isDirectory() ? nodePath.join(req.dest, baseName) : req.dest;
    const total = await sizeOf(vol.fs, req.inner, top, req.signal);
    const result: CopyOutResult = { target, files: 0, bytes: 0, skipped: [] };
    const progress = (n: number) => {
      result.bytes += n;
      req.onProgress?.(result.bytes, total);
    };
    await writeAtomically(target, (tmp) => copyEntry(vol, req.inner, top, tmp, result, progress, req.signal));
    req.onProgress?.(total, total);
    return result;
  });
}

async function sizeOf(fs: FileSystemReader, path: string, e: FileEntry, signal?: AbortSignal): Promise<number> {
  throwIfAborted(signal);
  if (e.type === 'file') return e.size;
  if (e.type !== 'dir') return 0;
  let n = 0;
  for (const c of await fs.list(path)) if (!unsafeName(c.name)) n += await sizeOf(fs, join(path, c.name), c, signal);
  return n;
}

const join = (dir: string, name: string) => (dir.endsWith('/') ? dir + name : `${dir}/${name}`);

async function copyEntry(vol: OpenVolume, path: string, e: FileEntry, to: string, result: CopyOutResult, progress: (n: number) => void, signal?: AbortSignal): Promise<void> {
  throwIfAborted(signal);
  if (e.type === 'dir') {
    await fsp.mkdir(to);
    for (const c of await vol.fs.list(path)) {
      if (unsafeName(c.name)) {
        result.skipped.push(`${join(path, c.name)}: the name cannot be a file name here`);
        continue;
      }
      await copyEntry(vol, join(path, c.name), c, nodePath.join(to, c.name), result, progress, signal);
    }
  } else if (e.type === 'symlink') {
    await fsp.symlink(e.target ?? '', to).catch((err) => result.skipped.push(`${path}: symlink not made (${toDiskError(err).message})`));
  } else if (e.type === 'file') {
    await copyFile(vol, path, to, progress, signal);
    result.files++;
  } else {
    result.skipped.push(`${path}: a special file (device, FIFO or socket) is not copied`);
  }
  if (e.mtime !== undefined && e.type !== 'symlink') await fsp.utimes(to, e.mtime / 1000, e.mtime / 1000).catch(() => undefined);
}

async function copyFile(vol: OpenVolume, path: string, to: string, progress: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const data = await vol.fs.runs(path);
  // 'wx': a file is only ever created, never written through a name that already exists (a link planted there).
  const fh = await fsp.open(to, 'wx');
  try {
    await readFileData(
      vol.volume,
      data,
      async (offset, bytes) => {
        await fh.write(bytes, 0, bytes.length, offset);
        progress(bytes.length);
      },
      signal,
    );
    await fh.truncate(data.size);
  } finally {
    await fh.close();
  }
}


/** A folder's entries for the app's file browser; a path that is not a folder is refused in plain words. */
export async function listFolder(req: InsidePath): Promise<{ path: string; entries: FileEntry[] }> {
  const path = normaliseInner(req.inner);
  const { entry, children } = await listFiles({ ...req, inner: path });
  if (!children) throw new DiskError('EINVAL', `${path} is not a folder (it is ${entry.type === 'symlink' ? `a symlink to ${entry.target ?? '?'}` : `a ${entry.type}`})`, req.path);
  return { path, entries: children };
}

/** '/a/b' from 'a/b/', '//a', '/a/./b': the forms a person or a breadcrumb may give; '..' is refused. */
function normaliseInner(inner: string): string {
  const parts = inner.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new DiskError('EINVAL', `a path inside the disk cannot go up with '..': ${inner}`);
  return `/${parts.join('/')}`;
}

/** The map's "allocated in the image but free in the file system" layer: per bucket, as mapPicture cuts the disk. */
export interface FreePicture {
  virtualSize: number;
  bucketSize: number;
  buckets: number[];
  bytes: number;
  partitions: PartitionFree[];
}

/**
 * Where the image itself holds data (not its backing files) that the file systems mark free, or that no
 * partition covers: the space a compaction would give back. The disk's free ranges (inside/free.ts) meet the
 * image's own data runs (the map's walk) in one pass over both sorted lists.
 */
export function freePicture(req: InsideRequest & { buckets: number; signal?: AbortSignal }): Promise<FreePicture> {
  return withImage(req, async (dev) => {
    const n = Math.max(1, Math.min(4096, Math.floor(req.buckets)));
    // The same cut as services/map.ts mapPicture, so bucket i is the same range of the disk in both pictures.
    const bucketSize = Math.max(1, Math.ceil(dev.size / n));
    const buckets = new Array<number>(n).fill(0);
    const free = await diskFreeMap(dev);
    const own: Array<{ start: number; end: number }> = [];
    await walkMap(
      dev,
      (e) => {
        if (!e.data || e.depth > 0) return;
        const last = own[own.length - 1];
        if (last && last.end === e.start) last.end += e.length;
        else own.push({ start: e.start, end: e.start + e.length });
      },
      { signal: req.signal },
    );
    let bytes = 0;
    let i = 0;
    for (const r of free.ranges) {
      const rEnd = Math.min(r.start + r.length, dev.size);
      while (i < own.length && own[i].end <= r.start) i++;
      for (let j = i; j < own.length && own[j].start < rEnd; j++) {
        let pos = Math.max(r.start, own[j].start);
        const end = Math.min(rEnd, own[j].end);
        bytes += Math.max(0, end - pos);
        while (pos < end) {
          const b = Math.floor(pos / bucketSize);
          const bEnd = Math.min(end, (b + 1) * bucketSize);
          buckets[b] += bEnd - pos;
          pos = bEnd;
        }
      }
    }
    return { virtualSize: dev.size, bucketSize, buckets, bytes, partitions: free.partitions };
  });
}

/**
 * The app's "Save a copy…": copyOut into a name that must be new. copyOut copies into an existing folder; a
 * person who picked a name expects that name, so an existing file or folder there is refused instead.
 */
export async function copyOutNew(req: CopyOutRequest): Promise<CopyOutResult> {
  const there = await fsp.lstat(req.dest).catch(() => undefined);
  if (there) throw new DiskError('EEXIST', `${req.dest} already exists: choose a new name for the copy`, req.dest);
  return copyOut(req);
}
