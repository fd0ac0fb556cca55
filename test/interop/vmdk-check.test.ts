/**
 * `diskwright check` on VMDK gives qemu-img check's verdicts and exit codes on the same files: clean images of
 * every subformat (0), a grain table entry pointing past the end of the file (qemu-img: "points after EOF",
 * check failed, exit 1), a flat extent file cut to nothing (the same), and repair, which qemu has none of (63).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, truncateSync } from 'node:fs';
import { dw, run, scratch, must } from '../helpers';
import { io, qemuCreate } from './vmdk-common';

const s = scratch('dw-vmdk-check-');
after(() => s.cleanup());

function sameVerdict(p: string, extra: string[] = []): { ours: string; theirs: string } {
  const q = run('qemu-img', ['check', ...extra, p]);
  const o = dw(['check', ...extra, p]);
  assert.equal(o.status, q.status, `${p}: exit ${o.status} (ours) vs ${q.status} (qemu-img)\n${o.stdout}${o.stderr}\n${q.stdout}${q.stderr}`);
  return { ours: o.stdout + o.stderr, theirs: q.stdout + q.stderr };
}

test('clean images of every subformat: exit 0 like qemu-img check', () => {
  for (const sub of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'streamOptimized']) {
    const p = s.path(`clean-${sub}.vmdk`);
    qemuCreate(p, `subformat=${sub}`, '3M');
    if (sub !== 'streamOptimized') io(p, ['write -P 1 0 100k', 'write -P 2 2M 4k']);
    const r = sameVerdict(p);
    assert.match(r.ours, /No errors were found on the image/);
  }
});

test('a grain table entry past the end of the file: qemu-img check fails (exit 1) at the same sector', () => {
  const p = s.path('eof.vmdk');
  qemuCreate(p, '', '4M');
  io(p, ['write -P 1 0 64k', 'write -P 2 1M 64k']);
  const b = readFileSync(p);
  const gd = Number(b.readBigUInt64LE(56));
  const gt = b.readUInt32LE(gd * 512);
  b.writeUInt32LE(0x100000, gt * 512 + 16 * 4); // grain 16 = guest sector 2048
  writeFileSync(p, b);
  const r = sameVerdict(p);
  assert.match(r.theirs, /cluster offset for sector 2048 points after EOF/);
  assert.match(r.ours, /cluster offset for sector 2048 points after EOF/);
  sameVerdict(p, ['--output', 'json']);
});

test('a flat extent file cut to nothing, and a truncated sparse extent: same exit codes as qemu-img check', () => {
  const p = s.path('flat.vmdk');
  qemuCreate(p, 'subformat=monolithicFlat', '1M');
  truncateSync(s.path('flat-flat.vmdk'), 0);
  sameVerdict(p);
  const q = s.path('cut.vmdk');
  qemuCreate(q, 'subformat=twoGbMaxExtentSparse', '4M');
  io(q, ['write -P 1 0 1M']);
  truncateSync(s.path('cut-s001.vmdk'), 327680 + 65536);
  sameVerdict(q);
});

test('repair is not offered for vmdk: exit 63 like qemu-img check -r', () => {
  const p = s.path('r.vmdk');
  qemuCreate(p, '', '1M');
  sameVerdict(p, ['-r', 'all']);
  sameVerdict(p, ['-r', 'leaks']);
  must('qemu-img', ['check', p]);
});

test('a grain table or directory lying past the end of the file: qemu-img reads zeros there and says nothing; ours is a check error (exit 1)', () => {
  // A deliberate difference: qemu's block layer reads past the end of a file as zeros, so qemu-img check passes
  // (exit 0) an image whose data can no longer be found; here the table cannot be read, which check reports as
  // qemu reports an unreadable table ("could not get cluster_offset", exit 1), and reads refuse it (ECORRUPT).
  const p = s.path('gt-eof.vmdk');
  qemuCreate(p, '', '4M');
  io(p, ['write -P 1 0 64k']);
  const good = readFileSync(p);
  const gd = Number(good.readBigUInt64LE(56));
  const cases: Array<[string, Buffer]> = [];
  const b1 = Buffer.from(good);
  b1.writeUInt32LE(0xfffff0, gd * 512); // grain table 0 far past the end
  cases.push(['table', b1]);
  const b2 = Buffer.from(good);
  b2.writeBigUInt64LE(0xffffffn, 56); // the grain directory far past the end
  cases.push(['directory', b2]);
  for (const [what, bytes] of cases) {
    writeFileSync(p, bytes);
    const q = run('qemu-img', ['check', p]);
    assert.equal(q.status, 0, `${what}: qemu-img check passes it: ${q.stdout}${q.stderr}`);
    assert.match(must('qemu-img', ['map', '--output', 'json', p]).stdout, /"present": false/);
    const o = dw(['check', p]);
    assert.equal(o.status, 1, `${what}: ${o.stdout}${o.stderr}`);
    assert.match(o.stdout + o.stderr, /grain (table|directory)/);
    assert.doesNotMatch(o.stderr, /\n\s+at /, 'no stack trace');
  }
});
