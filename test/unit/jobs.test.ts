import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { JobManager } from '../../src-main/services/jobs';
import { convertImage } from '../../src-main/services/convert';
import { DiskError } from '../../src-main/block/errors';
import type { JobEvent } from '../../src-shared/api';
import { scratch } from '../helpers';

/** A raw file of `mib` MiB with non-zero data in every MiB, so convert has real work to do. */
function dataFile(path: string, mib: number): void {
  const buf = Buffer.alloc(mib << 20);
  for (let i = 0; i < buf.length; i += 4096) buf[i] = (i >> 12) & 0xff || 1;
  writeFileSync(path, buf);
}

test('a cancelled convert leaves neither the target nor a temporary file behind', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  dataFile(s.path('src.raw'), 32);
  const ctl = new AbortController();
  await assert.rejects(
    convertImage({
      source: s.path('src.raw'),
      sourceFormat: 'raw',
      target: s.path('out.raw'),
      targetFormat: 'raw',
      signal: ctl.signal,
      onProgress: (done) => {
        if (done >= 4 << 20) ctl.abort();
      },
    }),
    (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
  );
  assert.deepEqual(readdirSync(s.dir).sort(), ['src.raw']);
});

test('a failed convert leaves an existing target untouched', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  writeFileSync(s.path('out.raw'), 'precious');
  await assert.rejects(convertImage({ source: s.path('missing.raw'), target: s.path('out.raw'), targetFormat: 'raw' }), (e: unknown) => e instanceof DiskError && e.code === 'ENOENT');
  assert.equal(existsSync(s.path('out.raw')), true);
  assert.deepEqual(readdirSync(s.dir), ['out.raw']);
});

test('JobManager reports progress, done and failed, and cancels', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  dataFile(s.path('src.raw'), 16);
  const jobs = new JobManager('anywhere');
  const events: JobEvent[] = [];
  const finished = new Map<string, (e: JobEvent) => void>();
  jobs.onEvent((e) => {
    events.push(e);
    if (e.type !== 'progress') finished.get(e.id)?.(e);
  });
  const wait = (id: string) => new Promise<JobEvent>((res) => finished.set(id, res));

  const ok = jobs.start({ kind: 'convert', source: s.path('src.raw'), target: s.path('copy.raw'), targetFormat: 'raw', options: {} });
  const okEnd = await wait(ok);
  assert.equal(okEnd.type, 'done');
  const last = events.filter((e) => e.id === ok && e.type === 'progress').pop();
  assert.ok(last && last.type === 'progress' && last.progress.done === last.progress.total && last.progress.total === 16 << 20);

  const bad = jobs.start({ kind: 'inspect', path: s.path('nope.qcow2') });
  const badEnd = await wait(bad);
  assert.equal(badEnd.type, 'failed');
  assert.ok(badEnd.type === 'failed' && badEnd.error.code === 'ENOENT' && /no such file/.test(badEnd.error.message));

  const cancelled = jobs.start({ kind: 'convert', source: s.path('src.raw'), target: s.path('c2.raw'), targetFormat: 'raw', options: {} });
  jobs.cancel(cancelled);
  const cEnd = await wait(cancelled);
  assert.ok(cEnd.type === 'failed' && cEnd.error.code === 'ECANCELLED');
  assert.equal(existsSync(s.path('c2.raw')), false);
});
