/**
 * Everything diskwright writes into qcow2 passes `qemu-img check` (exit 0) and equals, under
 * `qemu-img compare`, the content it should hold (a raw mirror written alongside).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { assertPlainError, assertQemuAccepts, assertSameContent, io } from './qcow2-common';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-qcow2-write-');
after(() => s.cleanup());
let n = 0;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 13 + (i >> 8)) & 0xff || 1;
  return b;
}

/** A raw file kept in step with the writes: what the image must read as. */
class Mirror {
  readonly path = s.path(`mirror${n++}.raw`);
  constructor(size: number, base?: Buffer) {
    const b = Buffer.alloc(size);
    if (base) base.copy(b, 0, 0, Math.min(size, base.length));
    writeFileSync(this.path, b);
  }
  write(offset: number, data: Uint8Array): void {
    const fd = openSync(this.path, 'r+');
    writeSync(fd, data, 0, data.length, offset);
    closeSync(fd);
  }
}

function dwWrite(image: string, offset: number, data: Buffer, mirror: Mirror): void {
  const f = s.path(`chunk${n++}.bin`);
  writeFileSync(f, data);
  dwOk(['write', image, String(offset), f]);
  mirror.write(offset, data);
}

const CREATE_OPTIONS = [
  '',
  'compat=0.10',
  'cluster_size=512',
  'cluster_size=512,refcount_bits=64',
  'cluster_size=4k,refcount_bits=1',
  'refcount_bits=8',
  'refcount_bits=32',
  'cluster_size=2M',
  'lazy_refcounts=on',
  'extended_l2=on',
  'extended_l2=on,cluster_size=16k,refcount_bits=2',
  'preallocation=metadata',
  'preallocation=metadata,cluster_size=4k',
  'preallocation=full',
  'preallocation=metadata,extended_l2=on',
  'compat=0.10,preallocation=metadata',
];

for (const opts of CREATE_OPTIONS) {
  test(`create ${opts || '(defaults)'}: qemu-img check is clean${opts.includes('full') ? '' : ' and the file is byte for byte what qemu-img create writes'}`, () => {
    const ours = s.path(`c${n++}.qcow2`);
    const theirs = s.path(`q${n++}.qcow2`);
    dwOk(['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), ours, '40M']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), theirs, '40M']);
    assertQemuAccepts(ours);
    if (!opts.includes('full')) assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'same bytes as qemu-img create');
    const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', ours]).stdout);
    assert.equal(info['virtual-size'], 40 * 1024 * 1024);
  });
}

const WRITES: Array<[number, number]> = [
  [0, 1],
  [511, 2],
  [1000, 70000],
  [65535, 2],
  [131072, 65536],
  [200000, 300000],
  [1048576 - 100, 200],
  [3 * 1048576 + 12345, 600000],
  [4 * 1048576 - 4096, 4096],
];

for (const opts of ['', 'compat=0.10', 'cluster_size=512', 'cluster_size=512,refcount_bits=64', 'cluster_size=4k,refcount_bits=1', 'extended_l2=on', 'extended_l2=on,cluster_size=32k', 'cluster_size=2M', 'lazy_refcounts=on', 'preallocation=metadata', 'preallocation=metadata,extended_l2=on']) {
  test(`write at unaligned offsets and cluster boundaries (${opts || 'defaults'}), twice over`, () => {
    const img = s.path(`w${n++}.qcow2`);
    dwOk(['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, '4M']);
    const m = new Mirror(4 * 1048576);
    WRITES.forEach(([off, len], i) => dwWrite(img, off, pattern(len, i + 1), m));
    // Overwrite parts: in place now.
    WRITES.slice(2, 5).forEach(([off, len], i) => dwWrite(img, off + 7, pattern(Math.max(1, len >> 1), i + 50), m));
    assertQemuAccepts(img, m.path);
    if (opts === 'lazy_refcounts=on') {
      const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
      assert.equal(info['dirty-flag'], false, 'the dirty bit is cleared on a clean close');
    }
  });
}

test('writes over a backing file copy the rest of each cluster from it; the image is larger than its backing file', () => {
  const baseData = pattern(1536 * 1024, 9);
  const base = s.path('wbase.raw');
  writeFileSync(base, baseData);
  for (const opts of ['', 'extended_l2=on', 'cluster_size=4k']) {
    const top = s.path(`wtop${n++}.qcow2`);
    dwOk(['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), '-b', 'wbase.raw', '-F', 'raw', top, '2M']);
    const m = new Mirror(2 * 1048576, baseData);
    for (const [off, len] of [[100, 10], [65536 + 300, 5000], [1536 * 1024 - 50, 100], [1800000, 7]]) dwWrite(top, off, pattern(len, off & 0xff), m);
    assertQemuAccepts(top, m.path);
  }
});

test('writes over compressed clusters and over clusters shared with a qemu-img snapshot leave both intact', () => {
  const src = s.path('csrc.raw');
  writeFileSync(src, pattern(2 * 1048576, 3));
  const img = s.path('cw.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', src, img]);
  must('qemu-img', ['snapshot', '-c', 'before', img]);
  const m = new Mirror(2 * 1048576, readFileSync(src));
  for (const [off, len] of [[10, 100], [65536, 65536], [100000, 200000], [2 * 1048576 - 1, 1]]) dwWrite(img, off, pattern(len, len & 0xff), m);
  assertQemuAccepts(img, m.path);
  // The snapshot still holds the original content.
  const snap = s.path('cw-before.raw');
  must('qemu-img', ['convert', '-O', 'raw', '-l', 'snapshot.name=before', img, snap]);
  assert.ok(readFileSync(snap).equals(readFileSync(src)), 'snapshot content unchanged');
});

for (const [label, args] of [
  ['qcow2', []],
  ['qcow2 -c', ['-c']],
  ['qcow2 -o cluster_size=4k,refcount_bits=1', ['-o', 'cluster_size=4k,refcount_bits=1']],
  ['qcow2 -c -o cluster_size=512', ['-c', '-o', 'cluster_size=512']],
  ['qcow2 -c -o cluster_size=2M', ['-c', '-o', 'cluster_size=2M']],
  ['qcow2 -c -o cluster_size=512,refcount_bits=64 (the refcount table grows while clusters are packed)', ['-c', '-o', 'cluster_size=512,refcount_bits=64']],
  ['qcow2 -o compat=0.10', ['-o', 'compat=0.10']],
  ['qcow2 -c -o extended_l2=on', ['-c', '-o', 'extended_l2=on']],
] as Array<[string, string[]]>) {
  test(`convert -O ${label} from raw and from qcow2`, () => {
    const size = 3 * 1048576 + 4096;
    const data = pattern(size, 5);
    data.fill(0, 200000, 800000);
    data.fill(0x33, 900000, 1000000);
    const raw = s.path(`cv${n++}.raw`);
    writeFileSync(raw, data);
    const fromRaw = s.path(`cv${n++}.qcow2`);
    dwOk(['convert', '-O', 'qcow2', ...args, raw, fromRaw]);
    assertQemuAccepts(fromRaw, raw);
    const qsrc = s.path(`cvq${n++}.qcow2`);
    must('qemu-img', ['convert', '-O', 'qcow2', '-o', 'cluster_size=16k', raw, qsrc]);
    io(qsrc, ['write -z 2M 64k']);
    data.fill(0, 2 * 1048576, 2 * 1048576 + 65536);
    writeFileSync(raw, data);
    const fromQcow2 = s.path(`cv${n++}.qcow2`);
    dwOk(['convert', '-O', 'qcow2', ...args, qsrc, fromQcow2]);
    assertQemuAccepts(fromQcow2, raw);
    if (args.includes('-c')) {
      const check = JSON.parse(must('qemu-img', ['check', '--output', 'json', fromRaw]).stdout);
      assert.ok(check['compressed-clusters'] > 0, 'clusters were stored compressed');
    }
  });
}

test('resize: grow (L1 table grows and moves), write at the new end, shrink refused over data and allowed over zeros', () => {
  const img = s.path('rs.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', img, '1M']);
  const m = new Mirror(1048576);
  dwWrite(img, 1000, pattern(3000, 1), m);
  dwOk(['resize', img, '100M']);
  let info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  assert.equal(info['virtual-size'], 100 * 1048576);
  const big = new Mirror(100 * 1048576, readFileSync(m.path));
  dwWrite(img, 100 * 1048576 - 700, pattern(700, 2), big);
  assertQemuAccepts(img, big.path);
  assertPlainError(['resize', '--shrink', img, '50M'], /data/);
  assertPlainError(['resize', img, '-1M'], /shrink/);
  // Zero the tail, then shrinking past it is allowed.
  const z = dw(['resize', '--shrink', img, '99M']);
  assert.notEqual(z.status, 0, 'the last MiB still holds data');
  const img2 = s.path('rs2.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', img2, '10M']);
  const m2 = new Mirror(4 * 1048576);
  dwWrite(img2, 4096, pattern(10000, 3), m2);
  dwOk(['resize', '--shrink', img2, '4M']);
  info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img2]).stdout);
  assert.equal(info['virtual-size'], 4 * 1048576);
  assertQemuAccepts(img2, m2.path);
  dwOk(['resize', img2, '+6M']);
  const m3 = new Mirror(10 * 1048576, readFileSync(m2.path));
  assertQemuAccepts(img2, m3.path);
});

test('writeZeroes: whole clusters become zero clusters, partial ones get zeros; v2, extended L2 and over a backing file', async () => {
  const baseData = pattern(1048576, 7);
  writeFileSync(s.path('zbase.raw'), baseData);
  for (const opts of ['', 'compat=0.10', 'extended_l2=on', 'cluster_size=512', 'backing', 'backing,compat=0.10', 'backing,extended_l2=on']) {
    const img = s.path(`z${n++}.qcow2`);
    const withBacking = opts.startsWith('backing');
    const o = opts.replace(/^backing,?/, '');
    dwOk(['create', '-q', '-f', 'qcow2', ...(o ? ['-o', o] : []), ...(withBacking ? ['-b', 'zbase.raw', '-F', 'raw'] : []), img, '2M']);
    const m = new Mirror(2 * 1048576, withBacking ? baseData : undefined);
    const full = pattern(2 * 1048576, 8);
    dwWrite(img, 0, full.subarray(0, 1048576 + 5000), m);
    const dev = await openImage(img, { readOnly: false, backingPolicy: 'anywhere' });
    try {
      for (const [off, len] of [[100, 50], [65536, 65536], [130000, 300000], [1048576 - 2048, 4096], [1500000, 200000], [2 * 1048576 - 1000, 1000]]) {
        await dev.writeZeroes(off, len);
        m.write(off, Buffer.alloc(len));
      }
    } finally {
      await dev.close();
    }
    assertQemuAccepts(img, m.path);
  }
});

test('dirty and corrupt images: reading works, writing is refused by name', () => {
  const img = s.path('dirty.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', img, '1M']);
  io(img, ['write -P 0x11 0 64k']);
  const buf = readFileSync(img);
  buf[79] |= 1; // incompatible_features: dirty
  writeFileSync(img, buf);
  assertSameContent(img, s.path, 'dirty image');
  const data = s.path('one.bin');
  writeFileSync(data, Buffer.from([1]));
  assertPlainError(['write', img, '0', data], /not closed cleanly; repair it with check -r all first/);
  buf[79] = 2; // corrupt
  writeFileSync(img, buf);
  assertSameContent(img, s.path, 'corrupt-marked image');
  assertPlainError(['write', img, '0', data], /marked corrupt/);
});

test('unknown autoclear bits are cleared on the first write; unknown header extensions survive', () => {
  const img = s.path('auto.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
  const buf = readFileSync(img);
  buf[95] = 0x80; // autoclear bit 7: unknown to everyone
  // An unknown extension after the feature table: insert it before the end marker at 112 + 8 + 384.
  const at = 112 + 8 + 384;
  buf.writeUInt32BE(0x12345678, at);
  buf.writeUInt32BE(5, at + 4);
  buf.write('hello', at + 8);
  writeFileSync(img, buf);
  const m = new Mirror(1048576);
  dwWrite(img, 5, pattern(10, 1), m);
  const after = readFileSync(img);
  assert.equal(after[95], 0, 'autoclear bits cleared');
  assert.equal(after.subarray(at, at + 13).toString('latin1'), buf.subarray(at, at + 13).toString('latin1'), 'extension intact');
  assertQemuAccepts(img, m.path);
  assert.match(run('qemu-img', ['info', img]).stdout, /virtual size: 1 MiB/);
});

test('a persistent bitmap is declared inconsistent on our first write (autoclear bit cleared): qemu-img sees leaks only', () => {
  const img = s.path('bitmap.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
  must('qemu-img', ['bitmap', '--add', img, 'b0']);
  const m = new Mirror(1048576);
  dwWrite(img, 4096, pattern(8192, 4), m);
  assert.equal(readFileSync(img)[95] & 1, 0, 'bitmaps autoclear bit cleared');
  const c = run('qemu-img', ['check', img]);
  assert.equal(c.status, 3, `leaks only: ${c.stdout}${c.stderr}`);
  must('qemu-img', ['check', '-r', 'leaks', img]);
  assertQemuAccepts(img, m.path);
});
