/**
 * The safe repair (services/repair.ts) that the Check & Repair wizard runs: judged by qemu-img. A repaired
 * image is clean under `qemu-img check` with the guest's bytes unchanged (`qemu-img compare` against the
 * copy kept of the image as it was); a cancelled or failed repair leaves the image byte for byte as it was
 * and no file behind.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { DiskError } from '../../src-main/block/errors';
import { repairImage } from '../../src-main/services/repair';
import { must, qemuIo, run, scratch } from '../helpers';
import { Qcow2Patcher } from './qcow2-check-patch';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

/** A qcow2 with data in a few places and one leaked cluster (refcount 1, referenced by nothing). */
function leakyQcow2(img: string, opts = 'cluster_size=4k'): void {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, img, '8M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 64k', 'write -P 0x22 3M 8k', 'write -P 0x33 7M 4k']);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.appendCluster(0x5a), 1);
}

test('repair with a kept copy: qemu-img check is clean after, the copy is the image as it was, the guest bytes are the same', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const img = s.path('disk.qcow2');
  leakyQcow2(img);
  assert.equal(run('qemu-img', ['check', img]).status, 3, 'the made image leaks, as qemu-img sees it');
  const before = sha(img);
  const phases = new Set<string>();
  const r = await repairImage({ path: img, mode: 'leaks', keepCopy: true, onProgress: (phase) => phases.add(phase) });
  assert.equal(r.report.filename, img);
  assert.equal(r.report['leaks-fixed'], 1);
  assert.equal(r.report.leaks, 0);
  assert.ok(r.keptCopy && r.keptCopy.includes('.before-repair-') && r.keptCopy.endsWith('.qcow2'), r.keptCopy);
  assert.equal(sha(r.keptCopy!), before, 'the kept copy is the image as it was');
  assert.equal(run('qemu-img', ['check', img]).status, 0, 'qemu-img check of the repaired image is clean');
  must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', r.keptCopy!, img]);
  assert.deepEqual([...phases].sort(), ['copy', 'repair'], 'progress is reported for both phases');
  assert.deepEqual(readdirSync(s.dir).sort(), ['disk.qcow2', r.keptCopy!.split('/').pop()!].sort(), 'no temporary file left');
});

test('repair without a copy mends corruption (-r all) as qemu-img judges it, and leaves only the image', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const img = s.path('disk.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '8M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 64k', 'write -P 0x22 3M 8k']);
  const reference = s.path('reference.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, reference]);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.dataClusters()[3].offset / p.clusterSize, 0); // a refcount too low: data at risk
  assert.equal(run('qemu-img', ['check', img]).status, 2);
  const r = await repairImage({ path: img, mode: 'all', keepCopy: false });
  assert.ok(r.report['corruptions-fixed'] > 0);
  assert.equal(r.keptCopy, undefined);
  assert.equal(run('qemu-img', ['check', img]).status, 0);
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', reference, img]);
  assert.deepEqual(readdirSync(s.dir).sort(), ['disk.qcow2', 'reference.raw']);
});

test('a cancelled repair leaves the image byte for byte as it was, and nothing beside it', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const img = s.path('disk.qcow2');
  leakyQcow2(img);
  const before = sha(img);
  for (const at of ['copy', 'repair'] as const) {
    const ctl = new AbortController();
    await assert.rejects(
      repairImage({
        path: img,
        mode: 'all',
        keepCopy: true,
        signal: ctl.signal,
        onProgress: (phase) => {
          if (phase === at) ctl.abort();
        },
      }),
      (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
      `cancel during ${at}`,
    );
    assert.equal(sha(img), before, `cancel during ${at}: the image is unchanged`);
    assert.deepEqual(readdirSync(s.dir), ['disk.qcow2'], `cancel during ${at}: nothing left beside it`);
  }
});

test('a sparse image is copied sparsely: the working copy does not fill the holes', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const img = s.path('big.qcow2');
  // preallocation=metadata: a 256 MiB file that is nearly all hole; a dense copy would write every byte of it.
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=64k', img, '256M']);
  assert.ok(statSync(img).size > 256 << 20);
  qemuIo(img, 'qcow2', ['write -P 0x44 1M 64k']);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.appendCluster(0x5a), 1);
  const r = await repairImage({ path: img, mode: 'leaks', keepCopy: false });
  assert.equal(r.report['leaks-fixed'], 1);
  assert.equal(run('qemu-img', ['check', img]).status, 0);
  const used = statSync(img).blocks * 512;
  assert.ok(used < 64 << 20, `the repaired image takes ${used} bytes on disk, not the 256 MiB a dense copy would`);
});
