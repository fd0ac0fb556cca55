import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import {
  INUSE_MAGIC,
  dataOffsetBytes,
  parseHeader as parsePrl,
  probeParallels,
  serializeHeader as serializePrl,
  validateHeader as validatePrl,
  type ParallelsHeader,
} from '../../src-main/formats/parallels/layout';
import { COW_MAGIC, LAYOUTS, cowSizes, parseHeader as parseCow, probeCow, serializeHeader as serializeCow, type CowLayout } from '../../src-main/formats/cow/layout';

const PH: ParallelsHeader = { extended: true, version: 2, heads: 16, cylinders: 400, tracks: 2048, batEntries: 100, nbSectors: 204800, inUse: 0, dataOff: 2048, flags: 0, extOff: 0 };

test('parallels: a constructed header parses at the documented offsets (little-endian)', () => {
  const b = Buffer.alloc(64);
  b.write('WithouFreSpacExt', 0, 'latin1');
  b.writeUInt32LE(2, 16);
  b.writeUInt32LE(16, 20);
  b.writeUInt32LE(400, 24);
  b.writeUInt32LE(2048, 28);
  b.writeUInt32LE(100, 32);
  b.writeBigUInt64LE(204800n, 36);
  b.writeUInt32LE(INUSE_MAGIC, 44);
  b.writeUInt32LE(2048, 48);
  b.writeUInt32LE(1, 52);
  b.writeBigUInt64LE(4096n, 56);
  assert.deepEqual(parsePrl(b, 'x'), { ...PH, inUse: INUSE_MAGIC, flags: 1, extOff: 4096 });
});

test('parallels: round trip, both magics, old images use only the low 32 bits of nb_sectors', () => {
  assert.deepEqual(parsePrl(serializePrl(PH), 'x'), PH);
  const old = { ...PH, extended: false, nbSectors: 5 };
  assert.deepEqual(parsePrl(serializePrl(old), 'x'), old);
  const b = serializePrl(old);
  new DataView(b.buffer).setUint32(40, 0xffff, true);
  assert.equal(parsePrl(b, 'x').nbSectors, 5);
  assert.equal(probeParallels(serializePrl(PH)), 100);
  assert.equal(probeParallels(new TextEncoder().encode('WithoutFreeSpac')), 0);
});

test('parallels: validation as qemu (version 2, tracks, BAT size and bounds); data offset when zero', () => {
  validatePrl(PH, 'x', 2 * 1024 * 1024);
  const bad: Array<[Partial<ParallelsHeader>, RegExp]> = [
    [{ version: 1 }, /version 1/],
    [{ tracks: 0 }, /zero sectors/],
    [{ tracks: 0x7fffffff }, /too big/],
    [{ batEntries: 0x20000000 }, /too large/],
    [{ batEntries: 1000000 }, /past the end/],
  ];
  for (const [edit, re] of bad) assert.throws(() => validatePrl({ ...PH, ...edit }, 'x', 2 * 1024 * 1024), (e: unknown) => e instanceof DiskError && re.test(e.message));
  assert.equal(dataOffsetBytes({ ...PH, dataOff: 0, batEntries: 200 }), Math.ceil((64 + 800) / 512) * 512);
  assert.equal(dataOffsetBytes(PH), 2048 * 512);
});

const BASE = { backingFile: '/srv/images/base disk.img', mtime: 1700000000, size: 1000000, sectorSize: 512, alignment: 4096, cowFormat: 0, littleEndian: false };

test('COW v3: a constructed header (big-endian, packed) parses, with the kernel\'s bitmap and data offsets', () => {
  const b = Buffer.alloc(8192);
  b.writeUInt32BE(COW_MAGIC, 0);
  b.writeUInt32BE(3, 4);
  b.writeUInt32BE(1700000000, 8);
  b.writeBigUInt64BE(1000000n, 12);
  b.writeUInt32BE(512, 20);
  b.writeUInt32BE(4096, 24);
  b.writeUInt32BE(0, 28);
  b.write('/srv/images/base disk.img', 32, 'utf8');
  const h = parseCow(b, 'x', 1012288);
  assert.equal(h.version, 3);
  assert.equal(h.layout, 'v3');
  assert.equal(h.backingFile, BASE.backingFile);
  assert.equal(h.size, 1000000);
  assert.equal(h.mtime, 1700000000);
  // As uml_mkcow lays it out: bitmap at 8192 (header rounded to 4096), 245 bitmap bytes, data at 12288.
  assert.equal(h.bitmapOffset, 8192);
  assert.equal(h.dataOffset, 12288);
});

test('COW: every layout round trips and is told apart from the others', () => {
  for (const layout of Object.keys(LAYOUTS) as CowLayout[]) {
    const hdr = serializeCow({ ...BASE, layout, alignment: layout.startsWith('v3') ? 4096 : 512, littleEndian: layout === 'v1' });
    const file = new Uint8Array(64 * 1024);
    file.set(hdr);
    const h = parseCow(file, 'x', 2 * 1024 * 1024);
    assert.equal(h.layout, layout);
    assert.equal(h.backingFile, BASE.backingFile, layout);
    assert.equal(h.size, BASE.size, layout);
    assert.equal(h.mtime, BASE.mtime, layout);
    assert.equal(probeCow(file), 100, layout);
  }
});

test('COW: sizes for versions 1/2 keep the kernel\'s old rounding; qemu\'s own layout its formula', () => {
  assert.deepEqual(cowSizes('v2-time32', 8 * 1024 * 1024, 512, 512), { bitmapOffset: 4120, bitmapLength: 2048, dataOffset: 6656 });
  assert.deepEqual(cowSizes('v2-qemu', 8 * 1024 * 1024, 512, 512), { bitmapOffset: 1056, bitmapLength: 2048, dataOffset: 3584 });
  assert.deepEqual(cowSizes('v3', 1000000, 512, 4096), { bitmapOffset: 8192, bitmapLength: 245, dataOffset: 12288 });
});

test('COW: damage gives DiskErrors that say what is wrong', () => {
  const good = new Uint8Array(8192);
  good.set(serializeCow({ ...BASE, layout: 'v3' }));
  const edit = (f: (v: DataView, b: Uint8Array) => void) => {
    const b = good.slice();
    f(new DataView(b.buffer), b);
    return b;
  };
  const cases: Array<[Uint8Array, RegExp, string]> = [
    [edit((v) => v.setUint32(4, 7)), /version 7/, 'EUNSUPPORTED'],
    [edit((v) => v.setUint32(20, 100)), /sector size/, 'ECORRUPT'],
    [edit((v) => v.setUint32(24, 3)), /alignment/, 'ECORRUPT'],
    [edit((v) => v.setUint32(28, 1)), /bitmap format 1/, 'EUNSUPPORTED'],
    [edit((v) => v.setBigUint64(12, 0xffffffffffffffffn)), /impossibly large/, 'ECORRUPT'],
    [edit((_v, b) => b.fill(0x61, 32, 32 + 4096)), /not terminated/, 'ECORRUPT'],
    [good.slice(0, 100), /truncated/, 'ECORRUPT'],
    [edit((v) => v.setUint32(0, 0x12345678)), /bad magic/, 'EINVAL'],
  ];
  for (const [bytes, re, code] of cases) {
    assert.throws(() => parseCow(bytes, 'x', 1 << 20), (e: unknown) => e instanceof DiskError && e.code === code && re.test(e.message), String(re));
  }
});
