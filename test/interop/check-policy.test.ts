/**
 * The app's and the host's check and repair jobs follow a backing file or parent only as the launch's policy
 * allows (the grants), as every other job does; the CLI's check follows it anywhere, as qemu-img does. A
 * differencing VHD and a UML COW file in vm/ over a base in elsewhere/: through the JobManager the check
 * reports the base as not followed (and does not look at it) until it is granted; the CLI reports nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { BackingGrants } from '../../src-main/block/backing-path';
import { JobManager } from '../../src-main/services/jobs';
import type { CheckReport, JobSpec, RepairResult } from '../../src-shared/api';
import { dwOk, must, scratch } from '../helpers';
import { jobEnd } from '../job-end';

const cases = [
  {
    name: 'a differencing VHD',
    make: (base: string, top: string) => {
      must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=dynamic', base, '8M']);
      dwOk(['create', '-q', '-f', 'vpc', '-b', base, '-F', 'vpc', top]);
    },
    ext: 'vhd',
  },
  {
    name: 'a UML COW file',
    make: (base: string, top: string) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', base, '8M']);
      must('uml_mkcow', [top, base]);
    },
    ext: 'cow',
  },
];

for (const c of cases) {
  test(`check and repair jobs of ${c.name} follow its base only where the launch's grants allow`, async (t) => {
    const s = scratch();
    t.after(s.cleanup);
    mkdirSync(s.path('vm'));
    mkdirSync(s.path('elsewhere'));
    const base = s.path(`elsewhere/base.${c.ext === 'cow' ? 'raw' : c.ext}`);
    const top = s.path(`vm/top.${c.ext}`);
    c.make(base, top);
    const grants = new BackingGrants();
    const jobs = new JobManager(grants.policy('refuse'));
    const check = async (spec: JobSpec): Promise<CheckReport> => {
      const end = await jobEnd((l) => jobs.onEvent(l), () => jobs.start(spec));
      assert.equal(end.type, 'done', JSON.stringify(end));
      const result = end.type === 'done' ? end.result : undefined;
      return (spec.kind === 'repair' ? (result as RepairResult).report : result) as CheckReport;
    };
    const notFollowed = (r: CheckReport) => (r.problems ?? []).some((p) => /outside|allow/i.test(p.message));

    const refused = await check({ kind: 'check', path: top });
    assert.ok(notFollowed(refused), `the check says the base was not followed: ${JSON.stringify(refused.problems)}`);
    assert.equal(refused['check-errors'] + refused.corruptions, 0, 'not following is no error of the image');
    const repaired = await check({ kind: 'repair', path: top, mode: 'all', keepCopy: false });
    assert.ok(notFollowed(repaired), `the repair's check says so too: ${JSON.stringify(repaired.problems)}`);

    grants.grant(top, base);
    const granted = await check({ kind: 'check', path: top });
    assert.deepEqual(granted.problems ?? [], [], 'a granted base is followed and found as it was');

    const cli = dwOk(['check', '--output=json', top]);
    assert.deepEqual(JSON.parse(cli.stdout).problems ?? [], [], 'the CLI follows the base anywhere, as qemu-img');
  });
}
