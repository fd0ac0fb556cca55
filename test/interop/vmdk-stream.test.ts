/**
 * streamOptimized output: `convert -O vmdk -o subformat=streamOptimized` lays the file out as VMware's writers
 * do, and a walk of the file marker by marker proves it: version 3 header with GD_AT_END, descriptor, grains
 * behind grain markers in increasing order, each grain table behind its marker after its grains, the grain
 * directory behind its marker, the footer (marker + header copy locating the directory), end-of-stream. qemu-img
 * reads it equal to the source; its device takes writes in increasing order only.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import { dwOk, must, scratch } from '../helpers';
import { assertQemuAccepts, assertReadsLikeQemu } from './vmdk-common';
import { createImage } from '../../src-main/services/create';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';
import { GD_AT_END, parseDescriptor, parseVmdk4Header } from '../../src-main/formats/vmdk/layout';

const s = scratch('dw-vmdk-stream-');
after(() => s.cleanup());

interface Walk {
  grains: Array<{ lba: number; at: number; data: Buffer }>;
  tables: number[];
  directory?: { at: number; entries: number[] };
  footerGd?: number;
  eos: boolean;
}

/** Walks a stream file sector by sector from the header's overhead, as a streaming reader would. */
function walk(buf: Buffer): Walk {
  const h = parseVmdk4Header(buf.subarray(0, 512), 'x');
  const w: Walk = { grains: [], tables: [], eos: false };
  let sec = h.overhead;
  while (sec * 512 < buf.length) {
    const at = sec * 512;
    const val = Number(buf.readBigUInt64LE(at));
    const size = buf.readUInt32LE(at + 8);
    if (size > 0) {
      // A grain: its bytes inflate to one whole grain.
      const data = inflateSync(buf.subarray(at + 12, at + 12 + size));
      assert.equal(data.length, h.granularity * 512);
      w.grains.push({ lba: val, at: sec, data });
      sec += Math.ceil((12 + size) / 512);
      continue;
    }
    const type = buf.readUInt32LE(at + 12);
    if (type === 0) {
      w.eos = true;
      assert.equal(at + 512, buf.length, 'end-of-stream is the last sector');
      break;
    }
    if (type === 1) w.tables.push(sec + 1);
    if (type === 2) {
      const entries: number[] = [];
      for (let i = 0; i < Math.ceil(h.capacity / (512 * h.granularity)); i++) entries.push(buf.readUInt32LE(at + 512 + i * 4));
      w.directory = { at: sec + 1, entries };
    }
    if (type === 3) {
      const f = parseVmdk4Header(buf.subarray(at + 512, at + 1024), 'x');
      w.footerGd = f.gdOffset;
    }
    sec += 1 + val;
  }
  return w;
}

test('convert -O vmdk -o subformat=streamOptimized: VMware layout, walked marker by marker; qemu-img reads it', () => {
  const raw = s.path('src.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '70M']);
  // Data in the first and third grain table spans (32 MiB each), none in the second; a partial grain at the end.
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 100k', '-c', 'write -P 0x22 1M 64k', '-c', 'write -P 0x33 66M 4k', '-c', 'write -P 0x44 71679k 1k', raw]);
  const p = s.path('out.vmdk');
  dwOk(['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized,adapter_type=lsilogic', raw, p]);
  assertQemuAccepts(p, raw);
  assertReadsLikeQemu(p, s.path, 'stream');

  const buf = readFileSync(p);
  const h = parseVmdk4Header(buf.subarray(0, 512), p);
  assert.equal(h.version, 3);
  assert.equal(h.gdOffset, undefined, 'GD_AT_END in the header');
  assert.equal(buf.readBigUInt64LE(56), GD_AT_END);
  assert.equal(h.flags & 0x30000, 0x30000, 'compressed grains with markers');
  assert.equal(h.compressAlgorithm, 1);
  const d = parseDescriptor(buf.subarray(h.descriptorOffset * 512, (h.descriptorOffset + h.descriptorSize) * 512).toString('latin1'), p);
  assert.equal(d.createType, 'streamOptimized');
  assert.equal(d.ddb.adapterType, 'lsilogic');
  assert.ok(d.ddb.virtualHWVersion);
  assert.ok(d.ddb.toolsVersion);
  // What VMware's own stream writer (open-vmdk) puts in the descriptor and qemu-img leaves out: ESXi's imports
  // look for these. qemu-img reads the file all the same (below).
  const text = buf.subarray(h.descriptorOffset * 512, (h.descriptorOffset + h.descriptorSize) * 512).toString('latin1');
  assert.match(text, /^version=1\nencoding="UTF-8"\n/m);
  assert.equal(d.ddb.toolsInstallType, '4');
  assert.match(d.ddb.longContentID ?? '', /^[0-9a-f]{32}$/);

  const w = walk(buf);
  assert.ok(w.eos);
  assert.deepEqual(
    w.grains.map((g) => g.lba),
    [0, 128, 2048, 135168, 143232],
    'grains in increasing order: 0-100k (two), 1M, 66M, the last partial grain',
  );
  assert.equal(w.tables.length, 2, 'a table for each span with data, none for the empty one');
  assert.ok(w.directory);
  assert.equal(w.footerGd, w.directory!.at, 'the footer locates the directory');
  assert.deepEqual(w.directory!.entries, [w.tables[0], 0, w.tables[1]]);
  // Each table comes after the grains it maps.
  assert.ok(w.tables[0] > w.grains[2].at && w.tables[0] < w.grains[3].at);
});

test('the stream device takes writes in increasing order only, and refuses reads while written', async () => {
  const p = s.path('order.vmdk');
  await createImage({ path: p, format: 'vmdk', size: 4 << 20, options: { subformat: 'streamOptimized' } });
  const dev = await openImage(p, { readOnly: false, backingPolicy: 'anywhere' });
  await dev.write(0, new Uint8Array(4096).fill(1));
  await dev.write(4096, new Uint8Array(4096).fill(2));
  await dev.writeZeroes(1 << 20, 4096);
  await dev.write(2 << 20, new Uint8Array(512).fill(3));
  await assert.rejects(dev.write(1 << 20, new Uint8Array(512)), (e: unknown) => e instanceof DiskError && /front to back/.test(e.message));
  await assert.rejects(dev.read(0, new Uint8Array(512)), (e: unknown) => e instanceof DiskError);
  await dev.close();
  const ref = s.path('order.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', ref, '4M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', '-c', 'write -P 2 4k 4k', '-c', 'write -P 3 2M 512', ref]);
  assertQemuAccepts(p, ref);
});

test('an empty stream made by create reads as zeros (qemu-img) and, reopened, is filled by convert -n', () => {
  const p = s.path('empty.vmdk');
  dwOk(['create', '-f', 'vmdk', '-o', 'subformat=streamOptimized', p, '3M']);
  const zero = s.path('zero.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', zero, '3M']);
  assertQemuAccepts(p, zero);
  const src = s.path('fill.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', src, '3M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 9 100k 1M', src]);
  dwOk(['convert', '-n', '-O', 'vmdk', src, p]);
  assertQemuAccepts(p, src);
});

test('many grains compressed side by side land in guest order, each holding its own data, tables after their grains', () => {
  const raw = s.path('many.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '40M']);
  // 100 grains, each with its own pattern, across the 32 MiB table boundary; a zero grain among them.
  const writes = Array.from({ length: 100 }, (_, i) => ['-c', `write -P ${(i % 250) + 1} ${(30 << 20) + i * 65536} 65536`]).flat();
  must('qemu-io', ['-f', 'raw', ...writes, '-c', `write -z ${(30 << 20) + 50 * 65536} 65536`, raw]);
  const p = s.path('many.vmdk');
  dwOk(['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, p]);
  assertQemuAccepts(p, raw);
  const w = walk(readFileSync(p));
  const src = readFileSync(raw);
  assert.equal(w.grains.length, 99, 'every grain with data, the zero one left out');
  for (let i = 1; i < w.grains.length; i++) assert.ok(w.grains[i].lba > w.grains[i - 1].lba && w.grains[i].at > w.grains[i - 1].at, 'in guest order');
  for (const g of w.grains) assert.ok(g.data.equals(src.subarray(g.lba * 512, g.lba * 512 + 65536)), `grain at sector ${g.lba} holds its own data`);
  assert.equal(w.tables.length, 2);
  const firstOfSecond = w.grains.findIndex((g) => g.lba >= 65536);
  assert.ok(w.tables[0] > w.grains[firstOfSecond - 1].at && w.tables[0] < w.grains[firstOfSecond].at, 'table 0 between its grains and the next table\'s');
  assert.ok(w.tables[1] > w.grains[w.grains.length - 1].at, 'table 1 after its grains');
});
