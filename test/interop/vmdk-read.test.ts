/**
 * VMDK images made by qemu-img and qemu-io read here as qemu-img reads them, over every subformat qemu-img
 * writes: `diskwright convert -O raw` equals the image under `qemu-img compare`, and `diskwright map` gives
 * `qemu-img map`'s entries. Includes a twoGbMaxExtentSparse with data across the 2 GiB extent boundary, zeroed
 * grains, compressed stream grains and a parent chain.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { scratch, dwOk, must } from '../helpers';
import { MIXED, assertReadsLikeQemu, assertSameContent, io, qemuCreate } from './vmdk-common';
import { serializeVmdk3Header } from '../../src-main/formats/vmdk/layout';

const s = scratch('dw-vmdk-read-');
after(() => s.cleanup());

const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'];
for (const sub of SUBFORMATS) {
  test(`${sub} written by qemu-io reads as qemu-img reads it`, () => {
    const p = s.path(`${sub}.vmdk`);
    qemuCreate(p, `subformat=${sub}`, '5M');
    io(p, MIXED);
    assertReadsLikeQemu(p, s.path, sub);
  });
}

test('twoGbMaxExtentSparse with data across the 2 GiB extent boundary', () => {
  const p = s.path('two-gb.vmdk');
  qemuCreate(p, 'subformat=twoGbMaxExtentSparse', '5G');
  io(p, ['write -P 0x71 2147450880 65536', 'write -P 0x72 4294967000 1000', 'write -P 0x73 5368643584 65536', 'write -P 0x74 0 512']);
  assertReadsLikeQemu(p, s.path, 'two-gb');
  // Read across the boundary directly too.
  const out = s.path('span.bin');
  dwOk(['read', p, '2147450880', '65536', out]);
  const q = must('qemu-io', ['-f', 'vmdk', '-c', 'read -P 0x71 2147450880 65536', p]).stdout;
  assert.match(q, /read 65536\/65536/);
  assert.ok(readFileSync(out).every((b: number) => b === 0x71));
});

test('zeroed grains (zeroed_grain=on, write -z over whole grains and over data)', () => {
  const p = s.path('zeroed.vmdk');
  qemuCreate(p, 'zeroed_grain=on', '4M');
  io(p, ['write -P 0x21 0 1M', 'write -z 128k 256k', 'write -z 2M 128k', 'write -P 0x22 3M 4k', 'write -z 3M 64k']);
  assertReadsLikeQemu(p, s.path, 'zeroed');
});

test('streamOptimized from qemu-img convert (compressed grains behind markers)', () => {
  const src = s.path('stream-src.vmdk');
  qemuCreate(src, '', '6M');
  io(src, [...MIXED, 'write -P 0x77 5M 300k']);
  const p = s.path('stream.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, p]);
  assertReadsLikeQemu(p, s.path, 'stream');
});

test('a parent chain: child over base (parentCID), both written by qemu-io', () => {
  const base = s.path('base.vmdk');
  const mid = s.path('mid.vmdk');
  const child = s.path('child.vmdk');
  qemuCreate(base, '', '4M');
  io(base, ['write -P 0x31 0 4M']);
  qemuCreate(mid, '', '4M', 'base.vmdk');
  io(mid, ['write -P 0x32 64k 100k', 'write -z 1M 64k']);
  qemuCreate(child, 'subformat=twoGbMaxExtentSparse', '4M', 'mid.vmdk');
  io(child, ['write -P 0x33 70k 10k', 'write -P 0x34 3M 1k']);
  assertSameContent(mid, s.path, 'mid');
  assertSameContent(child, s.path, 'child');
});

test('a monolithicSparse vmdk over a qcow2 base (chains of any format)', () => {
  const base = s.path('b.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '2M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x41 0 2M', base]);
  const top = s.path('over-qcow2.vmdk');
  // qemu-img only makes vmdk children of vmdk parents: name the qcow2 parent by hand.
  qemuCreate(top, '', '2M');
  io(top, ['write -P 0x42 512k 4k']);
  const bytes = readFileSync(top);
  const text = bytes.subarray(512, 512 + 20 * 512).toString('latin1');
  const patched = text.replace('createType="monolithicSparse"', 'createType="monolithicSparse"\nparentFileNameHint="b.qcow2"').slice(0, 20 * 512);
  bytes.write(patched, 512, 'latin1');
  writeFileSync(top, bytes);
  const ours = s.path('over.raw');
  dwOk(['convert', '-O', 'raw', top, ours]);
  const data = readFileSync(ours);
  assert.equal(data[0], 0x41);
  assert.equal(data[512 * 1024], 0x42);
  // The grain qemu-io wrote before the parent was named holds zeros around the 4 KiB; the next grain is the parent's.
  assert.equal(data[512 * 1024 + 4096], 0);
  assert.equal(data[576 * 1024], 0x41);
});

test('VMDK3 (COWD, ESX 2) sparse extent with data: reads as qemu-img reads it', () => {
  const p = s.path('cowd.vmdk');
  const b = Buffer.alloc(80 * 512);
  b.set(serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 4096, granularity: 16, l1dirOffset: 4, l1dirSize: 1, fileSectors: 80, cylinders: 0, heads: 0, sectorsPerTrack: 0 }));
  b.write('# Disk DescriptorFile\nCID=12345678\nparentCID=ffffffff\n', 512, 'latin1');
  b.writeUInt32LE(5, 4 * 512); // L1[0] -> L2 at sector 5 (4096 entries, 32 sectors)
  b.writeUInt32LE(40, 5 * 512 + 0 * 4); // grain 0 at sector 40
  b.writeUInt32LE(56, 5 * 512 + 7 * 4); // grain 7 at sector 56
  b.fill(0xc1, 40 * 512, 56 * 512);
  b.fill(0xc7, 56 * 512, 72 * 512);
  b.fill(0xc8, 72 * 512 + 100, 72 * 512 + 200); // not mapped: must not show
  writeFileSync(p, b);
  assertReadsLikeQemu(p, s.path, 'cowd');
});

test('descriptor with FLAT, VMFS and ZERO extents: FLAT read as qemu reads it, VMFS and ZERO as written', () => {
  writeFileSync(s.path('e1.bin'), Buffer.alloc(1 << 20, 0x51));
  writeFileSync(s.path('e2.bin'), Buffer.concat([Buffer.alloc(512, 0x52), Buffer.alloc(1 << 20, 0x53)]));
  // A comment line before the extents: qemu 7.2 reads an extent line that follows a blank line twice.
  const head = ['# Disk DescriptorFile', 'version=1', 'CID=1', 'parentCID=ffffffff', 'createType="monolithicFlat"', '', '# Extent description'];
  const tail = ['', '# The Disk Data Base', 'ddb.adapterType = "lsilogic"', ''];
  const two = s.path('two-flat.vmdk');
  writeFileSync(two, [...head, 'RW 2048 FLAT "e1.bin" 0', 'RW 2048 FLAT "e2.bin" 1', ...tail].join('\n'));
  assertSameContent(two, s.path, 'two flat extents, one at an offset');
  // qemu 7.2 skips ZERO lines (no file name) and misreads VMFS ones: checked against the bytes written.
  const three = s.path('with-zero.vmdk');
  writeFileSync(three, [...head, 'RW 2048 FLAT "e1.bin" 0', 'RW 1024 ZERO', 'RW 2048 VMFS "e1.bin"', ...tail].join('\n'));
  const out = s.path('with-zero.raw');
  dwOk(['convert', '-O', 'raw', three, out]);
  const got = readFileSync(out);
  assert.equal(got.length, (2048 + 1024 + 2048) * 512);
  assert.ok(got.subarray(0, 1 << 20).every((x) => x === 0x51));
  assert.ok(got.subarray(1 << 20, (1 << 20) + (1024 << 9)).every((x) => x === 0));
  assert.ok(got.subarray((1 << 20) + (1024 << 9)).every((x) => x === 0x51));
});

test('createType vmfsSparse (a VMFSSPARSE extent: an ESX "COWD" file) and vmfs (a VMFS extent): content, map and info as qemu-img', () => {
  const delta = s.path('esx-delta.vmdk');
  const b = Buffer.alloc(80 * 512);
  b.set(serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 4096, granularity: 16, l1dirOffset: 4, l1dirSize: 1, fileSectors: 80, cylinders: 0, heads: 0, sectorsPerTrack: 0 }));
  b.writeUInt32LE(5, 4 * 512); // L1[0] -> L2 at sector 5
  b.writeUInt32LE(40, 5 * 512 + 0 * 4); // grain 0 at sector 40
  b.writeUInt32LE(56, 5 * 512 + 7 * 4); // grain 7 at sector 56
  b.fill(0xd1, 40 * 512, 56 * 512);
  b.fill(0xd7, 56 * 512, 72 * 512);
  writeFileSync(delta, b);
  writeFileSync(s.path('esx-flat.bin'), Buffer.concat([Buffer.alloc(1 << 20, 0xe1), Buffer.alloc(1 << 20, 0xe2)]));
  const descriptor = (type: string, extent: string) =>
    ['# Disk DescriptorFile', 'version=1', 'CID=fffffffe', 'parentCID=ffffffff', `createType="${type}"`, '', '# Extent description', extent, '', '# The Disk Data Base', '#DDB', '', 'ddb.adapterType = "lsilogic"', ''].join('\n');
  const cases: Array<[string, string]> = [
    ['vmfsSparse', 'RW 4096 VMFSSPARSE "esx-delta.vmdk"'],
    ['vmfs', 'RW 4096 VMFS "esx-flat.bin"'],
  ];
  for (const [type, extent] of cases) {
    const p = s.path(`esx-${type}.vmdk`);
    writeFileSync(p, descriptor(type, extent));
    assertReadsLikeQemu(p, s.path, type);
    const ours = JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
    const theirs = JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);
    assert.deepEqual(ours['format-specific'], theirs['format-specific'], `${type}: info format-specific`);
    assert.equal(ours['virtual-size'], theirs['virtual-size']);
  }
});

test('a large sparse image whose grain tables lie mostly in holes of the file reads, maps and takes writes as qemu-img', () => {
  // qemu-img writes every grain table up front but leaves the unused ones as holes: 200 GiB is 6,400 tables
  // (12.5 MiB), of which the writes below fill four. A read-only walk skips the tables that lie in holes.
  const p = s.path('holes.vmdk');
  qemuCreate(p, 'subformat=monolithicSparse', '200G');
  io(p, ['write -P 0x31 0 65536', 'write -P 0x32 39728447488 12288', 'write -P 0x33 161061273600 1048576', 'write -P 0x34 214747316224 1048576']);
  const st = statSync(p);
  assert.ok(st.blocks * 512 < st.size / 4, `the grain tables should be holes in the file (${st.blocks * 512} of ${st.size} bytes allocated)`);
  assertReadsLikeQemu(p, s.path, 'holes');
  // A writable open reads the tables it changes whatever the holes: a grain in a table that was a hole.
  writeFileSync(s.path('holes-data.bin'), Buffer.alloc(4096, 0x35));
  dwOk(['write', p, String(100 * 2 ** 30), s.path('holes-data.bin')]);
  assertReadsLikeQemu(p, s.path, 'holes after a write');
  const q = must('qemu-io', ['-f', 'vmdk', '-c', `read -P 0x35 ${100 * 2 ** 30} 4096`, p]).stdout;
  assert.match(q, /read 4096\/4096/);
});
