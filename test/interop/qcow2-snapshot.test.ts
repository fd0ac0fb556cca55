/**
 * Internal snapshots against qemu-img: what we take, qemu-img lists, reads (`convert -l snapshot.name=`) and
 * applies; what qemu-img takes, we list and apply; qemu-img check stays clean after every step, and deleting
 * frees exactly what only the snapshot held.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dwOk, must, scratch } from '../helpers';
import { assertPlainError, assertQemuAccepts, io } from './qcow2-common';

const s = scratch('dw-qcow2-snap-');
after(() => s.cleanup());
let n = 0;

function rawOf(img: string, snapshot?: string): Buffer {
  const out = s.path(`view${n++}.raw`);
  must('qemu-img', ['convert', '-O', 'raw', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), img, out]);
  return readFileSync(out);
}

function saveRaw(data: Buffer): string {
  const p = s.path(`exp${n++}.raw`);
  writeFileSync(p, data);
  return p;
}

function qemuSnapshots(img: string): Array<{ id: string; name: string }> {
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  return (info.snapshots ?? []).map((x: { id: string; name: string }) => ({ id: x.id, name: x.name }));
}

function checkJson(img: string): { allocated: number; leaks: number; corruptions: number } {
  const r = must('qemu-img', ['check', '--output', 'json', img]);
  const j = JSON.parse(r.stdout);
  return { allocated: j['allocated-clusters'], leaks: j.leaks ?? 0, corruptions: j.corruptions ?? 0 };
}

const OPTIONS = ['', 'compat=0.10', 'extended_l2=on', 'cluster_size=512', 'cluster_size=4k,refcount_bits=4', 'refcount_bits=64', 'lazy_refcounts=on'];

for (const opts of OPTIONS) {
  test(`our snapshots (${opts || 'defaults'}): create, write, apply back, list and apply by qemu-img, delete`, () => {
    const img = s.path(`a${n++}.qcow2`);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, '2M']);
    io(img, ['write -P 0x11 0 300k', 'write -z 512k 64k', 'write -P 0x12 1M 100k', 'write -P 0x13 2047k 1k']);
    const before = checkJson(img).allocated;
    const v0 = rawOf(img);
    dwOk(['snapshot', '-c', 'zero', img]);
    assertQemuAccepts(img);
    io(img, ['write -P 0x21 1000 70000', 'write -z 1M 64k', 'write -P 0x22 1800k 4k']);
    const v1 = rawOf(img);
    dwOk(['snapshot', '-c', 'one', img]);
    assertQemuAccepts(img);
    const f = s.path(`w${n++}.bin`);
    writeFileSync(f, Buffer.alloc(5000, 0x31));
    dwOk(['write', img, '65000', f]);
    assertQemuAccepts(img);
    assert.deepEqual(qemuSnapshots(img), [{ id: '1', name: 'zero' }, { id: '2', name: 'one' }]);
    assert.ok(rawOf(img, 'zero').equals(v0), 'qemu-img reads snapshot zero as the content at its creation');
    assert.ok(rawOf(img, 'one').equals(v1), 'qemu-img reads snapshot one as the content at its creation');
    // Apply by name, then by id.
    dwOk(['snapshot', '-a', 'zero', img]);
    assertQemuAccepts(img, saveRaw(v0));
    dwOk(['snapshot', '-a', '2', img]);
    assertQemuAccepts(img, saveRaw(v1));
    // qemu-img applies ours.
    must('qemu-img', ['snapshot', '-a', 'zero', img]);
    assertQemuAccepts(img, saveRaw(v0));
    // Delete both: what only the snapshots held is freed, nothing leaks.
    dwOk(['snapshot', '-d', 'one', img]);
    assertQemuAccepts(img, saveRaw(v0));
    dwOk(['snapshot', '-d', '1', img]);
    assertQemuAccepts(img, saveRaw(v0));
    assert.deepEqual(qemuSnapshots(img), []);
    const c = checkJson(img);
    assert.equal(c.leaks, 0);
    assert.equal(c.allocated, before, 'back to the clusters the image held before any snapshot');
  });
}

test("qemu-img's snapshots: we list them as qemu-img does, apply and delete them", () => {
  const img = s.path('q.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
  io(img, ['write -P 0x41 0 128k']);
  must('qemu-img', ['snapshot', '-c', 'alpha', img]);
  io(img, ['write -P 0x42 64k 128k']);
  must('qemu-img', ['snapshot', '-c', 'beta', img]);
  io(img, ['write -z 0 64k']);
  const alpha = rawOf(img, 'alpha');
  const beta = rawOf(img, 'beta');
  const ours = JSON.parse(dwOk(['info', '--output', 'json', img]).stdout).snapshots;
  const theirs = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout).snapshots;
  assert.deepEqual(ours, theirs, 'snapshot list as in qemu-img info');
  const listing = dwOk(['snapshot', '-l', img]).stdout;
  assert.match(listing, /1\s+alpha/);
  assert.match(listing, /2\s+beta/);
  dwOk(['snapshot', '-a', 'alpha', img]);
  assertQemuAccepts(img, saveRaw(alpha));
  dwOk(['snapshot', '-a', 'beta', img]);
  assertQemuAccepts(img, saveRaw(beta));
  dwOk(['snapshot', '-d', 'alpha', img]);
  assertQemuAccepts(img, saveRaw(beta));
  assert.deepEqual(qemuSnapshots(img), [{ id: '2', name: 'beta' }]);
  // The next id is one more than the largest, as qemu-img numbers them.
  dwOk(['snapshot', '-c', 'gamma', img]);
  assert.deepEqual(qemuSnapshots(img), [{ id: '2', name: 'beta' }, { id: '3', name: 'gamma' }]);
  assertPlainError(['snapshot', '-a', 'nope', img], /no snapshot/);
});

test('applying a snapshot taken at another disk size gives that size back', () => {
  const img = s.path('sz.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', img, '1M']);
  io(img, ['write -P 0x51 0 64k']);
  const small = rawOf(img);
  dwOk(['snapshot', '-c', 'small', img]);
  dwOk(['resize', img, '3M']);
  io(img, ['write -P 0x52 2M 64k']);
  const big = rawOf(img);
  dwOk(['snapshot', '-c', 'big', img]);
  dwOk(['snapshot', '-a', 'small', img]);
  assert.equal(JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout)['virtual-size'], 1048576);
  assertQemuAccepts(img, saveRaw(small));
  dwOk(['snapshot', '-a', 'big', img]);
  assert.equal(JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout)['virtual-size'], 3 * 1048576);
  assertQemuAccepts(img, saveRaw(big));
  must('qemu-img', ['snapshot', '-a', 'small', img]);
  assertQemuAccepts(img, saveRaw(small));
});

test('snapshots of compressed images and of images with a backing file', () => {
  const src = s.path('cs.raw');
  const data = Buffer.alloc(1048576);
  for (let i = 0; i < data.length; i++) data[i] = (i >> 10) & 0xff;
  writeFileSync(src, data);
  const img = s.path('cs.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', src, img]);
  dwOk(['snapshot', '-c', 'packed', img]);
  io(img, ['write -P 0x61 5000 70000']);
  assertQemuAccepts(img);
  dwOk(['snapshot', '-a', 'packed', img]);
  assertQemuAccepts(img, src);
  dwOk(['snapshot', '-d', 'packed', img]);
  assertQemuAccepts(img, src);
  assert.equal(checkJson(img).leaks, 0);

  const top = s.path('bt.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'cs.raw', '-F', 'raw', top, '2M']);
  io(top, ['write -P 0x62 0 4k']);
  const t0 = rawOf(top);
  dwOk(['snapshot', '-c', 't0', top]);
  io(top, ['write -P 0x63 500k 4k']);
  dwOk(['snapshot', '-a', 't0', top]);
  const expected = saveRaw(t0);
  assertQemuAccepts(top);
  assert.equal(must('qemu-img', ['compare', '-F', 'raw', top, expected]).status, 0);
});

test('refcount_bits=1 cannot count shared clusters: a plain error and the image left as it was', () => {
  const img = s.path('rc1.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1', img, '1M']);
  io(img, ['write -P 0x71 0 64k']);
  const bytes = readFileSync(img);
  assertPlainError(['snapshot', '-c', 'x', img], /refcount/);
  assert.ok(readFileSync(img).equals(bytes), 'unchanged');
});

test('snapshot --diff lists exactly the clusters written since, from the tables alone', () => {
  const img = s.path('diff.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '1M']);
  io(img, ['write -P 0x11 0 1M']);
  dwOk(['snapshot', '-c', 'a', img]);
  io(img, ['write -P 0x12 10000 100', 'write -P 0x13 40960 8192', 'write -z 900k 4k']);
  dwOk(['snapshot', '-c', 'b', img]);
  io(img, ['write -P 0x14 500k 1']);
  const parse = (t: string) => t.trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number));
  const ab = parse(dwOk(['snapshot', '--diff', 'a', 'b', img]).stdout);
  assert.deepEqual(ab, [[8192, 4096], [40960, 8192], [921600, 4096]]);
  const aNow = parse(dwOk(['snapshot', '--diff', 'a', img]).stdout);
  assert.deepEqual(aNow, [[8192, 4096], [40960, 8192], [512000, 4096], [921600, 4096]]);
  // Every byte that differs between the two snapshots lies in a reported range.
  const va = rawOf(img, 'a');
  const vb = rawOf(img, 'b');
  for (let i = 0; i < va.length; i++) {
    if (va[i] !== vb[i]) assert.ok(ab.some(([st, len]) => i >= st && i < st + len), `byte ${i} differs outside the reported ranges`);
  }
});

test('createSnapshotWithMeta: qemu-img shows the id, name, date, VM clock and icount given; a duplicate id or name is refused', async () => {
  const { createSnapshotWithMeta } = await import('../../src-main/formats/qcow2/snapshot/operations');
  const img = s.path('meta.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '4M']);
  io(img, ['write -P 0x5a 0 64k']);
  await createSnapshotWithMeta(img, { name: 'kept', id: '7', dateSec: 1_600_000_000, dateNsec: 250_000_000, vmClockNs: 3_723_456_000_000n, icount: 42 });
  await createSnapshotWithMeta(img, { name: 'next' });
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout) as { snapshots: Array<Record<string, number | string>> };
  const kept = info.snapshots.find((x) => x.name === 'kept')!;
  assert.equal(kept.id, '7');
  assert.equal(kept['date-sec'], 1_600_000_000);
  assert.equal(kept['date-nsec'], 250_000_000);
  assert.equal(kept['vm-clock-sec'], 3723);
  assert.equal(kept['vm-clock-nsec'], 456_000_000);
  assert.equal(kept.icount, 42);
  // The plain create goes on from the largest id, as qemu-img does.
  assert.equal(info.snapshots.find((x) => x.name === 'next')!.id, '8');
  const listed = must('qemu-img', ['snapshot', '-l', img]).stdout;
  assert.match(listed, /^7\s+kept\s+0 B\s+2020-09-13 \d\d:26:40 01:02:03\.456\s+42$/m);
  await assert.rejects(createSnapshotWithMeta(img, { name: 'other', id: '7' }), (e: Error & { code?: string }) => e.code === 'EEXIST' && /id '7' already exists/.test(e.message));
  await assert.rejects(createSnapshotWithMeta(img, { name: 'kept' }), (e: Error & { code?: string }) => e.code === 'EEXIST' && /named 'kept' already exists/.test(e.message));
  assert.deepEqual(qemuSnapshots(img).map((x) => x.name), ['kept', 'next']);
  assert.ok(rawOf(img, 'kept').subarray(0, 65536).every((b) => b === 0x5a));
  assertQemuAccepts(img);
});
