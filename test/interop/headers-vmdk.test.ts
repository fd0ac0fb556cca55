/**
 * `diskwright info` on VMDK images made by qemu-img (every subformat qemu-img writes, and a child made with -b)
 * against `qemu-img info` on the same file: format, virtual size, cluster size, backing file, CIDs, create type
 * and the extent list. VMDK3 ("COWD") and stream footers, which qemu-img cannot write, are built here and
 * checked against qemu-img's reading of them where qemu-img can read them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { serializeVmdk3Header, serializeVmdk4Header, serializeFooter, parseVmdk4Header } from '../../src-main/formats/vmdk/layout';

const s = scratch('dw-hdr-vmdk-');
after(() => s.cleanup());

type Info = Record<string, any>;
const ours = (p: string, ...extra: string[]): Info => JSON.parse(dwOk(['info', ...extra, '--output', 'json', p]).stdout);
const qemus = (p: string): Info => JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);

/** The keys both tools print, compared one by one so a failure names the key. */
function assertSameHeader(path: string, label: string): void {
  const q = qemus(path);
  const o = ours(path);
  assert.equal(o.format, q.format, `${label}: format`);
  assert.equal(o['virtual-size'], q['virtual-size'], `${label}: virtual-size`);
  // For descriptor files qemu-img counts the extent files' allocation too.
  assert.equal(o['actual-size'], q['actual-size'], `${label}: actual-size`);
  assert.equal(o['cluster-size'], q['cluster-size'], `${label}: cluster-size`);
  assert.equal(o['backing-filename'], q['backing-filename'], `${label}: backing-filename`);
  assert.equal(o['backing-filename-format'], q['backing-filename-format'], `${label}: backing-filename-format`);
  assert.equal(o['data-readable'] !== undefined, true);
  assert.deepEqual(o['format-specific'], q['format-specific'], `${label}: format-specific`);
}

const SUBFORMATS: Array<[string, string]> = [
  ['monolithicSparse', '100M'],
  ['monolithicFlat', '3M'],
  ['twoGbMaxExtentSparse', '5G'], // three sparse extents, small on disk
  ['twoGbMaxExtentFlat', '70M'],
  ['streamOptimized', '100M'],
];

for (const [sub, size] of SUBFORMATS) {
  test(`vmdk ${sub} (${size}) made by qemu-img: info matches qemu-img info`, () => {
    const p = s.path(`${sub}.vmdk`);
    must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, p, size]);
    assertSameHeader(p, sub);
    // Probing finds vmdk without -f, and -f vmdk says the same.
    assert.equal(ours(p, '-f', 'vmdk')['virtual-size'], ours(p)['virtual-size']);
  });
}

test('vmdk with odd sizes and options: adapter types, compat6, zeroed grains', () => {
  const cases: Array<[string, string]> = [
    ['subformat=monolithicSparse,adapter_type=lsilogic', '1G'],
    ['subformat=monolithicSparse,compat6=on', '33M'],
    ['subformat=monolithicSparse,zeroed_grain=on', '7M'],
    ['subformat=streamOptimized', '1000K'],
    ['subformat=twoGbMaxExtentFlat', '1M'],
  ];
  cases.forEach(([opts, size], i) => {
    const p = s.path(`opt${i}.vmdk`);
    must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', opts, p, size]);
    assertSameHeader(p, `${opts} ${size}`);
  });
});

test('vmdk child made with -b: backing file, parent CID and format match qemu-img', () => {
  const base = s.path('base.vmdk');
  const child = s.path('child.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', base, '64M']);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', child]);
  assertSameHeader(child, 'child');
  const o = ours(child);
  assert.equal(o['backing-filename'], 'base.vmdk');
  assert.equal(o['full-backing-filename'], base);
  assert.equal(o['format-specific'].data['parent-cid'], ours(base)['format-specific'].data.cid);
  // The chain is described too.
  const chain = JSON.parse(dwOk(['info', '--backing-chain', '--output', 'json', child]).stdout);
  assert.equal(chain.length, 2);
  assert.equal(chain[1]['virtual-size'], 64 * 1024 * 1024);
});

test('vmdk image written by qemu-io still reads the same header (data does not disturb it)', () => {
  const p = s.path('written.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', p, '16M']);
  must('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x11 15M 64k', p]);
  assertSameHeader(p, 'written');
});

test('VMDK3 (COWD) sparse extent with a descriptor area: matches qemu-img info', () => {
  const p = s.path('cowd.vmdk');
  const b = Buffer.alloc(16384);
  b.set(
    serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 204800, granularity: 128, l1dirOffset: 4, l1dirSize: 1, fileSectors: 32, cylinders: 0, heads: 0, sectorsPerTrack: 0 }),
  );
  b.write('# Disk DescriptorFile\nCID=12345678\nparentCID=ffffffff\n', 512, 'latin1');
  writeFileSync(p, b);
  assertSameHeader(p, 'cowd');
});

test('VMDK3 without descriptor text (as ESX 2 wrote it): we still give its size; qemu-img refuses it', () => {
  const p = s.path('cowd-bare.vmdk');
  const b = Buffer.alloc(16384);
  b.set(serializeVmdk3Header({ version: 1, flags: 3, diskSectors: 4096, granularity: 16, l1dirOffset: 4, l1dirSize: 1, fileSectors: 32, cylinders: 0, heads: 0, sectorsPerTrack: 0 }));
  writeFileSync(p, b);
  const o = ours(p);
  assert.equal(o['virtual-size'], 4096 * 512);
  assert.equal(o['cluster-size'], 16 * 512);
  // qemu 7.2 looks for 'CID' in the sectors after the header and fails without it.
  assert.notEqual(run('qemu-img', ['info', p]).status, 0);
});

test('stream-optimized image whose header defers to the footer (GD_AT_END): qemu-img and we read the footer', () => {
  // Take a qemu-img stream image and rewrite it the way VMware writes streams: header with gd_offset = -1,
  // and a footer (marker, header copy, end-of-stream marker) at the end of the file.
  const src = s.path('stream-src.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', src, '40M']);
  const bytes = readFileSync(src);
  const h = parseVmdk4Header(bytes.subarray(0, 512), src);
  const real = { ...h };
  const out = Buffer.concat([bytes, Buffer.alloc(0)]);
  out.set(serializeVmdk4Header({ ...h, gdOffset: undefined }), 0);
  const p = s.path('stream-footer.vmdk');
  writeFileSync(p, Buffer.concat([out, Buffer.from(serializeFooter(real))]));
  assertSameHeader(p, 'stream with footer');
});

test('descriptor-only file pointing at hand-made extents: virtual size is the sum of the extent lines', () => {
  const flat1 = s.path('d-flat1.bin');
  const flat2 = s.path('d-flat2.bin');
  writeFileSync(flat1, Buffer.alloc(1024 * 1024));
  writeFileSync(flat2, Buffer.alloc(512 * 1024));
  const d = s.path('desc.vmdk');
  writeFileSync(
    d,
    [
      '# Disk DescriptorFile',
      'version=1',
      'CID=0000abcd',
      'parentCID=ffffffff',
      'createType="monolithicFlat"',
      '',
      '# Extent description',
      'RW 2048 FLAT "d-flat1.bin" 0',
      'RW 1024 FLAT "d-flat2.bin" 0',
      '',
      'ddb.adapterType = "ide"',
      '',
    ].join('\n'),
  );
  assertSameHeader(d, 'descriptor with two flat extents');
  assert.equal(ours(d)['virtual-size'], 3072 * 512);
});

test('a damaged vmdk gives one plain error line', () => {
  const p = s.path('bad.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', p, '10M']);
  const b = readFileSync(p);
  b.writeBigUInt64LE(0n, 20); // grain size 0
  writeFileSync(p, b);
  const r = dw(['info', p]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /grain size/);
  assert.ok(!r.stderr.includes('    at '));
});

test('human info of a multi-extent vmdk reads line for line like qemu-img info (extents as numbered blocks)', () => {
  const p = s.path('human.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', p, '5G']);
  const q = must('qemu-img', ['info', p]).stdout.trim().split('\n');
  const o = dwOk(['info', p]).stdout.trim().split('\n').filter((l) => !l.startsWith('note: '));
  assert.deepEqual(o, q);
});
