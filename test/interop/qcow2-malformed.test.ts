/**
 * Damaged qcow2 images give one plain DiskError line (exit 1), never a stack trace, a hang or a huge
 * allocation. The damage is made by flipping a few bytes of real qemu-img images.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dwOk, must, scratch } from '../helpers';
import { assertPlainError, io } from './qcow2-common';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-qcow2-bad-');
after(() => s.cleanup());

/** A small image with data, a zero cluster and a compressed cluster; returns its bytes and table offsets. */
function baseImage(): { bytes: Buffer; l1: number; l2: number } {
  const raw = s.path('src.raw');
  const data = Buffer.alloc(512 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  writeFileSync(raw, data);
  const img = s.path('base.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', raw, img]);
  io(img, ['write -P 0x11 128k 64k', 'write -z 256k 64k']);
  const bytes = readFileSync(img);
  const l1 = Number(bytes.readBigUInt64BE(40));
  const l2 = Number(bytes.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  return { bytes, l1, l2 };
}

const base = baseImage();
let n = 0;

function damaged(edit: (b: Buffer) => void): string {
  const b = Buffer.from(base.bytes);
  edit(b);
  const p = s.path(`bad${n++}.qcow2`);
  writeFileSync(p, b);
  return p;
}

const CASES: Array<[string, (b: Buffer) => void, RegExp]> = [
  ['huge l1_size', (b) => b.writeUInt32BE(0xffffffff, 36), /L1 table is too large/],
  ['L1 table offset past the end of the file', (b) => b.writeBigUInt64BE(0x40000000n, 40), /L1 table lies past the end/],
  ['cluster_bits 8', (b) => b.writeUInt32BE(8, 20), /cluster size/],
  ['cluster_bits 40', (b) => b.writeUInt32BE(40, 20), /cluster size/],
  ['refcount table past the end of the file', (b) => b.writeBigUInt64BE(0x7000000000n, 48), /refcount table/],
  ['L2 table past the end of the file', (b) => b.writeBigUInt64BE(0x8000000040000000n, base.l1), /L2 table .*past the end/],
  ['unaligned L2 table offset', (b) => b.writeBigUInt64BE(0x8000000000030200n, base.l1), /unaligned L2 table/],
  ['data cluster past the end of the file', (b) => b.writeBigUInt64BE(0x8000000100000000n, base.l2 + 2 * 8), /past the end of the file/],
  ['unaligned data cluster', (b) => b.writeBigUInt64BE(0x8000000000050200n, base.l2 + 2 * 8), /unaligned host offset/],
  ['compressed cluster past the end of the file', (b) => b.writeBigUInt64BE((1n << 62n) | 0x3000000000n, base.l2), /compressed cluster lies past the end/],
  ['garbage compressed data', (b) => {
    const e = b.readBigUInt64BE(base.l2);
    const off = Number(e & ((1n << 54n) - 1n));
    b.fill(0xff, off, off + 64);
  }, /cannot be decompressed/],
  ['unknown incompatible feature', (b) => (b[72] = 0x80), /unknown incompatible features/],
  ['version 4', (b) => b.writeUInt32BE(4, 4), /version 4/],
  ['encrypted (AES) without a passphrase', (b) => b.writeUInt32BE(1, 32), /encrypted: a passphrase is needed/],
  ['external data file bit', (b) => (b[79] |= 4), /external data file.*not supported/],
];

for (const [label, edit, pattern] of CASES) {
  test(`${label}: convert gives one plain error line`, () => {
    const p = damaged(edit);
    assertPlainError(['convert', '-O', 'raw', p, s.path(`out${n++}.raw`)], pattern);
  });
}

test('damaged zstd-compressed data gives a plain error naming zstd', () => {
  const raw = s.path('z.raw');
  writeFileSync(raw, Buffer.alloc(65536, 0x42));
  const img = s.path('zstd.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', raw, img]);
  const b = readFileSync(img);
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  const off = Number(b.readBigUInt64BE(l2) & ((1n << 54n) - 1n));
  b[off + 5] = 0xff; // window descriptor: a 2^41-byte window
  writeFileSync(img, b);
  assertPlainError(['convert', '-O', 'raw', img, s.path('zout.raw')], /zstd/);
  // Its map needs no decompression.
  assert.match(dwOk(['map', '--output', 'json', img]).stdout, /"data": true/);
});

test('random byte damage in the metadata never escapes as anything but a DiskError', async () => {
  // Flip bytes in the header, the L1 table, the L2 table and the refcount structures.
  const regions: Array<[number, number]> = [
    [0, 120],
    [base.l1, base.l1 + 16],
    [base.l2, base.l2 + 128],
    [65536, 65536 + 16],
    [131072, 131072 + 64],
  ];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let iter = 0; iter < 150; iter++) {
    const p = damaged((b) => {
      for (let k = 0; k < 3; k++) {
        const [a, z] = regions[Math.floor(rnd() * regions.length)];
        const pos = a + Math.floor(rnd() * (z - a));
        b[pos] ^= 1 << Math.floor(rnd() * 8);
      }
    });
    try {
      const dev = await openImage(p, { readOnly: true, backingPolicy: 'none' });
      try {
        // A flipped size field can make the disk large; the first MiBs hold everything the image maps.
        const buf = new Uint8Array(Math.min(dev.size, 4 << 20));
        await dev.read(0, buf);
        for (let pos = 0; pos < dev.size; ) pos += (await dev.status(pos, dev.size - pos)).length;
      } finally {
        await dev.close();
      }
    } catch (err) {
      assert.ok(err instanceof DiskError, `iteration ${iter}: ${(err as Error)?.stack}`);
    }
  }
});
