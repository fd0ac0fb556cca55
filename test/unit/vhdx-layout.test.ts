import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import {
  BAT_GUID,
  FILE_PARAMETERS_GUID,
  HEADER_SIZE,
  METADATA_GUID,
  PARENT_LOCATOR_VHDX_TYPE,
  VIRTUAL_DISK_SIZE_GUID,
  batEntries,
  checksumValid,
  chooseHeader,
  crc32c,
  parentFileName,
  parseFileParameters,
  parseHeader,
  parseMetadataTable,
  parseParentLocator,
  parseRegionTable,
  probeVhdx,
  readGuid,
  serializeFileParameters,
  serializeHeader,
  serializeMetadataTable,
  serializeParentLocator,
  serializeRegionTable,
  writeGuid,
  type VhdxHeader,
} from '../../src-main/formats/vhdx/layout';

const MiB = 1024 * 1024;

test('CRC-32C matches the standard check value and the fast-crc32c package', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fast = require('fast-crc32c') as { calculate: (b: Buffer) => number };
  const data = Buffer.alloc(70000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
  assert.equal(crc32c(data), fast.calculate(data) >>> 0);
});

test('GUIDs are stored mixed-endian: the BAT region GUID bytes as the spec lays them out', () => {
  const b = new Uint8Array(16);
  writeGuid(b, 0, BAT_GUID);
  assert.deepEqual(Array.from(b), [0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]);
  assert.equal(readGuid(b, 0), BAT_GUID);
  assert.throws(() => writeGuid(b, 0, 'not-a-guid'));
});

const HDR: VhdxHeader = {
  sequenceNumber: 7n,
  fileWriteGuid: '11111111-2222-3333-4444-555555555555',
  dataWriteGuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
  logGuid: '00000000-0000-0000-0000-000000000000',
  logVersion: 0,
  version: 1,
  logLength: MiB,
  logOffset: MiB,
};

test('header round trip with a valid checksum; damage or a wrong version makes it invalid', () => {
  const b = serializeHeader(HDR);
  assert.equal(b.length, HEADER_SIZE);
  assert.equal(Buffer.from(b).toString('latin1', 0, 4), 'head');
  assert.equal(checksumValid(b, 4), true);
  assert.deepEqual(parseHeader(b, 'x'), HDR);
  const damaged = b.slice();
  damaged[100] ^= 1;
  assert.equal(parseHeader(damaged, 'x'), undefined);
  assert.equal(parseHeader(serializeHeader({ ...HDR, version: 2 }), 'x'), undefined);
});

test('chooseHeader picks the valid one, then the higher sequence number; equal numbers must be identical', () => {
  const a = serializeHeader(HDR);
  const b = serializeHeader({ ...HDR, sequenceNumber: 8n });
  const bad = new Uint8Array(HEADER_SIZE);
  assert.equal(chooseHeader(a, b, 'x').index, 1);
  assert.equal(chooseHeader(b, a, 'x').index, 0);
  assert.equal(chooseHeader(a, bad, 'x').index, 0);
  assert.equal(chooseHeader(bad, b, 'x').index, 1);
  assert.equal(chooseHeader(a, a, 'x').index, 0);
  assert.throws(() => chooseHeader(bad, bad, 'x'), /no valid VHDX header/);
  assert.throws(() => chooseHeader(a, serializeHeader({ ...HDR, logLength: 2 * MiB }), 'x'), /same sequence number/);
});

test('region table round trip and its checks (alignment, bounds, overlap, duplicates)', () => {
  const regions = [
    { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true },
    { guid: METADATA_GUID, fileOffset: 2 * MiB, length: MiB, required: true },
  ];
  const t = serializeRegionTable(regions);
  assert.deepEqual(parseRegionTable(t, 'x', 8 * MiB), regions);
  const bad: Array<[typeof regions, number, RegExp]> = [
    [[{ ...regions[0], fileOffset: 3 * MiB + 4096 }], 8 * MiB, /aligned/],
    [[regions[0]], 3 * MiB, /past the end/],
    [[regions[0], { ...regions[1], fileOffset: 3 * MiB, guid: METADATA_GUID }], 8 * MiB, /overlap/],
    [[regions[0], { ...regions[0], fileOffset: 5 * MiB }], 8 * MiB, /listed twice/],
  ];
  for (const [r, size, re] of bad) assert.throws(() => parseRegionTable(serializeRegionTable(r), 'x', size), re);
  const broken = t.slice();
  broken[20] ^= 1;
  assert.throws(() => parseRegionTable(broken, 'x', 8 * MiB), /checksum/);
  const many = t.slice();
  new DataView(many.buffer).setUint32(8, 5000, true);
  assert.throws(() => parseRegionTable(many, 'x', 8 * MiB), (e: unknown) => e instanceof DiskError);
});

test('metadata table round trip; items must lie inside the region', () => {
  const items = [
    { itemId: FILE_PARAMETERS_GUID, offset: 65536, length: 8, isUser: false, isVirtualDisk: false, isRequired: true },
    { itemId: VIRTUAL_DISK_SIZE_GUID, offset: 65544, length: 8, isUser: false, isVirtualDisk: true, isRequired: true },
  ];
  const t = serializeMetadataTable(items);
  assert.deepEqual(parseMetadataTable(t, 'x', MiB), items);
  assert.throws(() => parseMetadataTable(serializeMetadataTable([{ ...items[0], offset: MiB - 4 }]), 'x', MiB), /outside the metadata region/);
  assert.throws(() => parseMetadataTable(serializeMetadataTable([{ ...items[0], offset: 100 }]), 'x', MiB), /outside the metadata region/);
  assert.throws(() => parseMetadataTable(serializeMetadataTable([items[0], items[0]]), 'x', MiB), /listed twice/);
});

test('file parameters round trip; block sizes outside 1..256 MiB or not powers of two are refused', () => {
  for (const p of [{ blockSize: MiB, leaveBlocksAllocated: true, hasParent: false }, { blockSize: 256 * MiB, leaveBlocksAllocated: false, hasParent: true }]) {
    assert.deepEqual(parseFileParameters(serializeFileParameters(p), 'x'), p);
  }
  for (const bs of [0, MiB / 2, 3 * MiB, 512 * MiB]) {
    assert.throws(() => parseFileParameters(serializeFileParameters({ blockSize: bs, leaveBlocksAllocated: false, hasParent: false }), 'x'), /block size/);
  }
});

test('parent locator round trip (UTF-16LE keys and values) and its file name', () => {
  const p = { type: PARENT_LOCATOR_VHDX_TYPE, entries: { parent_linkage: '{guid}', relative_path: '..\\bäse.vhdx', absolute_win32_path: 'C:\\x.vhdx' } };
  const back = parseParentLocator(serializeParentLocator(p), 'x');
  assert.deepEqual(back, p);
  assert.equal(parentFileName(back), '..\\bäse.vhdx');
  assert.equal(parentFileName({ type: p.type, entries: { absolute_win32_path: 'C:\\x.vhdx' } }), 'C:\\x.vhdx');
  const cut = serializeParentLocator(p).slice(0, 40);
  assert.throws(() => parseParentLocator(cut, 'x'), (e: unknown) => e instanceof DiskError);
});

test('BAT entry counts follow the spec (payload blocks plus interleaved bitmap entries)', () => {
  // 100 MiB in 8 MiB blocks: 13 payload blocks, chunk ratio 512, no bitmap entry needed before the last.
  assert.equal(batEntries(100 * MiB, 8 * MiB, 512, false), 13);
  // 1 MiB blocks, 512-byte sectors: chunk ratio 4096; 5000 blocks need one interleaved bitmap entry.
  assert.equal(batEntries(5000 * MiB, MiB, 512, false), 5001);
  assert.equal(batEntries(5000 * MiB, MiB, 512, true), 2 * 4097);
  assert.equal(batEntries(0, MiB, 512, false), 0);
});

test('the probe wants "vhdxfile" at byte 0', () => {
  assert.equal(probeVhdx(new TextEncoder().encode('vhdxfile....')), 100);
  assert.equal(probeVhdx(new TextEncoder().encode('vhdxfil')), 0);
  assert.equal(probeVhdx(new TextEncoder().encode('VHDXFILE')), 0);
});
