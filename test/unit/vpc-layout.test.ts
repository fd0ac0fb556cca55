/**
 * VHD codecs: footer and dynamic header round trips with their checksums, the bytes of the fields at the offsets
 * the spec gives, UTF-16 names and locators, the sector bitmap's bit order, qemu's rule for the size the guest
 * sees, and the CHS geometry (the figures qemu-img create gives are checked against qemu-img itself in
 * test/interop/vpc-create.test.ts; here the invariants: the size is a geometry's product and not below the request).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calculateGeometry, roundedImageSize } from '../../src-main/formats/vpc/geometry';
import {
  bitmapBit,
  bitmapSize,
  decodeLocatorData,
  encodeLocatorData,
  footerChecksumOk,
  headerChecksumOk,
  LOCATOR_MACX,
  LOCATOR_W2KU,
  LOCATOR_W2RU,
  locatorSpaceBytes,
  MAX_CHS_SECTORS,
  parseDynamicHeader,
  parseFooter,
  platformName,
  serializeDynamicHeader,
  serializeFooter,
  setBitmapBits,
  usesCurrentSize,
  vhdChecksum,
  vhdTime,
  virtualSizeOf,
  type DynamicHeader,
  type Footer,
} from '../../src-main/formats/vpc/layout';

const footer: Footer = {
  features: 2,
  version: 0x00010000,
  dataOffset: 512n,
  timestamp: 0x32a7861a,
  creatorApp: 'qemu',
  creatorVersion: 0x00050003,
  creatorOs: 'Wi2k',
  originalSize: 104865792n,
  currentSize: 104865792n,
  cylinders: 1004,
  heads: 12,
  sectorsPerTrack: 17,
  diskType: 3,
  checksum: 0,
  uuid: 'd2da6443-a4b6-4328-a2b7-34f10ac3a23b',
  savedState: 0,
};

test('footer: round trip, the checksum over all 512 bytes, fields at the spec offsets', () => {
  const b = serializeFooter(footer);
  assert.equal(b.length, 512);
  assert.equal(Buffer.from(b.subarray(0, 8)).toString('latin1'), 'conectix');
  assert.ok(footerChecksumOk(b));
  const back = parseFooter(b)!;
  assert.deepEqual({ ...back, checksum: 0 }, footer);
  const dv = new DataView(b.buffer);
  assert.equal(dv.getUint16(56), 1004);
  assert.equal(b[58], 12);
  assert.equal(b[59], 17);
  assert.equal(dv.getUint32(60), 3);
  assert.equal(Buffer.from(b.subarray(68, 84)).toString('hex'), 'd2da6443a4b64328a2b734f10ac3a23b');
  // The checksum is the one's complement of the byte sum without the checksum field.
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += b[i];
  assert.equal(dv.getUint32(64), ~sum >>> 0);
  const bad = b.slice();
  bad[100] ^= 1;
  assert.ok(!footerChecksumOk(bad));
  assert.equal(parseFooter(new Uint8Array(512)), undefined, 'no cookie, no footer');
});

test('dynamic header: round trip with parent fields and eight locators, its checksum', () => {
  const h: DynamicHeader = {
    dataOffset: 0xffffffffffffffffn,
    tableOffset: 3584n,
    version: 0x00010000,
    maxTableEntries: 51,
    blockSize: 2 * 1024 * 1024,
    checksum: 0,
    parentUuid: '00112233-4455-6677-8899-aabbccddeeff',
    parentTimestamp: 123456,
    parentName: 'bäse.vhd',
    locators: [
      { platformCode: LOCATOR_W2KU, dataSpace: 512, dataLength: 30, dataOffset: 1536 },
      { platformCode: LOCATOR_W2RU, dataSpace: 1, dataLength: 20, dataOffset: 2048 },
      ...Array.from({ length: 6 }, () => ({ platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 })),
    ],
  };
  const b = serializeDynamicHeader(h);
  assert.equal(b.length, 1024);
  assert.equal(Buffer.from(b.subarray(0, 8)).toString('latin1'), 'cxsparse');
  assert.ok(headerChecksumOk(b));
  assert.deepEqual({ ...parseDynamicHeader(b)!, checksum: 0 }, h);
  // The parent name is UTF-16 big-endian at 64; the first locator's code at 576.
  assert.deepEqual([...b.subarray(64, 68)], [0, 0x62, 0, 0xe4]);
  assert.equal(platformName(new DataView(b.buffer).getUint32(576)), 'W2ku');
  assert.equal(vhdChecksum(b, 36), new DataView(b.buffer).getUint32(36));
  // Data space: bytes when a multiple of 512, sectors when small (libvhd's reading of both kinds of writers).
  assert.equal(locatorSpaceBytes(h.locators[0]), 512);
  assert.equal(locatorSpaceBytes(h.locators[1]), 512);
});

test('locator data: W2ru/W2ku in UTF-16LE, MacX in UTF-8', () => {
  const w = encodeLocatorData(LOCATOR_W2RU, '.\\base.vhd');
  assert.deepEqual([...w.subarray(0, 4)], [0x2e, 0, 0x5c, 0]);
  assert.equal(decodeLocatorData(LOCATOR_W2RU, w), '.\\base.vhd');
  assert.equal(decodeLocatorData(LOCATOR_W2KU, new Uint8Array([0x43, 0, 0x3a, 0, 0, 0, 0x41, 0])), 'C:', 'stops at a NUL');
  assert.equal(decodeLocatorData(LOCATOR_MACX, new TextEncoder().encode('file:///x/base.vhd')), 'file:///x/base.vhd');
});

test('sector bitmap: sector 0 is the most significant bit of byte 0; the size is whole sectors', () => {
  const bm = new Uint8Array(512);
  setBitmapBits(bm, 0, 1);
  assert.equal(bm[0], 0x80);
  setBitmapBits(bm, 9, 11);
  assert.equal(bm[1], 0x60);
  assert.ok(bitmapBit(bm, 0) && !bitmapBit(bm, 1) && bitmapBit(bm, 9) && bitmapBit(bm, 10) && !bitmapBit(bm, 11));
  assert.equal(bitmapSize(2 * 1024 * 1024), 512);
  assert.equal(bitmapSize(512), 512);
  assert.equal(bitmapSize(16 * 1024 * 1024), 4096);
});

test("the size the guest sees: CHS, unless the creator means current_size or the geometry is the largest (qemu's table)", () => {
  assert.equal(virtualSizeOf(footer), 1004 * 12 * 17 * 512);
  const big = { ...footer, currentSize: 200n * 1024n * 1024n };
  assert.equal(virtualSizeOf(big), 1004 * 12 * 17 * 512, "'qemu' uses the geometry");
  for (const app of ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']) {
    assert.ok(usesCurrentSize({ ...big, creatorApp: app }), app);
    assert.equal(virtualSizeOf({ ...big, creatorApp: app }), 200 * 1024 * 1024);
  }
  assert.ok(!usesCurrentSize({ ...big, creatorApp: 'vpc ' }));
  assert.ok(!usesCurrentSize({ ...big, creatorApp: 'tap ' }), "only 'tap' with a NUL, as qemu compares it");
  assert.ok(usesCurrentSize({ ...big, cylinders: 65535, heads: 16, sectorsPerTrack: 255 }));
  assert.equal(virtualSizeOf({ ...big, creatorApp: 'win ', currentSize: 1000n }), 512, 'whole sectors');
});

test('geometry: every rounded size is a product of its geometry, at least the request, and the smallest such', () => {
  for (const mib of [1, 2, 3, 10, 100, 127, 500, 1000, 4096, 32768, 130000]) {
    const req = mib * 1024 * 1024;
    const { size, geometry: g } = roundedImageSize(req, false);
    assert.equal(size, g.cylinders * g.heads * g.sectorsPerTrack * 512, `${mib} MiB`);
    assert.ok(size >= req, `${mib} MiB rounds up`);
    const below = calculateGeometry(size / 512 - 1);
    assert.ok(below.cylinders * below.heads * below.sectorsPerTrack * 512 < size || size === req);
  }
  assert.equal(roundedImageSize(100 * 1024 * 1024, false).size, 104865792, "qemu-img's figure for 100M");
  const forced = roundedImageSize(100 * 1024 * 1024 + 1, true);
  assert.equal(forced.size, 100 * 1024 * 1024 + 512, 'force_size keeps whole sectors');
  assert.equal(forced.geometry.cylinders * forced.geometry.heads * forced.geometry.sectorsPerTrack, MAX_CHS_SECTORS);
  assert.throws(() => roundedImageSize(2041 * 1024 ** 3, true), /2040 GiB/);
});

test('time stamps count from 2000-01-01', () => {
  assert.equal(vhdTime(946684800), 0);
  assert.equal(vhdTime(946684800 + 86400), 86400);
});
