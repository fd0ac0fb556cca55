/**
 * VMDK images made by qemu-img and qemu-io read here as qemu-img reads them, over every subformat qemu-img
 * writes: `diskwright convert -O raw` equals the image under `qemu-img compare`, and `diskwright map` gives
 * `qemu-img map`'s entries. Includes a twoGbMaxExtentSparse with data across the 2 GiB extent boundary, zeroed
 * grains, compressed stream grains and a parent chain.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { scratch, dwOk, must } from '../helpers';
import { MIXED, assertReadsLikeQemu, assertSameContent, io, qemuCreate } from './vmdk-common';

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
