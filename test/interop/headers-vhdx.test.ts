/**
 * `diskwright info` on VHDX images made by qemu-img (dynamic and fixed, several block sizes, log sizes, odd
 * virtual sizes) against `qemu-img info`; the second header and region table copies; a pending log reported
 * as dirty; a differencing image's parent locator (qemu-img cannot make one, so it is built here).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import {
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SIZE,
  PARENT_LOCATOR_GUID,
  PARENT_LOCATOR_VHDX_TYPE,
  FILE_PARAMETERS_GUID,
  REGION_TABLE1_OFFSET,
  REGION_TABLE_SIZE,
  METADATA_GUID,
  METADATA_TABLE_SIZE,
  parseHeader,
  parseMetadataTable,
  parseRegionTable,
  serializeHeader,
  serializeFileParameters,
  serializeMetadataTable,
  serializeParentLocator,
} from '../../src-main/formats/vhdx/layout';

const s = scratch('dw-hdr-vhdx-');
after(() => s.cleanup());

type Info = Record<string, any>;
const ours = (p: string): Info => JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
const qemus = (p: string): Info => JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);

function assertSameHeader(p: string, label: string): Info {
  const q = qemus(p);
  const o = ours(p);
  assert.equal(o.format, 'vhdx', label);
  assert.equal(o.format, q.format, `${label}: format`);
  assert.equal(o['virtual-size'], q['virtual-size'], `${label}: virtual-size`);
  assert.equal(o['cluster-size'], q['cluster-size'], `${label}: cluster-size`);
  assert.equal(o['dirty-flag'], q['dirty-flag'], `${label}: dirty-flag`);
  assert.equal(o['backing-filename'], q['backing-filename'], `${label}: backing-filename`);
  return o;
}

const CASES: Array<[string, string]> = [
  ['subformat=dynamic', '100M'],
  ['subformat=dynamic,block_size=1M', '10M'],
  ['subformat=dynamic,block_size=32M', '1G'],
  ['subformat=dynamic,block_size=256M', '3G'],
  ['subformat=dynamic,log_size=4M', '64M'],
  ['subformat=dynamic,block_state_zero=off', '20M'],
  ['subformat=dynamic', '1000000'], // not a multiple of a MiB (qemu rounds it to sectors)
  ['subformat=fixed,block_size=1M', '5M'],
  ['subformat=fixed,block_size=2M', '9M'],
  ['subformat=dynamic', '64T'],
];

CASES.forEach(([opts, size], i) => {
  test(`vhdx ${opts} ${size} made by qemu-img: info matches qemu-img info`, () => {
    const p = s.path(`img${i}.vhdx`);
    must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', opts, p, size]);
    const o = assertSameHeader(p, `${opts} ${size}`);
    assert.equal(o['format-specific'].data.subformat, opts.includes('fixed') ? 'fixed' : 'dynamic');
  });
});

test('vhdx written by qemu-io (headers rewritten with new sequence numbers) still matches', () => {
  const p = s.path('written.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', p, '32M']);
  must('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x33 0 1M', '-c', 'write -P 0x44 31M 1M', p]);
  assertSameHeader(p, 'written');
});

test('vhdx with a backing file: qemu-img cannot make one; we make a differencing image naming its parent', () => {
  const base = s.path('base.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', base, '8M']);
  assert.notEqual(run('qemu-img', ['create', '-f', 'vhdx', '-b', base, '-F', 'vhdx', s.path('child-q.vhdx')]).status, 0);
  const child = s.path('child-d.vhdx');
  dwOk(['create', '-f', 'vhdx', '-b', base, '-F', 'vhdx', child]);
  const o = ours(child);
  assert.equal(o['backing-filename'], 'base.vhdx');
  assert.equal(o['virtual-size'], 8 * 1024 * 1024);
  // A parent of another format is refused in one line.
  const qc = s.path('base.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', qc, '8M']);
  const r = dw(['create', '-f', 'vhdx', '-b', qc, '-F', 'qcow2', s.path('child-x.vhdx')]);
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

function fresh(name: string, size = '16M'): { path: string; bytes: Buffer } {
  const p = s.path(name);
  must('qemu-img', ['create', '-q', '-f', 'vhdx', p, size]);
  return { path: p, bytes: readFileSync(p) };
}

test('a damaged first header: the second copy is used, as qemu-img does', () => {
  const { path, bytes } = fresh('h1bad.vhdx');
  bytes[HEADER1_OFFSET + 20] ^= 0xff; // breaks header 1's checksum
  writeFileSync(path, bytes);
  assertSameHeader(path, 'header 1 damaged');
  bytes[HEADER2_OFFSET + 20] ^= 0xff; // now both are bad
  writeFileSync(path, bytes);
  assert.notEqual(run('qemu-img', ['info', path]).status, 0);
  const r = dw(['info', path]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no valid VHDX header/);
});

test('a damaged first region table: we use the second copy (the spec allows it); qemu-img 7.2 only tries the first', () => {
  const { path, bytes } = fresh('rt1bad.vhdx');
  bytes[REGION_TABLE1_OFFSET + 40] ^= 0xff;
  writeFileSync(path, bytes);
  // qemu 7.2 only reads the first region table copy; the spec says either valid copy may be used.
  const o = ours(path);
  assert.equal(o['virtual-size'], 16 * 1024 * 1024);
  assert.notEqual(run('qemu-img', ['info', path]).status, 0);
});

test('a header with a non-zero log GUID is reported dirty (the image was not closed cleanly, a log may wait)', () => {
  const { path, bytes } = fresh('dirty.vhdx');
  // Make the newer header carry a log GUID.
  const hdrs = [HEADER1_OFFSET, HEADER2_OFFSET].map((off) => ({ off, h: parseHeader(bytes.subarray(off, off + HEADER_SIZE), path)! }));
  const newest = hdrs[0].h.sequenceNumber > hdrs[1].h.sequenceNumber ? hdrs[0] : hdrs[1];
  bytes.set(serializeHeader({ ...newest.h, logGuid: '12345678-9abc-def0-1234-56789abcdef0' }), newest.off);
  writeFileSync(path, bytes);
  const o = ours(path);
  assert.equal(o['dirty-flag'], true);
  assert.equal(o['format-specific'].data['log-guid'], '12345678-9abc-def0-1234-56789abcdef0');
  // qemu finds no log entry carrying that GUID, so it has nothing to replay and opens the image; the rest agrees.
  const q = qemus(path);
  assert.equal(o['virtual-size'], q['virtual-size']);
  assert.equal(o['cluster-size'], q['cluster-size']);
});

test('a differencing vhdx: the parent locator gives the backing file name', () => {
  const { path, bytes } = fresh('diff.vhdx');
  const regions = parseRegionTable(bytes.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE), path, bytes.length);
  const md = regions.find((r) => r.guid === METADATA_GUID)!;
  const items = parseMetadataTable(bytes.subarray(md.fileOffset, md.fileOffset + METADATA_TABLE_SIZE), path, md.length);
  const fp = items.find((e) => e.itemId === FILE_PARAMETERS_GUID)!;
  const blockSize = bytes.readUInt32LE(md.fileOffset + fp.offset);
  bytes.set(serializeFileParameters({ blockSize, leaveBlocksAllocated: false, hasParent: true }), md.fileOffset + fp.offset);
  const locator = serializeParentLocator({
    type: PARENT_LOCATOR_VHDX_TYPE,
    entries: { parent_linkage: '{83b4f9f5-3b0c-4e1a-9f3f-3bde4d0ac3b1}', relative_path: '.\\parent.vhdx', absolute_win32_path: 'C:\\vm\\parent.vhdx' },
  });
  const end = Math.max(...items.map((e) => e.offset + e.length));
  const locOffset = Math.ceil(end / 4096) * 4096;
  bytes.set(locator, md.fileOffset + locOffset);
  items.push({ itemId: PARENT_LOCATOR_GUID, offset: locOffset, length: locator.length, isUser: false, isVirtualDisk: false, isRequired: true });
  bytes.set(serializeMetadataTable(items), md.fileOffset);
  writeFileSync(path, bytes);
  const o = ours(path);
  // Windows separators become ours: the name info shows is one the chain walk can follow here.
  assert.equal(o['backing-filename'], 'parent.vhdx');
  assert.equal(o['format-specific'].data['parent-locator'].relative_path, '.\\parent.vhdx');
  assert.equal(o['format-specific'].data.subformat, 'differencing');
  assert.equal(o['format-specific'].data['parent-locator'].absolute_win32_path, 'C:\\vm\\parent.vhdx');
  // qemu 7.2 does not open differencing VHDX at all.
  assert.notEqual(run('qemu-img', ['info', path]).status, 0);
});
