/**
 * What the snapshot browser adds beyond qemu-img, proven against it:
 * - the space only a snapshot holds equals what qemu-img check finds freed (clusters with no reference left)
 *   when that snapshot's entry is dropped from the image without touching refcounts;
 * - convert --keep-snapshots: every snapshot of the target reads (under qemu-img convert -l) as the source's,
 *   with the same ids, names and dates, and qemu-img check is clean;
 * - convert -l exports a snapshot as qemu-img convert -l does;
 * - snapshot --diff --output json gives the ranges qemu-io wrote between two snapshots;
 * - a snapshot's map shows the data it holds.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { dwOk, must, run, scratch, seededRandom } from '../helpers';
import { io } from './qcow2-common';
import { snapshotMapPicture, snapshotSpace } from '../../src-main/services/snapshot';

const s = scratch('dw-snap-browser-');
after(() => s.cleanup());
let n = 0;

const MiB = 1024 * 1024;

/** A qcow2 with a seeded history of writes (some compressed, some zeroed or discarded) and snapshots between. */
function history(seed: number, opts: string, snapshots: number): string {
  const img = s.path(`h${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, '16M']);
  const rnd = seededRandom(seed);
  const at = () => Math.floor(rnd() * 15) * MiB + Math.floor(rnd() * 16) * 64 * 1024;
  for (let k = 1; k <= snapshots + 1; k++) {
    const cmds: string[] = [];
    for (let w = 0; w < 4; w++) {
      const r = rnd();
      const off = at();
      if (r < 0.55) cmds.push(`write -P ${(k * 16 + w) & 0xff} ${off} ${64 * 1024 * (1 + Math.floor(rnd() * 12))}`);
      else if (r < 0.7) cmds.push(`write -c -P ${(k * 16 + w) & 0xff} ${off - (off % (64 * 1024))} 64k`);
      else if (r < 0.85) cmds.push(`write -z ${off} 128k`);
      else cmds.push(`discard ${off - (off % (64 * 1024))} 256k`);
    }
    io(img, cmds);
    if (k <= snapshots) must('qemu-img', ['snapshot', '-c', `snap${k}`, img]);
  }
  return img;
}

/** Clusters qemu-img check reports with no reference at all: what dropping a snapshot's entry freed. */
function clustersWithNoReference(img: string): number {
  const r = run('qemu-img', ['check', img]);
  return (r.stdout + r.stderr).split('\n').filter((l) => /^Leaked cluster \d+ refcount=\d+ reference=0$/.test(l)).length;
}

function setSnapshotCount(img: string, count: number): void {
  const fd = openSync(img, 'r+');
  const b = Buffer.alloc(4);
  b.writeUInt32BE(count);
  writeSync(fd, b, 0, 4, 60); // nb_snapshots
  closeSync(fd);
}

for (const [seed, opts] of [
  [1, ''],
  [2, 'cluster_size=4k'],
  [3, 'compat=0.10'],
] as const) {
  test(`the space only a snapshot holds = what qemu-img check finds freed when it goes (seed ${seed}, ${opts || 'defaults'})`, async () => {
    const img = history(seed, opts, 3);
    const cs = opts === 'cluster_size=4k' ? 4096 : 65536;
    for (let k = 3; k >= 1; k--) {
      // Snapshot k must be the table's last entry to be dropped by the header alone: qemu deletes the later ones.
      const copy = s.path(`c${n++}.qcow2`);
      copyFileSync(img, copy);
      for (let later = 3; later > k; later--) must('qemu-img', ['snapshot', '-d', `snap${later}`, copy]);
      const ours = (await snapshotSpace(copy))[String(k)];
      setSnapshotCount(copy, k - 1);
      const freed = clustersWithNoReference(copy) * cs;
      assert.equal(ours, freed, `snapshot ${k}: we say ${ours} bytes, qemu-img check finds ${freed} freed`);
    }
  });
}

test('deleting a snapshot frees what the browser said it would (qemu-img check clean, file space reused)', async () => {
  const img = history(7, '', 2);
  const space = await snapshotSpace(img);
  assert.ok(space['1'] > 0, 'the first snapshot holds data of its own');
  dwOk(['snapshot', '-d', 'snap1', img]);
  must('qemu-img', ['check', img]);
  // What was freed is free: qemu writes that much new data without the file growing.
  const size = readFileSync(img).length;
  const cs = 65536;
  const clusters = Math.floor(space['1'] / cs) - 1; // room for an L2 table qemu may need
  if (clusters > 0) io(img, [`write -P 0x77 0 ${clusters * cs}`]);
  assert.ok(readFileSync(img).length <= size, 'the freed clusters were reused, the file did not grow');
});

test('convert --keep-snapshots: every snapshot reads as the source\'s under qemu-img, with ids, names and dates kept', () => {
  const img = history(11, '', 3);
  const out = s.path(`k${n++}.qcow2`);
  dwOk(['convert', '-O', 'qcow2', '--keep-snapshots', img, out]);
  must('qemu-img', ['check', out]);
  const list = (p: string) => JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout).snapshots;
  assert.deepEqual(list(out), list(img));
  for (const sn of list(img) as Array<{ id: string }>) {
    const a = s.path(`a${n++}.raw`);
    const b = s.path(`b${n++}.raw`);
    must('qemu-img', ['convert', '-O', 'raw', '-l', `snapshot.id=${sn.id}`, img, a]);
    must('qemu-img', ['convert', '-O', 'raw', '-l', `snapshot.id=${sn.id}`, out, b]);
    assert.ok(readFileSync(a).equals(readFileSync(b)), `snapshot ${sn.id} reads the same`);
  }
  assert.match(must('qemu-img', ['compare', img, out]).stdout, /identical/);
  // Ranges that did not change between states are shared in the target as in the source.
  const size = (p: string) => readFileSync(p).length;
  assert.ok(size(out) <= size(img) * 1.1 + 4 * 65536, `the target (${size(out)} bytes) shares clusters as the source (${size(img)}) does`);
});

test('convert -l exports one snapshot as qemu-img convert -l does, to any format', () => {
  const img = history(12, '', 2);
  for (const fmt of ['raw', 'vmdk', 'vhdx']) {
    const ours = s.path(`e${n++}.${fmt}`);
    dwOk(['convert', '-O', fmt, '-l', 'snapshot.name=snap1', img, ours]);
    const expect = s.path(`q${n++}.raw`);
    must('qemu-img', ['convert', '-O', 'raw', '-l', 'snapshot.name=snap1', img, expect]);
    const r = run('qemu-img', ['compare', '-f', 'raw', expect, ours]);
    assert.equal(r.status, 0, `${fmt}: ${r.stdout}${r.stderr}`);
  }
});

test('snapshot --diff --output json: the ranges written between two snapshots, cluster-rounded', () => {
  const img = s.path(`d${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '8M']);
  io(img, ['write -P 1 0 1M']);
  must('qemu-img', ['snapshot', '-c', 'a', img]);
  io(img, ['write -P 2 100k 10k', 'write -P 3 3M 200k']);
  must('qemu-img', ['snapshot', '-c', 'b', img]);
  const ranges = JSON.parse(dwOk(['snapshot', '--diff', 'a', 'b', '--output', 'json', img]).stdout);
  assert.deepEqual(ranges, [
    { start: 64 * 1024, length: 64 * 1024 },
    { start: 3 * MiB, length: 256 * 1024 },
  ]);
});

test('a snapshot\'s map shows the data it held, not what was written after it', async () => {
  const img = s.path(`m${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '8M']);
  io(img, ['write -P 1 0 2M']);
  must('qemu-img', ['snapshot', '-c', 'early', img]);
  io(img, ['write -P 2 6M 2M']);
  const pic = await snapshotMapPicture(img, 'early', 4);
  assert.deepEqual(pic.buckets.map((b) => b.data), [2 * MiB, 0, 0, 0]);
});
