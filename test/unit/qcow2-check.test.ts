/**
 * The qcow2 check's own logic on a tiny image built byte by byte (512-byte clusters): the in-memory refcount
 * array, a clean verdict, a leak with a wrong OFLAG_COPIED and their repair, and refusals as DiskErrors.
 * The interop suites hold the same code to qemu-img on real images.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkQcow2 } from '../../src-main/formats/qcow2/check/check';
import { RefcountArray } from '../../src-main/formats/qcow2/check/imrt';
import { DiskError } from '../../src-main/block/errors';
import { scratch } from '../helpers';

const s = scratch('dw-qcow2-check-unit-');
after(() => s.cleanup());

const CS = 512;
const COPIED = 1n << 63n;

/**
 * Cluster 0 header (v3, 1 MiB, 16-bit refcounts), 1 refcount table, 2 refcount block, 3 L1 table, 4 L2 table,
 * 5 a data cluster mapped at guest offset 0. Every cluster has refcount 1.
 */
function tinyImage(): Buffer {
  const img = Buffer.alloc(6 * CS);
  img.writeUInt32BE(0x514649fb, 0);
  img.writeUInt32BE(3, 4);
  img.writeUInt32BE(9, 20); // cluster bits
  img.writeBigUInt64BE(1n << 20n, 24); // virtual size
  img.writeUInt32BE(32, 36); // L1 entries: 64 L2 entries of 512 B each per table
  img.writeBigUInt64BE(BigInt(3 * CS), 40);
  img.writeBigUInt64BE(BigInt(1 * CS), 48);
  img.writeUInt32BE(1, 56);
  img.writeUInt32BE(4, 96); // refcount order
  img.writeUInt32BE(104, 100); // header length
  img.writeBigUInt64BE(BigInt(2 * CS), CS); // reftable[0]
  for (let c = 0; c < 6; c++) img.writeUInt16BE(1, 2 * CS + 2 * c);
  img.writeBigUInt64BE(COPIED | BigInt(4 * CS), 3 * CS);
  img.writeBigUInt64BE(COPIED | BigInt(5 * CS), 4 * CS);
  img.fill(0x5a, 5 * CS);
  return img;
}

function write(name: string, img: Buffer): string {
  const p = join(s.dir, name);
  writeFileSync(p, img);
  return p;
}

test('RefcountArray saturates at the image refcount width and grows on demand', () => {
  const one = new RefcountArray(1, 4);
  assert.equal(one.max, 1);
  const wide = new RefcountArray(64, 4);
  assert.equal(wide.max, 2 ** 32 - 1);
  const a = new RefcountArray(16, 4);
  assert.equal(a.max, 65535);
  a.set(3, 7);
  assert.equal(a.get(3), 7);
  assert.equal(a.get(100), 0);
  a.set(9, 2);
  assert.equal(a.size, 10);
  assert.equal(a.get(3), 7);
  a.clear();
  assert.equal(a.get(9), 0);
});

test('RefcountArray refuses absurd cluster counts before allocating', () => {
  assert.throws(() => new RefcountArray(16, 2 ** 40), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED');
  assert.throws(() => new RefcountArray(64, 2 ** 29), (e: unknown) => e instanceof DiskError);
});

test('a consistent image is clean, with qemu-img\'s counts', async () => {
  const r = await checkQcow2(write('clean.qcow2', tinyImage()), 'none');
  assert.equal(r.corruptions, 0);
  assert.equal(r.leaks, 0);
  assert.equal(r['check-errors'], 0);
  assert.equal(r['total-clusters'], 2048);
  assert.equal(r['allocated-clusters'], 1);
  assert.equal(r['image-end-offset'], 6 * CS);
  assert.deepEqual(r.problems, []);
});

test('a refcount of 2 on a data cluster is a leak and a wrong OFLAG_COPIED; -r leaks fixes both', async () => {
  const img = tinyImage();
  img.writeUInt16BE(2, 2 * CS + 2 * 5);
  const path = write('leak.qcow2', img);
  const r = await checkQcow2(path, 'none');
  assert.equal(r.leaks, 1);
  assert.equal(r.corruptions, 1);
  assert.deepEqual(
    r.problems.map((p) => p.message),
    ['Leaked cluster 5 refcount=2 reference=1', 'ERROR OFLAG_COPIED data cluster: l2_entry=8000000000000a00 refcount=2'],
  );
  assert.deepEqual(readFileSync(path), img, 'a check without repair writes nothing');
  const fixed = await checkQcow2(path, 'leaks');
  assert.equal(fixed['leaks-fixed'], 1);
  assert.equal(fixed.leaks, 0);
  assert.equal(fixed.corruptions, 0);
  assert.equal(readFileSync(path).readUInt16BE(2 * CS + 2 * 5), 1);
  assert.equal((await checkQcow2(path, 'none')).problems.length, 0);
});

test('a missing refcount needs a rebuild: refused by -r leaks, done by -r all', async () => {
  const img = tinyImage();
  img.writeUInt16BE(0, 2 * CS + 2 * 5);
  const path = write('rebuild.qcow2', img);
  const leaks = await checkQcow2(path, 'leaks');
  assert.equal(leaks['check-errors'], 1);
  assert.ok(leaks.problems.some((p) => p.message === 'ERROR need to rebuild refcount structures'));
  const all = await checkQcow2(path, 'all');
  assert.equal(all['check-errors'], 0);
  assert.equal(all.corruptions, 0);
  assert.equal(all['corruptions-fixed'], 1);
  const after = readFileSync(path);
  assert.notEqual(after.readBigUInt64BE(48), BigInt(CS), 'a new refcount table');
  assert.ok(after.subarray(5 * CS, 6 * CS).every((b) => b === 0x5a), 'data untouched');
  const again = await checkQcow2(path, 'none');
  assert.equal(again.corruptions + again.leaks + again['check-errors'], 0);
});

test('the dirty bit is cleared by a repair that leaves no errors', async () => {
  const img = tinyImage();
  img.writeBigUInt64BE(1n, 72); // dirty
  img.writeBigUInt64BE(1n, 80); // lazy refcounts
  const path = write('dirty.qcow2', img);
  assert.equal((await checkQcow2(path, 'none')).corruptions, 0);
  assert.equal(readFileSync(path).readBigUInt64BE(72), 1n, 'read-only check leaves the bit');
  await checkQcow2(path, 'leaks');
  assert.equal(readFileSync(path).readBigUInt64BE(72), 0n);
});

test('damaged headers are DiskErrors, never raw exceptions', async () => {
  const cases: Array<[string, (b: Buffer) => void]> = [
    ['no refcount table', (b) => b.writeUInt32BE(0, 56)],
    ['huge L1 table', (b) => b.writeUInt32BE(0xfffffff, 36)],
    ['huge refcount table', (b) => b.writeUInt32BE(0xffffff, 56)],
    ['offset beyond 2^53', (b) => b.writeBigUInt64BE(0x7f00000000000000n, 40)],
    ['cluster bits 40', (b) => b.writeUInt32BE(40, 20)],
    ['truncated', () => undefined],
  ];
  for (const [name, damage] of cases) {
    let img = tinyImage();
    damage(img);
    if (name === 'truncated') img = img.subarray(0, 60);
    const path = write(`bad-${cases.findIndex((c) => c[0] === name)}.qcow2`, img);
    await assert.rejects(checkQcow2(path, 'none'), (e: unknown) => e instanceof DiskError && e.message.includes(path), name);
  }
});

test('an aborted check stops with ECANCELLED', async () => {
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(checkQcow2(write('cancel.qcow2', tinyImage()), 'none', { signal: ac.signal }), (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED');
});
