import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { DRIVERS, PROBE_BYTES, driverFor, isFormatName, probeDriver, resolveDriver } from '../../src-main/registry';
import { ImageFile } from '../../src-main/block/file';
import { DiskError } from '../../src-main/block/errors';
import { scratch } from '../helpers';
import { serializeVmdk3Header } from '../../src-main/formats/vmdk/layout';
import { serializeHeader as serializePrl } from '../../src-main/formats/parallels/layout';
import { serializeHeader as serializeCow } from '../../src-main/formats/cow/layout';

const s = scratch('dw-probe-');
after(() => s.cleanup());

function head(...parts: Array<[number, Uint8Array | string]>): Uint8Array {
  // Probes see only the first PROBE_BYTES of a file, even when a header (COW v3: 4128 bytes) is longer.
  const b = new Uint8Array(8192);
  for (const [at, p] of parts) b.set(typeof p === 'string' ? new TextEncoder().encode(p) : p, at);
  return b.slice(0, PROBE_BYTES);
}

const MAGICS: Array<[string, Uint8Array]> = [
  ['qcow2', head([0, new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])])],
  ['vmdk', head([0, 'KDMV'])],
  ['vmdk', head([0, serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 8, granularity: 8, l1dirOffset: 4, l1dirSize: 1, fileSectors: 8, cylinders: 0, heads: 0, sectorsPerTrack: 0 })])],
  ['vmdk', head([0, '# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'])],
  ['vmdk', head([0, '# Disk DescriptorFile\r\n   \r\nversion=3\r\n'])],
  ['vhdx', head([0, 'vhdxfile'])],
  ['parallels', head([0, serializePrl({ extended: true, version: 2, heads: 16, cylinders: 1, tracks: 2048, batEntries: 1, nbSectors: 2048, inUse: 0, dataOff: 2048, flags: 0, extOff: 0 })])],
  ['parallels', head([0, 'WithoutFreeSpace'])],
  ['cow', head([0, serializeCow({ layout: 'v3', backingFile: '/b.img', mtime: 0, size: 4096, sectorSize: 512, alignment: 4096, cowFormat: 0, littleEndian: false })])],
  ['cow', head([0, new Uint8Array([0x4d, 0x4f, 0x4f, 0x4f, 1, 0, 0, 0])])], // version 1, little-endian
];

test('each magic goes to its driver, and scores higher than raw', () => {
  for (const [fmt, bytes] of MAGICS) {
    const scores = DRIVERS.map((d) => [d.name, d.probe(bytes, 'x')] as const);
    const best = scores.reduce((a, b) => (b[1] > a[1] ? b : a));
    assert.equal(best[0], fmt, `${fmt}: scores ${JSON.stringify(scores)}`);
    assert.equal(best[1], 100);
    assert.equal(scores.filter(([, sc]) => sc === 100).length, 1, `${fmt}: only one driver claims it`);
  }
});

test('unknown bytes, text that is not a descriptor, and near misses go to raw', () => {
  const others: Array<[string, Uint8Array]> = [
    ['zeros', head()],
    ['random text', head([0, 'hello world\nversion=1\n'])],
    ['descriptor after an empty line (qemu refuses that too)', head([0, '\nversion=1\n'])],
    ['descriptor version 4', head([0, '# Disk DescriptorFile\nversion=4\n'])],
    ['vhdx signature off by one byte', head([1, 'vhdxfile'])],
    ['qcow2 magic with version 0', head([0, new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 0])])],
    ['parallels magic misspelled', head([0, 'WithoutFreeSpacE'])],
    ['COW magic little-endian with version 3', head([0, new Uint8Array([0x4d, 0x4f, 0x4f, 0x4f, 3, 0, 0, 0])])],
    ['tiny', new Uint8Array([0x4b])],
  ];
  for (const [label, bytes] of others) {
    const winners = DRIVERS.filter((d) => d.probe(bytes, 'x') > 1).map((d) => d.name);
    assert.deepEqual(winners, [], label);
    assert.equal(DRIVERS.find((d) => d.name === 'raw')!.probe(bytes, 'x'), 1);
  }
});

test('the qcow magic with version 1 (the original qcow) is claimed by qcow2, which refuses it by name instead of raw reading it', () => {
  const bytes = head([0, new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 1])]);
  assert.deepEqual(DRIVERS.filter((d) => d.probe(bytes, 'x') > 1).map((d) => d.name), ['qcow2']);
});

test('probeDriver reads files: raw is last in the list and wins only when nothing else claims the file', async () => {
  assert.equal(DRIVERS[DRIVERS.length - 1].name, 'raw');
  for (const [fmt, bytes] of [...MAGICS, ['raw', head([0, 'plain data'])] as [string, Uint8Array]]) {
    const p = s.path(`probe-${fmt}-${Math.random().toString(36).slice(2)}.img`);
    writeFileSync(p, bytes);
    const f = await ImageFile.open(p, false);
    try {
      assert.equal((await probeDriver(f)).name, fmt);
    } finally {
      await f.close();
    }
    assert.equal((await resolveDriver(p)).name, fmt);
  }
  // A file shorter than the probe window is probed on what it has.
  const short = s.path('short.img');
  writeFileSync(short, 'vhdxfile');
  assert.equal((await resolveDriver(short)).name, 'vhdx');
});

test('an empty file is not probed; unknown format names are refused; names are checked', async () => {
  const p = s.path('empty.img');
  writeFileSync(p, '');
  await assert.rejects(resolveDriver(p), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL' && /empty/.test(e.message));
  assert.equal((await resolveDriver(p, 'raw')).name, 'raw');
  assert.throws(() => driverFor('floppy'), (e: unknown) => e instanceof DiskError && /known: raw, qcow2/.test(e.message));
  assert.equal(isFormatName('vhdx'), true);
  assert.equal(isFormatName('vhd'), false);
});
