import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import {
  GD_AT_END,
  VMDK4_MAGIC,
  looksLikeDescriptor,
  parseDescriptor,
  parseFooter,
  parseVmdk3Header,
  parseVmdk4Header,
  serializeDescriptor,
  serializeFooter,
  serializeVmdk3Header,
  serializeVmdk4Header,
  validateVmdk4Header,
  parseGrainMarker,
  parseMetaMarker,
  serializeGrainMarker,
  serializeMetaMarker,
  sparseGeometry,
  MARKER_GRAIN_TABLE,
  type Vmdk4Header,
} from '../../src-main/formats/vmdk/layout';
import { descriptorText, extentNames, finalName } from '../../src-main/formats/vmdk/create';
import { settingsFrom } from '../../src-main/formats/vmdk/settings';

const H: Vmdk4Header = {
  version: 1,
  flags: 3,
  capacity: 204800,
  granularity: 128,
  descriptorOffset: 1,
  descriptorSize: 20,
  numGtesPerGt: 512,
  rgdOffset: 21,
  gdOffset: 38,
  overhead: 128,
  uncleanShutdown: false,
  checkBytesValid: true,
  compressAlgorithm: 0,
};

test('VMDK4 header: a constructed header parses field by field at the documented offsets (little-endian)', () => {
  const b = Buffer.alloc(512);
  b.write('KDMV', 0, 'latin1');
  b.writeUInt32LE(3, 4);
  b.writeUInt32LE(0x30001, 8);
  b.writeBigUInt64LE(4194304n, 12);
  b.writeBigUInt64LE(128n, 20);
  b.writeBigUInt64LE(1n, 28);
  b.writeBigUInt64LE(20n, 36);
  b.writeUInt32LE(512, 44);
  b.writeBigUInt64LE(0n, 48);
  b.writeBigUInt64LE(GD_AT_END, 56);
  b.writeBigUInt64LE(128n, 64);
  b[72] = 1;
  b.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  b.writeUInt16LE(1, 77);
  const h = parseVmdk4Header(b, 'x');
  assert.deepEqual(h, { version: 3, flags: 0x30001, capacity: 4194304, granularity: 128, descriptorOffset: 1, descriptorSize: 20, numGtesPerGt: 512, rgdOffset: 0, gdOffset: undefined, overhead: 128, uncleanShutdown: true, checkBytesValid: true, compressAlgorithm: 1 });
  assert.equal(b.readUInt32LE(0), VMDK4_MAGIC);
});

test('VMDK4 header and footer round trip', () => {
  assert.deepEqual(parseVmdk4Header(serializeVmdk4Header(H), 'x'), H);
  const stream = { ...H, gdOffset: undefined, compressAlgorithm: 1 };
  assert.deepEqual(parseVmdk4Header(serializeVmdk4Header(stream), 'x'), stream);
  assert.deepEqual(parseFooter(serializeFooter(H), 'x'), H);
  const f = serializeFooter(H);
  f[12] = 2; // not a footer marker
  assert.throws(() => parseFooter(f, 'x'), (e: unknown) => e instanceof DiskError && e.code === 'ECORRUPT');
});

test('VMDK4 validation refuses what qemu refuses', () => {
  const bad: Array<[Partial<Vmdk4Header>, RegExp]> = [
    [{ version: 4 }, /version 4/],
    [{ numGtesPerGt: 513 }, /grain table size/],
    [{ granularity: 0 }, /grain size/],
    [{ granularity: 0x200001 }, /grain size/],
    [{ overhead: 1 << 20 }, /truncated/],
    [{ capacity: 2 ** 50 }, /impossibly large/],
  ];
  for (const [edit, re] of bad) assert.throws(() => validateVmdk4Header({ ...H, ...edit }, 'x', 65536), re);
  validateVmdk4Header(H, 'x', 65536);
  const huge = Buffer.from(serializeVmdk4Header(H));
  huge.writeBigUInt64LE(0xffffffffffffff00n, 12);
  assert.throws(() => parseVmdk4Header(huge, 'x'), /capacity .* impossibly large/);
});

test('VMDK3 (COWD) header round trip', () => {
  const h = { version: 1, flags: 3, diskSectors: 204800, granularity: 128, l1dirOffset: 4, l1dirSize: 50, fileSectors: 32, cylinders: 203, heads: 16, sectorsPerTrack: 63 };
  const b = serializeVmdk3Header(h);
  assert.equal(Buffer.from(b).toString('latin1', 0, 4), 'COWD');
  assert.deepEqual(parseVmdk3Header(b, 'x'), h);
});

const QEMU_DESCRIPTOR = `# Disk DescriptorFile
version=1
CID=73d1c22
parentCID=ffffffff
createType="twoGbMaxExtentSparse"
parentFileNameHint="../base image.vmdk"

# Extent description
RW 4194304 SPARSE "big-s001.vmdk"
RDONLY 2097152 FLAT "big-f002.vmdk" 128
NOACCESS 1024 ZERO

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "203"
ddb.adapterType = "ide"
`;

test('descriptor: keys, CIDs in hex, quoted names with spaces, every extent kind, ddb entries', () => {
  const d = parseDescriptor(QEMU_DESCRIPTOR + '\0\0\0garbage after the NUL', 'x');
  assert.equal(d.version, 1);
  assert.equal(d.cid, 0x73d1c22);
  assert.equal(d.parentCid, 0xffffffff);
  assert.equal(d.createType, 'twoGbMaxExtentSparse');
  assert.equal(d.parentFileNameHint, '../base image.vmdk');
  assert.deepEqual(d.extents, [
    { access: 'RW', sectors: 4194304, type: 'SPARSE', filename: 'big-s001.vmdk', offset: 0 },
    { access: 'RDONLY', sectors: 2097152, type: 'FLAT', filename: 'big-f002.vmdk', offset: 128 },
    { access: 'NOACCESS', sectors: 1024, type: 'ZERO', filename: '', offset: 0 },
  ]);
  assert.equal(d.ddb.adapterType, 'ide');
  // Windows line endings read the same.
  assert.deepEqual(parseDescriptor(QEMU_DESCRIPTOR.replace(/\n/g, '\r\n'), 'x'), parseDescriptor(QEMU_DESCRIPTOR, 'x'));
});

test('descriptor round trip through serializeDescriptor', () => {
  const d = parseDescriptor(QEMU_DESCRIPTOR, 'x');
  assert.deepEqual(parseDescriptor(serializeDescriptor(d), 'x'), d);
});

test('descriptor damage: bad CID, unknown extent type, FLAT without offset, huge sector counts', () => {
  const cases: Array<[string, RegExp]> = [
    ['CID=xyz\n', /not a hexadecimal/],
    ['RW 100 TAPE "t.vmdk"\n', /extent type 'TAPE'/],
    ['RW 100 FLAT "f.vmdk"\n', /no offset/],
    ['RW 100 SPARSE\n', /names no file/],
    ['RW 99999999999999999999 FLAT "f.vmdk" 0\n', /impossibly large/],
    [`parentFileNameHint="${'a'.repeat(5000)}"\n`, /longer than/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseDescriptor('version=1\n' + text, 'x'), (e: unknown) => e instanceof DiskError && re.test(e.message), text);
});

test('the text probe follows qemu: comments and blank-with-spaces lines, then version=1..3', () => {
  const enc = (t: string) => new TextEncoder().encode(t);
  assert.equal(looksLikeDescriptor(enc('# Disk DescriptorFile\nversion=1\n')), true);
  assert.equal(looksLikeDescriptor(enc('#a\n#b\n   \nversion=2\r\n')), true);
  assert.equal(looksLikeDescriptor(enc('version=3\n')), true);
  assert.equal(looksLikeDescriptor(enc('\nversion=1\n')), false);
  assert.equal(looksLikeDescriptor(enc('# x\nversion=4\n')), false);
  assert.equal(looksLikeDescriptor(enc('# only a comment')), false);
  assert.equal(looksLikeDescriptor(enc('version=1')), false);
});

test('sparse extent geometry: the numbers qemu-img 7.2 writes (5 GiB, 2 GiB and 1 GiB extents)', () => {
  // Read from headers qemu-img wrote: rgd_offset, gd_offset, grain offset (sectors).
  for (const [capacity, rgd, gd, overhead] of [
    [10485760, 21, 663, 1408],
    [4194304, 21, 278, 640],
    [2097152, 21, 150, 384],
  ]) {
    const g = sparseGeometry(capacity, 128);
    assert.deepEqual([g.rgdOffset, g.gdOffset, g.overhead], [rgd, gd, overhead], `capacity ${capacity}`);
  }
});

test('stream markers round trip; a grain marker is 12 bytes, a metadata marker a sector', () => {
  assert.deepEqual(parseGrainMarker(serializeGrainMarker(143232, 777), 'x'), { lba: 143232, size: 777 });
  const m = serializeMetaMarker(MARKER_GRAIN_TABLE, 4);
  assert.equal(m.length, 512);
  assert.deepEqual(parseMetaMarker(m, 'x'), { sectors: 4, size: 0, type: MARKER_GRAIN_TABLE });
  // VMware's footer marker says one sector of header follows; qemu does not look at it, nor do we.
  const f = serializeFooter(H);
  assert.equal(Buffer.from(f).readBigUInt64LE(0), 1n);
});

test('create: extent names, the target name behind the service temporary name, option rules as qemu-img', () => {
  assert.equal(finalName('/d/.disk.vmdk.diskwright-0a1b2c3d.tmp'), 'disk.vmdk');
  assert.equal(finalName('/d/disk.vmdk'), 'disk.vmdk');
  assert.deepEqual(extentNames('/d/.disk.vmdk.diskwright-0a1b2c3d.tmp', 'twoGbMaxExtentSparse', 2), ['disk-s001.vmdk', 'disk-s002.vmdk']);
  assert.deepEqual(extentNames('/d/disk.vmdk', 'monolithicFlat', 1), ['disk-flat.vmdk']);
  const bad = (options: Record<string, string | boolean>, re: RegExp) =>
    assert.throws(() => settingsFrom({ options }), (e: unknown) => e instanceof DiskError && re.test(e.message));
  bad({ compat6: true, hwversion: '7' }, /compat6 cannot be enabled with hwversion set/);
  bad({ subformat: 'monolithicFlat', zeroed_grain: true }, /Flat image can't enable zeroed grain/);
  bad({ adapter_type: 'scsi' }, /Unknown adapter type/);
  bad({ subformat: 'monolithicFlat', backing_file: 'b.vmdk' }, /Flat image can't have backing file/);
  const text = descriptorText(settingsFrom({ options: { adapter_type: 'buslogic' } }), 2097152, 0xabc, 0xffffffff, ['RW 2097152 SPARSE "x.vmdk"\n']);
  assert.match(text, /^CID=abc$/m);
  // qemu-img create -o adapter_type=lsilogic 1G wrote 255 heads and 130 cylinders.
  assert.match(text, /^ddb.geometry.heads = "255"$/m);
  assert.match(text, /^ddb.geometry.cylinders = "130"$/m);
  assert.equal(parseDescriptor(text, 'x').extents[0].sectors, 2097152);
});
