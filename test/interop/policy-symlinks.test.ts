/**
 * The folder policy holds on the file a name reaches, not on the name (issue 26 item 1). In each case the image
 * sits in vm/ and names a file beside it that is a symbolic link to a file in elsewhere/: a qcow2 backing file,
 * a UML COW backing file, a VHDX parent, a VMDK parentFileNameHint, and a member of a Parallels .hdd bundle.
 * Through the api as the browser host and the app use it (JobManager with the launch's grants), no job may
 * read or write the outside file without a grant: convert, commit, check with repair, repair and rebase are
 * refused, and the outside file keeps its bytes and its mtime. A grant for the file reached then lets the
 * read through. The CLI follows backing files anywhere, as qemu-img does; a bundle member outside its bundle
 * is refused there too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobManager } from '../../src-main/services/jobs';
import { createApi } from '../../src-main/api/index';
import { BackingGrants } from '../../src-main/block/backing-path';
import { createImage } from '../../src-main/services/create';
import { writeBytes } from '../../src-main/services/rw';
import type { JobEvent, JobSpec } from '../../src-shared/api';
import { dw, must, scratch } from '../helpers';
import { jobEnd } from '../job-end';

const MiB = 1 << 20;

function runJob(jobs: JobManager, spec: JobSpec): Promise<JobEvent> {
  return jobEnd((l) => jobs.onEvent(l), () => jobs.start(spec));
}

interface Case {
  name: string;
  /** Makes vm/<image> over vm/<link> → elsewhere/<target>; returns the image's path, the link's target. */
  make(vm: string, elsewhere: string): Promise<{ image: string; outside: string }>;
}

/** A 1 MiB raw file of 0x5a bytes in elsewhere/. */
function outsideRaw(elsewhere: string): string {
  const p = join(elsewhere, 'secret.raw');
  writeFileSync(p, Buffer.alloc(MiB, 0x5a));
  return p;
}

/** 64 KiB of 0x11 written into the overlay (through our engine, which every format here takes), so a commit has data to write down. */
async function dirty(image: string): Promise<void> {
  await writeBytes({ path: image, offset: 0, data: new Uint8Array(64 << 10).fill(0x11), backingPolicy: 'anywhere' });
}

const CASES: Case[] = [
  {
    name: 'a qcow2 backing file',
    async make(vm, elsewhere) {
      const outside = outsideRaw(elsewhere);
      symlinkSync(outside, join(vm, 'base.raw'));
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(vm, 'o.qcow2')]);
      await dirty(join(vm, 'o.qcow2'));
      return { image: join(vm, 'o.qcow2'), outside };
    },
  },
  {
    name: 'a UML COW backing file',
    async make(vm, elsewhere) {
      const outside = outsideRaw(elsewhere);
      symlinkSync(outside, join(vm, 'base.raw'));
      await createImage({ path: join(vm, 'o.cow'), format: 'cow', backingFile: 'base.raw', backingFormat: 'raw' });
      await dirty(join(vm, 'o.cow'));
      return { image: join(vm, 'o.cow'), outside };
    },
  },
  {
    name: 'a VHDX parent',
    async make(vm, elsewhere) {
      const outside = join(elsewhere, 'real.vhdx');
      must('qemu-img', ['create', '-q', '-f', 'vhdx', outside, '8M']);
      must('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x5a 0 1M', outside]);
      symlinkSync(outside, join(vm, 'base.vhdx'));
      await createImage({ path: join(vm, 'o.vhdx'), format: 'vhdx', backingFile: 'base.vhdx', backingFormat: 'vhdx' });
      await dirty(join(vm, 'o.vhdx'));
      return { image: join(vm, 'o.vhdx'), outside };
    },
  },
  {
    name: 'a VMDK parentFileNameHint',
    async make(vm, elsewhere) {
      const outside = join(elsewhere, 'real.vmdk');
      must('qemu-img', ['create', '-q', '-f', 'vmdk', outside, '8M']);
      must('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x5a 0 1M', outside]);
      symlinkSync(outside, join(vm, 'base.vmdk'));
      must('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', join(vm, 'o.vmdk')]);
      await dirty(join(vm, 'o.vmdk'));
      return { image: join(vm, 'o.vmdk'), outside };
    },
  },
  {
    name: 'a .hdd bundle member',
    async make(vm, elsewhere) {
      const bundle = join(vm, 'b.hdd');
      await createImage({ path: bundle, format: 'parallels', size: 8 * MiB });
      await dirty(bundle);
      const member = readdirSync(bundle).find((n) => n.endsWith('.hds'))!;
      const outside = join(elsewhere, member);
      renameSync(join(bundle, member), outside);
      symlinkSync(outside, join(bundle, member));
      return { image: bundle, outside };
    },
  },
];

const fingerprint = (p: string) => ({ bytes: readFileSync(p), mtime: statSync(p).mtimeMs });

for (const c of CASES) {
  test(`${c.name} that links out of the folder: no job of the app reads or writes the file it reaches without a grant`, async (t) => {
    const s = scratch('dw-policy-links-');
    t.after(s.cleanup);
    const vm = s.path('vm');
    const elsewhere = s.path('elsewhere');
    mkdirSync(vm);
    mkdirSync(elsewhere);
    const { image, outside } = await c.make(vm, elsewhere);
    const before = fingerprint(outside);
    const grants = new BackingGrants();
    const jobs = new JobManager(grants.policy('refuse'));
    const api = createApi(jobs, { backingGrants: grants });
    const refused = (e: JobEvent, what: string) => {
      assert.ok(e.type === 'failed', `${what}: ${JSON.stringify(e)}`);
      assert.equal(e.error.code, 'EOUTSIDE', `${what}: ${e.error.message}`);
      assert.match(e.error.message, /outside/, what);
    };

    refused(await runJob(jobs, { kind: 'convert', source: image, target: join(vm, 'copy.raw'), targetFormat: 'raw', options: {} }), 'convert');
    assert.equal(existsSync(join(vm, 'copy.raw')), false);
    refused(await runJob(jobs, { kind: 'commit', path: image }), 'commit');
    refused(await runJob(jobs, { kind: 'compare', a: image, b: image }), 'compare');
    writeFileSync(join(vm, 'new.raw'), Buffer.alloc(MiB));
    const rebase = await runJob(jobs, { kind: 'rebase', path: image, newBacking: join(vm, 'new.raw'), newBackingFormat: 'raw' });
    if (c.name.includes('bundle')) assert.equal(rebase.type, 'failed');
    else refused(rebase, 'rebase');
    // Check with repair, and the app's repair (of a copy): neither may touch the file outside.
    const checked = await runJob(jobs, { kind: 'check', path: image, repair: 'all' });
    if (c.name.includes('bundle')) refused(checked, 'check -r all');
    await runJob(jobs, { kind: 'repair', path: image, mode: 'all', keepCopy: false });
    const inspected = await api.inspect(image).then(
      (info) => JSON.stringify(info),
      (err: unknown) => String((err as { code?: string }).code),
    );
    assert.match(inspected, /EOUTSIDE|outside/, 'inspect names the refusal');
    assert.deepEqual(fingerprint(outside), before, 'the outside file is unchanged');

    if (!c.name.includes('bundle')) {
      // The grant is for the file the name reaches; with it the read goes through.
      await api.allowBackingPath(image, outside);
      const ok = await runJob(jobs, { kind: 'convert', source: image, target: join(vm, 'copy.raw'), targetFormat: 'raw', options: {} });
      assert.equal(ok.type, 'done', JSON.stringify(ok));
      const copy = readFileSync(join(vm, 'copy.raw'));
      assert.equal(copy[0], 0x11);
      assert.equal(copy[(64 << 10) + 1], 0x5a, 'the backing file was read through the grant');
    }
  });
}

test('the CLI refuses a bundle member that links out of its bundle, for info, convert and check -r (it wrote to the outside file before)', async (t) => {
  const s = scratch('dw-policy-links-');
  t.after(s.cleanup);
  const vm = s.path('vm');
  const elsewhere = s.path('elsewhere');
  mkdirSync(vm);
  mkdirSync(elsewhere);
  const { image, outside } = await CASES.find((c) => c.name.includes('bundle'))!.make(vm, elsewhere);
  const before = fingerprint(outside);
  for (const args of [['info', image], ['convert', '-O', 'raw', image, join(vm, 'x.raw')], ['check', '-r', 'all', image], ['map', image]]) {
    const r = dw(args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, /outside the bundle folder/, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.equal(existsSync(join(vm, 'x.raw')), false);
  assert.deepEqual(fingerprint(outside), before);
});

test('the CLI follows a backing file that is a link anywhere, as qemu-img does', async (t) => {
  const s = scratch('dw-policy-links-');
  t.after(s.cleanup);
  const vm = s.path('vm');
  const elsewhere = s.path('elsewhere');
  mkdirSync(vm);
  mkdirSync(elsewhere);
  const { image } = await CASES[0].make(vm, elsewhere);
  const ours = dw(['convert', '-O', 'raw', image, join(vm, 'ours.raw')]);
  assert.equal(ours.status, 0, ours.stderr);
  must('qemu-img', ['convert', '-O', 'raw', image, join(vm, 'theirs.raw')]);
  assert.ok(readFileSync(join(vm, 'ours.raw')).equals(readFileSync(join(vm, 'theirs.raw'))));
});
