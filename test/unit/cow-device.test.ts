/**
 * The COW device's own rules, without the UML tools: the order of a write's I/O (data, sync, then bitmap),
 * what a crash between them leaves, status() runs against a bit-by-bit reading of random bitmaps, and the old
 * v1/v2 rounding that leaves the last sectors without bits.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { scratch, seededRandom } from '../helpers';
import { DiskError } from '../../src-main/block/errors';
import { ImageFile } from '../../src-main/block/file';
import type { BlockDevice, FormatName } from '../../src-main/block/types';
import { openCow } from '../../src-main/formats/cow/device';
import { cowSizes, serializeHeader, type CowLayout } from '../../src-main/formats/cow/layout';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-cow-unit-');
after(() => s.cleanup());

const openBacking = (p: string, f: FormatName | undefined, ro: boolean): Promise<BlockDevice> => openImage(p, { format: f, readOnly: ro, backingPolicy: 'none' });

/** A COW file (a backing name that is never followed: v3 cannot have an empty one, see parseHeader) of `size` bytes in `layout`, with the given bitmap bytes and data sector i filled with i & 0xff. */
function build(name: string, layout: CowLayout, size: number, bitmap?: Uint8Array): { path: string; dataOffset: number; bitmapOffset: number } {
  const alignment = layout === 'v3' ? 4096 : 512;
  const hdr = serializeHeader({ layout, littleEndian: false, backingFile: '/nonexistent/base.img', mtime: 0, size, sectorSize: 512, alignment, cowFormat: 0 });
  const { bitmapOffset, dataOffset } = cowSizes(layout, size, 512, alignment);
  const file = Buffer.alloc(dataOffset + size);
  file.set(hdr, 0);
  if (bitmap) file.set(bitmap, bitmapOffset);
  for (let i = 0; i * 512 < size; i++) file.fill(i & 0xff, dataOffset + i * 512, Math.min(dataOffset + size, dataOffset + (i + 1) * 512));
  const path = s.path(name);
  writeFileSync(path, file);
  return { path, dataOffset, bitmapOffset };
}

test('status() runs follow the bitmap bit by bit (random bitmaps, runs across bytes and chunks)', async () => {
  const rnd = seededRandom(1);
  const size = 40 * 1024 * 1024; // 10 KiB of bitmap: more than one 4 KiB chunk
  const sectors = size / 512;
  const bits = new Uint8Array(sectors / 8);
  let on = false;
  for (let i = 0; i < sectors; i++) {
    if (rnd() < (i < 1000 ? 0.3 : 0.002)) on = !on;
    if (on) bits[i >> 3] |= 1 << (i & 7);
  }
  const { path, dataOffset } = build('runs.cow', 'v3', size, bits);
  const dev = await openCow(path, { readOnly: true, backingPolicy: 'none', openBacking });
  let pos = 0;
  while (pos < size) {
    const e = await dev.status(pos, size - pos);
    const set = (bits[pos / 512 >> 3] >> ((pos / 512) & 7)) & 1;
    let end = pos / 512;
    while (end < sectors && ((bits[end >> 3] >> (end & 7)) & 1) === set) end++;
    assert.equal(e.kind, set ? 'data' : 'unallocated', `at ${pos}`);
    assert.equal(e.length, end * 512 - pos, `run at ${pos}`);
    if (set) assert.equal(e.hostOffset, dataOffset + pos);
    pos += e.length;
  }
  // Reads: set sectors come from the data area, the others are zeros (no backing file).
  const buf = new Uint8Array(512);
  for (const i of [0, 1, 77, 999, 5000, sectors - 1]) {
    await dev.read(i * 512, buf);
    const set = (bits[i >> 3] >> (i & 7)) & 1;
    assert.ok(buf.every((b) => b === (set ? i & 0xff : 0)), `sector ${i}`);
  }
  await dev.close();
});

test('a write to new sectors puts the data down, syncs, then sets the bits; rewriting them touches only the data', async () => {
  const { path, dataOffset, bitmapOffset } = build('order.cow', 'v3', 1 << 20);
  const dev = await openCow(path, { readOnly: false, backingPolicy: 'none', openBacking });
  const log: string[] = [];
  const origWrite = ImageFile.prototype.write;
  const origSync = ImageFile.prototype.sync;
  ImageFile.prototype.write = async function (this: ImageFile, pos: number, data: Uint8Array) {
    log.push(pos >= dataOffset ? `data@${pos - dataOffset}+${data.length}` : `bitmap@${pos - bitmapOffset}+${data.length}`);
    return origWrite.call(this, pos, data);
  };
  ImageFile.prototype.sync = async function (this: ImageFile) {
    log.push('sync');
    return origSync.call(this);
  };
  try {
    await dev.write(1000, new Uint8Array(20).fill(9)); // sector 1, partial: the whole sector is written
    assert.deepEqual(log, ['data@512+512', 'sync', 'bitmap@0+1']);
    log.length = 0;
    await dev.write(1024, new Uint8Array(512).fill(8)); // sector 2 new, after sector 1
    await dev.write(600, new Uint8Array(10).fill(7)); // sector 1 again: allocated
    assert.deepEqual(log, ['data@1024+512', 'sync', 'bitmap@0+1', 'data@512+512']);
  } finally {
    ImageFile.prototype.write = origWrite;
    ImageFile.prototype.sync = origSync;
  }
  const b = new Uint8Array(1536);
  await dev.read(0, b);
  assert.ok(b.subarray(0, 512).every((x) => x === 0));
  assert.ok(b.subarray(600, 610).every((x) => x === 7) && b.subarray(1000, 1020).every((x) => x === 9) && b.subarray(512, 600).every((x) => x === 0) && b.subarray(1020, 1024).every((x) => x === 0));
  assert.ok(b.subarray(1024).every((x) => x === 8));
  await dev.close();
  assert.equal(readFileSync(path)[bitmapOffset], 0b110);
});

test('a crash after the data and before the bitmap leaves the old sector', async () => {
  const { path } = build('crash.cow', 'v3', 1 << 20);
  const dev = await openCow(path, { readOnly: false, backingPolicy: 'none', openBacking });
  const origSync = ImageFile.prototype.sync;
  ImageFile.prototype.sync = async () => {
    throw new DiskError('EIO', 'power cut');
  };
  try {
    await assert.rejects(dev.write(4096, new Uint8Array(512).fill(0xee)), /power cut/);
  } finally {
    ImageFile.prototype.sync = origSync;
  }
  await dev.close().catch(() => undefined);
  const again = await openCow(path, { readOnly: true, backingPolicy: 'none', openBacking });
  const b = new Uint8Array(512);
  await again.read(4096, b);
  assert.ok(b.every((x) => x === 0), 'the sector still reads as before (its bit is clear)');
  assert.equal((await again.status(4096, 512)).kind, 'unallocated');
  await again.close();
});

test('version 2: sectors past the kernel\'s rounded-down bitmap read through and refuse writes plainly', async () => {
  const size = 8 * 512 * 10 + 3 * 512; // 83 sectors, 10 bitmap bytes: the last 3 sectors have no bit
  const { path } = build('v2.cow', 'v2-time32', size, new Uint8Array(10).fill(0xff));
  const dev = await openCow(path, { readOnly: false, backingPolicy: 'none', openBacking });
  assert.deepEqual(await dev.status(0, size), { kind: 'data', length: 80 * 512, hostOffset: cowSizes('v2-time32', size, 512, 512).dataOffset });
  assert.deepEqual(await dev.status(80 * 512, 3 * 512), { kind: 'unallocated', length: 3 * 512 });
  await dev.write(79 * 512, new Uint8Array(512).fill(1));
  await assert.rejects(dev.write(80 * 512, new Uint8Array(10)), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED' && /no bitmap bits/.test(e.message));
  await dev.close();
});
