/**
 * The create job of the app and the browser host does not overwrite what it was not asked to: an existing file
 * only with `replace`, and a file that is no disk image only with `replaceNotImage` as well. The CLI keeps
 * qemu-img's behaviour (create replaces). Issue 26 item 5.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { JobManager } from '../../src-main/services/jobs';
import { createImage } from '../../src-main/services/create';
import { parseArgs } from '../../src-main/api/schemas';
import type { JobEvent, JobSpecOf } from '../../src-shared/api';
import { dwOk, must, scratch } from '../helpers';
import { jobEnd } from '../job-end';

function runJob(jobs: JobManager, spec: JobSpecOf<'create'>): Promise<JobEvent> {
  return jobEnd((l) => jobs.onEvent(l), () => jobs.start(spec));
}

const spec = (path: string, extra: Partial<JobSpecOf<'create'>> = {}): JobSpecOf<'create'> => ({ kind: 'create', path, format: 'qcow2', size: 1 << 20, options: {}, ...extra });
const isQcow2 = (path: string) => readFileSync(path).subarray(0, 4).toString('latin1') === 'QFI\xfb';

test('the create job refuses an existing file unless the request says to replace it', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const jobs = new JobManager('inside-folder');
  must('qemu-img', ['create', '-f', 'vmdk', s.path('old.vmdk'), '1M']);
  const before = readFileSync(s.path('old.vmdk'));
  const refused = await runJob(jobs, spec(s.path('old.vmdk')));
  assert.ok(refused.type === 'failed' && refused.error.code === 'EEXIST', JSON.stringify(refused));
  assert.match(refused.type === 'failed' ? refused.error.message : '', /already exists/);
  assert.deepEqual(readFileSync(s.path('old.vmdk')), before);

  const done = await runJob(jobs, spec(s.path('old.vmdk'), { replace: true }));
  assert.equal(done.type, 'done', JSON.stringify(done));
  assert.ok(isQcow2(s.path('old.vmdk')));
  must('qemu-img', ['check', '-f', 'qcow2', s.path('old.vmdk')]);

  // A new name needs no flag.
  assert.equal((await runJob(jobs, spec(s.path('new.qcow2')))).type, 'done');
});

test('a file that is not a disk image is replaced only when asked twice', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const jobs = new JobManager('inside-folder');
  writeFileSync(s.path('notes.txt'), 'my notes\n');
  const once = await runJob(jobs, spec(s.path('notes.txt'), { replace: true }));
  assert.ok(once.type === 'failed' && once.error.code === 'EEXIST' && /not a disk image/.test(once.error.message), JSON.stringify(once));
  assert.equal(readFileSync(s.path('notes.txt'), 'utf8'), 'my notes\n');
  const onlySecond = await runJob(jobs, spec(s.path('notes.txt'), { replaceNotImage: true }));
  assert.ok(onlySecond.type === 'failed' && onlySecond.error.code === 'EEXIST');
  assert.equal(readFileSync(s.path('notes.txt'), 'utf8'), 'my notes\n');
  const twice = await runJob(jobs, spec(s.path('notes.txt'), { replace: true, replaceNotImage: true }));
  assert.equal(twice.type, 'done', JSON.stringify(twice));
  assert.ok(isQcow2(s.path('notes.txt')));
});

test('the api accepts the two flags as booleans only', () => {
  const [parsed] = parseArgs('startJob', [spec('/vm/a.qcow2', { replace: true, replaceNotImage: false })]) as [JobSpecOf<'create'>];
  assert.equal(parsed.replace, true);
  assert.throws(() => parseArgs('startJob', [{ ...spec('/vm/a.qcow2'), replace: 'yes' }]));
});

test('the CLI and the service called directly keep qemu-img\'s behaviour: create replaces', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  writeFileSync(s.path('a.txt'), 'text');
  dwOk(['create', '-f', 'qcow2', s.path('a.txt'), '1M']);
  assert.ok(isQcow2(s.path('a.txt')));
  writeFileSync(s.path('b.txt'), 'text');
  await createImage({ path: s.path('b.txt'), format: 'qcow2', size: 1 << 20 });
  assert.ok(isQcow2(s.path('b.txt')));
});
