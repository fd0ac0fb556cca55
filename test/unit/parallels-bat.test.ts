/**
 * Parallels pure pieces: the header qemu-img create writes (numbers from qemu's parallels_co_create, checked
 * byte for byte against qemu-img in test/interop/parallels-write.test.ts), the end of the data area as
 * qemu's open computes it, and BAT decoding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import { dataEndSectors } from '../../src-main/formats/parallels/device';
import { uint32TableFromLittleEndian } from '../../src-main/block/table-scan';
import { createHeader, serializeBatEntry } from '../../src-main/formats/parallels/layout';

test('parallels createHeader: BAT entries, data offset on a cluster boundary after the BAT, geometry', () => {
  const h = createHeader(64 << 20, 4096);
  assert.equal(h.batEntries, 16384);
  assert.equal(h.dataOff, 17 * 8); // 64 + 16384 * 4 bytes need 17 clusters of 4 KiB
  assert.equal(h.cylinders, (64 << 20) / 512 / 16 / 32);
  assert.equal(h.extended, true);
  const odd = createHeader(1000, 1000); // both rounded up to whole sectors
  assert.equal(odd.nbSectors, 2);
  assert.equal(odd.tracks, 2);
  assert.equal(odd.batEntries, 1);
  assert.equal(odd.dataOff, 2);
});

test('parallels createHeader: refuses what qemu-img refuses, in its words', () => {
  assert.throws(() => createHeader(1 << 20, 2 ** 31), (e: unknown) => e instanceof DiskError && /Cluster size is too large/.test(e.message));
  assert.throws(() => createHeader(2 ** 41, 512), (e: unknown) => e instanceof DiskError && /Image size is too large for this cluster size/.test(e.message));
});

test('parallels dataEndSectors: the data offset, or past the furthest cluster; old images count sectors', () => {
  const h = createHeader(4 << 20, 65536); // 64 entries, data at 128 sectors
  assert.equal(dataEndSectors(h, new Uint32Array(64)), 128);
  const bat = new Uint32Array(64);
  bat[3] = 5;
  bat[9] = 2;
  assert.equal(dataEndSectors(h, bat), 6 * 128);
  const old = { ...h, extended: false };
  const sectors = new Uint32Array(64);
  sectors[0] = 1000;
  assert.equal(dataEndSectors(old, sectors), 1000 + 128);
});

test('parallels BAT entries are little-endian 32-bit', () => {
  const buf = new Uint8Array(8);
  buf.set(serializeBatEntry(0x01020304), 0);
  buf.set(serializeBatEntry(0xffffffff), 4);
  assert.deepEqual([...buf.subarray(0, 4)], [4, 3, 2, 1]);
  // Read back as open reads it (readImage): the bytes straight into a table, then the one conversion.
  assert.deepEqual([...uint32TableFromLittleEndian(new Uint32Array(buf.slice().buffer))], [0x01020304, 0xffffffff]);
  assert.deepEqual([...uint32TableFromLittleEndian(new Uint32Array(buf.slice().buffer), false)], [0x01020304, 0xffffffff]);
});
