// Pure checks of inside/'s building blocks: the CRC-32 against the standard check value, hostile MBR chains
// (a loop, an endless chain) ending in findings rather than hangs, and paths that try to climb out of the root.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from '../../src-main/inside/crc32';
import { inspectDisk, type ByteSource } from '../../src-main/inside';
import { pathParts } from '../../src-main/inside/fs/reader';
import { DiskError } from '../../src-main/block/errors';

test('crc32 gives the CRC catalogue check value for "123456789" (0xCBF43926) and 0 for nothing', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

function memory(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: async (o, into) => void into.set(bytes.subarray(o, o + into.length)) };
}

function entry(sector: Uint8Array, slot: number, type: number, start: number, count: number): void {
  const v = new DataView(sector.buffer, sector.byteOffset + 446 + slot * 16, 16);
  sector[446 + slot * 16 + 4] = type;
  v.setUint32(8, start, true);
  v.setUint32(12, count, true);
  sector[510] = 0x55;
  sector[511] = 0xaa;
}

test('an extended chain that loops back to itself is cut with a finding', async () => {
  const disk = new Uint8Array(8 << 20);
  entry(disk, 0, 0x05, 2048, 8192);
  const ebr = disk.subarray(2048 * 512, 2049 * 512);
  entry(ebr, 0, 0x83, 2048, 1024);
  entry(ebr, 1, 0x05, 0, 4096); // the next EBR is this one again
  const l = await inspectDisk(memory(disk));
  assert.deepEqual(l.partitions.map((p) => p.number), [1, 5]);
  assert.ok(l.findings.some((f) => /loops back/.test(f.message)), JSON.stringify(l.findings));
});

test('an endless chain of logical partitions stops at a limit with a finding', async () => {
  const disk = new Uint8Array(16 << 20);
  entry(disk, 0, 0x0f, 1, 32767);
  for (let i = 0; i < 1000; i++) {
    const at = 1 + i * 2;
    if ((at + 2) * 512 > disk.length) break;
    const ebr = disk.subarray(at * 512, at * 512 + 512);
    entry(ebr, 0, 0x83, 1, 1);
    entry(ebr, 1, 0x05, at + 1, 2); // relative to the extended partition's start (sector 1)
  }
  const l = await inspectDisk(memory(disk));
  assert.equal(l.partitions.length, 1 + 256);
  assert.ok(l.findings.some((f) => /longer than 256/.test(f.message)), JSON.stringify(l.findings));
});

test('paths inside a disk cannot climb out of the root', () => {
  assert.deepEqual(pathParts('/a//b/./c/'), ['a', 'b', 'c']);
  assert.throws(() => pathParts('/a/../../etc'), DiskError);
});
