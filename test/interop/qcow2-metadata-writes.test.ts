/**
 * How much metadata the qcow2 writer writes, counted (never timed) and checked against qemu: freeing many
 * clusters costs one refcount write per refcount block, not one per cluster; snapshots share the L2 tables
 * that need no change instead of copying them, so a run of snapshots grows the file about as qemu's do; a
 * create makes one sync at most (none when its caller syncs), and lays the image out as qemu-img create does.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, copyFileSync } from 'node:fs';
import { must, OPEN_WRITABLE_NO_BACKING, scratch } from '../helpers';
import { ImageFile } from '../../src-main/block/file';
import { createQcow2 } from '../../src-main/formats/qcow2/create';
import { openQcow2 } from '../../src-main/formats/qcow2/device';
import { qcow2Snapshots } from '../../src-main/formats/qcow2/snapshot/operations';

const s = scratch('dw-qcow2-meta-');
after(() => s.cleanup());

const OPEN = OPEN_WRITABLE_NO_BACKING;

function qemuCheckClean(img: string): void {
  const r = JSON.parse(must('qemu-img', ['check', '--output', 'json', img]).stdout);
  assert.equal(r['corruptions'] ?? 0, 0, `corruptions in ${img}`);
  assert.equal(r['leaks'] ?? 0, 0, `leaks in ${img}`);
  assert.equal(r['check-errors'] ?? 0, 0, `check errors in ${img}`);
}

function rawOf(img: string, snapshot?: string): Buffer {
  const out = `${img}.${snapshot ?? 'active'}.raw`;
  must('qemu-img', ['convert', '-O', 'raw', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), img, out]);
  return readFileSync(out);
}

test('makeEmpty frees 300 scattered clusters with a few refcount writes, and qemu-img check finds nothing amiss', async () => {
  const img = s.path('empty.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  const cmds: string[] = [];
  for (let i = 0; i < 300; i++) cmds.push('-c', `write -P ${(i % 200) + 1} ${i * 192}k 64k`);
  must('qemu-io', ['-f', 'qcow2', ...cmds, img]);
  const dev = await openQcow2(img, OPEN);
  let writes = 0;
  const write = dev.file.write.bind(dev.file);
  dev.file.write = (pos: number, data: Uint8Array) => {
    writes++;
    return write(pos, data);
  };
  await dev.makeEmpty();
  await dev.close();
  // One L2 table and one refcount block here: their writes and the header's, not one write per cluster.
  assert.ok(writes <= 6, `${writes} writes to empty the image`);
  qemuCheckClean(img);
  const map = JSON.parse(must('qemu-img', ['map', '--output', 'json', img]).stdout) as Array<{ data: boolean }>;
  assert.ok(map.every((m) => !m.data), 'every cluster is unallocated again');
  // The freed clusters are free: nothing past the metadata is in use (header, refcount table and block, L1, L2).
  assert.match(must('qemu-img', ['check', img]).stdout, /Image end offset: 327680\b/);
});

test('a run of snapshots shares the L2 tables: the file grows about as qemu-img snapshot makes it grow', async () => {
  // 4 KiB clusters: 2 MiB per L2 table, so 32 MiB of data spread out has 16 L2 tables.
  const base = s.path('snaps.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', base, '64M']);
  const cmds: string[] = [];
  for (let i = 0; i < 32; i++) cmds.push('-c', `write -P ${i + 1} ${i * 2}M 8k`);
  must('qemu-io', ['-f', 'qcow2', ...cmds, base]);
  const ours = s.path('snaps-dw.qcow2');
  const theirs = s.path('snaps-qemu.qcow2');
  copyFileSync(base, ours);
  copyFileSync(base, theirs);
  const start = statSync(base).size;
  for (let i = 1; i <= 20; i++) {
    await qcow2Snapshots.create(ours, `s${i}`);
    must('qemu-img', ['snapshot', '-c', `s${i}`, theirs]);
  }
  qemuCheckClean(ours);
  const grewOurs = (statSync(ours).size - start) / 4096;
  const grewTheirs = (statSync(theirs).size - start) / 4096;
  // The first snapshot copies the 32 tables whose flags change (qemu changes them in place); after that each
  // snapshot writes its L1 table, snapshot table and refcount structures, reusing what the last one freed.
  // Copying every table each time (as before) grew it by more than 20 x 32 clusters.
  assert.ok(grewOurs <= grewTheirs + 32 + 20, `grew by ${grewOurs} clusters, qemu-img's by ${grewTheirs}`);
  const active = rawOf(base);
  for (const n of ['s1', 's10', 's20']) assert.ok(rawOf(ours, n).equals(active), `snapshot ${n} reads as taken`);
});

test('writes after shared snapshots copy the shared L2 tables; reverts and deletes keep every snapshot as taken', async () => {
  const img = s.path('cow.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '16M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 3M', '-c', 'write -P 2 10M 1M', img]);
  const taken = new Map<string, Buffer>();
  const snap = async (name: string) => {
    await qcow2Snapshots.create(img, name);
    taken.set(name, rawOf(img));
  };
  const writeAt = async (offset: number, length: number, byte: number) => {
    const dev = await openQcow2(img, OPEN);
    await dev.write(offset, new Uint8Array(length).fill(byte));
    await dev.close();
  };
  await snap('a');
  await snap('b');
  await writeAt(1 << 20, 8192, 0x61);
  await writeAt(10 << 20, 4096, 0x62);
  qemuCheckClean(img);
  await snap('c');
  await writeAt(0, 4096, 0x63);
  await qcow2Snapshots.apply(img, 'a');
  assert.ok(rawOf(img).equals(taken.get('a')!), 'the active layer reads as snapshot a after the revert');
  await writeAt(2 << 20, 4096, 0x64);
  await qcow2Snapshots.delete(img, 'b');
  qemuCheckClean(img);
  await qcow2Snapshots.delete(img, 'a');
  qemuCheckClean(img);
  assert.ok(rawOf(img, 'c').equals(taken.get('c')!), 'snapshot c reads as taken');
  await qcow2Snapshots.delete(img, 'c');
  qemuCheckClean(img);
  // With no snapshot left, every active table and cluster is the active layer's alone (OFLAG_COPIED set).
  const want = Buffer.from(taken.get('a')!);
  want.fill(0x64, 2 << 20, (2 << 20) + 4096);
  assert.ok(rawOf(img).equals(want), 'the active layer keeps its writes');
});

test('create: one sync by default, none when the caller syncs; the same bytes as qemu-img create', async () => {
  let syncs = 0;
  const sync = ImageFile.prototype.sync;
  ImageFile.prototype.sync = function (this: ImageFile) {
    syncs++;
    return sync.call(this);
  };
  try {
    // Most syncs by default and with durable: false. Lazy refcounts keep theirs: the dirty bit is on disk before
    // a write that lets the refcounts lag, and cleared after everything else (header.ts).
    const cases: Array<[Record<string, string>, number, number, number]> = [
      [{}, 1 << 30, 1, 0],
      [{ cluster_size: '4096' }, 100 * 2 ** 30, 1, 0],
      [{ extended_l2: 'on' }, 1 << 30, 1, 0],
      [{ preallocation: 'metadata' }, 64 << 20, 1, 0],
      [{ lazy_refcounts: 'on', preallocation: 'metadata' }, 64 << 20, 3, 1],
    ];
    for (const [options, size, byDefault, unsynced] of cases) {
      const ours = s.path('created.qcow2');
      const theirs = s.path('created-qemu.qcow2');
      must('rm', ['-f', ours, theirs]);
      const o = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(',');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(o ? ['-o', o] : []), theirs, String(size)]);
      syncs = 0;
      await createQcow2(ours, size, { options: { ...options } });
      assert.ok(syncs <= byDefault, `${syncs} syncs for -o ${o}`);
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), `the same bytes as qemu-img create -o ${o}`);
      must('rm', ['-f', ours]);
      syncs = 0;
      await createQcow2(ours, size, { options: { ...options }, durable: false });
      assert.ok(syncs <= unsynced, `${syncs} syncs for -o ${o} when the caller syncs`);
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), `the same bytes as qemu-img create -o ${o} (durable: false)`);
    }
  } finally {
    ImageFile.prototype.sync = sync;
  }
});
