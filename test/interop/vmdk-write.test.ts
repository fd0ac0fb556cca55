/**
 * What diskwright writes into VMDK images passes `qemu-img check` and equals, under `qemu-img compare`, a raw
 * reference written by qemu-io with the same commands: images created here (every subformat, zeroed grains,
 * a 5 GiB twoGbMaxExtentSparse written across its 2 GiB boundary), qemu-img's images written in place (copy
 * on write from a parent, grain tables allocated where the directory has none), and convert into VMDK.
 * Descriptors are laid out as qemu-img's; the CID changes on the first write and a child of a changed parent
 * is refused as a stale chain.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { assertPlainError, assertQemuAccepts, io, ourMap, qemuCreate, qemuMap } from './vmdk-common';
import { openImage } from '../../src-main/registry';
import { serializeVmdk3Header } from '../../src-main/formats/vmdk/layout';

const s = scratch('dw-vmdk-write-');
after(() => s.cleanup());

let n = 0;
const name = (ext = 'vmdk') => s.path(`w${n++}.${ext}`);

/**
 * The same bytes written into `image` here (in-process, through the registry as the CLI's write does) and with
 * qemu-io into a raw reference, in one qemu-io run.
 */
async function writeBoth(image: string, raw: string, writes: Array<[number, number, number]>): Promise<void> {
  const dev = await openImage(image, { readOnly: false, backingPolicy: 'anywhere' });
  try {
    for (const [offset, length, pattern] of writes) await dev.write(offset, new Uint8Array(length).fill(pattern));
    await dev.flush();
  } finally {
    await dev.close();
  }
  must('qemu-io', ['-f', 'raw', ...writes.flatMap(([o, l, p]) => ['-c', `write -P ${p} ${o} ${l}`]), raw]);
}

const WRITES: Array<[number, number, number]> = [
  [0, 512, 0x11],
  [65536 - 512, 1024, 0x22], // across a grain boundary
  [100000, 70000, 0x33], // unaligned, several grains
  [1 << 20, 65536, 0x44], // one whole grain
  [(1 << 20) + 4096, 4096, 0x55], // over an allocated grain
  [5 * (1 << 20) - 1000, 1000, 0x66], // the last bytes
];

const cid = (p: string): number => JSON.parse(dwOk(['info', '--output', 'json', p]).stdout)['format-specific'].data.cid;

/** The descriptor text of a VMDK (embedded or a file) with its CID and its own name blanked out. */
const descriptorText = (p: string, own: string) => {
  const b = readFileSync(p);
  const t = b.subarray(0, 4).toString('latin1') === 'KDMV' ? b.subarray(512, 512 * 21).toString('latin1').replace(/\0+$/, '') : b.toString('latin1');
  return t.replace(/^CID=.*$/m, 'CID=').split(own).join('NAME');
};

/** qemu-img create and diskwright create with the same options and size: the same descriptor, header and info. */
function assertCreatedAsQemu(label: string, opts: string, size: string, sub: string): void {
  const ours = s.path(`ours-${label}.vmdk`);
  const theirs = s.path(`theirs-${label}.vmdk`);
  dwOk(['create', '-f', 'vmdk', '-o', opts, ours, size]);
  qemuCreate(theirs, opts, size);
  assertQemuAccepts(ours);
  const qi = JSON.parse(must('qemu-img', ['info', '--output', 'json', ours]).stdout);
  const qt = JSON.parse(must('qemu-img', ['info', '--output', 'json', theirs]).stdout);
  assert.equal(qi['virtual-size'], qt['virtual-size'], `${label}: the size rounds up to whole sectors as qemu-img's`);
  assert.equal(qi['format-specific'].data['create-type'], sub);
  // Our info of the file we made says what qemu-img info says of it (CIDs, create type, extents).
  const oi = JSON.parse(dwOk(['info', '--output', 'json', ours]).stdout);
  assert.deepEqual(oi['format-specific'], qi['format-specific'], `${label}: info format-specific`);
  assert.equal(oi['virtual-size'], qi['virtual-size']);
  if (sub !== 'streamOptimized') {
    // Descriptor text: the same lines but for the CID and the file names.
    assert.equal(descriptorText(ours, `ours-${label}`), descriptorText(theirs, `theirs-${label}`), `${label}: descriptor`);
  }
  if (sub === 'monolithicSparse') {
    // The sparse header (version, flags, geometry) and the grain directories are qemu-img's byte for byte.
    const head = (p: string) => readFileSync(p).subarray(0, 512);
    assert.ok(head(ours).equals(head(theirs)), `${label}: sparse header`);
  }
}

for (const sub of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized']) {
  test(`create -o subformat=${sub} (odd size): descriptor and info as qemu-img's, qemu-img check passes`, () => {
    assertCreatedAsQemu(sub, `subformat=${sub},adapter_type=lsilogic,hwversion=7,toolsversion=42`, '5000001', sub);
  });
}

test('create options: compat6, each adapter type, zeroed grains, hwversion: as qemu-img creates them', () => {
  const cases: Array<[string, string]> = [
    ['compat6', 'compat6=on'],
    ['ide', 'adapter_type=ide'],
    ['buslogic', 'adapter_type=buslogic'],
    ['legacyesx', 'adapter_type=legacyESX'],
    ['zeroed', 'zeroed_grain=on'],
    ['hw', 'hwversion=11,toolsversion=10240'],
  ];
  for (const [label, opts] of cases) assertCreatedAsQemu(`opt-${label}`, opts, '3M', 'monolithicSparse');
  assertCreatedAsQemu('opt-stream-buslogic', 'subformat=streamOptimized,adapter_type=buslogic,compat6=on', '3M', 'streamOptimized');
});

test('resize: refused for vmdk, as qemu-img refuses it', () => {
  const p = name();
  dwOk(['create', '-f', 'vmdk', p, '1M']);
  const q = run('qemu-img', ['resize', p, '2M']);
  const o = dw(['resize', p, '2M']);
  assert.equal(q.status, 1, q.stderr);
  assert.equal(o.status, q.status, o.stderr);
  assert.match(o.stderr, /cannot be resized/);
});

for (const [sub, opts] of [
  ['monolithicSparse', ''],
  ['monolithicSparse', 'zeroed_grain=on'],
  ['monolithicFlat', ''],
  ['twoGbMaxExtentSparse', ''],
  ['twoGbMaxExtentFlat', ''],
]) {
  test(`writes into a ${sub} ${opts} image made here equal qemu-io's on raw; qemu-img check passes`, async () => {
    const p = name();
    const raw = name('raw');
    dwOk(['create', '-f', 'vmdk', '-o', `subformat=${sub}${opts ? ',' + opts : ''}`, p, '5M']);
    must('qemu-img', ['create', '-q', '-f', 'raw', raw, '5M']);
    const before = cid(p);
    await writeBoth(p, raw, WRITES);
    assert.notEqual(cid(p), before, 'the CID changes on the first write');
    assertQemuAccepts(p, raw);
    assert.deepEqual(ourMap(p), qemuMap(p), 'map of what we wrote, as qemu-img maps it');
  });
}

test('twoGbMaxExtentSparse of 5 GiB: writes across the 2 GiB extent boundary', async () => {
  const p = name();
  const raw = name('raw');
  dwOk(['create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', p, '5G']);
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '5G']);
  await writeBoth(p, raw, [
    [2147483648 - 3000, 70000, 0x71],
    [4294967296 - 512, 1024, 0x72],
    [5368709120 - 65536, 65536, 0x73],
  ]);
  assertQemuAccepts(p, raw);
});

test('writes into qemu-img images: copy on write from a parent, and into zeroed grains', async () => {
  const base = name();
  const child = s.path('cow-child.vmdk');
  qemuCreate(base, '', '4M');
  io(base, ['write -P 0x61 0 4M']);
  qemuCreate(child, 'zeroed_grain=on', '4M', base.split('/').pop());
  io(child, ['write -z 1M 128k']);
  const ref = name('raw');
  must('qemu-img', ['convert', '-O', 'raw', child, ref]);
  const baseCid = cid(base);
  await writeBoth(child, ref, [
    [4096, 512, 0x62], // a partial grain over the parent: the rest of the grain is the parent's
    [(1 << 20) + 512, 512, 0x63], // a partial write into a zeroed grain: the rest stays zero
  ]);
  assert.equal(cid(base), baseCid, 'the parent is not written');
  assertQemuAccepts(child, ref);
  // qemu-img's own reading of the chain agrees too.
  must('qemu-img', ['compare', '-F', 'raw', child, ref]);
});

test('a grain directory entry without a grain table: the table is allocated in both directories', async () => {
  const p = name();
  qemuCreate(p, '', '64M');
  // Cut grain table 1 (guest 32 MiB..64 MiB) out of both directories, as VMware leaves unused tables.
  const b = readFileSync(p);
  const rgd = Number(b.readBigUInt64LE(48));
  const gd = Number(b.readBigUInt64LE(56));
  b.writeUInt32LE(0, rgd * 512 + 4);
  b.writeUInt32LE(0, gd * 512 + 4);
  writeFileSync(p, b);
  const raw = name('raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '64M']);
  await writeBoth(p, raw, [[40 << 20, 100000, 0x5a]]);
  assertQemuAccepts(p, raw);
  const after = readFileSync(p);
  assert.notEqual(after.readUInt32LE(gd * 512 + 4), 0);
  assert.notEqual(after.readUInt32LE(rgd * 512 + 4), 0);
  // Both tables say the same.
  const t1 = after.subarray(after.readUInt32LE(gd * 512 + 4) * 512, after.readUInt32LE(gd * 512 + 4) * 512 + 2048);
  const t2 = after.subarray(after.readUInt32LE(rgd * 512 + 4) * 512, after.readUInt32LE(rgd * 512 + 4) * 512 + 2048);
  assert.ok(t1.equals(t2));
});

test('convert -O vmdk (every subformat) from an odd-sized raw with data, holes and zeros: qemu-img compare equal', () => {
  const raw = name('raw');
  // 6 MiB + 1000 bytes: the image rounds up to whole sectors, as qemu-img's does, and the tail reads as zeros.
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, String(6 * 1024 * 1024 + 1000)]);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x10 0 300k', '-c', 'write -P 0 1M 64k', '-c', 'write -P 0x20 2M 1M', '-c', 'write -P 0x30 6143k 1k', '-c', `write -P 0x31 ${6 * 1024 * 1024} 1000`, raw]);
  const theirs = s.path('conv-qemu.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', raw, theirs]);
  const qemuSize = JSON.parse(must('qemu-img', ['info', '--output', 'json', theirs]).stdout)['virtual-size'];
  for (const sub of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized']) {
    const p = s.path(`conv-${sub}.vmdk`);
    dwOk(['convert', '-O', 'vmdk', '-o', `subformat=${sub}`, raw, p]);
    assertQemuAccepts(p, raw);
    assert.equal(JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout)['virtual-size'], qemuSize, `${sub}: size as qemu-img convert's`);
  }
});

test('a child whose parent changed since (parentCID no longer the parent CID) is refused as a stale chain', () => {
  const base = s.path('stale-base.vmdk');
  const child = s.path('stale-child.vmdk');
  qemuCreate(base, '', '1M');
  qemuCreate(child, '', '1M', 'stale-base.vmdk');
  dwOk(['convert', '-O', 'raw', child, name('raw')]);
  const f = s.path('one.bin');
  writeFileSync(f, Buffer.alloc(512, 1));
  dwOk(['write', base, '0', f]); // changes the base's CID
  assertPlainError(['convert', '-O', 'raw', child, name('raw')], /stale/);
});

test('a child created here names its parent and the parent CID; reads through it as qemu-img does', async () => {
  const base = s.path('cbase.vmdk');
  qemuCreate(base, '', '2M');
  io(base, ['write -P 0x44 0 2M']);
  const child = s.path('cchild.vmdk');
  dwOk(['create', '-f', 'vmdk', '-b', 'cbase.vmdk', '-F', 'vmdk', child]);
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', child]).stdout);
  assert.equal(info['backing-filename'], 'cbase.vmdk');
  assert.equal(info['format-specific'].data['parent-cid'], cid(base));
  const raw = name('raw');
  must('qemu-img', ['convert', '-O', 'raw', base, raw]);
  await writeBoth(child, raw, [[1000, 3000, 0x45]]);
  assertQemuAccepts(child);
  must('qemu-img', ['compare', '-F', 'raw', child, raw]);
  // qemu-img refuses a flat child and a non-vmdk parent; so do we.
  assertPlainError(['create', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', '-b', 'cbase.vmdk', '-F', 'vmdk', name()], /Flat image can't have backing file/);
  assertPlainError(['create', '-f', 'vmdk', '-o', 'compat6=on,hwversion=7', name(), '1M'], /compat6 cannot be enabled with hwversion set/);
});

test('writes into an existing streamOptimized image are refused with a plain message', () => {
  const p = name();
  const src = name('raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', src, '1M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 64k', src]);
  must('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, p]);
  const f = s.path('x.bin');
  writeFileSync(f, Buffer.alloc(512, 2));
  assertPlainError(['write', p, '0', f], /streamOptimized/);
  copyFileSync(p, name());
  assert.equal(dw(['check', p]).status, 0);
});

test('writeZeroes: whole grains become zeroed-grain entries (zeroed_grain=on), partial ones zeros; qemu-img agrees', async () => {
  const p = name();
  dwOk(['create', '-f', 'vmdk', '-o', 'zeroed_grain=on', p, '2M']);
  const raw = name('raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '2M']);
  await writeBoth(p, raw, [[0, 2 << 20, 0x77]]);
  const dev = await openImage(p, { readOnly: false, backingPolicy: 'anywhere' });
  await dev.writeZeroes(65536, 3 * 65536); // three whole grains
  await dev.writeZeroes(1000, 3000); // inside grain 0
  await dev.close();
  must('qemu-io', ['-f', 'raw', '-c', 'write -z 65536 196608', '-c', 'write -z 1000 3000', raw]);
  assertQemuAccepts(p, raw);
  // The three grains are zeroed-grain entries (1) in both grain tables, and map shows them as zero.
  const b = readFileSync(p);
  for (const dirAt of [Number(b.readBigUInt64LE(48)), Number(b.readBigUInt64LE(56))]) {
    const gt = b.readUInt32LE(dirAt * 512) * 512;
    assert.deepEqual([1, 2, 3].map((g) => b.readUInt32LE(gt + g * 4)), [1, 1, 1]);
  }
  assert.deepEqual(ourMap(p), qemuMap(p));
});

test('VMDK3 (COWD) written here: new grain tables and grains read back by qemu-img', async () => {
  const p = name();
  const b = Buffer.alloc(40 * 512);
  b.set(serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 8192, granularity: 16, l1dirOffset: 4, l1dirSize: 1, fileSectors: 40, cylinders: 0, heads: 0, sectorsPerTrack: 0 }));
  b.write('# Disk DescriptorFile\nCID=12345678\nparentCID=ffffffff\n', 512, 'latin1'); // qemu looks for a CID
  writeFileSync(p, b); // L1[0] = 0: no grain table yet
  const raw = name('raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '4M']);
  await writeBoth(p, raw, [[4096, 10000, 0x3c], [(4 << 20) - 512, 512, 0x3d]]);
  must('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', p, raw]);
});
