/**
 * sparsify against the file systems' own tools (issue 23's "done when"): an ext4 with a 120 MiB file written and
 * deleted (mke2fs -d, debugfs rm) compacts to within a few MiB of its used space, into a new qcow2 and in place
 * inside a GPT disk in qcow2 (with a swap partition and unpartitioned space holding old data); a FAT32 with a
 * deleted 60 MiB file (mdel); an NTFS whose 60 MiB file was truncated to nothing (ntfstruncate: ntfs-3g's tools
 * cannot delete a file without FUSE, truncating frees its clusters the same way). The oracles: dumpe2fs's free
 * blocks (every byte outside them is unchanged, every byte inside reads as zeros), e2fsck -fn, fsck.fat -n,
 * ntfsfix -n, ntfsinfo, qemu-img check/measure/compare, debugfs dump / mcopy / ntfscat for the kept files. A
 * dirty ext4 and an unknown file system are copied byte for byte, saying why.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertPlainError, dw, dwOk, must, run, scratch } from '../helpers';
import { dumpe2fs, makeExt, makeFat, makeNtfs, placeAt, sfdiskPartitions } from './inside-common';
import { MiB, allocated, assertKeptAndZeroed, measureRequired, randomFile } from './sparsify-common';

const s = scratch('dw-sparsify-');
after(() => s.cleanup());

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

interface ReportJson {
  mode: string;
  partitions: Array<{ number: number; type: string; status: string; reason?: string; freeBytes: number; reclaimBytes: number }>;
  unpartitioned: { freeBytes: number; reclaimBytes: number };
  freeBytes: number;
  reclaimBytes: number;
  sizeBefore: number;
  sizeAfter?: number;
  notes: string[];
}
const json = (args: string[]): ReportJson => JSON.parse(dwOk([...args, '--output', 'json']).stdout);

/** An ext4 file system (4 KiB blocks) that held a 120 MiB file, deleted with debugfs; returns the kept files. */
function ext4WithDeletedFile(image: string, size: string, seed: number): Record<string, Buffer> {
  const tree = s.path(`tree${seed}`);
  mkdirSync(join(tree, 'docs'), { recursive: true });
  const kept: Record<string, Buffer> = {
    '/keep.bin': randomFile(join(tree, 'keep.bin'), 3 * MiB + 123, seed + 1),
    '/docs/note.txt': Buffer.from('a note that must survive compaction\n'),
  };
  writeFileSync(join(tree, 'docs', 'note.txt'), kept['/docs/note.txt']);
  randomFile(join(tree, 'big.bin'), 120 * MiB, seed + 2);
  makeExt(image, tree, size, ['-t', 'ext4', '-b', '4096']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', image]);
  return kept;
}

function assertExtFiles(image: string, kept: Record<string, Buffer>): void {
  const fsck = run('e2fsck', ['-fn', image]);
  assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
  for (const [name, data] of Object.entries(kept)) {
    const out = s.path(`dump-${Math.random().toString(36).slice(2)}`);
    must('debugfs', ['-R', `dump ${name} ${out}`, image]);
    assert.ok(readFileSync(out).equals(data), `${name} is unchanged`);
  }
}

test('ext4 with a deleted 120 MiB file → a new qcow2 within a few MiB of the used space; e2fsck clean, files equal, the source untouched', () => {
  const src = s.path('ext4.img');
  const kept = ext4WithDeletedFile(src, '160M', 10);
  const before = sha(src);
  const d = dumpe2fs(src);

  const dry = json(['sparsify', '--dry-run', src]);
  assert.equal(dry.partitions.length, 1);
  assert.equal(dry.partitions[0].status, 'mapped');
  assert.equal(dry.partitions[0].freeBytes, d.free.reduce((n, r) => n + r.length, 0), 'free = dumpe2fs free blocks');
  assert.ok(dry.reclaimBytes >= 120 * MiB, `the deleted file's blocks would be given back (${dry.reclaimBytes})`);

  const out = s.path('ext4.qcow2');
  const r = json(['sparsify', '-O', 'qcow2', src, out]);
  assert.equal(r.reclaimBytes, dry.reclaimBytes, 'the preview is what the compaction gives back');
  assert.equal(sha(src), before, 'the source is only read');
  assert.equal(run('qemu-img', ['check', out]).status, 0);

  const plain = s.path('ext4-plain.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', src, plain]);
  assert.ok(allocated(out) <= d.used + 4 * MiB, `output ${allocated(out)} within a few MiB of the used ${d.used}`);
  assert.ok(allocated(plain) - allocated(out) >= 115 * MiB, `smaller than qemu-img convert's (${allocated(plain)}) by the freed space: ${allocated(out)}`);

  const back = s.path('ext4-back.img');
  must('qemu-img', ['convert', '-O', 'raw', out, back]);
  const held = assertKeptAndZeroed(src, back, d.free);
  assert.ok(held >= 120 * MiB, 'the deleted file lay in the free blocks');
  assertExtFiles(back, kept);
});

test('a GPT disk in qcow2 compacted in place: ext4 free blocks, swap pages (header kept) and unpartitioned space; qemu-img check clean, measure and file size show the space back; a held image is refused', async () => {
  const raw = s.path('gpt.raw');
  must('truncate', ['-s', '200M', raw]);
  must('sgdisk', ['-n1:2048:+160M', '-t1:8300', '-n2:0:+16M', '-t2:8200', raw]);
  const t = sfdiskPartitions(raw);
  const [p1, p2] = t.partitions;
  const ext = s.path('gpt-p1.img');
  const kept = ext4WithDeletedFile(ext, '160M', 20);
  placeAt(raw, ext, p1.start);
  // Swap: old pages full of data, then mkswap (which writes only its header page).
  const swap = s.path('swap.img');
  randomFile(swap, 16 * MiB, 21);
  must('mkswap', ['-q', swap]);
  placeAt(raw, swap, p2.start);
  // Old data in the space after the last partition (inside GPT's usable area).
  const tailData = s.path('tail.bin');
  randomFile(tailData, 4 * MiB, 22);
  placeAt(raw, tailData, p2.start + p2.size);
  const img = s.path('gpt.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', raw, img]);
  const sizeBefore = allocated(img);
  const measureBefore = measureRequired(img, 'qcow2');

  const dry = json(['sparsify', '--dry-run', '--in-place', img]);
  assert.deepEqual(dry.partitions.map((p) => [p.number, p.type, p.status]), [[1, 'ext4', 'mapped'], [2, 'swap', 'mapped']]);
  assert.ok(dry.partitions[0].reclaimBytes >= 120 * MiB);
  assert.equal(dry.partitions[1].reclaimBytes, 16 * MiB - 4096, 'every swap page but the header');
  assert.ok(dry.unpartitioned.reclaimBytes >= 4 * MiB, 'the old data after the last partition');

  // Another program holding the image (qemu-io, sleeping) makes the in-place compaction refuse.
  const holder = spawn('qemu-io', ['-f', 'qcow2', '-c', 'sleep 20000', img], { stdio: 'ignore' });
  try {
    await new Promise((res) => setTimeout(res, 700));
    const before = sha(img);
    const refused = dw(['sparsify', '--in-place', img]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /in use|being written by (another program|qemu-io)/);
    assert.equal(sha(img), before, 'a refused compaction writes nothing');
  } finally {
    holder.kill();
    await new Promise((res) => holder.once('exit', res));
  }

  const r = json(['sparsify', '--in-place', img]);
  assert.equal(r.reclaimBytes, dry.reclaimBytes, 'the preview is what the compaction gives back');
  const check = run('qemu-img', ['check', img]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  const measureAfter = measureRequired(img, 'qcow2');
  assert.ok(measureBefore - measureAfter >= 135 * MiB, `qemu-img measure: ${measureBefore} → ${measureAfter}`);
  assert.ok(sizeBefore - allocated(img) >= 135 * MiB, `the file gives its space back to the host: ${sizeBefore} → ${allocated(img)}`);
  assert.equal(r.sizeAfter, allocated(img));

  const back = s.path('gpt-back.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, back]);
  const free = [
    ...dumpe2fs(ext).free.map((f) => ({ start: p1.start + f.start, length: f.length })),
    { start: p2.start + 4096, length: p2.size - 4096 },
    { start: p2.start + p2.size, length: 4 * MiB },
  ];
  // In place, a cluster only partly free keeps its bytes; everything outside the free ranges is unchanged.
  assertKeptAndZeroed(raw, back, free, true);
  assert.deepEqual(sfdiskPartitions(back).partitions, t.partitions, 'the table is unchanged');
  const p1back = s.path('gpt-p1-back.img');
  must('dd', [`if=${back}`, `of=${p1back}`, 'bs=1M', `skip=${p1.start}`, `count=${p1.size}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
  assertExtFiles(p1back, kept);
  assert.match(must('blkid', ['-p', '-O', String(p2.start), back]).stdout, /TYPE="swap"/, 'the swap header is kept');
});

test('FAT32 with a deleted 60 MiB file (mdel) compacts; fsck.fat -n clean, the kept files equal', () => {
  const tree = s.path('fat-tree');
  mkdirSync(tree);
  const keep = randomFile(join(tree, 'KEEP.BIN'), 2 * MiB + 7, 30);
  randomFile(join(tree, 'BIG.BIN'), 60 * MiB, 31);
  const src = s.path('fat32.img');
  makeFat(src, tree, '100M', ['-F', '32']);
  must('mdel', ['-i', src, '::/BIG.BIN']);
  const dry = json(['sparsify', '--dry-run', src]);
  assert.equal(dry.partitions[0].type, 'vfat');
  assert.ok(dry.reclaimBytes >= 60 * MiB && dry.reclaimBytes < 64 * MiB, `the deleted file's clusters: ${dry.reclaimBytes}`);
  const out = s.path('fat32-out.img');
  const r = json(['sparsify', src, out]);
  assert.equal(r.reclaimBytes, dry.reclaimBytes);
  assert.ok(allocated(src) - allocated(out) >= 59 * MiB, `${allocated(src)} → ${allocated(out)}`);
  const fsck = run('fsck.fat', ['-n', out]);
  assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
  const copied = s.path('KEEP.out');
  must('mcopy', ['-i', out, '::/KEEP.BIN', copied]);
  assert.ok(readFileSync(copied).equals(keep));
  assert.equal(run('mdir', ['-i', out, '::/BIG.BIN']).status, 1, 'the deleted file stays deleted');
});

test('NTFS whose 60 MiB file was truncated to nothing (ntfstruncate) compacts; ntfsfix -n clean, files equal, the same free clusters', () => {
  const big = s.path('ntfs-big');
  randomFile(big, 60 * MiB, 40);
  const keepSrc = s.path('ntfs-keep');
  const keep = randomFile(keepSrc, 2 * MiB + 11, 41);
  const src = s.path('ntfs.img');
  makeNtfs(src, '128M', [{ src: big, name: 'big.bin' }, { src: keepSrc, name: 'keep.bin' }]);
  const ino = /^\s*(\d+)\s+big\.bin$/m.exec(must('ntfsls', ['-i', src]).stdout)![1];
  must('ntfstruncate', [src, ino, '0']);
  const out = s.path('ntfs-out.qcow2');
  const r = json(['sparsify', '-O', 'qcow2', src, out]);
  assert.equal(r.partitions[0].type, 'ntfs');
  assert.ok(r.reclaimBytes >= 60 * MiB, `the truncated file's clusters: ${r.reclaimBytes}`);
  const back = s.path('ntfs-back.img');
  must('qemu-img', ['convert', '-O', 'raw', out, back]);
  const fix = run('ntfsfix', ['-n', back]);
  assert.equal(fix.status, 0, fix.stdout + fix.stderr);
  assert.ok(must('ntfscat', [back, 'keep.bin'], {}).stdoutBytes.equals(keep));
  const freeClusters = (img: string) => /Free Clusters: (\d+)/.exec(must('ntfsinfo', ['-m', img]).stdout)![1];
  assert.equal(freeClusters(back), freeClusters(src));
  assert.ok(allocated(src) - allocated(out) >= 58 * MiB, `${allocated(src)} → ${allocated(out)}`);
});

test('a dirty ext4 is left as it is, saying why; an unknown file system is copied byte for byte', () => {
  const src = s.path('dirty.img');
  ext4WithDeletedFile(src, '160M', 50);
  must('debugfs', ['-w', '-R', 'ssv state 0', src]); // not cleanly unmounted
  const before = sha(src);
  const out = s.path('dirty-out.img');
  const r = dwOk(['sparsify', src, out]);
  assert.match(r.stdout, /kept as it is: not cleanly unmounted: run fsck in the guest first/);
  assert.match(r.stdout, /Given back: 0 B/);
  assert.equal(sha(out), before, 'copied byte for byte');
  const inPlace = dwOk(['sparsify', '--in-place', src]);
  assert.match(inPlace.stdout, /run fsck in the guest first/);
  assert.equal(sha(src), before, 'nothing written in place either');

  const unknown = s.path('unknown.img');
  randomFile(unknown, 24 * MiB, 51);
  const uout = s.path('unknown-out.qcow2');
  const u = dwOk(['sparsify', '-O', 'qcow2', unknown, uout]);
  assert.match(u.stdout, /copied as it is/);
  assert.equal(run('qemu-img', ['compare', unknown, uout]).status, 0, 'the same content');
});

test('bad arguments are plain errors; a format that cannot release space in place refuses, changing nothing', () => {
  assertPlainError(['sparsify'], /expecting a source and a target/);
  assertPlainError(['sparsify', '--in-place', 'a', 'b'], /expecting one image/);
  assertPlainError(['sparsify', s.path('missing.img'), s.path('out.img')], /no such file/);
  const raw = s.path('small-ext.img');
  ext4WithDeletedFile(raw, '160M', 60);
  // streamOptimized VMDK cannot be written in place (sparsify-formats.test.ts has the rest).
  const stream = s.path('small-stream.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, stream]);
  const before = sha(stream);
  assertPlainError(['sparsify', '--in-place', stream], /cannot compact in place .*compact into a new image instead/);
  assert.equal(sha(stream), before);
  const vdi = s.path('small.vdi');
  must('qemu-img', ['convert', '-O', 'vdi', raw, vdi]);
  const out = s.path('small-out.vdi');
  const r = json(['sparsify', vdi, out]);
  assert.ok(r.reclaimBytes >= 120 * MiB);
  assert.equal(run('qemu-img', ['check', out]).status, 0);
  assert.ok(allocated(vdi) - allocated(out) >= 115 * MiB, `${allocated(vdi)} → ${allocated(out)}`);
});
