/**
 * freeFromBitmap walks whole bytes where it can (all used, all free): its ranges must be those a walk of one bit
 * at a time finds, on bitmaps of long runs (as a file system's), of single bits, and of lengths that end inside
 * a byte. The interop suites prove the free maps against e2fsck and debugfs; this pins the byte skipping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freeFromBitmap } from '../../src-main/inside/fs/reader';
import type { ByteRange } from '../../src-main/inside/types';
import { seededRandom } from '../helpers';

function bitByBit(bitmap: Uint8Array, bits: number, firstUnit: number, unit: number, base: number): ByteRange[] {
  const out: ByteRange[] = [];
  let start = -1;
  for (let i = 0; i <= bits; i++) {
    const free = i < bits && !(bitmap[i >> 3] & (1 << (i & 7)));
    if (free && start < 0) start = i;
    if (!free && start >= 0) {
      out.push({ start: base + (firstUnit + start) * unit, length: (i - start) * unit });
      start = -1;
    }
  }
  return out;
}

test('free ranges from a bitmap equal a walk of one bit at a time', () => {
  const random = seededRandom(23);
  for (let round = 0; round < 300; round++) {
    const bytes = 1 + Math.floor(random() * 64);
    const bitmap = new Uint8Array(bytes);
    // Runs of used and free bits of random lengths, some bytes left noisy.
    let pos = 0;
    while (pos < bytes * 8) {
      const run = 1 + Math.floor(random() * (random() < 0.5 ? 4 : 40));
      const used = random() < 0.5;
      for (let k = pos; k < Math.min(bytes * 8, pos + run); k++) if (used || random() < 0.02) bitmap[k >> 3] |= 1 << (k & 7);
      pos += run;
    }
    const bits = Math.max(1, bytes * 8 - Math.floor(random() * 8));
    const got: ByteRange[] = [];
    freeFromBitmap(bitmap, bits, 7, 4096, 512, got);
    assert.deepEqual(got, bitByBit(bitmap, bits, 7, 4096, 512), `round ${round}`);
  }
  // All free and all used, bits ending inside the last byte, the bits past `bits` set or not.
  for (const fill of [0x00, 0xff, 0x0f, 0xf0]) {
    for (const bits of [1, 7, 8, 9, 63, 64]) {
      const bitmap = new Uint8Array(8).fill(fill);
      const got: ByteRange[] = [];
      freeFromBitmap(bitmap, bits, 0, 1, 0, got);
      assert.deepEqual(got, bitByBit(bitmap, bits, 0, 1, 0), `fill ${fill} bits ${bits}`);
    }
  }
});
