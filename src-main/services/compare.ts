import { deepStatus } from '../block/chain';
import { throwIfAborted } from '../block/errors';
import { openImage } from '../block/registry';
import { isZero } from '../block/sizes';
import type { BackingPolicy, BlockDevice } from '../block/types';

export interface CompareRequest {
  a: string;
  b: string;
  formatA?: string;
  formatB?: string;
  /** qemu-img compare -s: a size difference or a different allocation state is a mismatch too. */
  strict?: boolean;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface CompareResult {
  identical: boolean;
  /** The first guest offset where the images differ. */
  mismatchOffset?: number;
  /** Lines qemu-img would print (warnings, then the verdict). */
  messages: string[];
}

const CHUNK = 1024 * 1024;

/** Compares the guest-visible content of two images, reading only where either holds data. */
export async function compareImages(req: CompareRequest): Promise<CompareResult> {
  const policy = req.backingPolicy ?? 'anywhere';
  const a = await openImage(req.a, { format: req.formatA, readOnly: true, backingPolicy: policy });
  try {
    const b = await openImage(req.b, { format: req.formatB, readOnly: true, backingPolicy: policy });
    try {
      return await compareDevices(a, b, req);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

async function compareDevices(a: BlockDevice, b: BlockDevice, req: CompareRequest): Promise<CompareResult> {
  const messages: string[] = [];
  if (a.size !== b.size && req.strict) return { identical: false, messages: ['Strict mode: Image size mismatch!'] };
  const common = Math.min(a.size, b.size);
  const total = Math.max(a.size, b.size);
  const bufA = new Uint8Array(CHUNK);
  const bufB = new Uint8Array(CHUNK);
  let pos = 0;
  while (pos < common) {
    throwIfAborted(req.signal);
    const len0 = Math.min(CHUNK, common - pos);
    const sa = await deepStatus(a, pos, len0);
    const sb = await deepStatus(b, pos, Math.min(len0, sa.length));
    const len = Math.min(sa.length, sb.length);
    const zeroA = sa.kind !== 'data';
    const zeroB = sb.kind !== 'data';
    if (req.strict && !(await sameBlockStatus(a, b, pos, common))) {
      return { identical: false, mismatchOffset: pos, messages: [...messages, `Strict mode: Offset ${pos} block status mismatch!`] };
    }
    if (!(zeroA && zeroB)) {
      const va = bufA.subarray(0, len);
      const vb = bufB.subarray(0, len);
      if (zeroA) va.fill(0);
      else await a.read(pos, va);
      if (zeroB) vb.fill(0);
      else await b.read(pos, vb);
      if (Buffer.compare(va, vb) !== 0) {
        const at = pos + sectorFloor(firstDifference(va, vb));
        return { identical: false, mismatchOffset: at, messages: [...messages, `Content mismatch at offset ${at}!`] };
      }
    }
    pos += len;
    req.onProgress?.(pos, total);
  }
  // qemu-img warns about the sizes only once the common part matched, then checks the rest reads as zeros.
  if (a.size !== b.size) messages.push('Warning: Image size mismatch!');
  // Past the shorter image, the longer one must read as zeros.
  const longer = a.size > b.size ? a : b;
  while (pos < longer.size) {
    throwIfAborted(req.signal);
    const s = await deepStatus(longer, pos, Math.min(CHUNK, longer.size - pos));
    if (s.kind === 'data') {
      const v = bufA.subarray(0, s.length);
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
