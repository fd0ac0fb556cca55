/**
 * What the sparsify suites share: random files, a byte comparison of two raw disks in pieces (equal outside the
 * free ranges the file system's own tool lists, zero inside them in the compacted one), the bytes a file takes on
 * the host, and `qemu-img measure`'s required size.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { must, seededRandom } from '../helpers';

export const MiB = 1 << 20;

/** A file of `bytes` pseudo-random bytes (seeded: never compresses, never zero). */
export function randomFile(path: string, bytes: number, seed: number): Buffer {
  const rnd = seededRandom(seed);
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) buf.writeUInt32LE((rnd() * 0x100000000) >>> 0, i);
  writeFileSync(path, buf);
  return buf;
}

/** Bytes the file takes on the host. */
export function allocated(path: string): number {
  return statSync(path).blocks * 512;
}

export function measureRequired(image: string, format: string): number {
  return JSON.parse(must('qemu-img', ['measure', '--output=json', '-f', format, '-O', format, image]).stdout).required;
}

/**
 * Compares raw disk `after` with `before`, piece by piece: inside `free` (disk offsets) `after` must read as
 * zeros (or, with `freeMayKeep`, as zeros or as before: in place, partial clusters keep their bytes); outside
 * it, the two must be equal. Returns the free bytes that held non-zero data before (what was given back).
 */
export function assertKeptAndZeroed(before: string, after: string, free: Array<{ start: number; length: number }>, freeMayKeep = false): number {
  const size = statSync(before).size;
  assert.equal(statSync(after).size, size, 'the disk keeps its size');
  const fa = openSync(before, 'r');
  const fb = openSync(after, 'r');
  const PIECE = 4 * MiB;
  const a = Buffer.alloc(PIECE);
  const b = Buffer.alloc(PIECE);
  const sorted = [...free].sort((x, y) => x.start - y.start);
  let ri = 0;
  let heldData = 0;
  const zeros = Buffer.alloc(4096);
  try {
    for (let pos = 0; pos < size; pos += PIECE) {
      const n = Math.min(PIECE, size - pos);
      readSync(fa, a, 0, n, pos);
      readSync(fb, b, 0, n, pos);
      // Walk this piece as alternating kept / free runs.
      for (let off = 0; off < n; ) {
        const at = pos + off;
        while (ri < sorted.length && sorted[ri].start + sorted[ri].length <= at) ri++;
        const r = sorted[ri];
        const inFree = r !== undefined && r.start <= at;
        const runEnd = Math.min(n, (inFree ? r.start + r.length : r ? r.start : size) - pos);
        const sa = a.subarray(off, runEnd);
        const sb = b.subarray(off, runEnd);
        if (inFree) {
          for (let i = 0; i < sb.length; i += 4096) {
            const ea = sa.subarray(i, i + 4096);
            const eb = sb.subarray(i, i + 4096);
            const zero = eb.equals(zeros.subarray(0, eb.length));
            if (!ea.equals(zeros.subarray(0, ea.length))) heldData += ea.length;
            assert.ok(zero || (freeMayKeep && eb.equals(ea)), `free bytes at ${at + i} read as zeros${freeMayKeep ? ' or as before' : ''}`);
          }
        } else if (!sa.equals(sb)) {
          let i = 0;
          while (sa[i] === sb[i]) i++;
          assert.fail(`the byte at ${at + i} (outside every free range) changed`);
        }
        off = runEnd;
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return heldData;
}
