/**
 * Malformed VMDK descriptors and headers give one plain DiskError line, never a stack trace, a hang or an
 * out-of-memory: impossibly large extents, descriptors listing too many extents, missing extent files, extents
 * outside the image's folder (directly or through a symlink) under the app's policy, loops in parent chains,
 * grain directories and tables past the end of the file, undecodable compressed grains, seSparse extents.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { dwOk, must, scratch } from '../helpers';
import { assertPlainError, io, qemuCreate } from './vmdk-common';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-vmdk-bad-');
after(() => s.cleanup());

let n = 0;
function descriptor(extents: string[], extra: string[] = []): string {
  const p = s.path(`d${n++}.vmdk`);
  writeFileSync(p, ['# Disk DescriptorFile', 'version=1', 'CID=12345678', 'parentCID=ffffffff', 'createType="monolithicFlat"', ...extra, '', ...extents, ''].join('\n'));
  return p;
}

const readAll = (p: string) => ['convert', '-O', 'raw', p, s.path(`out${n++}.raw`)];

test('impossibly large extents and too many extents are damage, not a crash', () => {
  writeFileSync(s.path('small.bin'), Buffer.alloc(4096));
  assertPlainError(readAll(descriptor(['RW 99999999999999999999999 FLAT "small.bin" 0'])), /impossibly large/);
  assertPlainError(readAll(descriptor(['RW 9007199254740000 FLAT "small.bin" 0', 'RW 9007199254740000 FLAT "small.bin" 0'])), /impossibly large/);
  assertPlainError(readAll(descriptor(Array.from({ length: 5000 }, () => 'RW 1 FLAT "small.bin" 0'))), /extents/);
  assertPlainError(readAll(descriptor([])), /no extents/);
  assertPlainError(readAll(descriptor(['RW 8 FLAT "missing.bin" 0'])), /missing\.bin/);
  assertPlainError(readAll(descriptor(['RW 8 SESPARSE "small.bin"'])), /seSparse/i);
  assertPlainError(readAll(descriptor(['RW 8 SPARSE "small.bin"'])), /not a VMDK sparse extent/);
});

test('a large flat extent over a small file reads its tail as zeros, as qemu reads it', () => {
  writeFileSync(s.path('tiny.bin'), Buffer.alloc(512, 7));
  const p = descriptor(['RW 4096 FLAT "tiny.bin" 0']);
  const ours = s.path('tiny-ours.raw');
  dwOk(['convert', '-O', 'raw', p, ours]);
  const got = readFileSync(ours);
  assert.equal(got.length, 4096 * 512);
  assert.ok(got.subarray(0, 512).every((x) => x === 7) && got.subarray(512).every((x) => x === 0));
  // qemu-io reads the same ranges with the same patterns. (qemu 7.2 lists this one-line descriptor's extent
  // twice, so its size is not compared.)
  const q = must('qemu-io', ['-r', '-U', '-f', 'vmdk', '-c', 'read -P 7 0 512', '-c', 'read -P 0 512 2096640', p]).stdout;
  assert.doesNotMatch(q, /Pattern verification failed/);
});

test('extents outside the image folder: refused under the app policy (also through a symlink), followed by the CLI', async () => {
  const inner = join(s.dir, 'inner');
  mkdirSync(inner);
  writeFileSync(s.path('outside.bin'), Buffer.alloc(4096, 3));
  const direct = join(inner, 'direct.vmdk');
  writeFileSync(direct, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "../outside.bin" 0\n');
  symlinkSync(s.path('outside.bin'), join(inner, 'link.bin'));
  const linked = join(inner, 'linked.vmdk');
  writeFileSync(linked, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "link.bin" 0\n');
  for (const p of [direct, linked]) {
    await assert.rejects(openImage(p, { backingPolicy: 'inside-folder' }), (e: unknown) => e instanceof DiskError && e.code === 'EOUTSIDE');
    const dev = await openImage(p, { backingPolicy: 'anywhere' });
    const b = new Uint8Array(512);
    await dev.read(0, b);
    assert.equal(b[0], 3);
    await dev.close();
  }
});

test('a parent chain that loops (directly or through another image) is refused', () => {
  const a = s.path('loop-a.vmdk');
  const b = s.path('loop-b.vmdk');
  qemuCreate(a, '', '1M');
  qemuCreate(b, '', '1M', 'loop-a.vmdk');
  // Make a name b as its parent, and c name itself.
  const patch = (p: string, parent: string) => {
    const buf = readFileSync(p);
    const text = buf.subarray(512, 512 * 21).toString('latin1');
    const out = text.replace(/createType="monolithicSparse"\n(parentFileNameHint="[^"]*"\n)?/, `createType="monolithicSparse"\nparentFileNameHint="${parent}"\n`).slice(0, 20 * 512);
    buf.write(out.padEnd(20 * 512, '\0'), 512, 'latin1');
    writeFileSync(p, buf);
  };
  patch(a, 'loop-b.vmdk');
  assertPlainError(readAll(b), /loops/);
  const c = s.path('loop-c.vmdk');
  qemuCreate(c, '', '1M');
  patch(c, 'loop-c.vmdk');
  assertPlainError(readAll(c), /loops/);
});

test('damaged sparse headers and tables: directory or table past the end of the file, bad compressed grain', () => {
  const p = s.path('gd.vmdk');
  qemuCreate(p, '', '4M');
  io(p, ['write -P 1 0 64k']);
  const good = readFileSync(p);
  const gd = Number(good.readBigUInt64LE(56));

  const b1 = Buffer.from(good);
  b1.writeBigUInt64LE(0xffffffn, 56); // grain directory far past the end
  writeFileSync(p, b1);
  assertPlainError(readAll(p), /grain directory/);

  const b2 = Buffer.from(good);
  b2.writeUInt32LE(0xfffffff, gd * 512); // grain table past the end
  writeFileSync(p, b2);
  assertPlainError(readAll(p), /grain table/);

  const b3 = Buffer.from(good);
  b3.writeUInt32LE(0x7fffffff, 44); // 2^31 grain table entries
  writeFileSync(p, b3);
  assertPlainError(readAll(p), /grain table size/);

  const b4 = Buffer.from(good);
  b4.writeBigUInt64LE(0x7fffffffffffffffn, 12); // capacity
  writeFileSync(p, b4);
  assertPlainError(readAll(p), /impossibly large|capacity/);

  // A stream whose first grain's bytes are garbage.
  const raw = s.path('g.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '1M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 5 0 64k', raw]);
  const st = s.path('g.vmdk');
  dwOk(['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, st]);
  writeFileSync(s.path('g.vmdk.orig'), readFileSync(st));
  const b5 = readFileSync(st);
  const overhead = Number(b5.readBigUInt64LE(64));
  b5.fill(0x99, overhead * 512 + 12, overhead * 512 + 40);
  writeFileSync(st, b5);
  assertPlainError(readAll(st), /does not decompress|compressed grain/);
  b5.writeUInt32LE(0x7fffffff, overhead * 512 + 8); // marker size far beyond a grain
  writeFileSync(st, b5);
  assertPlainError(readAll(st), /compressed grain/);
  // A grain whose zlib stream inflates to more than a grain (qemu refuses it too): 128 KiB of zeros packed small.
  const b6 = readFileSync(s.path('g.vmdk.orig'));
  const big = deflateSync(Buffer.alloc(128 * 1024));
  big.copy(b6, overhead * 512 + 12);
  b6.writeUInt32LE(big.length, overhead * 512 + 8);
  writeFileSync(st, b6);
  assertPlainError(readAll(st), /more than a grain/);
  // The untouched stream reads as qemu-img reads it, so the failures above are the damage's.
  writeFileSync(st, readFileSync(s.path('g.vmdk.orig')));
  const back = s.path('back.raw');
  dwOk(['convert', '-O', 'raw', st, back]);
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', raw, back]);
});
