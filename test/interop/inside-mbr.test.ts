// An MBR disk made by sfdisk with primary, extended and logical partitions holding ext2 (block maps), FAT12,
// ext3, ext4 with inline data and swap; a FAT32 file system on a whole disk without a table. Oracles: sfdisk
// --json, blkid -p, dumpe2fs (used bytes, free block lists), fsck.fat, and the trees put in by mke2fs -d / mcopy.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dwOk, must, scratch } from '../helpers';
import { assertSameTree, blkid, dumpe2fs, makeExt, makeFat, makeTree, placeAt, sfdiskPartitions } from './inside-common';
import { diskFreeMap, openVolume } from '../../src-main/inside';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-inside-mbr-');
const disk = s.path('mbr.raw');
const tree = s.path('tree');
const small = s.path('small');
const fatTree = s.path('fat-tree');

before(() => {
  makeTree(tree, 7, 120, { symlink: true, bigFiles: 2 });
  // Small files (inline data keeps files below ~150 bytes in the inode) and a small folder (an inline folder).
  mkdirSync(join(small, 'tiny folder'), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(join(small, i % 2 ? 'tiny folder' : '', `small ${i} ñ.txt`), 'x'.repeat(i * 3));
  writeFileSync(join(small, 'bigger.bin'), Buffer.alloc(300000, 7));
  makeTree(fatTree, 8, 30, { bigFiles: 1, bmpOnly: true });
  must('truncate', ['-s', '96M', disk]);
  must('sfdisk', ['-q', disk], { input: Buffer.from('label: dos\n,24M,83,*\n,8M,1\n,,5\n,20M,83\n,12M,83\n,8M,82\n') });
  const p = sfdiskPartitions(disk).partitions;
  const at = (n: number) => p.find((x) => x.number === n)!;
  makeExt(s.path('ext2.fs'), tree, '24M', ['-t', 'ext2', '-L', 'old ext2']);
  must('truncate', ['-s', '8M', s.path('fat12.fs')]);
  makeFat(s.path('fat12.fs'), fatTree, '8M', ['-F', '12', '-n', 'FAT TWELVE']);
  makeExt(s.path('ext3.fs'), tree, '20M', ['-t', 'ext3']);
  makeExt(s.path('inline.fs'), small, '12M', ['-t', 'ext4', '-O', 'inline_data', '-I', '256', '-L', 'inline']);
  must('truncate', ['-s', '8M', s.path('swap.fs')]);
  must('mkswap', ['-q', '-L', 'swappy', s.path('swap.fs')]);
  placeAt(disk, s.path('ext2.fs'), at(1).start);
  placeAt(disk, s.path('fat12.fs'), at(2).start);
  placeAt(disk, s.path('ext3.fs'), at(5).start);
  placeAt(disk, s.path('inline.fs'), at(6).start);
  placeAt(disk, s.path('swap.fs'), at(7).start);
});
after(() => s.cleanup());

test('primary, extended and logical partitions equal sfdisk --json; file systems equal blkid -p', () => {
  const want = sfdiskPartitions(disk);
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', disk]).stdout);
  assert.equal(got.table, 'mbr');
  assert.equal(got.id, want.id);
  assert.deepEqual(got.partitions.map((p: any) => ({ number: p.number, start: p.start, size: p.size, type: p.type, bootable: p.bootable })), want.partitions);
  assert.deepEqual(got.partitions.map((p: any) => p.number), [1, 2, 3, 5, 6, 7]);
  assert.deepEqual(got.findings, []);
  for (const p of got.partitions) {
    if (p.kind === 'extended') continue;
    const b = blkid(disk, p.start);
    assert.deepEqual({ type: p.filesystem.type, label: p.filesystem.label, uuid: p.filesystem.uuid }, { type: b.TYPE, label: b.LABEL, uuid: b.UUID }, `partition ${p.number}`);
  }
});

test('ext2, ext3 and inline-data ext4: used bytes and free ranges equal dumpe2fs', async () => {
  const dev = await openImage(disk, { readOnly: true, backingPolicy: 'none' });
  try {
    for (const [n, fs] of [[1, 'ext2.fs'], [5, 'ext3.fs'], [6, 'inline.fs']] as const) {
      const v = await openVolume(dev, n);
      const d = dumpe2fs(s.path(fs));
      assert.equal(v.fs.info.used, d.used, `${fs} used`);
      assert.deepEqual(await v.fs.freeRanges(), d.free, `${fs} free ranges`);
    }
  } finally {
    await dev.close();
  }
});

test('files copied out of ext2 (block maps), ext3, inline-data ext4 and FAT12 equal the trees put in', () => {
  const out = s.path('out');
  mkdirSync(out);
  dwOk(['cp', `${disk}:1:/`, join(out, 'ext2')]);
  assertSameTree(tree, join(out, 'ext2'), ['lost+found']);
  dwOk(['cp', `${disk}:5:/`, join(out, 'ext3')]);
  assertSameTree(tree, join(out, 'ext3'), ['lost+found']);
  dwOk(['cp', `${disk}:6:/`, join(out, 'inline')]);
  assertSameTree(small, join(out, 'inline'), ['lost+found']);
  dwOk(['cp', `${disk}:2:/`, join(out, 'fat12')]);
  assertSameTree(fatTree, join(out, 'fat12'));
  // A single file into an existing folder lands under its own name.
  dwOk(['cp', `${disk}:6:/bigger.bin`, out]);
  assert.ok(readFileSync(join(out, 'bigger.bin')).equals(readFileSync(join(small, 'bigger.bin'))));
});

test('the inline-data file system really keeps files inline (the case is exercised)', () => {
  const stat = must('debugfs', ['-R', 'stat "/small 2 ñ.txt"', s.path('inline.fs')]).stdout;
  assert.match(stat, /Size of inline data: \d+/);
});

test('a FAT32 file system on a whole disk (no table) is one volume; blkid -p and the files agree', () => {
  const fat32 = s.path('fat32.raw');
  makeFat(fat32, fatTree, '40M', ['-F', '32', '-n', 'WHOLE32']);
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', fat32]).stdout);
  assert.equal(got.table, null);
  assert.equal(got.partitions.length, 1);
  const b = blkid(fat32, 0);
  const fs = got.partitions[0].filesystem;
  assert.deepEqual({ type: fs.type, label: fs.label, uuid: fs.uuid, version: fs.version }, { type: b.TYPE, label: b.LABEL, uuid: b.UUID, version: b.VERSION });
  const fsck = /(\d+)\/(\d+) clusters/.exec(must('fsck.fat', ['-n', '-v', fat32]).stdout)!;
  assert.equal(fs.used, Number(fsck[1]) * fs['block-size']);
  dwOk(['cp', `${fat32}:/`, s.path('out-fat32')]);
  assertSameTree(fatTree, s.path('out-fat32'));
});


test('diskFreeMap on the MBR disk: every file system mapped, swap free after its header page, nothing before the first partition', async () => {
  const dev = await openImage(disk, { readOnly: true, backingPolicy: 'none' });
  try {
    const m = await diskFreeMap(dev);
    assert.deepEqual(m.partitions.map((p) => [p.number, p.type, p.status]), [[1, 'ext2', 'mapped'], [2, 'vfat', 'mapped'], [5, 'ext3', 'mapped'], [6, 'ext4', 'mapped'], [7, 'swap', 'mapped']]);
    const swap = sfdiskPartitions(disk).partitions.find((p) => p.number === 7)!;
    assert.equal(m.partitions.find((p) => p.number === 7)!.freeBytes, swap.size - 4096);
    assert.equal(m.partitions.find((p) => p.number === 5)!.freeBytes, dumpe2fs(s.path('ext3.fs')).free.reduce((n, r) => n + r.length, 0));
    assert.ok(m.ranges[0].start >= sfdiskPartitions(disk).partitions[0].start, 'the boot-loader gap before the first partition is kept');
  } finally {
    await dev.close();
  }
});
