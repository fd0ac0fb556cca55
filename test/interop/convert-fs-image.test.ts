/**
 * convert over a real file system image (ext4 made by mke2fs -d from a generated tree): its data sits in
 * 4 KiB blocks with holes between them, not in cluster-sized runs. Every direction is judged by qemu-img
 * compare, and the converted qcow2 files by qemu-img check. Regression: `convert -c -O qcow2` from such a raw
 * image failed with "compressed writes must cover whole clusters", naming the hidden temporary file.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { CLI, dwOk, must, run, scratch } from '../helpers';
import { makeExt4Image } from '../fixtures/fs-image';

const work = scratch('dw-fsimg-');
const raw = work.path('disk.raw');

before(() => {
  makeExt4Image(raw, work.path('tree'), '96M', { seed: 7, bytes: 24 << 20 });
});
after(work.cleanup);

function compare(a: string, fa: string, b: string, fb: string, label: string): void {
  const r = run('qemu-img', ['compare', '-f', fa, '-F', fb, a, b]);
  assert.equal(r.status, 0, `${label}: qemu-img compare says ${r.stdout}${r.stderr}`);
}

test('the source really has holes finer than a cluster (the case the tidy images missed)', () => {
  const map = JSON.parse(must('qemu-img', ['map', '--output=json', '-f', 'raw', raw]).stdout) as Array<{ start: number; length: number; data: boolean }>;
  const unaligned = map.filter((e) => e.data && (e.start % 65536 !== 0 || e.length % 65536 !== 0));
  assert.ok(unaligned.length > 0, 'some data extents start or end inside a 64 KiB cluster');
});

for (const clusterSize of ['65536', '2M']) {
  test(`raw ext4 → qcow2 -c (cluster_size=${clusterSize}): qemu-img check clean, compare equal`, () => {
    const out = work.path(`c-${clusterSize}.qcow2`);
    dwOk(['convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${clusterSize}`, raw, out]);
    assert.equal(run('qemu-img', ['check', out]).status, 0);
    compare(raw, 'raw', out, 'qcow2', 'raw → qcow2 -c');
    const info = JSON.parse(must('qemu-img', ['info', '--output=json', out]).stdout) as { 'actual-size': number };
    assert.ok(info['actual-size'] < 40 << 20, `compressed: ${info['actual-size']} bytes on disk`);
  });
}

test('raw ext4 → qcow2 → raw, qcow2 → qcow2 -c, and the compressed qcow2 → raw: all equal under qemu-img compare', () => {
  const q = work.path('plain.qcow2');
  dwOk(['convert', '-O', 'qcow2', raw, q]);
  assert.equal(run('qemu-img', ['check', q]).status, 0);
  compare(raw, 'raw', q, 'qcow2', 'raw → qcow2');
  const back = work.path('back.raw');
  dwOk(['convert', '-O', 'raw', q, back]);
  compare(raw, 'raw', back, 'raw', 'qcow2 → raw');
  const qc = work.path('recompressed.qcow2');
  dwOk(['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', q, qc]);
  assert.equal(run('qemu-img', ['check', qc]).status, 0);
  compare(raw, 'raw', qc, 'qcow2', 'qcow2 → qcow2 -c (4 KiB clusters)');
  const fromC = work.path('from-compressed.raw');
  dwOk(['convert', '-O', 'raw', qc, fromC]);
  compare(raw, 'raw', fromC, 'raw', 'compressed qcow2 → raw');
  // qemu-img's own compressed image of the same file system reads the same here.
  const theirs = work.path('theirs.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', raw, theirs]);
  const fromTheirs = work.path('from-theirs.raw');
  dwOk(['convert', '-O', 'raw', theirs, fromTheirs]);
  compare(raw, 'raw', fromTheirs, 'raw', "qemu-img's compressed qcow2 → raw");
});

test('a convert failing in the middle of writing names the target, never the hidden temporary file, and leaves nothing', () => {
  // A file size limit (ulimit -f) makes the target's writes fail once it passes 2 MiB; SIGXFSZ is ignored so
  // that the write fails with EFBIG instead of killing the process.
  const target = work.path('limited.qcow2');
  const r = run('sh', ['-c', `trap '' XFSZ; ulimit -f 4096; exec "${process.execPath}" "${CLI}" convert -O qcow2 "${raw}" "${target}"`]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^diskwright: ${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the file would grow past`));
  assert.doesNotMatch(r.stderr, /diskwright-[0-9a-f]+\.tmp/);
  assert.ok(!readdirSync(work.dir).some((n) => n.endsWith('.tmp') || n === 'limited.qcow2'), 'nothing left behind');
});
