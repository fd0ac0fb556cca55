/**
 * Commit and rebase of UML COW files against the UML tools:
 * - `diskwright commit -d` leaves the backing file byte for byte as `uml_moo -d` does, and the COW file untouched
 *   (the pair is then refused, EBACKINGCHANGED, as uml_moo refuses it, unless the change is accepted);
 * - `diskwright commit` (emptying) leaves the same backing file, and a COW file that uml_moo takes again and
 *   that reads as the backing file (uml_moo COW NEW gives the backing file's bytes);
 * - `rebase -u` onto another file writes the header uml_mkcow writes over that file; a safe rebase onto a file
 *   with other data keeps the guest view, as uml_moo reads it; a COW file cannot stand alone or take a qcow2.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch, seededRandom } from '../helpers';
import { cowPair } from './cow-common';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-cow-commit-');
after(() => s.cleanup());

function pair(name: string, size: number, seed: number): { back: string; cow: string; dir: string } {
  const dir = s.path(name);
  return { ...cowPair(dir, size, seed), dir };
}

/** Seeded writes through our driver: data, zeros over data, zeros over zeros. */
async function scribble(cow: string, seed: number): Promise<void> {
  const rnd = seededRandom(seed);
  const dev = await openImage(cow, { readOnly: false, backingPolicy: 'anywhere' });
  try {
    for (let i = 0; i < 30; i++) {
      const len = 1 + Math.floor(rnd() * 5000);
      const off = Math.floor(rnd() * (dev.size - len));
      if (rnd() < 0.4) await dev.writeZeroes(off, len);
      else await dev.write(off, Buffer.alloc(len, (rnd() * 255 + 1) | 0));
    }
  } finally {
    await dev.close();
  }
}

for (const size of [1 << 20, 3 << 20]) {
  test(`commit -d (${size} bytes) leaves the backing file as uml_moo -d does and the COW file untouched`, async () => {
    const a = pair(`keep-a-${size}`, size, 1);
    const b = pair(`keep-b-${size}`, size, 1);
    await scribble(a.cow, 10);
    await scribble(b.cow, 10);
    const cowBefore = readFileSync(b.cow);
    must('uml_moo', ['-d', a.cow]);
    assert.equal(dwOk(['commit', '-d', b.cow]).stdout.trim(), 'Image committed.');
    assert.ok(readFileSync(b.back).equals(readFileSync(a.back)), 'backing files byte for byte equal (cmp)');
    assert.ok(readFileSync(b.cow).equals(cowBefore), 'COW file untouched');
    // Both refuse the pair now: the backing file's mtime changed.
    assert.notEqual(run('uml_moo', [a.cow, s.path(`keep-${size}.moo`)]).status, 0);
    await assert.rejects(openImage(b.cow, { backingPolicy: 'anywhere' }), (e: unknown) => e instanceof DiskError && e.code === 'EBACKINGCHANGED');
    const r = dw(['compare', b.cow, b.back]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /changed since the COW file was made/);
    // Accepted, the COW file reads what uml_moo -b (which does not check) merges: the committed view.
    const dev = await openImage(b.cow, { backingPolicy: 'anywhere', acceptChangedBacking: true });
    const view = Buffer.alloc(dev.size);
    await dev.read(0, view);
    await dev.close();
    assert.ok(view.equals(readFileSync(b.back)));
  });
}

test('commit (emptying) gives uml_moo -d\'s backing file, and a COW file uml_moo takes again, reading as the backing file', async () => {
  const a = pair('drop-a', 2 << 20, 2);
  const b = pair('drop-b', 2 << 20, 2);
  await scribble(a.cow, 20);
  await scribble(b.cow, 20);
  must('uml_moo', ['-d', a.cow]);
  dwOk(['commit', b.cow]);
  assert.ok(readFileSync(b.back).equals(readFileSync(a.back)), 'backing files byte for byte equal');
  const out = s.path('drop-b.moo');
  must('uml_moo', [b.cow, out]);
  assert.ok(readFileSync(out).equals(readFileSync(b.back)), 'the emptied COW file reads as its backing file (uml_moo)');
  const map = dwOk(['map', '--output', 'json', b.cow]).stdout;
  assert.ok((JSON.parse(map) as Array<{ depth: number; data: boolean }>).every((e) => !e.data || e.depth === 1), 'no sector left in the COW file');
});

test('rebase -u onto a copy of the backing file writes the header uml_mkcow writes over it; uml_moo takes the pair', async () => {
  const x = pair('reb-u', 1 << 20, 3);
  await scribble(x.cow, 30);
  const copy = `${x.dir}/copy.img`;
  copyFileSync(x.back, copy);
  utimesSync(copy, 1710000000, 1710000000);
  const before = readFileSync(x.cow);
  dwOk(['rebase', '-u', '-b', 'copy.img', '-F', 'raw', x.cow]);
  const fresh = `${x.dir}/fresh.cow`;
  must('uml_mkcow', [fresh, copy]);
  const after = readFileSync(x.cow);
  assert.ok(after.subarray(0, 4128).equals(readFileSync(fresh).subarray(0, 4128)), 'header as uml_mkcow writes it');
  assert.ok(after.subarray(4128).equals(before.subarray(4128)), 'bitmap and data untouched');
  must('uml_moo', [x.cow, s.path('reb-u.moo')]);
  const r1 = dw(['rebase', '-u', '-b', '', x.cow]);
  assert.equal(r1.status, 1);
  assert.match(r1.stderr, /always has a backing file/);
  const r2 = dw(['rebase', '-u', '-b', 'copy.img', '-F', 'qcow2', x.cow]);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /raw disk/);
});

test('a safe rebase onto a file with other data keeps the guest view (as uml_moo reads the COW file before and after)', async () => {
  const x = pair('reb-safe', 1 << 20, 4);
  await scribble(x.cow, 40);
  must('uml_moo', [x.cow, s.path('reb-safe.before')]);
  const other = `${x.dir}/other.img`;
  const rnd = seededRandom(99);
  const o = Buffer.from(readFileSync(x.back));
  for (let i = 0; i < o.length; i += 4096) if (rnd() < 0.3) o.fill(0x5a, i, i + 4096);
  writeFileSync(other, o);
  dwOk(['rebase', '-b', 'other.img', '-F', 'raw', x.cow]);
  must('uml_moo', [x.cow, s.path('reb-safe.after')]);
  assert.ok(readFileSync(s.path('reb-safe.after')).equals(readFileSync(s.path('reb-safe.before'))), 'guest view unchanged');
});

test('commit -d --backing-file names the actual backing file, as uml_moo -d -b does', async () => {
  const a = pair('moved-a', 1 << 20, 5);
  const b = pair('moved-b', 1 << 20, 5);
  await scribble(a.cow, 50);
  await scribble(b.cow, 50);
  for (const x of [a, b]) {
    mkdirSync(`${x.dir}/elsewhere`);
    copyFileSync(x.back, `${x.dir}/elsewhere/back.img`);
    utimesSync(`${x.dir}/elsewhere/back.img`, 1700000000, 1700000000);
    writeFileSync(x.back, Buffer.alloc(16)); // the recorded name now holds something else
  }
  must('uml_moo', ['-d', '-b', `${a.dir}/elsewhere/back.img`, a.cow]);
  dwOk(['commit', '-d', '--backing-file', `${b.dir}/elsewhere/back.img`, b.cow]);
  assert.ok(readFileSync(`${b.dir}/elsewhere/back.img`).equals(readFileSync(`${a.dir}/elsewhere/back.img`)));
  assert.equal(readFileSync(b.back).length, 16, 'the recorded file is not touched');
});
