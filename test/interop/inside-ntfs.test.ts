// NTFS read by the oracles of ntfs-3g: a root folder large enough for an $INDEX_ALLOCATION B-tree (ntfscp'd
// files with non-ASCII names), a resident file, and a file extended by ntfstruncate past its initialised size.
// The names equal ntfsls's, every file copied out equals ntfscat's output, sizes equal ntfsls -l's.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertPlainError, dwOk, must, scratch } from '../helpers';

const s = scratch('dw-inside-ntfs-');
const vol = s.path('ntfs.fs');

before(() => {
  must('truncate', ['-s', '12M', vol]);
  must('mkfs.ntfs', ['-F', '-Q', '-q', '-L', 'Données', vol]);
  for (let i = 1; i <= 60; i++) {
    writeFileSync(s.path('f'), `file ${i} ${'y'.repeat(i * 37)}\n`);
    must('ntfscp', ['-q', vol, s.path('f'), `name number ${i} with ünïcode.txt`]);
  }
  writeFileSync(s.path('small'), 'hi\n');
  must('ntfscp', ['-q', vol, s.path('small'), 'small.txt']);
  writeFileSync(s.path('mid'), Buffer.from(Array.from({ length: 300000 }, (_, i) => (i * 7) & 255)));
  must('ntfscp', ['-q', vol, s.path('mid'), 'mid.bin']);
  const ino = /Dumping Inode (\d+)/.exec(must('ntfsinfo', ['-F', '/mid.bin', vol]).stdout)![1];
  must('ntfstruncate', [vol, ino, '0x80', '2000000']);
});
after(() => s.cleanup());

test('the root index (with $INDEX_ALLOCATION) lists what ntfsls lists, with its sizes', () => {
  const ntfsInfo = must('ntfsinfo', ['-i', '5', vol]).stdout;
  assert.match(ntfsInfo, /\$INDEX_ALLOCATION/, 'the case is exercised: the root needs index blocks');
  const want = must('ntfsls', ['-l', vol]).stdout.trim().split('\n').map((l) => {
    const m = /^\s*(\d+) \w+ +\d+ [\d:]+ \d+ (.*)$/.exec(l)!;
    return { name: m[2], size: Number(m[1]) };
  });
  const got = JSON.parse(dwOk(['ls', '--output', 'json', `${vol}:/`]).stdout).map((e: any) => ({ name: e.name, size: e.size }));
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);
  assert.deepEqual(got.sort(byName), want.sort(byName));
});

test('files copied out equal ntfscat (resident data, non-resident runs, zeros past the initialised size)', () => {
  const out = s.path('out');
  dwOk(['cp', `${vol}:/`, out]);
  for (const name of ['small.txt', 'mid.bin', 'name number 1 with ünïcode.txt', 'name number 60 with ünïcode.txt']) {
    assert.ok(readFileSync(join(out, name)).equals(must('ntfscat', [vol, name]).stdoutBytes), name);
  }
  assert.equal(readFileSync(join(out, 'mid.bin')).length, 2000000);
  assert.match(must('ntfsinfo', ['-F', '/small.txt', vol]).stdout, /Resident:\s+Yes/);
});

test('the label ($Volume) is read through the MFT: non-ASCII, as blkid prints it', () => {
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', vol]).stdout);
  // -o value prints the label as it is (-o export would escape the é as M-CM-)).
  assert.equal(got.partitions[0].filesystem.label, must('blkid', ['-p', '-o', 'value', '-s', 'LABEL', vol]).stdout.trim());
  assert.equal(got.partitions[0].filesystem.label, 'Données');
});

test('a fragmented file (its runlist in several runs, as ntfsinfo counts them) equals ntfscat', () => {
  const p = s.path('frag.fs');
  must('truncate', ['-s', '12M', p]);
  must('mkfs.ntfs', ['-F', '-Q', '-q', p]);
  for (const n of ['a', 'b', 'c', 'd']) {
    writeFileSync(s.path(n), Buffer.alloc(400 << 10, n.charCodeAt(0)));
    must('ntfscp', ['-q', p, s.path(n), n]);
  }
  // Filling the rest but a few clusters takes the holes ntfs-3g left around its MFT zone: several runs.
  const info = must('ntfsinfo', ['-m', p]).stdout;
  const cs = Number(/Cluster Size: (\d+)/.exec(info)![1]);
  const free = Number(/Free Clusters: (\d+)/.exec(info)![1]);
  writeFileSync(s.path('filler'), Buffer.from(Array.from({ length: (free - 64) * cs }, (_, i) => (i * 13) & 255)));
  must('ntfscp', ['-q', p, s.path('filler'), 'filler']);
  const runs = Number(/Total runs: (\d+)/.exec(must('ntfsinfo', ['-v', '-F', '/filler', p]).stdout)![1]);
  assert.ok(runs >= 2, `several runs (${runs})`);
  dwOk(['cp', `${p}:/filler`, s.path('filler.out')]);
  assert.ok(readFileSync(s.path('filler.out')).equals(must('ntfscat', [p, 'filler']).stdoutBytes));
  assert.ok(readFileSync(s.path('filler.out')).equals(readFileSync(s.path('filler'))));
});

test('a compressed file (the $DATA attribute flag ntfsinfo shows as 0x0001) is refused by name', () => {
  const p = s.path('comp.fs');
  must('truncate', ['-s', '8M', p]);
  must('mkfs.ntfs', ['-F', '-Q', '-q', p]);
  writeFileSync(s.path('r1'), Buffer.alloc(20000, 1));
  must('ntfscp', ['-q', p, s.path('r1'), 'r1']);
  const ino = Number(/Dumping Inode (\d+)/.exec(must('ntfsinfo', ['-F', '/r1', p]).stdout)![1]);
  const img = readFileSync(p);
  const cs = img.readUInt16LE(11) * img[13];
  const at = Number(img.readBigUInt64LE(48)) * cs + ino * 1024;
  for (let off = img.readUInt16LE(at + 20); img.readUInt32LE(at + off) !== 0xffffffff; off += img.readUInt32LE(at + off + 4)) {
    if (img.readUInt32LE(at + off) === 0x80) img.writeUInt16LE(img.readUInt16LE(at + off + 12) | 1, at + off + 12);
  }
  writeFileSync(p, img);
  assert.match(must('ntfsinfo', ['-F', '/r1', p]).stdout, /Attribute flags:\s+0x0001/);
  assertPlainError(['cp', `${p}:/r1`, s.path('r1.out')], /NTFS-compressed files are not read yet/);
});
