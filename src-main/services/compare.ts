/**
 * Compare: whether two images read the same to a guest, as `qemu-img compare` (-s strict included): the same
 * verdict, messages and first differing offset, reading only where either image holds data.
 */
import type { CompareOutcome } from '../../src-shared/api';
import { deepStatus } from '../block/chain';
import { throwIfAborted } from '../block/errors';
import { blockingIoInUse } from '../block/file';
import { openImage, takesConcurrentCalls } from '../registry';
import { isZero } from '../block/bytes';
import type { BackingPolicy, BlockDevice } from '../block/types';

export interface CompareRequest {
  a: string;
  b: string;
  formatA?: string;
  formatB?: string;
  /** qemu-img compare -s: a size difference or a different allocation state is a mismatch too. */
  strict?: boolean;
  backingPolicy?: BackingPolicy;
  /** Read backing files that changed since their children were made (a UML COW base, a VMDK parent); `backingOverride` applies to `a`. */
  acceptChangedBacking?: boolean;
  backingOverride?: string;
  /** Read `a` as it was at this internal snapshot (an id, else a name), read-only: the verify of a snapshot's export. */
  snapshotA?: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** The verdict: the contract's CompareOutcome (messages are the lines qemu-img would print, warnings first). */
export type CompareResult = CompareOutcome;

const CHUNK = 1024 * 1024;
/** Status is asked for at most this much at a time. */
const STATUS_SPAN = 1 << 30;
/** Pieces whose reads run ahead of the comparison (each holds up to two CHUNK buffers). */
const READ_AHEAD = 4;

/** Compares the guest-visible content of two images, reading only where either holds data. */
export async function compareImages(req: CompareRequest): Promise<CompareResult> {
  const policy = req.backingPolicy ?? 'anywhere';
  const a = await openImage(req.a, { format: req.formatA, readOnly: true, backingPolicy: policy, acceptChangedBacking: req.acceptChangedBacking, backingOverride: req.backingOverride, snapshot: req.snapshotA });
  try {
    const b = await openImage(req.b, { format: req.formatB, readOnly: true, backingPolicy: policy, acceptChangedBacking: req.acceptChangedBacking });
    try {
      return await compareDevices(a, b, req);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

/** One piece of the common part: its state in both images, and the reads of whichever side holds data. */
interface Piece {
  pos: number;
  len: number;
  /** qemu-img compare -s: the block status differs here. */
  statusMismatch: boolean;
  bufA?: Uint8Array;
  bufB?: Uint8Array;
  /** The reads (a side that reads as zero is not read: it has no buffer, and the other is checked for zeros). */
  ready?: Promise<unknown>;
}

/**
 * Walks both images piece by piece. The status queries and reads run up to READ_AHEAD pieces ahead of the
 * comparison, and the two images are read side by side, so the files' I/O overlaps the comparing.
 */
async function compareDevices(a: BlockDevice, b: BlockDevice, req: CompareRequest): Promise<CompareResult> {
  const messages: string[] = [];
  if (a.size !== b.size && req.strict) return { identical: false, messages: ['Strict mode: Image size mismatch!'] };
  const common = Math.min(a.size, b.size);
  const total = Math.max(a.size, b.size);
  // Reads of one image overlap each other only where its drivers allow it; with blocking I/O (the command line)
  // each read is over when it returns, so reading ahead gains nothing and costs buffers (each fresh MiB is 256
  // first-touch page faults).
  const readAhead = !blockingIoInUse() && takesConcurrentCalls(a) && takesConcurrentCalls(b) ? READ_AHEAD : 1;
  const free: Uint8Array[] = [];
  const take = () => free.pop() ?? new Uint8Array(CHUNK);
  const give = (v?: Uint8Array) => {
    if (v) free.push(new Uint8Array(v.buffer, 0, CHUNK));
  };
  let next = 0;
  // The extent each image's status last gave (its end and whether it holds data): asked again only past its end,
  // so a long run of holes is one step, not one query per MiB (qemu-img compare -s keeps its MiB steps, below).
  const extA = { end: 0, data: false };
  const extB = { end: 0, data: false };
  const span = req.strict ? CHUNK : STATUS_SPAN;
  const refresh = async (dev: BlockDevice, ext: { end: number; data: boolean }, pos: number, limit: number) => {
    if (req.strict || pos >= ext.end) {
      const s = await deepStatus(dev, pos, limit);
      ext.end = pos + s.length;
      ext.data = s.kind === 'data';
    }
  };
  const plan = async (): Promise<Piece> => {
    const pos = next;
    const len0 = Math.min(span, common - pos);
    await refresh(a, extA, pos, len0);
    await refresh(b, extB, pos, Math.min(len0, extA.end - pos));
    let len = Math.min(extA.end, extB.end, pos + len0) - pos;
    if (extA.data || extB.data) len = Math.min(len, CHUNK);
    next = pos + len;
    const piece: Piece = { pos, len, statusMismatch: req.strict === true && !(await sameBlockStatus(a, b, pos, common)) };
    const zeroA = !extA.data;
    const zeroB = !extB.data;
    if (!(zeroA && zeroB) && !piece.statusMismatch) {
      const va = zeroA ? undefined : (piece.bufA = take().subarray(0, len));
      const vb = zeroB ? undefined : (piece.bufB = take().subarray(0, len));
      piece.ready = Promise.all([va && a.read(pos, va), vb && b.read(pos, vb)]);
      // Keep a failed read from being reported as unhandled before the comparison reaches it.
      piece.ready.catch(() => undefined);
    }
    return piece;
  };
  const planned: Piece[] = [];
  try {
    for (;;) {
      throwIfAborted(req.signal);
      while (planned.length < readAhead && next < common) planned.push(await plan());
      const p = planned.shift();
      if (!p) break;
      if (p.statusMismatch) {
        return { identical: false, mismatchOffset: p.pos, messages: [...messages, `Strict mode: Offset ${p.pos} block status mismatch!`] };
      }
      if (p.ready) {
        await p.ready;
        const va = p.bufA;
        const vb = p.bufB;
        // One side reads as zeros: the other must too.
        const differs = va && vb ? Buffer.compare(va, vb) !== 0 : !isZero((va ?? vb)!);
        if (differs) {
          const at = p.pos + sectorFloor(va && vb ? firstDifference(va, vb) : (va ?? vb)!.findIndex((x) => x !== 0));
          return { identical: false, mismatchOffset: at, messages: [...messages, `Content mismatch at offset ${at}!`] };
        }
        give(va);
        give(vb);
      }
      req.onProgress?.(p.pos + p.len, total);
    }
  } finally {
    // Reads still under way (after a mismatch or a failure) settle before the images are closed.
    await Promise.allSettled(planned.map((p) => p.ready));
  }
  let pos = common;
  // qemu-img warns about the sizes only once the common part matched, then checks the rest reads as zeros.
  if (a.size !== b.size) messages.push('Warning: Image size mismatch!');
  // Past the shorter image, the longer one must read as zeros.
  const longer = a.size > b.size ? a : b;
  const buf = take();
  while (pos < longer.size) {
    throwIfAborted(req.signal);
    const s = await deepStatus(longer, pos, Math.min(CHUNK, longer.size - pos));
    if (s.kind === 'data') {
      const v = buf.subarray(0, s.length);
      await longer.read(pos, v);
      if (!isZero(v)) {
        const at = pos + sectorFloor(v.findIndex((x) => x !== 0));
        return { identical: false, mismatchOffset: at, messages: [...messages, `Content mismatch at offset ${at}!`] };
      }
    }
    pos += s.length;
    req.onProgress?.(pos, total);
  }
  return { identical: true, messages: [...messages, 'Images are identical.'] };
}

/**
 * qemu-img compare -s compares the whole block status of both images at `pos`: the kind (data, zero,
 * unallocated) and whether the run reaches the end of the image (its EOF flag), each asked for the rest of the image.
 */
async function sameBlockStatus(a: BlockDevice, b: BlockDevice, pos: number, end: number): Promise<boolean> {
  const fa = await deepStatus(a, pos, end - pos);
  const fb = await deepStatus(b, pos, end - pos);
  return fa.kind === fb.kind && (pos + fa.length === a.size) === (pos + fb.length === b.size);
}

/** qemu-img compares in 512-byte sectors from the start of each run and names the first differing sector. */
function sectorFloor(n: number): number {
  return Math.floor(n / 512) * 512;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
