/**
 * Convert: copies an image's guest-visible content (its whole chain, or one internal snapshot) into a new image
 * of any format, as `qemu-img convert`. A pipeline with flat memory: status queries and reads run ahead of the
 * writes, writes go in guest order, and the new image is renamed into place only when complete.
 */
import { promises as fsp } from 'node:fs';
import { chainOf, deepStatus } from '../block/chain';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import { driverFor, openImage, takesConcurrentCalls } from '../registry';
import { isZeroRange } from '../block/bytes';
import { alignDown, alignUp } from '../block/sizes';
import { blockingIoInUse, skipSyncs, type ImageFile } from '../block/file';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { forgetKey, keyFor, rememberKey } from '../keyring';
import { createUnplaced } from './create';
import { aboutTarget, checkTarget, removeStaleTemporaries, tempPathFor, temporaryStem, type ExtraFiles } from './atomic';
import { reflinksBetween } from './reflink';

export interface ConvertRequest {
  source: string;
  sourceFormat?: string;
  target: string;
  targetFormat: string;
  options?: Record<string, string | number | boolean | undefined>;
  /** The new target's virtual size when it must be larger than the source's (a named target rounding it up); the rest reads as zeros. */
  targetSize?: number;
  /** Write compressed clusters (qemu-img convert -c). */
  compress?: boolean;
  /** Give the target this backing file and copy only what the source's top image holds (-B). */
  backingFile?: string;
  backingFormat?: string;
  /** The target exists already: write into it instead of creating it (-n). */
  existingTarget?: boolean;
  /**
   * The target's cache mode, as qemu-img's -t: 'unsafe' writes without any flush (qemu-img convert's
   * default); the others (the default here) flush the new image once, before it is renamed into place.
   */
  cache?: string;
  /**
   * Copy offload (qemu-img convert -C): data that lies stored as is in a source file goes to the target inside
   * the kernel (copy_file_range; a reflink on btrfs or XFS), without passing through this process; where the
   * kernel or the file systems cannot, the copy falls back to reads and writes in silence. No zero detection
   * inside such data, as qemu-img's -C; refused with -c, as qemu-img refuses it. Not given: on by default only
   * where the target's file system can share the source's blocks (services/reflink.ts); false: never.
   */
  copyOffload?: boolean;
  /** Copy this internal snapshot of the source (an id, else a name) instead of its current state (-l). */
  sourceSnapshot?: string;
  /** The target keeps the source's internal snapshots: services/convert-snapshots.ts does that work, not convertImage. */
  keepSnapshots?: boolean;
  backingPolicy?: BackingPolicy;
  /** Read a source whose backing file changed since it was made (a UML COW base, a VMDK parent), and where it lies. */
  acceptChangedBacking?: boolean;
  backingOverride?: string;
  /**
   * Stands another device in for the opened source (sparsify: the source with the file systems' free blocks
   * reading as zeros). The stand-in closes the source when it is closed.
   */
  wrapSource?: (src: BlockDevice) => Promise<BlockDevice>;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Things worth a line to the user that are not errors (a stale temporary file removed). */
  onNotice?: (text: string) => void;
  /** Each temporary file or folder a dead job left beside the target that this convert removed (ConvertResult.removedTemporaries). */
  onStaleRemoved?: (path: string) => void;
}

/**
 * Data is read and written in pieces of at most this many bytes: memory stays flat whatever the image size.
 * 1 MiB: with the pieces read ahead and in flight this is ~5 MiB of buffers (2 MiB pieces cost 4-5 MiB more
 * peak RSS and measured no faster: docs/performance.md).
 */
const CHUNK = 1024 * 1024;
/** A target unit (qcow2 cluster, VMDK grain) up to this size is written whole, in one piece (see copyContent). */
const WHOLE_UNIT_MAX = 2 * 1024 * 1024;
/** Granularity of zero detection inside data: all-zero 4 KiB blocks are not written (qemu-img's -S 4k). */
const ZERO_GRAIN = 4096;
/** Zeros that must really be written (-n, -B) go in steps of at most this much, so cancel stays responsive. */
const ZERO_STEP = 64 * 1024 * 1024;
/** Pieces read ahead of the writer, and pieces whose writes may be under way at once (each holds a buffer). */
const READ_AHEAD = 2;
const WRITES_IN_FLIGHT = 2;
/** qemu's cache modes; all but unsafe flush once at the end (none/directsync do not bypass the page cache here). */
const CACHE_MODES = ['writeback', 'unsafe', 'none', 'writethrough', 'directsync'];

/**
 * Copies the guest-visible content of `source` (its whole chain) into a new image of `targetFormat`.
 * A new target is written beside its final name and renamed into place only when complete.
 */
export async function convertImage(req: ConvertRequest): Promise<void> {
  const targetDriver = driverFor(req.targetFormat);
  if (req.compress && !targetDriver.writesCompressed) throw new DiskError('EUNSUPPORTED', `compression (-c) is not supported for ${req.targetFormat}`);
  if (req.compress && req.copyOffload) throw new DiskError('EINVAL', 'Cannot enable copy offloading when -c is used');
  const cache = req.cache ?? 'writeback';
  if (!CACHE_MODES.includes(cache)) throw new DiskError('EINVAL', `Invalid cache option: ${cache}`);
  const unsafe = cache === 'unsafe';
  if (req.keepSnapshots) throw new DiskError('EINVAL', 'convertImage does not keep snapshots: call convertKeepingSnapshots');
  const opened = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere', snapshot: req.sourceSnapshot, acceptChangedBacking: req.acceptChangedBacking, backingOverride: req.backingOverride });
  let src: BlockDevice;
  try {
    src = req.wrapSource ? await req.wrapSource(opened) : opened;
  } catch (err) {
    await opened.close().catch(() => undefined);
    throw err;
  }
  let tmp: string | undefined;
  /** Files the create wrote beside the target (VMDK extents): given their final names just before the rename. */
  let extras: ExtraFiles | undefined;
  let dst: BlockDevice | undefined;
  /** Ends the skipping of the new image's syncs (-t unsafe). */
  let keepSyncs: (() => void) | undefined;
  try {
    if (req.existingTarget) {
      dst = await openImage(req.target, { format: req.targetFormat, readOnly: false, backingPolicy: 'anywhere' });
      if (dst.size < src.size) throw new DiskError('EINVAL', `${req.target} (${dst.size} bytes) is smaller than ${req.source} (${src.size} bytes)`);
    } else {
      await checkTarget(req.target);
      for (const stale of await removeStaleTemporaries(req.target)) {
        req.onNotice?.(`removed ${stale}, left by an earlier convert that was stopped`);
        req.onStaleRemoved?.(stale);
      }
      if (req.targetSize !== undefined && req.targetSize < src.size) throw new DiskError('EINVAL', `the target size ${req.targetSize} is smaller than ${req.source} (${src.size} bytes)`);
      tmp = tempPathFor(req.target);
      // Under -t unsafe nothing is flushed (as qemu-img's unsafe target). Otherwise a driver
      // that can leave its sync to us (durable: false; dst.flush below syncs the filled image) does, and the others
      // keep theirs: not every file a create writes is one the open image flushes later (a .hdd bundle's
      // DiskDescriptor.xml).
      const createReq = { path: req.target, format: req.targetFormat, size: req.targetSize ?? src.size, options: req.options, backingFile: req.backingFile, backingFormat: req.backingFormat };
      // Under -t unsafe, nothing of the new image syncs from here to its rename: its create, its open (a Parallels
      // image syncs its in-use mark), what a write rewrites (a split VMDK's descriptor), its extents' final names.
      if (unsafe) keepSyncs = skipSyncs(temporaryStem(tmp));
      extras = await createUnplaced(createReq, tmp, false);
      dst = await openTarget(tmp, req);
    }
    if (unsafe) dst.skipFlushes?.();
    // Copy offload: asked for (-C), else by default only where the new image can share the source's blocks
    // (a reflink: services/reflink.ts says why not elsewhere). Never for a stand-in source (sparsify's).
    const offload = req.copyOffload ?? (!req.compress && !req.wrapSource && req.backingFile === undefined && (await reflinksBetween(req.source, req.target)));
    // The target's pages go to the disk while the copy runs (block/file.ts, ImageFile.startWriteback), so that
    // this flush, which makes it durable before the rename, finds little left to write.
    await copyContent(src, dst, req, offload);
    await dst.flush();
    await dst.close();
    dst = undefined;
    if (tmp) {
      await extras?.place();
      await fsp.rename(tmp, req.target).catch((err) => { throw toDiskError(err, req.target); });
      tmp = undefined;
      await extras?.settle();
      extras = undefined;
    }
  } catch (err) {
    throw aboutTarget(err, tmp, req.target);
  } finally {
    await dst?.close().catch(() => undefined);
    await src.close().catch(() => undefined);
    if (tmp) await fsp.rm(tmp, { force: true, recursive: true }).catch(() => undefined);
    await extras?.discard();
    keepSyncs?.();
  }
}

/**
 * Opens the new image under its temporary name. An encrypted target's key is held under the target's name
 * (the create took it from there): it is lent to the temporary name for the open only.
 */
async function openTarget(tmp: string, req: ConvertRequest): Promise<BlockDevice> {
  const key = keyFor(req.target);
  if (!key) return openImage(tmp, { format: req.targetFormat, readOnly: false, backingPolicy: 'anywhere' });
  rememberKey(tmp, key);
  try {
    return await openImage(tmp, { format: req.targetFormat, readOnly: false, backingPolicy: 'anywhere' });
  } finally {
    forgetKey(tmp);
  }
}

/** One piece of the copy: a guest range with one state, and for data the buffer it is read into. */
interface Step {
  pos: number;
  len: number;
  kind: 'data' | 'zero' | 'skip';
  buf?: Uint8Array;
  /** Data copied file to file inside the kernel (copy offload) instead of read into buf: where it lies. */
  stored?: { file: ImageFile; offset: number };
  /** The read into buf. */
  ready?: Promise<void>;
  /** All writes of the step, settled (errors are kept by the pipeline, not by this promise). */
  done?: Promise<void>;
}

/**
 * The copy is a pipeline: status queries and reads run up to READ_AHEAD pieces ahead, and the writes of up to
 * WRITES_IN_FLIGHT pieces proceed while the next pieces are read, so source and target I/O overlap as in
 * qemu-img's parallel requests. Writes are issued in guest order (qcow2 allocates clusters in that order), and
 * every buffer belongs to one piece at a time, so memory stays bounded.
 */
async function copyContent(src: BlockDevice, dst: BlockDevice, req: ConvertRequest, copyOffload: boolean): Promise<void> {
  const fresh = !req.existingTarget; // a fresh target reads as zeros everywhere already
  const withBacking = req.backingFile !== undefined;
  const compress = req.compress === true;
  // The grain of zero detection and of the walk: the target's allocation unit where it has a small one (a
  // qcow2 cluster, a VMDK grain), so that a cluster holding any data is written whole in one piece (qemu-img
  // gets the same file by writing the data and zeroing the rest of the cluster); 4 KiB otherwise (raw, VHDX's
  // 32 MiB blocks; -B, where only what the source's top image holds is copied), as qemu-img's -S 4k. With -c
  // compressed clusters are written whole anyway. A VHD block's zeros stay holes (newUnitsStaySparse): 4 KiB there
  // too (writing a 2 MiB block whole took 16x qemu-img's space for sparse data).
  const unit = dst.clusterSize;
  const wholeUnits = !withBacking && !dst.newUnitsStaySparse && unit !== undefined && unit > ZERO_GRAIN && unit <= WHOLE_UNIT_MAX && (unit & (unit - 1)) === 0;
  const grain = compress ? unit ?? 65536 : wholeUnits ? unit : ZERO_GRAIN;
  const chunk = Math.max(CHUNK, grain);
  const skipZeros = fresh && !withBacking;
  // With blocking I/O (the command line) every call is over when it returns: one piece at a time, one buffer.
  const serial = blockingIoInUse();
  const srcConcurrent = !serial && takesConcurrentCalls(src);
  const dstConcurrent = !serial && takesConcurrentCalls(dst);
  const readAhead = srcConcurrent ? READ_AHEAD : 1;
  const writesInFlight = dstConcurrent ? WRITES_IN_FLIGHT : 1;
  const free: Uint8Array[] = [];
  const takeBuffer = () => free.pop() ?? new Uint8Array(chunk);

  let failure: { err: unknown } | undefined;
  const fail = (err: unknown) => {
    failure ??= { err };
  };
  const checkFailure = () => {
    if (failure) throw failure.err;
  };

  // The status extent being cut into steps: [next, extEnd) has kind extKind.
  let next = 0;
  let extEnd = 0;
  let extKind: Step['kind'] = 'zero';
  // Copy offload: the image of the chain that holds the current data extent, and that extent as its status gave
  // it (before being widened to whole clusters: only ranges inside it are known to lie in that image).
  const offload = copyOffload && dst.copyIn !== undefined;
  let holder: BlockDevice | undefined;
  let holderStart = 0;
  let holderEnd = 0;
  const planStep = async (): Promise<Step> => {
    if (next >= extEnd) {
      holder = undefined;
      // Status is asked for the whole rest of the image: a long hole or zero run is one step, so a sparse 1 TiB
      // image is not 1,024 turns of this loop (which also had V8 compile it: megabytes of resident memory).
      const span = src.size - next;
      if (withBacking) {
        // -B: only what the source's top image holds is copied; the rest comes from the new backing file.
        const ext = await src.status(next, span);
        extKind = ext.kind === 'unallocated' ? 'skip' : ext.kind;
        extEnd = next + ext.length;
      } else {
        const ext = await deepStatus(src, next, span);
        // Data the image stores where its file has a hole (VHDX, VDI, VHD say readsAsZero) is zeros: not read.
        extKind = ext.kind === 'data' && !ext.readsAsZero ? 'data' : 'zero';
        extEnd = next + ext.length;
        if (offload && extKind === 'data') {
          holder = chainOf(src)[ext.depth];
          holderStart = next;
          holderEnd = extEnd;
        }
      }
      if (grain > ZERO_GRAIN) {
        // Whole clusters are written, so the copy walks whole clusters (`next` stays aligned): a source whose
        // extents follow smaller units (a file system's 4 KiB holes in a raw image) has a cluster read as data
        // when any part of it is data, its holes reading as zeros.
        if (extKind === 'data') extEnd = Math.min(src.size, alignUp(extEnd, grain));
        else if (alignDown(extEnd, grain) > next) extEnd = alignDown(extEnd, grain);
        else {
          extKind = 'data';
          extEnd = Math.min(src.size, alignUp(extEnd, grain));
        }
      }
    }
    const pos = next;
    let len: number;
    if (extKind === 'data') {
      // Pieces stay aligned to the grain (with -c, `pos` and `extEnd` are cluster boundaries or the end).
      len = Math.min(chunk - (pos % grain), extEnd - pos);
    } else {
      len = extEnd - pos;
      if (extKind === 'zero' && (!fresh || withBacking)) len = Math.min(len, ZERO_STEP);
    }
    const stored = offload && extKind === 'data' && pos >= holderStart && pos + len <= holderEnd ? await holder?.storedAt?.(pos, len) : undefined;
    if (stored) len = stored.length;
    next = pos + len;
    const step: Step = { pos, len, kind: extKind };
    if (stored) step.stored = { file: stored.file, offset: stored.offset };
    else if (extKind === 'data') {
      step.buf = takeBuffer().subarray(0, len);
      step.ready = src.read(pos, step.buf);
      // Keep a failed read from being reported as unhandled before the writer reaches it.
      step.ready.catch(() => undefined);
      if (!srcConcurrent) await step.ready;
    }
    return step;
  };

  const issueWrites = (step: Step): Promise<void> => {
    const ops: Array<Promise<void>> = [];
    const run = (op: () => Promise<void>) => {
      if (!dstConcurrent && ops.length) {
        const prev = ops[ops.length - 1];
        ops.push(prev.then(op));
      } else ops.push(op());
    };
    if (step.kind === 'zero') {
      if (!skipZeros) run(() => dst.writeZeroes(step.pos, step.len));
    } else if (step.stored) {
      const { file, offset } = step.stored;
      run(async () => {
        const copied = await dst.copyIn!(step.pos, step.len, file, offset);
        if (copied === step.len) return;
        // The target declined the piece, or the kernel cannot copy between these files (or stopped part-way):
        // the rest of the piece is read and written as any other.
        step.buf = takeBuffer().subarray(0, step.len);
        const rest = step.buf.subarray(copied);
        await src.read(step.pos + copied, rest);
        const writes: Array<() => Promise<void>> = [];
        planWrites(step.pos + copied, rest, grain, skipZeros, false, (kind, at, data) => writes.push(() => (kind === 'zero' ? dst.writeZeroes(at, data.length) : dst.write(at, data))));
        for (const w of writes) await w();
      });
    } else if (step.kind === 'data') {
      planWrites(step.pos, step.buf!, grain, skipZeros, compress, (kind, at, data) => {
        if (kind === 'zero') run(() => dst.writeZeroes(at, data.length));
        else if (kind === 'compressed') run(() => dst.writeCompressed!(at, data));
        else run(() => dst.write(at, data));
      });
    }
    // Settled only when every write of the step is over, so that its buffer is free for reuse.
    return Promise.allSettled(ops).then((results) => {
      const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (bad) fail(bad.reason);
    });
  };

  const planned: Step[] = [];
  const writing: Step[] = [];
  const finish = async (step: Step) => {
    await step.done;
    if (step.buf) free.push(new Uint8Array(step.buf.buffer, 0, chunk));
    checkFailure();
    req.onProgress?.(step.pos + step.len, src.size);
  };
  try {
    for (;;) {
      throwIfAborted(req.signal);
      checkFailure();
      while (planned.length < readAhead && next < src.size) planned.push(await planStep());
      const step = planned.shift();
      if (!step) break;
      if (step.ready) await step.ready;
      step.done = issueWrites(step);
      writing.push(step);
      while (writing.length > writesInFlight - (dstConcurrent ? 0 : 1)) await finish(writing.shift()!);
    }
    while (writing.length) await finish(writing.shift()!);
  } finally {
    // On failure or cancel, let every read and write under way settle before the files are closed.
    await Promise.allSettled([...planned, ...writing].flatMap((s) => [s.ready, s.done].filter((p): p is Promise<void> => p !== undefined)));
  }
}

/**
 * Cuts `data` (guest offset `pos`) into the writes it needs: runs of non-zero grains are written (compressed
 * clusters with -c), all-zero grains are left out when the target already reads as zero there, else zeroed.
 */
function planWrites(pos: number, data: Uint8Array, grain: number, skipZeros: boolean, compress: boolean, emit: (kind: 'data' | 'zero' | 'compressed', at: number, data: Uint8Array) => void): void {
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart < 0) return;
    const run = data.subarray(runStart, end);
    if (compress) emitCompressedRun(pos + runStart, run, grain, emit);
    else emit('data', pos + runStart, run);
    runStart = -1;
  };
  let zeroStart = -1;
  const flushZeros = (end: number) => {
    if (zeroStart < 0) return;
    if (!skipZeros) emit('zero', pos + zeroStart, data.subarray(zeroStart, end));
    zeroStart = -1;
  };
  for (let off = 0; off < data.length; ) {
    const n = Math.min(grain - ((pos + off) % grain), data.length - off);
    if (isZeroRange(data, off, off + n)) {
      flush(off);
      if (zeroStart < 0) zeroStart = off;
    } else {
      flushZeros(off);
      if (runStart < 0) runStart = off;
    }
    off += n;
  }
  flush(data.length);
  flushZeros(data.length);
}

function emitCompressedRun(pos: number, run: Uint8Array, cluster: number, emit: (kind: 'data' | 'compressed', at: number, data: Uint8Array) => void): void {
  for (let off = 0; off < run.length; off += cluster) {
    const piece = run.subarray(off, Math.min(off + cluster, run.length));
    // The image's last, partial cluster is stored uncompressed.
    emit(piece.length === cluster ? 'compressed' : 'data', pos + off, piece);
  }
}

