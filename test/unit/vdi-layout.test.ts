import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import { uint32TableFromLittleEndian } from '../../src-main/block/table-scan';
import {
  blockHostOffset,
  bmapBytes,
  createHeader,
  guestSize,
  HEADER_SIZE,
  HEADER_SIZE_1_1_PLUS,
  isDifferencing,
  KNOWN_TEXTS,
  MAX_BLOCKS,
  parseHeader,
  probeVdi,
  serializeBmap,
  serializeHeader,
  SIGNATURE,
  TYPE_DIFFERENCING,
  validateHeader,
  VERSION_1_1,
  ZERO_UUID,
  type VdiHeader,
} from '../../src-main/formats/vdi/layout';
import { examineBmap, writeRefusal } from '../../src-main/formats/vdi/image';

const U1 = '0e1f3af7-c7ba-694c-a910-b4ab32cd5775';
const U2 = '98e860b7-f257-4745-8069-d676676196ab';
const U3 = '11223344-5566-7788-99aa-bbccddeeff00';
const U4 = 'ffeeddcc-bbaa-9988-7766-554433221100';

/** A VirtualBox-style header: 400-byte 1.1 header with LCHS geometry, every UUID set, a description. */
const VBOX: VdiHeader = {
  text: KNOWN_TEXTS[0],
  signature: SIGNATURE,
  version: VERSION_1_1,
  headerSize: HEADER_SIZE_1_1_PLUS,
  imageType: TYPE_DIFFERENCING,
  imageFlags: 0,
  description: 'a disk',
  offsetBmap: 0x100000,
  offsetData: 0x200000,
  legacy: { cylinders: 0, heads: 0, sectors: 0, sectorSize: 512 },
  diskSize: 64 * 2 ** 20,
  blockSize: 2 ** 20,
  blockExtra: 0,
  blocksInImage: 64,
  blocksAllocated: 3,
  uuidImage: U1,
  uuidLastSnap: U2,
  uuidLink: U3,
  uuidParent: U4,
  lchs: { cylinders: 130, heads: 16, sectors: 63, sectorSize: 512 },
};

test('vdi: fields at VirtualBox\'s offsets, little-endian; UUIDs with their first three fields little-endian', () => {
  const b = Buffer.from(serializeHeader(VBOX));
  assert.equal(b.toString('latin1', 0, KNOWN_TEXTS[0].length), KNOWN_TEXTS[0]);
  assert.equal(b.readUInt32LE(0x40), 0xbeda107f);
  assert.equal(b.readUInt32LE(0x44), 0x00010001);
  assert.equal(b.readUInt32LE(0x48), 400);
  assert.equal(b.readUInt32LE(0x4c), 4);
  assert.equal(b.toString('latin1', 0x54, 0x54 + 6), 'a disk');
  assert.equal(b.readUInt32LE(0x154), 0x100000);
  assert.equal(b.readUInt32LE(0x158), 0x200000);
  assert.equal(b.readUInt32LE(0x168), 512);
  assert.equal(b.readBigUInt64LE(0x170), 64n * 2n ** 20n);
  assert.equal(b.readUInt32LE(0x178), 2 ** 20);
  assert.equal(b.readUInt32LE(0x180), 64);
  assert.equal(b.readUInt32LE(0x184), 3);
  // 0e1f3af7-c7ba-... is stored f7 3a 1f 0e ba c7 ...: as qemu swaps it (qemu_uuid_bswap) and VirtualBox stores RTUUID.
  assert.deepEqual([...b.subarray(0x188, 0x18c)], [0xf7, 0x3a, 0x1f, 0x0e]);
  assert.deepEqual([...b.subarray(0x18c, 0x190)], [0xba, 0xc7, 0x4c, 0x69]);
  assert.deepEqual([...b.subarray(0x190, 0x192)], [0xa9, 0x10]);
  assert.equal(b.readUInt32LE(0x1c8), 130);
  assert.equal(b.readUInt32LE(0x1cc), 16);
  assert.equal(b.readUInt32LE(0x1d0), 63);
  assert.equal(probeVdi(b), 100);
  assert.equal(probeVdi(b.subarray(0, 100)), 0);
});

test('vdi: header round trip (VirtualBox 400-byte header and qemu 384-byte header), unknown bytes kept from the base', () => {
  assert.deepEqual(parseHeader(serializeHeader(VBOX), 'x'), VBOX);
  const q = createHeader(10 * 2 ** 20, false, U1, U2);
  const parsed = parseHeader(serializeHeader(q), 'x');
  assert.equal(parsed.lchs, undefined, 'a 0x180-byte header has no LCHS geometry');
  assert.deepEqual(parsed, q);
  const base = new Uint8Array(HEADER_SIZE).fill(0xab);
  const out = serializeHeader(q, base);
  assert.equal(out[0x1f0], 0xab, 'bytes past the fields are kept');
  assert.equal(out[0x60], 0, 'the description is rewritten with its NUL padding');
  assert.equal(isDifferencing(VBOX), true);
  assert.equal(isDifferencing(q), false);
});

test('vdi: qemu-img create\'s layout: map at 512, data after the map rounded to a sector, static maps every block', () => {
  const d = createHeader(10 * 2 ** 20, false, U1, U2);
  assert.equal(d.offsetBmap, 512);
  assert.equal(d.offsetData, 1024);
  assert.equal(d.blocksInImage, 10);
  assert.equal(d.blocksAllocated, 0);
  assert.equal(d.headerSize, 0x180);
  const s = createHeader(300 * 2 ** 30, true, U1, U2);
  assert.equal(s.blocksInImage, 300 * 1024);
  assert.equal(s.offsetData, 512 + bmapBytes(s));
  assert.equal(s.blocksAllocated, s.blocksInImage);
  assert.equal(createHeader(0, false, U1, U2).offsetData, 512);
});

test('vdi: block map codec and host offsets (VirtualBox\'s extra block data comes before each block)', () => {
  const m = Uint32Array.from([0xffffffff, 0, 0xfffffffe, 7]);
  // Read back as open reads it: the bytes straight into a table, then the one conversion (block/table-scan.ts).
  assert.deepEqual(uint32TableFromLittleEndian(new Uint32Array(serializeBmap(m).slice().buffer)), m);
  assert.deepEqual(uint32TableFromLittleEndian(new Uint32Array(serializeBmap(m).slice().buffer), false), m, 'the byte-swapping path too');
  assert.deepEqual([...serializeBmap(m, 1, 2)], [0, 0, 0, 0]);
  assert.equal(blockHostOffset(VBOX, 2), 0x200000 + 2 * 2 ** 20);
  assert.equal(blockHostOffset({ ...VBOX, blockExtra: 512 }, 2), 0x200000 + 2 * (2 ** 20 + 512) + 512);
});

test('vdi: validation follows qemu\'s open (its refusals and rounding) and bounds the map by the file', () => {
  const ok = createHeader(10 * 2 ** 20, false, U1, U2);
  const size = 1024;
  validateHeader(ok, 'x', size);
  const refuse = (h: Partial<VdiHeader>, code: string, re: RegExp, fileSize = size) =>
    assert.throws(() => validateHeader({ ...ok, ...h }, 'x', fileSize), (e: unknown) => e instanceof DiskError && e.code === code && re.test(e.message));
  refuse({ signature: 1 }, 'EINVAL', /not a VDI image/);
  refuse({ version: 0x00010000 }, 'EUNSUPPORTED', /version 1\.0/);
  refuse({ offsetBmap: 513 }, 'EUNSUPPORTED', /unaligned block map/);
  refuse({ offsetData: 1000 }, 'EUNSUPPORTED', /unaligned data offset/);
  refuse({ legacy: { ...ok.legacy, sectorSize: 4096 } }, 'EUNSUPPORTED', /sector size 4096/);
  refuse({ blockSize: 2 ** 21 }, 'EUNSUPPORTED', /block size/);
  refuse({ diskSize: 11 * 2 ** 20 }, 'EUNSUPPORTED', /room for/);
  refuse({ blocksInImage: MAX_BLOCKS + 1, diskSize: 0 }, 'EUNSUPPORTED', /too many blocks/);
  refuse({ diskSize: 2 ** 52 }, 'EUNSUPPORTED', /size is/);
  refuse({}, 'ECORRUPT', /past the end of the file/, 540);
  // An odd size (VBoxManage convertfromraw) is rounded up to a sector, as qemu does.
  assert.equal(guestSize({ ...ok, diskSize: 1000 }), 1024);
  // qemu refuses a link or parent UUID; we read differencing images.
  validateHeader({ ...ok, uuidLink: U3, uuidParent: U4 }, 'x', size);
  assert.equal(ZERO_UUID, ok.uuidLink);
});

test('vdi: block map findings as qemu\'s check counts them, and the writes they forbid', () => {
  const h = { ...createHeader(8 * 2 ** 20, false, U1, U2), blocksAllocated: 3 };
  const clean = Uint32Array.from([0, 0xffffffff, 1, 0xfffffffe, 2, 0xffffffff, 0xffffffff, 0xffffffff]);
  assert.deepEqual(examineBmap(h, clean), { tooLarge: [], shared: [], counted: 3, pastCount: [] });
  assert.equal(writeRefusal(h, clean, 'x'), undefined);
  const bad = Uint32Array.from([0, 9, 1, 0, 2, 0xffffffff, 0xffffffff, 0xffffffff]);
  assert.deepEqual(examineBmap(h, bad), { tooLarge: [1], shared: [[3, 0]], counted: 4, pastCount: [] });
  assert.deepEqual(examineBmap(h, Uint32Array.from([0, 1, 5, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff])).pastCount, [2]);
  assert.match(writeRefusal(h, bad, 'x')!.message, /past the 8 blocks/);
  // A count below an entry in use: the next allocation would reuse that block.
  assert.match(writeRefusal({ ...h, blocksAllocated: 2 }, clean, 'x')!.message, /counts only 2/);
  // A count above the entries (a crash between header and map) only leaks: writing is allowed.
  assert.equal(writeRefusal({ ...h, blocksAllocated: 4 }, clean, 'x'), undefined);
});
