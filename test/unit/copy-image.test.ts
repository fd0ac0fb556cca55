/**
 * The working copy Check & Repair and Compact make (services/copy-swap.ts copyImage) is the image byte for byte,
 * whatever its length: a file whose length is no multiple of 4 KiB kept its tail only by luck before (a dynamic
 * VHD lost its footer, and the repair then called its own copy "not a VHD image").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { ImageFile } from '../../src-main/block/file';
import { copyImage } from '../../src-main/services/copy-swap';
import { scratch } from '../helpers';

const KiB = 1024;
const MiB = 1024 * KiB;

function fileWith(path: string, size: number, dataAt: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(size);
  for (const [at, len] of dataAt) for (let i = 0; i < len && at + i < size; i++) b[at + i] = ((at + i) * 7 + 1) & 0xff || 1;
  writeFileSync(path, b);
  return b;
}

const shapes: Array<{ name: string; size: number; data: Array<[number, number]> }> = [
  { name: 'a 3.5 KiB file with data at both ends (a small VHD)', size: 3584, data: [[0, 512], [3072, 512]] },
  { name: 'data only in the last 512 bytes of an odd length', size: 2 * MiB + 1536, data: [[2 * MiB + 1024, 512]] },
  { name: 'data across a 1 MiB piece boundary and a zero gap', size: 3 * MiB + 100, data: [[MiB - 10, 20], [2 * MiB + 4096, 8192], [3 * MiB, 100]] },
  { name: 'all zeros', size: 5 * KiB + 1, data: [] },
  { name: 'an exact multiple of 4 KiB ending in data', size: 64 * KiB, data: [[60 * KiB, 4 * KiB]] },
];

for (const shape of shapes) {
  test(`the working copy equals the image: ${shape.name}`, async (t) => {
    const s = scratch();
    t.after(s.cleanup);
    const want = fileWith(s.path('image'), shape.size, shape.data);
    writeFileSync(s.path('copy.tmp'), '');
    const holder = await ImageFile.open(s.path('copy.tmp'), true);
    const held = await copyImage(s.path('image'), s.path('copy.tmp'), holder, undefined, () => {});
    await held.close();
    const got = readFileSync(s.path('copy.tmp'));
    assert.equal(got.length, want.length);
    assert.ok(got.equals(want), 'byte for byte');
  });
}
