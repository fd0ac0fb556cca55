/**
 * Writing VDI images: create gives qemu-img create's file (the same size and bytes but for the two UUIDs) for
 * several sizes, dynamic and static; our writes give the file qemu-io's same writes give (qemu's allocation
 * order), pass `qemu-img check -f vdi`, equal a raw copy under `qemu-img compare` and read the same through
 * 7-Zip; convert from raw likewise, and into a file the size qemu-img convert makes; -t unsafe (header and map
 * written at flush or close) the same file as the default mode.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { io, ioCmds, MiB, ourWrites, qimg, type W } from './vdi-common';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-vdi-write-');
after(() => s.cleanup());

/** The file without its image and last-modification UUIDs (random in both makers). */
const withoutUuids = (path: string) => {
  const b = readFileSync(path);
  b.fill(0, 0x188, 0x1a8);
  return b;
};

function assertSameFile(ours: string, theirs: string): void {
  assert.equal(statSync(ours).size, statSync(theirs).size, 'file sizes differ');
  const a = withoutUuids(ours);
  const b = withoutUuids(theirs);
  if (!a.equals(b)) {
    let i = 0;
    while (a[i] === b[i]) i++;
    assert.fail(`files differ first at byte ${i}`);
  }
}

/** Our image passes the oracles: qemu-img check clean, compare equal to the raw copy, 7-Zip extracts the same bytes. */
function assertOracles(img: string, raw: string): void {
  const c = run('qemu-img', ['check', '-f', 'vdi', img]);
  assert.equal(c.status, 0, `qemu-img check: ${c.stdout}${c.stderr}`);
  must('qemu-img', ['compare', '-f', 'vdi', '-F', 'raw', img, raw]);
  const z = run('7zz', ['e', '-so', img]);
  assert.equal(z.status, 0, z.stderr);
  assert.ok(z.stdoutBytes.equals(readFileSync(raw)), '7-Zip reads other bytes');
}

const SIZES = ['0', '1000', '1M', '10M', '1025M', '300G'];
for (const size of SIZES) {
  for (const isStatic of [false, true]) {
    if (isStatic && size === '300G') continue; // a 300 GiB sparse file gains nothing over 1025M
    test(`vdi create ${size}${isStatic ? ' static' : ''}: qemu-img create's file (size and bytes but the UUIDs)`, () => {
      const ours = s.path(`c-${size}-${isStatic}.ours.vdi`);
      const theirs = s.path(`c-${size}-${isStatic}.qemu.vdi`);
      const o = isStatic ? ['-o', 'static=on'] : [];
      dwOk(['create', '-f', 'vdi', ...o, ours, size]);
      qimg(['create', '-q', '-f', 'vdi', ...o, theirs, size]);
      assertSameFile(ours, theirs);
      assert.equal(run('qemu-img', ['check', '-f', 'vdi', ours]).status, 0);
    });
  }
}

const CONFIGS: Array<{ size: string; writes: W[]; isStatic?: boolean }> = [
  { size: '10M', writes: [[MiB, 4096, 1], [5000 * 1024, 2 * MiB, 2], [0, 512, 3], [10 * MiB - 512, 512, 4], [MiB + 100, 10, 5]] },
  { size: '6M', writes: [[5 * MiB, MiB, 6], [3 * MiB, 100 * 1024, 7], [MiB, 1, 8], [0, 3000, 9], [0, 6 * MiB, 10]] },
  { size: '1000000', writes: [[999424, 576, 11], [0, 65536, 12], [500000, 300000, 13]] },
  { size: '4M', isStatic: true, writes: [[3 * MiB, 5000, 14], [0, 1, 15], [MiB + 7, 2 * MiB, 16]] },
];

CONFIGS.forEach((c, i) => {
  test(`vdi write ${c.size}${c.isStatic ? ' static' : ''}: qemu-io's file for the same writes; check clean; compare and 7-Zip equal to raw`, async () => {
    const ours = s.path(`w${i}.ours.vdi`);
    const theirs = s.path(`w${i}.qemu.vdi`);
    const raw = s.path(`w${i}.raw`);
    const o = c.isStatic ? ['-o', 'static=on'] : [];
    dwOk(['create', '-f', 'vdi', ...o, ours, c.size]);
    qimg(['create', '-q', '-f', 'vdi', ...o, theirs, c.size]);
    const virtualSize = JSON.parse(qimg(['info', '--output=json', theirs]).stdout)['virtual-size'] as number;
    qimg(['create', '-q', '-f', 'raw', raw, String(virtualSize)]);
    await ourWrites(ours, c.writes);
    io(theirs, ioCmds(c.writes));
    io(raw, ioCmds(c.writes), 'raw');
    assertSameFile(ours, theirs);
    assertOracles(ours, raw);
    // And our CLI's write command, over what is there.
    const f = s.path(`in${i}`);
    writeFileSync(f, Buffer.alloc(70000, 0xee));
    dwOk(['write', ours, '512', f]);
    io(raw, ['write -P 0xee 512 70000'], 'raw');
    assertOracles(ours, raw);
  });
});

test('vdi convert raw -> vdi: compare, check and 7-Zip equal; the file the size qemu-img convert makes', () => {
  const raw = s.path('src.raw');
  qimg(['create', '-q', '-f', 'raw', raw, '20M']);
  io(raw, ['write -P 1 0 4k', 'write -P 2 3M 1500k', 'write -P 3 19M 1M', 'write -P 0 8M 1M'], 'raw');
  for (const isStatic of [false, true]) {
    const o = isStatic ? ['-o', 'static=on'] : [];
    const ours = s.path(`conv-${isStatic}.ours.vdi`);
    const theirs = s.path(`conv-${isStatic}.qemu.vdi`);
    dwOk(['convert', '-O', 'vdi', ...o, raw, ours]);
    qimg(['convert', '-O', 'vdi', ...o, raw, theirs]);
    assertOracles(ours, raw);
    assert.equal(statSync(ours).size, statSync(theirs).size);
    assert.deepEqual(JSON.parse(dwOk(['map', '--output=json', ours]).stdout).map((e: { data: boolean; start: number }) => [e.start, e.data]),
      JSON.parse(qimg(['map', '--output=json', theirs]).stdout).map((e: { data: boolean; start: number }) => [e.start, e.data]));
  }
});

test('vdi -t unsafe (header and map written at flush or close, not after every block): the default mode\'s file, new or into an existing image (-n); a flush writes them out', async () => {
  const raw = s.path('unsafe-src.raw');
  qimg(['create', '-q', '-f', 'raw', raw, '20M']);
  io(raw, ['write -P 1 0 4k', 'write -P 2 3M 1500k', 'write -P 3 19M 1M'], 'raw');
  const safe = s.path('unsafe-safe.vdi');
  const unsafe = s.path('unsafe-unsafe.vdi');
  dwOk(['convert', '-O', 'vdi', raw, safe]);
  dwOk(['convert', '-t', 'unsafe', '-O', 'vdi', raw, unsafe]);
  assertSameFile(unsafe, safe);
  assertOracles(unsafe, raw);
  const existing = s.path('unsafe-existing.vdi');
  dwOk(['create', '-f', 'vdi', existing, '20M']);
  dwOk(['convert', '-n', '-t', 'unsafe', '-O', 'vdi', raw, existing]);
  assertOracles(existing, raw);
  // On the device: the map entry waits in memory until a flush; one written after it waits for close.
  const open = s.path('unsafe-flushed.vdi');
  dwOk(['create', '-f', 'vdi', open, '4M']);
  const dev = await openImage(open, { readOnly: false });
  const mapAt = readFileSync(open).readUInt32LE(0x154); // the header's offset of the block map
  try {
    dev.skipFlushes?.();
    await dev.write(MiB, Buffer.alloc(4096, 0x64));
    assert.equal(readFileSync(open).readUInt32LE(mapAt + 4), 0xffffffff, 'the map entry waits in memory');
    await dev.flush();
    assert.equal(readFileSync(open).readUInt32LE(mapAt + 4), 0, 'flush wrote the map entry (the first data block)');
    await dev.write(2 * MiB, Buffer.alloc(4096, 0x65));
  } finally {
    await dev.close();
  }
  const read = must('qemu-io', ['-f', 'vdi', '-r', '-c', 'read -P 0x64 1M 4k', '-c', 'read -P 0x65 2M 4k', open]).stdout;
  assert.doesNotMatch(read, /Pattern verification failed/);
  assert.equal(run('qemu-img', ['check', '-f', 'vdi', open]).status, 0);
});

test('vdi measure: the file sizes create and convert make', () => {
  const raw = s.path('m.raw');
  qimg(['create', '-q', '-f', 'raw', raw, '9M']);
  io(raw, ['write -P 1 0 1', 'write -P 2 4M 1M', 'write -P 3 8M 4k'], 'raw');
  const m = JSON.parse(dwOk(['measure', '--output=json', '-O', 'vdi', raw]).stdout);
  const out = s.path('m.vdi');
  qimg(['convert', '-O', 'vdi', raw, out]);
  assert.equal(m.required, statSync(out).size);
  const st = s.path('m-static.vdi');
  qimg(['create', '-q', '-f', 'vdi', '-o', 'static=on', st, '9M']);
  assert.equal(m['fully-allocated'], statSync(st).size);
});

test('vdi: a write to an image whose map is damaged is refused with a plain line; the file is unchanged', () => {
  const img = s.path('bad.vdi');
  qimg(['create', '-q', '-f', 'vdi', img, '4M']);
  io(img, ['write -P 1 0 1M', 'write -P 2 1M 1M']);
  const b = readFileSync(img);
  b.writeUInt32LE(0, 512 + 4); // guest block 1 now shares data block 0
  writeFileSync(img, b);
  const f = s.path('one');
  writeFileSync(f, Buffer.alloc(512, 9));
  const r = dw(['write', img, String(3 * MiB), f]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /share one data block; repair it first/);
  assert.ok(readFileSync(img).equals(b));
});

test('vdi with extra data per block (VirtualBox can keep some): read, but a write and a discard refuse in the same words; the file is unchanged', () => {
  const img = s.path('extra.vdi');
  qimg(['create', '-q', '-f', 'vdi', img, '4M']);
  const b = readFileSync(img);
  b.writeUInt32LE(512, 0x17c); // cbBlockExtra: no block is allocated, so nothing else moves
  writeFileSync(img, b);
  assert.match(dwOk(['info', img]).stdout, /file format: vdi/);
  const f = s.path('extra-one');
  writeFileSync(f, Buffer.alloc(512, 9));
  const words = /this VDI keeps 512 bytes of extra data per block; such images are read but not written/;
  const w = dw(['write', img, String(MiB), f]);
  assert.equal(w.status, 1);
  assert.match(w.stderr, words);
  const d = dw(['discard', img, '0', String(4 * MiB)]);
  assert.notEqual(d.status, 0);
  assert.match(d.stderr, words);
  assert.ok(readFileSync(img).equals(b));
});

test('vdi in a conversion chain raw -> qcow2 -> vdi -> vmdk -> vhdx -> raw (all by us): the raw bytes come back; the vdi step equal under qemu-img compare', () => {
  const raw = s.path('chain.raw');
  qimg(['create', '-q', '-f', 'raw', raw, '12M']);
  io(raw, ['write -P 0x21 0 5k', 'write -P 0x22 4M 1536k', 'write -P 0x23 12582400 512'], 'raw');
  const steps: Array<[string, string]> = [['qcow2', 'chain.qcow2'], ['vdi', 'chain.vdi'], ['vmdk', 'chain.vmdk'], ['vhdx', 'chain.vhdx'], ['raw', 'chain.out.raw']];
  let src = raw;
  for (const [fmt, name] of steps) {
    dwOk(['convert', '-O', fmt, src, s.path(name)]);
    src = s.path(name);
  }
  assert.ok(readFileSync(src).equals(readFileSync(raw)));
  must('qemu-img', ['compare', '-f', 'vdi', '-F', 'raw', s.path('chain.vdi'), raw]);
});

test('vdi: create refuses -b by name; create then rebase -u makes a differencing child that reads its parent', () => {
  const base = s.path('kid-base.vdi');
  qimg(['create', '-q', '-f', 'vdi', base, '3M']);
  io(base, ['write -P 0x5b 1M 1M']);
  const kid = s.path('kid.vdi');
  const r = dw(['create', '-f', 'vdi', '-b', 'kid-base.vdi', '-F', 'vdi', kid, '3M']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /names its parent by UUID/);
  dwOk(['create', '-f', 'vdi', kid, '3M']);
  dwOk(['rebase', '-u', '-F', 'vdi', '-b', 'kid-base.vdi', kid]);
  const out = s.path('kid.raw');
  dwOk(['convert', '-O', 'raw', kid, out]);
  const want = s.path('kid-base.raw');
  qimg(['convert', '-f', 'vdi', '-O', 'raw', base, want]);
  assert.ok(readFileSync(out).equals(readFileSync(want)));
  assert.equal(JSON.parse(dwOk(['info', '--output=json', kid]).stdout)['format-specific'].data.subformat, 'differencing');
});

test('vdi: overlapping calls (the driver says it takes them): writes land in call order, reads in between see whole blocks', async () => {
  const img = s.path('conc.vdi');
  const raw = s.path('conc.raw');
  qimg(['create', '-q', '-f', 'vdi', img, '8M']);
  qimg(['create', '-q', '-f', 'raw', raw, '8M']);
  const writes: W[] = [];
  for (let k = 0; k < 40; k++) writes.push([((k * 7919 * 4096) % (8 * MiB - 65536)), 4096 + ((k * 104729) % 60000), 1 + (k % 250)]);
  const dev = await openImage(img, { readOnly: false });
  const pending: Promise<unknown>[] = [];
  for (const [off, len, pat] of writes) {
    pending.push(dev.write(off, new Uint8Array(len).fill(pat)));
    pending.push(dev.read(off, new Uint8Array(len)));
  }
  await Promise.all(pending);
  await dev.close();
  io(raw, ioCmds(writes), 'raw');
  assertOracles(img, raw);
});
