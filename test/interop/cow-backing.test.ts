/**
 * A COW file's backing file against the UML tools: a changed backing file (mtime, size) is refused as uml_moo
 * refuses it, and after acceptBackingChange the header is the one uml_mkcow writes for the backing file as it
 * is now (and uml_moo takes the pair again); naming the actual backing file works as `uml_moo -b`; the
 * in-place merge leaves the backing file byte for byte as `uml_moo -d` does; damaged headers fail plainly.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { dw, must, run, scratch, seededRandom } from '../helpers';
import { cowPair } from './cow-common';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';
import type { BlockDevice, FormatName } from '../../src-main/block/types';
import { openCow } from '../../src-main/formats/cow/device';
import { acceptBackingChange, mergeIntoBacking } from '../../src-main/formats/cow/driver';

const s = scratch('dw-cow-back-');
after(() => s.cleanup());

const openBacking = (p: string, f: FormatName | undefined, ro: boolean): Promise<BlockDevice> => openImage(p, { format: f, readOnly: ro, backingPolicy: 'anywhere' });
const open = (p: string, extra: { readOnly?: boolean; acceptChangedBacking?: boolean; backingOverride?: string } = {}) =>
  openCow(p, { readOnly: extra.readOnly ?? true, backingPolicy: 'anywhere', openBacking, ...extra });

async function readAll(dev: BlockDevice): Promise<Buffer> {
  const b = Buffer.alloc(dev.size);
  await dev.read(0, b);
  await dev.close();
  return b;
}

/** Seeded writes through our driver: data, zeros over data, zeros over zeros, the last (partial) sector. */
async function scribble(cow: string, seed: number): Promise<void> {
  const rnd = seededRandom(seed);
  const dev = await open(cow, { readOnly: false });
  for (let i = 0; i < 30; i++) {
    const len = i === 0 ? 700 : 1 + Math.floor(rnd() * 5000);
    const off = i === 0 ? dev.size - len : Math.floor(rnd() * (dev.size - len));
    if (rnd() < 0.4) await dev.writeZeroes(off, len);
    else await dev.write(off, Buffer.alloc(len, (rnd() * 255 + 1) | 0));
  }
  await dev.close();
}

test('a backing file whose mtime changed is refused as uml_moo refuses it; acceptBackingChange makes the header uml_mkcow\'s again', async () => {
  const { back, cow } = cowPair(s.path('mt'), 1 << 20, 1);
  utimesSync(back, 1750000000, 1750000000);
  const r = dw(['convert', '-O', 'raw', cow, s.path('mt.raw')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /changed since the COW file was made .*modified at 2025-06-15T15:06:40Z, not at the recorded 2023-11-14T22:13:20Z/);
  assert.notEqual(run('uml_moo', [cow, s.path('mt.moo')]).status, 0, 'uml_moo refuses the pair too');
  await assert.rejects(open(cow), (e: unknown) => e instanceof DiskError && /changed since/.test(e.message));
  // Accepted for one open: it reads through to the backing file as it is.
  assert.ok((await readAll(await open(cow, { acceptChangedBacking: true }))).equals(readFileSync(back)));
  const res = await acceptBackingChange(cow);
  assert.deepEqual(res, { before: { size: 1 << 20, mtime: 1700000000 }, after: { size: 1 << 20, mtime: 1750000000 } });
  must('uml_mkcow', ['-f', s.path('mt-fresh.cow'), back]);
  assert.ok(readFileSync(cow).subarray(0, 8192).equals(readFileSync(s.path('mt-fresh.cow')).subarray(0, 8192)), 'header = uml_mkcow\'s for the backing file now');
  must('uml_moo', [cow, s.path('mt.moo')]);
  assert.ok(readFileSync(s.path('mt.moo')).equals(readFileSync(back)));
});

test('a backing file that grew: refused (size named), accepted when the data does not move, as uml_mkcow would record it', async () => {
  const { back, cow } = cowPair(s.path('sz'), 1 << 20, 2);
  appendFileSync(back, Buffer.alloc(4096, 7));
  utimesSync(back, 1700000000, 1700000000);
  await assert.rejects(open(cow), (e: unknown) => e instanceof DiskError && /size is 1052672 bytes, not the recorded 1048576/.test(e.message));
  await acceptBackingChange(cow);
  must('uml_mkcow', ['-f', s.path('sz-fresh.cow'), back]);
  assert.ok(readFileSync(cow).subarray(0, 12288).equals(readFileSync(s.path('sz-fresh.cow')).subarray(0, 12288)));
  const ours = await readAll(await open(cow));
  must('uml_moo', [cow, s.path('sz.moo')]);
  assert.ok(ours.equals(readFileSync(s.path('sz.moo'))));
  assert.equal(ours.length, 1052672);
  // A size that would move the data area is refused and changes nothing.
  const before = readFileSync(cow);
  appendFileSync(back, Buffer.alloc(16 << 20));
  await assert.rejects(acceptBackingChange(cow), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED' && /move/.test(e.message));
  assert.ok(readFileSync(cow).equals(before));
});

test('the actual backing file named instead of the recorded one (a COW file made in a chroot), as uml_moo -b', async () => {
  const { back, cow } = cowPair(s.path('ch'), 1 << 20, 3);
  await scribble(cow, 30);
  const moved = s.path('ch-elsewhere.img');
  renameSync(back, moved); // keeps the mtime
  await assert.rejects(open(cow), (e: unknown) => e instanceof DiskError && e.code === 'ENOENT' && /does not exist/.test(e.message));
  must('uml_moo', ['-b', moved, cow, s.path('ch.moo')]);
  const ours = await readAll(await open(cow, { backingOverride: moved }));
  assert.ok(ours.equals(readFileSync(s.path('ch.moo'))));
});

for (const size of [1 << 20, 1000000]) {
  test(`merge in place (${size} bytes) leaves the backing file byte for byte as uml_moo -d does`, async () => {
    const a = cowPair(s.path(`ma${size}`), size, 4);
    const b = cowPair(s.path(`mb${size}`), size, 4);
    await scribble(a.cow, 40);
    await scribble(b.cow, 40);
    assert.ok(readFileSync(a.cow).subarray(12288).equals(readFileSync(b.cow).subarray(12288)), 'the two COW files hold the same data');
    const expected = await readAll(await open(a.cow));
    must('uml_moo', ['-d', a.cow]);
    const res = await mergeIntoBacking(b.cow);
    assert.equal(res.backingPath, b.back);
    assert.ok(res.sectorsCopied > 0);
    const mooBack = readFileSync(a.back);
    assert.ok(readFileSync(b.back).equals(mooBack), 'backing files equal after uml_moo -d and ours');
    // uml_moo merges whole sectors: the merged file is our read, except a partial last sector.
    const whole = Math.floor(size / 512) * 512;
    assert.ok(mooBack.subarray(0, whole).equals(expected.subarray(0, whole)));
    // Afterwards the pair no longer fits (the backing file's mtime changed), for uml_moo and for us.
    await assert.rejects(open(b.cow), (e: unknown) => e instanceof DiskError && /changed since/.test(e.message));
  });
}

test('merge in place into the actual backing file named instead (uml_moo -b X -d)', async () => {
  const a = cowPair(s.path('mca'), 1 << 20, 5);
  const b = cowPair(s.path('mcb'), 1 << 20, 5);
  await scribble(a.cow, 50);
  await scribble(b.cow, 50);
  renameSync(a.back, s.path('mca-moved.img'));
  renameSync(b.back, s.path('mcb-moved.img'));
  must('uml_moo', ['-d', '-b', s.path('mca-moved.img'), a.cow]);
  await mergeIntoBacking(b.cow, { backingOverride: s.path('mcb-moved.img') });
  assert.ok(readFileSync(s.path('mcb-moved.img')).equals(readFileSync(s.path('mca-moved.img'))));
});

test('damaged headers: a huge size, an absurd alignment, an unterminated name give one plain line, never a crash', async () => {
  const { cow } = cowPair(s.path('bad'), 65536, 6);
  const good = readFileSync(cow);
  const edits: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['huge size', (b) => b.writeBigUInt64BE(1n << 50n, 12), /bitmap .* lies past the end of the file/],
    ['size past 2^53', (b) => b.writeBigUInt64BE(0xffffffffffffffffn, 12), /impossibly large/],
    ['alignment 16 MiB', (b) => b.writeUInt32BE(1 << 24, 24), /lies past the end of the file/],
    ['alignment 2^31', (b) => b.writeUInt32BE(0x80000000, 24), /alignment/],
    ['alignment 0', (b) => b.writeUInt32BE(0, 24), /alignment/],
    ['unterminated name', (b) => b.fill(0x41, 32, 32 + 4096), /not terminated/],
    ['truncated file', () => undefined, /truncated|past the end/],
  ];
  for (const [label, edit, re] of edits) {
    const b = label === 'truncated file' ? Buffer.from(good.subarray(0, 3000)) : Buffer.from(good);
    edit(b);
    const p = s.path('bad.cow');
    writeFileSync(p, b);
    for (const args of [['info', p], ['convert', '-O', 'raw', p, s.path('bad.raw')]]) {
      const r = dw(args);
      assert.equal(r.status, 1, `${label}: ${args[0]}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${label}: ${r.stderr}`);
      assert.match(r.stderr, re, `${label}: ${r.stderr}`);
    }
    await assert.rejects(open(p), (e: unknown) => e instanceof DiskError && re.test(e.message), label);
    await assert.rejects(mergeIntoBacking(p), (e: unknown) => e instanceof DiskError, label);
  }
});

test('check: a clean uml_mkcow file passes; stray bits past the last sector and data cut off by truncation are corruptions that -r all repairs', () => {
  const { back, cow } = cowPair(s.path('ck'), 1000000, 7); // 1954 sectors: the bitmap's last byte holds 2 real bits
  const clean = dw(['check', '--output', 'json', cow]);
  assert.equal(clean.status, 0, clean.stderr);
  assert.equal(JSON.parse(clean.stdout)['total-clusters'], 1954);
  // Stray bits in the bitmap's last byte (offset 8192 + 244), plus sector 1900 marked present.
  const b = readFileSync(cow);
  b[8192 + 244] |= 0xf0;
  b[8192 + (1900 >> 3)] |= 1 << (1900 & 7);
  b.fill(0x33, 12288 + 1900 * 512, 12288 + 1901 * 512);
  writeFileSync(cow, b.subarray(0, 12288 + 1000 * 512)); // and cut the file short: sector 1900's data is gone
  const r = dw(['check', '--output', 'json', cow]);
  assert.equal(r.status, 2, r.stdout + r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.corruptions, 2);
  assert.equal(rep['allocated-clusters'], 1);
  const fixed = dw(['check', '-r', 'all', cow]);
  assert.equal(fixed.status, 0, fixed.stdout + fixed.stderr);
  assert.match(fixed.stdout, /2 corruptions/);
  const after = readFileSync(cow);
  assert.equal(after[8192 + 244] & 0xfc, 0, 'stray bits cleared, the real ones kept');
  assert.equal(after.length, 12288 + 1000000, 'extended to the length uml_mkcow gives');
  // uml_moo takes the repaired file, and sector 1900 reads as zeros there as here.
  must('uml_moo', [cow, s.path('ck.moo')]);
  const moo = readFileSync(s.path('ck.moo'));
  assert.ok(moo.subarray(1900 * 512, 1901 * 512).every((x) => x === 0));
  assert.ok(moo.subarray(0, 1900 * 512).equals(readFileSync(back).subarray(0, 1900 * 512)));
  // A changed backing file is reported but is no corruption of the COW file.
  utimesSync(back, 1760000000, 1760000000);
  const w = dw(['check', cow]);
  assert.equal(w.status, 0);
  assert.match(w.stderr, /changed since the COW file was made/);
});
