/**
 * Writing Parallels images: create gives qemu-img create's bytes; writes through `diskwright write` land
 * exactly where qemu-io puts them (the same file, byte for byte), pass `qemu-img check` and read back equal
 * to a raw reference under `qemu-img compare`; the in-use mark is set while open for writing and cleared on
 * close; an image left in use, or with damage a write would spread, is refused for writing with a plain line.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';
import { create, io, patch32, toOldMagic } from './parallels-common';

const s = scratch('dw-prl-write-');
after(() => s.cleanup());

const INUSE = 0x746f6e59;
const MiB = 1 << 20;

/** One write: offset, length, pattern byte. */
type W = [number, number, number];

function writeBoth(ours: string, theirs: string, raw: string, writes: W[]): void {
  writes.forEach(([off, len, pat], k) => {
    const f = s.path(`in-${pat}-${len}-${k}`);
    writeFileSync(f, Buffer.alloc(len, pat));
    dwOk(['write', ours, String(off), f]);
    io(theirs, [`write -P ${pat} ${off} ${len}`]);
    must('qemu-io', ['-f', 'raw', '-c', `write -P ${pat} ${off} ${len}`, raw]);
  });
}

const CONFIGS: Array<{ cluster?: string; size: string; writes: W[]; old?: boolean }> = [
  { size: '4M', writes: [[0, 100000, 1], [2000000, 1200000, 2], [65536, 512, 3], [4193792, 512, 4]] },
  { cluster: '512', size: '256k', writes: [[1000, 3000, 5], [0, 512, 6], [200000, 60000, 7], [1100, 10, 8]] },
  { cluster: '4k', size: '1M', writes: [[500000, 10000, 9], [4096, 4096, 10], [0, 1, 11], [502000, 9000, 12]] },
  { cluster: '64k', size: '1000000', writes: [[999000, 1000, 13], [10, 200000, 14], [131072, 65536, 15]] },
  { cluster: '3000000', size: '8M', writes: [[2999000, 3000, 16], [7000000, 100, 17]] },
  { cluster: '64k', size: '2M', writes: [[70000, 5000, 18], [0, 300000, 19], [MiB, 512, 20]], old: true },
];

CONFIGS.forEach((c, i) => {
  const label = `${c.old ? 'old magic, ' : ''}cluster_size=${c.cluster ?? 'default'} ${c.size}`;
  test(`parallels write ${label}: create and writes give qemu-img/qemu-io's file; check clean; compare equal to raw`, () => {
    const ours = s.path(`w${i}.ours.hds`);
    const theirs = s.path(`w${i}.qemu.hds`);
    const raw = s.path(`w${i}.raw`);
    if (c.old) {
      // Old images come from elsewhere (qemu-img writes the extended magic): start both from the same one.
      create(theirs, c.size, c.cluster);
      toOldMagic(theirs);
      writeFileSync(ours, readFileSync(theirs));
    } else {
      dwOk(['create', '-f', 'parallels', ...(c.cluster ? ['-o', `cluster_size=${c.cluster}`] : []), ours, c.size]);
      create(theirs, c.size, c.cluster);
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'create writes qemu-img create\'s bytes');
    }
    must('qemu-img', ['create', '-q', '-f', 'raw', raw, c.size]);
    writeBoth(ours, theirs, raw, c.writes);
    assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'the written file is qemu-io\'s, byte for byte');
    const chk = run('qemu-img', ['check', '-f', 'parallels', ours]);
    assert.equal(chk.status, 0, chk.stderr + chk.stdout);
    const cmp = run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', ours, raw]);
    assert.equal(cmp.status, 0, cmp.stdout);
  });
});

test('parallels write: preallocation=falloc and full give qemu-img\'s bytes too; bad options are refused as qemu-img refuses them', () => {
  for (const pre of ['off', 'falloc', 'full']) {
    const ours = s.path(`pre-${pre}.ours.hds`);
    const theirs = s.path(`pre-${pre}.qemu.hds`);
    dwOk(['create', '-f', 'parallels', '-o', `cluster_size=4k,preallocation=${pre}`, ours, '64M']);
    must('qemu-img', ['create', '-q', '-f', 'parallels', '-o', `cluster_size=4k,preallocation=${pre}`, theirs, '64M']);
    assert.ok(readFileSync(ours).equals(readFileSync(theirs)), pre);
  }
  for (const [opts, size] of [['cluster_size=2G', '1M'], ['cluster_size=512', '2T']]) {
    const q = run('qemu-img', ['create', '-q', '-f', 'parallels', '-o', opts, s.path('bad.q.hds'), size]);
    const o = dw(['create', '-f', 'parallels', '-o', opts, s.path('bad.o.hds'), size]);
    assert.notEqual(q.status, 0);
    assert.equal(o.status, 1);
    assert.equal(o.stderr.trim().split('\n').length, 1, o.stderr);
    assert.match(o.stderr, new RegExp(q.stderr.split(': ').pop()!.trim()));
  }
});

test('parallels write: convert -O parallels from raw passes qemu-img check and compares equal', () => {
  const raw = s.path('src.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '3M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 70k', '-c', 'write -P 0x5b 2M 4k', '-c', 'write -P 0 1M 64k', raw]);
  const p = s.path('conv.hds');
  dwOk(['convert', '-O', 'parallels', '-o', 'cluster_size=64k', raw, p]);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', p]).status, 0);
  assert.equal(run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', p, raw]).status, 0);
});

test('parallels write: -t unsafe (BAT entries kept until flush or close, the file grown ahead) gives the default mode\'s bytes, new or into an existing image (-n); a flush writes the BAT out', async () => {
  const raw = s.path('unsafe-src.raw');
  // 3 MiB of data over 300 MiB: more than the 128 MiB the file grows ahead by, so the cut at close is seen.
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '300M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 0 1M', '-c', 'write -P 0x62 150M 1M', '-c', 'write -P 0x63 299M 1M', raw]);
  const safe = s.path('safe.hds');
  const unsafe = s.path('unsafe.hds');
  dwOk(['convert', '-O', 'parallels', raw, safe]);
  dwOk(['convert', '-t', 'unsafe', '-O', 'parallels', raw, unsafe]);
  assert.ok(readFileSync(unsafe).equals(readFileSync(safe)), '-t unsafe writes the same file as the default mode');
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', unsafe]).status, 0);
  assert.equal(run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', unsafe, raw]).status, 0);
  // Into an existing, empty image of the same size: the entries written at close are all there.
  const existing = s.path('existing.hds');
  dwOk(['create', '-f', 'parallels', existing, '300M']);
  dwOk(['convert', '-n', '-t', 'unsafe', '-O', 'parallels', raw, existing]);
  assert.equal(run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', existing, raw]).status, 0);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', existing]).status, 0);
  // Under skipFlushes a flush (before close) puts the BAT in the file: qemu-img, reading the file as it is
  // then (the in-use mark aside), finds the written cluster.
  const open = s.path('flushed.hds');
  dwOk(['create', '-f', 'parallels', open, '4M']);
  const dev = await openImage(open, { readOnly: false });
  try {
    dev.skipFlushes?.();
    await dev.write(MiB, Buffer.alloc(4096, 0x64));
    const before = readFileSync(open);
    assert.equal(before.readUInt32LE(64 + 4), 0, 'the BAT entry waits in memory');
    await dev.flush();
    assert.notEqual(readFileSync(open).readUInt32LE(64 + 4), 0, 'flush wrote the BAT entry');
    await dev.write(2 * MiB, Buffer.alloc(4096, 0x65)); // closed without a flush: close writes its entry
  } finally {
    await dev.close();
  }
  const read = must('qemu-io', ['-f', 'parallels', '-r', '-c', 'read -P 0x64 1M 4k', '-c', 'read -P 0x65 2M 4k', open]).stdout;
  assert.doesNotMatch(read, /Pattern verification failed/);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', open]).status, 0);
});

test('parallels write: the in-use mark is set while open for writing and cleared on close; writeZeroes reads back as qemu-io write -z', async () => {
  const p = s.path('mark.hds');
  const raw = s.path('mark.raw');
  create(p, '2M', '64k');
  io(p, ['write -P 0x31 0 256k']);
  must('qemu-img', ['convert', '-f', 'parallels', '-O', 'raw', p, raw]);
  const dev = await openImage(p, { readOnly: false });
  try {
    assert.equal(readFileSync(p).readUInt32LE(44), INUSE, 'marked in use while open');
    await dev.writeZeroes(1000, 70000); // inside allocated clusters
    await dev.writeZeroes(1536 * 1024, 4096); // unallocated: stays unallocated
    await dev.flush();
  } finally {
    await dev.close();
  }
  assert.equal(readFileSync(p).readUInt32LE(44), 0, 'cleared on close, as qemu clears it');
  must('qemu-io', ['-f', 'raw', '-c', 'write -z 1000 70000', '-c', 'write -z 1536k 4k', raw]);
  assert.equal(run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', p, raw]).status, 0);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', p]).status, 0);
  const m = JSON.parse(must('qemu-img', ['map', '-f', 'parallels', '--output', 'json', p]).stdout);
  assert.equal(m.filter((e: { data: boolean }) => e.data).length, 1, 'no cluster allocated by zeroing');
});

test('parallels write: an image left in use reads but refuses writes with EUNCLEAN until repaired; qemu-io refuses it too', async () => {
  const p = s.path('unclean.hds');
  create(p, '1M', '64k');
  io(p, ['write -P 0x41 0 64k']);
  patch32(p, 44, INUSE);
  const before = readFileSync(p);
  const f = s.path('one');
  writeFileSync(f, Buffer.alloc(512, 1));
  const r = dw(['write', p, '0', f]);
  assert.equal(r.status, 1);
  assert.match(r.stderr.trim(), /^[^\n]*was not closed cleanly; repair it first \(check -r all\)$/);
  assert.notEqual(run('qemu-io', ['-f', 'parallels', '-c', 'write 0 512', p]).status, 0);
  const dev = await openImage(p, { readOnly: false });
  try {
    const buf = new Uint8Array(512);
    await dev.read(0, buf);
    assert.equal(buf[0], 0x41);
    await assert.rejects(dev.write(0, buf), (e: unknown) => e instanceof DiskError && e.code === 'EUNCLEAN');
  } finally {
    await dev.close();
  }
  assert.ok(readFileSync(p).equals(before), 'the image was not touched');
  dwOk(['check', '-r', 'all', p]);
  dwOk(['write', p, '0', f]);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', p]).status, 0);
});

test('parallels write: a BAT entry past the end of the file or shared by two entries, or a format extension, refuses writing with one plain line', () => {
  const f = s.path('sector');
  writeFileSync(f, Buffer.alloc(512, 2));
  const cases: Array<[string, (p: string) => void, RegExp]> = [
    ['past EOF', (p) => patch32(p, 64 + 4 * 3, 1000), /BAT entry 3 points past the end of the file; repair it first/],
    ['shared', (p) => patch32(p, 64 + 4 * 2, 1), /BAT entries 0 and 2 share one cluster; repair it first/],
    ['format extension', (p) => {
      // A format extension cluster after the data (its magic, no features), as Parallels writes them.
      const b = readFileSync(p);
      const ext = Buffer.alloc(65536);
      ext.writeBigUInt64LE(0xab234cef23dcea87n, 0);
      writeFileSync(p, Buffer.concat([b, ext]));
      patch32(p, 56, b.length / 512);
    }, /format extension \(dirty bitmaps\) at offset 131072/],
  ];
  for (const [name, damage, msg] of cases) {
    const p = s.path(`refuse-${name}.hds`);
    create(p, '1M', '64k');
    io(p, ['write -P 0x41 0 64k']);
    damage(p);
    const before = readFileSync(p);
    const r = dw(['write', p, '512', f]);
    assert.equal(r.status, 1, name);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, msg);
    assert.ok(readFileSync(p).equals(before), `${name}: untouched`);
    dwOk(['convert', '-O', 'raw', p, s.path(`refuse-${name}.raw`)]); // still readable
  }
});
