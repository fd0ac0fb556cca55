/**
 * Sparsify (compaction, issue 23): gives back the space a guest's file systems have freed, without booting it.
 * The free ranges come from the file systems' own allocation maps (inside/free.ts: ext bitmaps, FAT, NTFS
 * $Bitmap, swap pages after the header, the space no partition covers); everything else is kept as it is, and
 * a file system not cleanly unmounted is left alone. Three ways:
 *  - into a new image (convert's pipeline over the source with its free ranges reading as zeros): the source
 *    is only read, and the new image is renamed into place only when complete;
 *  - in place: the free ranges that hold data are discarded (qcow2: clusters released, zero clusters over a
 *    backing file, and their host space punched out; raw: holes punched; VHDX: blocks set to zero); formats
 *    that cannot release a range refuse, saying so; a raw file on a system that cannot punch holes has its
 *    free ranges zeroed where they are not already (the guest reads the same; a sparse copy then drops them);
 *  - dry run: the same figures, nothing written.
 * The figures are per partition: what its file system marks free, and how much of that holds data in the
 * image now (what the compaction gives back, before a format's rounding to its allocation unit).
 */
import { promises as fsp } from 'node:fs';
import type { ImageInfo, SparsifyPartitionDto, SparsifyResult } from '../../src-shared/api';
import { deepStatus } from '../block/chain';
import { isZeroRange } from '../block/bytes';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import { nativeFileOps } from '../block/native';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { diskFreeMap, type ByteRange, type DiskFreeMap } from '../inside';
import { driverFor, imageEntry, isFormatName, openImage, resolveDriver } from '../registry';
import { inspectImage } from './info';
import { convertImage } from './convert';
import { FreeMaskedDevice } from './sparsify/masked';
import { inPlaceRefusalReason } from './sparsify/refusal';

export interface SparsifyRequest {
  source: string;
  sourceFormat?: string;
  /** A new image (omit for in place or a dry run). */
  target?: string;
  /** The new image's format; default the source's. */
  targetFormat?: string;
  options?: Record<string, string | number | boolean | undefined>;
  compress?: boolean;
  cache?: string;
  inPlace?: boolean;
  dryRun?: boolean;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  onNotice?: (text: string) => void;
}

/** A partition's figures and the whole report: the contract's shapes (src-shared/api.ts), which the CLI prints too. */
export type SparsifyPartition = SparsifyPartitionDto;
export type SparsifyReport = Omit<SparsifyResult, 'keptCopy'>;

/** Free ranges are walked in status queries of at most this much. */
const STATUS_SPAN = 1 << 30;
/** The zero-writing fallback (raw without hole punching) reads and compares in pieces of this size. */
const ZERO_PIECE = 1 << 20;
const ZERO_GRAIN = 4096;

export async function sparsify(req: SparsifyRequest): Promise<SparsifyReport> {
  if (req.inPlace && req.target !== undefined) throw new DiskError('EINVAL', 'sparsify: --in-place takes one image, not a target');
  if (req.dryRun) return dryRun(req);
  if (req.inPlace) return inPlace(req);
  if (req.target === undefined) throw new DiskError('EINVAL', 'sparsify: give a target image, or --in-place, or --dry-run');
  return intoNewImage(req);
}

/**
 * What a compaction would give back, nothing written. With inPlace the image's own allocation counts (not its
 * backing file's). Every dry run says whether in place would refuse (inPlaceRefusal: the app offers in place only
 * without it); with inPlace the warning is a note too, in the words the run's refusal uses.
 */
async function dryRun(req: SparsifyRequest): Promise<SparsifyReport> {
  const dev = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    const refusal = inPlaceRefusalReason(dev);
    const map = await freeMap(dev, req.source);
    const held = await heldRanges(dev, map.ranges, req.inPlace === true, req.signal);
    const out = report('dry-run', req, dev, map, held, await allocatedSize(req.source, dev.format));
    if (refusal !== undefined) out.inPlaceRefusal = refusal;
    if (req.inPlace && refusal !== undefined) out.notes.push(`Warning: --in-place will refuse: ${refusalMessage(dev.path, refusal)}`);
    else if (req.inPlace && sumLengths(held) > 0) out.notes.push(...(dev.format === 'raw' && !punchesHoles() ? [ZERO_FALLBACK_NOTE] : inPlaceNotes(dev)));
    return out;
  } finally {
    await dev.close();
  }
}

async function intoNewImage(req: SparsifyRequest): Promise<SparsifyReport> {
  const target = req.target!;
  const targetFormat = req.targetFormat ?? (await resolveDriver(await imageEntry(req.source), req.sourceFormat)).name;
  let out: SparsifyReport | undefined;
  await convertImage({
    source: req.source,
    sourceFormat: req.sourceFormat,
    target,
    targetFormat,
    options: req.options,
    compress: req.compress,
    cache: req.cache,
    backingPolicy: req.backingPolicy ?? 'anywhere',
    signal: req.signal,
    onProgress: req.onProgress,
    onNotice: req.onNotice,
    wrapSource: async (src) => {
      const map = await freeMap(src, req.source);
      const held = await heldRanges(src, map.ranges, false, req.signal);
      out = report('new', req, src, map, held, await allocatedSize(req.source, src.format));
      return new FreeMaskedDevice(src, map.ranges);
    },
  });
  out!.target = target;
  out!.sizeAfter = await allocatedSize(target, targetFormat);
  return out!;
}

/**
 * Refuses as the dry run warns, from a read-only look (the device's discardRefusal): nothing written, not even
 * the in-use mark a writable open of a Parallels image sets.
 */
async function refuseBeforeWriting(req: SparsifyRequest): Promise<void> {
  const dev = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  try {
    const refusal = inPlaceRefusalReason(dev);
    if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', refusalMessage(dev.path, refusal), dev.path);
  } finally {
    await dev.close();
  }
}

async function inPlace(req: SparsifyRequest): Promise<SparsifyReport> {
  await refuseBeforeWriting(req);
  // Open for writing: the image is locked as a writer, so one another program holds is refused here.
  const dev = await openImage(req.source, { format: req.sourceFormat, readOnly: false, backingPolicy: req.backingPolicy ?? 'anywhere' });
  let closed = false;
  try {
    const sizeBefore = await allocatedSize(req.source, dev.format);
    const map = await freeMap(dev, req.source);
    // Only what this image itself holds can be given back; a free range that reads through to a backing file holds nothing here.
    const held = await heldRanges(dev, map.ranges, true, req.signal);
    const out = report('in-place', req, dev, map, held, sizeBefore);
    const total = held.reduce((n, r) => n + r.length, 0);
    let done = 0;
    let zeroFallback = false;
    for (const r of held) {
      throwIfAborted(req.signal);
      if (zeroFallback) await zeroWhereNonZero(dev, r, req.signal);
      else {
        try {
          if (!dev.discard) throw new DiskError('EUNSUPPORTED', `${dev.format} images cannot release space in place`);
          await dev.discard(r.start, r.length);
        } catch (err) {
          const e = toDiskError(err, req.source);
          if (e.code !== 'EUNSUPPORTED') throw e;
          // What refuseBeforeWriting could not know (a file system that cannot punch holes where the system can).
          if (dev.format !== 'raw' || done > 0) throw new DiskError('EUNSUPPORTED', refusalMessage(dev.path, e.message.replace(`${dev.path}: `, '')), dev.path);
          // Raw without hole punching: the guest's free blocks are zeroed (reading the same to a file system
          // that does not look at free blocks); the file keeps its blocks, but a sparse copy drops them.
          zeroFallback = true;
          out.notes.push(ZERO_FALLBACK_NOTE);
          await zeroWhereNonZero(dev, r, req.signal);
        }
      }
      done += r.length;
      req.onProgress?.(done, total);
    }
    await dev.flush();
    if (total > 0) out.notes.push(...inPlaceNotes(dev));
    closed = true;
    await dev.close();
    out.sizeAfter = await allocatedSize(req.source, dev.format);
    return out;
  } finally {
    if (!closed) await dev.close().catch(() => undefined);
  }
}

const sumLengths = (ranges: readonly ByteRange[]) => ranges.reduce((n, r) => n + r.length, 0);

/** Raw in place where holes cannot be punched: the run's note, and the dry run's (where this system has no hole punching at all). */
const ZERO_FALLBACK_NOTE =
  'This system cannot punch holes in the file: the free ranges are zeroed instead, so the file keeps its size; a sparse copy (sparsify into a new image) gives the space back.';
const punchesHoles = () => typeof nativeFileOps?.punchHole === 'function';

/** What in place does with the freed space, per format: where the file gets shorter and where it only takes less room. */
function inPlaceNotes(dev: BlockDevice): string[] {
  const unit = dev.clusterSize ? `Only whole ${dev.clusterSize}-byte ${dev.format === 'qcow2' || dev.format === 'parallels' ? 'clusters' : dev.format === 'vmdk' ? 'grains' : 'blocks'} inside free ranges are released.` : undefined;
  const notes: Record<string, string> = {
    vhdx: 'Wholly free VHDX blocks read as zeros and their space is punched out of the file: it keeps its length (VHDX blocks are not moved in place) but takes less room on the host (du).',
    vdi: 'The last VDI blocks move into the freed ones and the file is cut after the new last block.',
    vpc: 'Freed VHD blocks are punched out of the file (holes: du shows the space back); the file gets shorter only where they were last in it.',
    vmdk: 'Freed VMDK grains are punched out of the file (holes: du shows the space back); the file keeps its length.',
    parallels: 'Freed Parallels clusters are punched out of the file (holes: du shows the space back); the file gets shorter only where they were last in it.',
  };
  return [...(unit ? [unit] : []), ...(notes[dev.format] ? [notes[dev.format]] : [])];
}

/** The one wording of a refusal in place: the run's error, and the dry run's warning. */
function refusalMessage(path: string, reason: string): string {
  return `${path}: cannot compact in place (${reason}); compact into a new image instead: diskwright sparsify SRC DST`;
}

async function freeMap(dev: BlockDevice, path: string): Promise<DiskFreeMap> {
  try {
    return await diskFreeMap(dev);
  } catch (err) {
    throw toDiskError(err, path);
  }
}

/**
 * The parts of the free ranges that hold data in the image: through the whole chain for a new image, in the top
 * image only in place. Zero and unallocated ranges hold nothing to give back.
 */
async function heldRanges(dev: BlockDevice, free: readonly ByteRange[], topOnly: boolean, signal?: AbortSignal): Promise<ByteRange[]> {
  const out: ByteRange[] = [];
  for (const r of free) {
    const end = Math.min(r.start + r.length, dev.size);
    for (let pos = r.start; pos < end; ) {
      throwIfAborted(signal);
      const span = Math.min(STATUS_SPAN, end - pos);
      const ext = topOnly ? await dev.status(pos, span) : await deepStatus(dev, pos, span);
      const len = Math.max(1, Math.min(ext.length, span));
      if (ext.kind === 'data' && !ext.readsAsZero) {
        const last = out[out.length - 1];
        if (last && last.start + last.length === pos) last.length += len;
        else out.push({ start: pos, length: len });
      }
      pos += len;
    }
  }
  return out;
}

function report(mode: SparsifyReport['mode'], req: SparsifyRequest, dev: BlockDevice, map: DiskFreeMap, held: ByteRange[], sizeBefore: number): SparsifyReport {
  const overlap = (start: number, length: number) => {
    let n = 0;
    for (const r of held) n += Math.max(0, Math.min(r.start + r.length, start + length) - Math.max(r.start, start));
    return n;
  };
  const partitions: SparsifyPartition[] = map.partitions.map((p) => {
    const info = map.layout.partitions.find((q) => q.number === p.number);
    const reclaim = p.status === 'mapped' && info ? overlap(info.start, Math.min(info.size, dev.size - info.start)) : 0;
    return { number: p.number, type: p.type, status: p.status, ...(p.reason ? { reason: p.reason } : {}), freeBytes: p.freeBytes, reclaimBytes: reclaim };
  });
  const reclaimBytes = held.reduce((n, r) => n + r.length, 0);
  const inParts = partitions.reduce((n, p) => n + p.reclaimBytes, 0);
  const freeBytes = map.ranges.reduce((n, r) => n + r.length, 0);
  return {
    mode,
    source: req.source,
    format: dev.format,
    virtualSize: dev.size,
    table: map.layout.table,
    partitions,
    unpartitioned: { freeBytes: map.unpartitionedBytes, reclaimBytes: Math.max(0, reclaimBytes - inParts) },
    freeBytes,
    reclaimBytes,
    sizeBefore,
    notes: [],
  };
}

/** Writes zeros over the 4 KiB blocks of `r` that are not zero already (raw without hole punching). */
async function zeroWhereNonZero(dev: BlockDevice, r: ByteRange, signal?: AbortSignal): Promise<void> {
  const buf = new Uint8Array(ZERO_PIECE);
  for (let pos = r.start; pos < r.start + r.length; pos += ZERO_PIECE) {
    throwIfAborted(signal);
    const piece = buf.subarray(0, Math.min(ZERO_PIECE, r.start + r.length - pos));
    await dev.read(pos, piece);
    for (let off = 0; off < piece.length; off += ZERO_GRAIN) {
      const n = Math.min(ZERO_GRAIN, piece.length - off);
      if (!isZeroRange(piece, off, off + n)) await dev.writeZeroes(pos + off, n);
    }
  }
}

/** info of the image alone (its backing file named, not opened); undefined where info cannot read it. */
function imageInfo(path: string, format?: string): Promise<ImageInfo | undefined> {
  return inspectImage(path, { format, backingPolicy: 'none' }).catch(() => undefined);
}

/**
 * Bytes the image takes on the host, as info's actual-size: its file's allocated blocks, or for an image of
 * several files (a VMDK's extents, a Parallels bundle) what info adds up. One stat where one file says it: info
 * opens and reads the image (5 ms of a 1 GiB compaction's 320, twice).
 */
async function allocatedSize(path: string, format?: string): Promise<number> {
  const entry = await imageEntry(path);
  const driver = format !== undefined && isFormatName(format) ? driverFor(format) : undefined;
  if (driver && !(await driver.spansFiles?.(entry))) {
    const st = await fsp.stat(entry).catch(() => undefined);
    if (st?.isFile()) return st.blocks * 512;
  }
  const info = await imageInfo(path, format);
  if (info) return info['actual-size'];
  const st = await fsp.stat(path).catch(() => undefined);
  return st ? st.blocks * 512 : 0;
}
