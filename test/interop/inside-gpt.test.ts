// A GPT disk with ext4, FAT and NTFS partitions, built by sgdisk + mke2fs -d / mkfs.vfat + mcopy / mkfs.ntfs +
// ntfscp, read raw and inside qcow2, VMDK and VHDX: the table equals sfdisk --json, each file system's
// type/label/UUID equals blkid -p's, used bytes equal dumpe2fs / fsck.fat / ntfsinfo, the ext free ranges equal
// dumpe2fs's free block lists, and the files copied out equal the files put in.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { dwOk, must, scratch } from '../helpers';
import { assertSameTree, blkid, dumpe2fs, makeExt, makeFat, makeNtfs, makeTree, placeAt, sfdiskPartitions } from './inside-common';
import { diskFreeMap, inspectDisk, openVolume } from '../../src-main/inside';
import { openImage } from '../../src-main/registry';

const MiB = 1 << 20;
const s = scratch('dw-inside-gpt-');
const disk = s.path('disk.raw');
const tree = s.path('tree');
const fatTree = s.path('fat-tree');
const parts = { ext: 1 * MiB, fat: 65 * MiB, ntfs: 81 * MiB };

let files: string[] = [];
const sparseFile = () => files[5];

before(() => {
  files = makeTree(tree, 22, 300, { symlink: true, bigFiles: 3 });
  // One folder of many entries: e2fsck -D makes it a hash-indexed (htree) folder.
  mkdirSync(join(tree, 'many'));
  for (let i = 0; i < 150; i++) writeFileSync(join(tree, 'many', `entry number ${i} with a long name to fill the blocks`), `${i}\n`);
  makeTree(fatTree, 23, 60, { bigFiles: 1, bmpOnly: true });
  must('truncate', ['-s', '104M', disk]);
  must('sgdisk', ['-n1:2048:+64M', '-t1:8300', '-c1:linux root', '-n2:0:+16M', '-t2:0700', '-c2:data', '-n3:0:+20M', '-t3:0700', '-c3:Windows', disk]);
  makeExt(s.path('ext.fs'), tree, '64M', ['-t', 'ext4', '-L', 'rootfs', '-b', '1024']);
  // e2fsck -D re-indexes the folders: the big ones become htree folders, which must still read as plain lists.
  must('e2fsck', ['-fyD', s.path('ext.fs')], {});
  makeFat(s.path('fat.fs'), fatTree, '16M', ['-n', 'MYFAT']);
  makeNtfs(s.path('ntfs.fs'), '20M', [
    { src: files[0], name: 'Überweisung 0.txt' },
    { src: files[1], name: 'résumé 1.bin' },
    { src: sparseFile(), name: 'sparse.dat' },
  ]);
  placeAt(disk, s.path('ext.fs'), parts.ext);
  placeAt(disk, s.path('fat.fs'), parts.fat);
  placeAt(disk, s.path('ntfs.fs'), parts.ntfs);
});
after(() => s.cleanup());

async function layoutOf(path: string) {
  const dev = await openImage(path, { readOnly: true, backingPolicy: 'none' });
  try {
    return await inspectDisk(dev);
  } finally {
    await dev.close();
  }
}

test('partitions equal sfdisk --json; file systems equal blkid -p', async () => {
  const want = sfdiskPartitions(disk);
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', disk]).stdout);
  assert.equal(got.table, 'gpt');
  assert.equal(got['sector-size'], 512);
  assert.equal(got.id, want.id);
  assert.deepEqual(
    got.partitions.map((p: any) => ({ number: p.number, start: p.start, size: p.size, type: p.type, uuid: p.uuid, name: p.name, bootable: p.bootable })),
    want.partitions,
  );
  assert.deepEqual(got.findings, []);
  for (const p of got.partitions) {
    const b = blkid(disk, p.start);
    assert.equal(p.filesystem.type, b.TYPE, `partition ${p.number} type`);
    assert.equal(p.filesystem.label, b.LABEL, `partition ${p.number} label`);
    assert.equal(p.filesystem.uuid, b.UUID, `partition ${p.number} uuid`);
  }
});

test('used bytes equal dumpe2fs (ext4), fsck.fat (FAT) and ntfsinfo (NTFS)', async () => {
  const l = await layoutOf(disk);
  const [ext, fat, ntfs] = l.partitions.map((p) => p.filesystem!);
  assert.equal(ext.used, dumpe2fs(s.path('ext.fs')).used);
  const fsck = /(\d+)\/(\d+) clusters/.exec(must('fsck.fat', ['-n', '-v', s.path('fat.fs')]).stdout)!;
  assert.equal(fat.used, Number(fsck[1]) * fat.blockSize!);
  const info = must('ntfsinfo', ['-m', s.path('ntfs.fs')]).stdout;
  const clusters = Number(/Volume Size in Clusters: (\d+)/.exec(info)![1]);
  const free = Number(/Free Clusters: (\d+)/.exec(info)![1]);
  assert.equal(ntfs.used, (clusters - free) * ntfs.blockSize!);
});

test('the ext4 free ranges equal dumpe2fs free block lists (BLOCK_UNINIT, flex_bg)', async () => {
  // The cases this test is for are there: groups without a bitmap on disk, and an htree folder.
  assert.ok(/BLOCK_UNINIT/.test(must('dumpe2fs', [s.path('ext.fs')]).stdout), 'some groups are BLOCK_UNINIT');
  assert.match(must('debugfs', ['-R', 'htree /many', s.path('ext.fs')]).stdout, /Root node dump/);
  const dev = await openImage(disk, { readOnly: true, backingPolicy: 'none' });
  try {
    const { fs } = await openVolume(dev, 1);
    assert.deepEqual(await fs.freeRanges(), dumpe2fs(s.path('ext.fs')).free);
    // The FAT's free clusters add up to fsck.fat's count.
    const fat = (await openVolume(dev, 2)).fs;
    const freeBytes = (await fat.freeRanges()).reduce((n, r) => n + r.length, 0);
    const fsck = /(\d+)\/(\d+) clusters/.exec(must('fsck.fat', ['-n', '-v', s.path('fat.fs')]).stdout)!;
    assert.equal(freeBytes, (Number(fsck[2]) - Number(fsck[1])) * fat.info.blockSize!);
    const ntfs = (await openVolume(dev, 3)).fs;
    const ntfsFree = (await ntfs.freeRanges()).reduce((n, r) => n + r.length, 0);
    assert.equal(ntfsFree, Number(/Free Clusters: (\d+)/.exec(must('ntfsinfo', ['-m', s.path('ntfs.fs')]).stdout)![1]) * ntfs.info.blockSize!);
  } finally {
    await dev.close();
  }
});

test('files copied out of ext4 and FAT equal the trees put in; NTFS files equal theirs', () => {
  const out = s.path('out');
  mkdirSync(out);
  dwOk(['cp', `${disk}:1:/`, join(out, 'ext')]);
  assert.ok(assertSameTree(tree, join(out, 'ext'), ['lost+found']) >= 300);
  dwOk(['cp', `${disk}:2:/`, join(out, 'fat')]);
  assertSameTree(fatTree, join(out, 'fat'));
  dwOk(['cp', `${disk}:3:/`, join(out, 'ntfs')]);
  assert.ok(readFileSync(join(out, 'ntfs', 'Überweisung 0.txt')).equals(readFileSync(files[0])));
  assert.ok(readFileSync(join(out, 'ntfs', 'résumé 1.bin')).equals(readFileSync(files[1])));
  assert.ok(readFileSync(join(out, 'ntfs', 'sparse.dat')).equals(readFileSync(sparseFile())));
  // The sparse file stays sparse when copied out of ext4.
  const copied = join(out, 'ext', relative(tree, sparseFile()));
  assert.ok(statSync(copied).blocks * 512 < statSync(copied).size / 2);
});

test('ls lists a folder with its symlink shown, not followed', () => {
  const r = dwOk(['ls', '--output', 'json', `${disk}:1:/Überweisung 0`]).stdout;
  const link = JSON.parse(r).find((e: any) => e.name === 'link to a file');
  assert.deepEqual({ type: link.type, target: link.target }, { type: 'symlink', target: '../Überweisung 0/Überweisung 0.txt' });
});

for (const fmt of ['qcow2', 'vmdk', 'vhdx']) {
  test(`inside ${fmt}: the same table and the same files`, () => {
    const img = s.path(`disk.${fmt}`);
    must('qemu-img', ['convert', '-f', 'raw', '-O', fmt, disk, img]);
    assert.deepEqual(JSON.parse(dwOk(['partitions', '--output', 'json', img]).stdout), JSON.parse(dwOk(['partitions', '--output', 'json', disk]).stdout));
    const out = s.path(`out-${fmt}`);
    dwOk(['cp', `${img}:2:/`, out]);
    assertSameTree(fatTree, out);
  });
}

test('diskFreeMap (for compaction): ext4 free = dumpe2fs at the partition offset; the gaps = what sfdisk leaves between its first and last usable sectors', async () => {
  const dev = await openImage(disk, { readOnly: true, backingPolicy: 'none' });
  try {
    const m = await diskFreeMap(dev);
    assert.deepEqual(m.partitions.map((p) => [p.number, p.type, p.status]), [[1, 'ext4', 'mapped'], [2, 'vfat', 'mapped'], [3, 'ntfs', 'mapped']]);
    const extEnd = parts.ext + 64 * MiB;
    const inExt = m.ranges
      .map((r) => ({ start: Math.max(r.start, parts.ext), end: Math.min(r.start + r.length, extEnd) }))
      .filter((r) => r.end > r.start)
      .map((r) => ({ start: r.start - parts.ext, length: r.end - r.start }));
    assert.deepEqual(inExt, dumpe2fs(s.path('ext.fs')).free);
    const t = JSON.parse(must('sfdisk', ['--json', disk]).stdout).partitiontable;
    const lastEnd = Math.max(...t.partitions.map((p: any) => (p.start + p.size) * 512));
    const firstStart = Math.min(...t.partitions.map((p: any) => p.start * 512));
    assert.equal(m.unpartitionedBytes, (t.lastlba + 1) * 512 - lastEnd + (firstStart - t.firstlba * 512));
  } finally {
    await dev.close();
  }
});
