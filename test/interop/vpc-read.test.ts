/**
 * Reading VHDs that qemu made and wrote: `qemu-img create -f vpc` fixed and dynamic images of several sizes,
 * written by qemu-io (sub-sector, block-crossing and last-sector writes, zeros), read here byte for byte as
 * qemu-img reads them, with the map qemu-img map gives; images whose creator means current_size (Hyper-V's
 * 'win ', Disk2vhd's 'd2v ') get qemu's size; a dynamic image with 512 KiB blocks (which qemu cannot make but
 * reads and writes) reads alike; a dynamic image without its footer copy at offset 0 still reads.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { dw, dwOk, must, scratch } from '../helpers';
import { parseFooter, serializeDynamicHeader, serializeFooter, type Footer } from '../../src-main/formats/vpc/layout';
import { assert7zipReads, assertReadsLikeQemu, io, qemuInfo } from './vpc-common';

const s = scratch('dw-vpc-read-');
after(() => s.cleanup());

const WRITES = ['write -P 0x11 0 64k', 'write -P 0x22 1536k 5000', 'write -z 3M 64k', 'write -P 0x33 2047k 2k', 'write -P 0x44 7M 1M', 'write -P 0x55 9000000 777'];

const CASES: Array<[string, string]> = [
  ['dynamic', '10M'],
  ['dynamic', '100M'],
  ['dynamic', '300M'],
  ['dynamic', '12345678'],
  ['fixed', '10M'],
  ['fixed', '33M'],
];

CASES.forEach(([sub, size], i) => {
  test(`vpc subformat=${sub} ${size} made by qemu-img, written by qemu-io: read and mapped as qemu-img reads it`, () => {
    const p = s.path(`r${i}.vhd`);
    must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', `subformat=${sub}`, p, size]);
    assertReadsLikeQemu(p, s.path, `${sub} ${size} fresh`);
    io(p, WRITES);
    const raw = assertReadsLikeQemu(p, s.path, `${sub} ${size}`);
    assert.equal(raw[0], 0x11);
    const info = JSON.parse(dwOk(['info', '-f', 'vpc', '--output', 'json', p]).stdout);
    const q = qemuInfo(p);
    assert.equal(info['virtual-size'], q['virtual-size']);
    assert.equal(info['cluster-size'], q['cluster-size']);
    if (raw.length <= 128 * 1024 * 1024) assert7zipReads(p, raw, `${sub} ${size}`);
    // Without -f: a dynamic image by its first bytes; a fixed one by its footer when named .vhd (qemu-img says raw).
    assert.equal(JSON.parse(dwOk(['info', '--output', 'json', p]).stdout).format, 'vpc');
    if (sub === 'fixed') {
      copyFileSync(p, s.path('renamed.img'));
      assert.equal(JSON.parse(dwOk(['info', '--output', 'json', s.path('renamed.img')]).stdout).format, 'raw', 'named otherwise, it is raw, as qemu-img probes it');
    }
  });
});

/** Rewrites both footer copies of `path` with `change` applied (checksum recomputed). */
function patchFooter(path: string, change: (f: Footer) => Footer): void {
  const b = readFileSync(path);
  const tail = b.length - 512;
  const f = change(parseFooter(b.subarray(tail))!);
  const bytes = serializeFooter(f);
  b.set(bytes, tail);
  if (parseFooter(b.subarray(0, 512))) b.set(bytes, 0);
  writeFileSync(path, b);
}

for (const app of ['win ', 'd2v ']) {
  for (const sub of ['dynamic', 'fixed']) {
    test(`creator '${app}' (${sub}): the size is current_size, as qemu reads it, not the geometry`, () => {
      const p = s.path(`cur-${app.trim()}-${sub}.vhd`);
      must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', `subformat=${sub}`, p, '20M']);
      io(p, ['write -P 0x61 0 1M', 'write -P 0x62 19M 512k']);
      // current_size a little below the geometry's product, as Hyper-V's images have it.
      patchFooter(p, (f) => ({ ...f, creatorApp: app, currentSize: 20n * 1024n * 1024n - 4096n }));
      const q = qemuInfo(p);
      assert.equal(q['virtual-size'], 20 * 1024 * 1024 - 4096);
      assertReadsLikeQemu(p, s.path, `${app} ${sub}`);
    });
  }
}

test('a dynamic image with 512 KiB blocks (made here, written by qemu-io) reads as qemu reads it', () => {
  const p = s.path('small-blocks.vhd');
  const size = 8 * 1024 * 1024;
  const bs = 512 * 1024;
  const entries = size / bs;
  const footer: Footer = {
    features: 2, version: 0x10000, dataOffset: 512n, timestamp: 0, creatorApp: 'vpc ', creatorVersion: 0x50003, creatorOs: 'Wi2k',
    originalSize: BigInt(size), currentSize: BigInt(size), cylinders: 240, heads: 4, sectorsPerTrack: 17, diskType: 3, checksum: 0,
    uuid: '11111111-2222-3333-4444-555555555555', savedState: 0,
  };
  const fb = serializeFooter(footer);
  const header = serializeDynamicHeader({
    dataOffset: 0xffffffffffffffffn, tableOffset: 1536n, version: 0x10000, maxTableEntries: entries, blockSize: bs, checksum: 0,
    parentUuid: '00000000-0000-0000-0000-000000000000', parentTimestamp: 0, parentName: '',
    locators: Array.from({ length: 8 }, () => ({ platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 })),
  });
  const fd = openSync(p, 'w');
  writeSync(fd, fb, 0, 512, 0);
  writeSync(fd, header, 0, 1024, 512);
  writeSync(fd, Buffer.alloc(512, 0xff), 0, 512, 1536);
  writeSync(fd, fb, 0, 512, 2048);
  closeSync(fd);
  io(p, ['write -P 0x71 100k 1M', 'write -P 0x72 3M 4k', 'write -P 0x73 7000k 5000']);
  const raw = assertReadsLikeQemu(p, s.path, '512 KiB blocks');
  assert.equal(raw[100 * 1024], 0x71);
  const info = JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
  assert.equal(info['cluster-size'], bs);
});

test('a dynamic image whose footer copy at offset 0 is damaged reads through the footer at the end', () => {
  const p = s.path('nocopy.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', p, '8M']);
  io(p, ['write -P 0x5a 1M 1M']);
  const good = s.path('nocopy-good.raw');
  must('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', p, good]);
  const b = readFileSync(p);
  b[100] ^= 0xff; // the copy's checksum fails now
  writeFileSync(p, b);
  dwOk(['convert', '-f', 'vpc', '-O', 'raw', p, s.path('nocopy-ours.raw')]);
  assert.ok(readFileSync(s.path('nocopy-ours.raw')).equals(readFileSync(good)));
  const r = dw(['check', '--output', 'json', p]);
  assert.equal(r.status, 2, 'check exits 2 on corruption, as qemu-img check does');
  assert.equal(JSON.parse(r.stdout).corruptions, 1, 'check reports the damaged copy');
  dwOk(['check', '-r', 'all', p]);
  must('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', p, s.path('nocopy-after.raw')]);
  assert.ok(readFileSync(s.path('nocopy-after.raw')).equals(readFileSync(good)), 'after the repair qemu reads it again');
});
