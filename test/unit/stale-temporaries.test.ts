/**
 * What a killed job leaves beside its target is removed by the next job on that target, unless a live process
 * holds it, and the job's result says what it removed (issue 26 item 3): the hidden folder of a convert to a
 * Parallels .hdd bundle, and the full-size working copy `.IMAGE.diskwright-XXXXXXXX.tmp` of a repair. A live
 * holder is qemu-io sleeping on the file (it holds qemu's write lock). A repair's own working copy is locked
 * from the moment it exists, so a clean-up run meanwhile (by another process) leaves it alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobManager } from '../../src-main/services/jobs';
import { repairImage } from '../../src-main/services/repair';
import { heldAgainstWriting } from '../../src-main/block/lock';
import type { JobEvent, JobSpec } from '../../src-shared/api';
import { must, ROOT, scratch } from '../helpers';
import { jobEnd } from '../job-end';

function runJob(jobs: JobManager, spec: JobSpec): Promise<JobEvent> {
  return jobEnd((l) => jobs.onEvent(l), () => jobs.start(spec));
}

/** qemu-io holding `file` open for writing (qemu's write lock) until killed. */
async function liveHolder(file: string, t: { after: (f: () => void) => void }): Promise<ChildProcess> {
  const p = spawn('qemu-io', ['-f', 'raw', '-c', 'sleep 120000', file], { stdio: 'ignore' });
  t.after(() => p.kill('SIGKILL'));
  for (let i = 0; i < 200 && !(await heldAgainstWriting(file)); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(await heldAgainstWriting(file), 'qemu-io holds the file');
  return p;
}

test('a convert to a .hdd bundle removes the hidden folder a killed convert left, not one a live writer holds, and says so', async (t) => {
  const s = scratch('dw-stale-');
  t.after(s.cleanup);
  writeFileSync(s.path('src.raw'), Buffer.alloc(4 << 20, 7));
  // What a convert killed while writing b.hdd leaves: its bundle under a hidden temporary name.
  const dead = s.path('.b.hdd.diskwright-0badc0de.tmp');
  mkdirSync(dead);
  writeFileSync(join(dead, 'DiskDescriptor.xml'), '<?xml version="1.0"?><Parallels_disk_image/>');
  writeFileSync(join(dead, 'b.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds'), Buffer.alloc(1 << 20));
  const live = s.path('.b.hdd.diskwright-feedface.tmp');
  mkdirSync(live);
  writeFileSync(join(live, 'b.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds'), Buffer.alloc(1 << 20));
  await liveHolder(join(live, 'b.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds'), t);

  const jobs = new JobManager('inside-folder');
  const end = await runJob(jobs, { kind: 'convert', source: s.path('src.raw'), target: s.path('b.hdd'), targetFormat: 'parallels', options: {} });
  assert.equal(end.type, 'done', JSON.stringify(end));
  assert.ok(end.type === 'done');
  assert.deepEqual((end.result as { removedTemporaries?: string[] }).removedTemporaries, [dead]);
  assert.equal(existsSync(dead), false);
  assert.equal(existsSync(live), true, 'a folder a live process writes in stays');
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'parallels', s.path('src.raw'), join(s.path('b.hdd'), readdirSync(s.path('b.hdd')).find((n) => n.endsWith('.hds'))!)]);
});

test('a repair removes the working copy a killed repair left beside the image, not one a live repair holds, and says so', async (t) => {
  const s = scratch('dw-stale-');
  t.after(s.cleanup);
  const img = s.path('disk.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '8M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 3 0 1M', img]);
  const dead = s.path('.disk.qcow2.diskwright-0badc0de.tmp');
  copyFileSync(img, dead);
  const live = s.path('.disk.qcow2.diskwright-feedface.tmp');
  copyFileSync(img, live);
  await liveHolder(live, t);

  const jobs = new JobManager('inside-folder');
  const end = await runJob(jobs, { kind: 'repair', path: img, mode: 'all', keepCopy: false });
  assert.equal(end.type, 'done', JSON.stringify(end));
  assert.ok(end.type === 'done');
  assert.deepEqual((end.result as { removedTemporaries?: string[] }).removedTemporaries, [dead]);
  assert.equal(existsSync(dead), false);
  assert.equal(existsSync(live), true);
  must('qemu-img', ['check', '-f', 'qcow2', img]);
});

test("a repair's working copy is locked while it is copied, so another process's clean-up leaves it alone", async (t) => {
  const s = scratch('dw-stale-');
  t.after(s.cleanup);
  const img = s.path('disk.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 3 0 4M', img]);
  const script = `require('${join(ROOT, 'src-main/services/atomic.ts')}').removeStaleTemporaries(${JSON.stringify(img)}).then((r) => console.log(JSON.stringify(r)))`;
  let cleanup: string | undefined;
  let during: string[] = [];
  await repairImage({
    path: img,
    mode: 'all',
    keepCopy: false,
    onProgress: (phase) => {
      if (phase !== 'copy' || cleanup !== undefined) return;
      during = readdirSync(s.dir).filter((n) => n.endsWith('.tmp'));
      // Another process cleans up while this one is paused mid-copy (spawnSync blocks this event loop).
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, encoding: 'utf8' });
      cleanup = r.stdout.trim() || r.stderr;
    },
  });
  assert.equal(during.length, 1, 'the working copy existed during the copy');
  assert.equal(cleanup, '[]', 'the live working copy was not removed');
  must('qemu-img', ['check', '-f', 'qcow2', img]);
  assert.deepEqual(readdirSync(s.dir), ['disk.qcow2']);
});
