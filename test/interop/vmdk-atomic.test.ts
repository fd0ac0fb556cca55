/**
 * VMDK images whose data lies in files beside the descriptor (monolithicFlat, twoGbMaxExtent*) appear whole or
 * not at all: the extents are written under hidden temporary names and get their final names only once the
 * image is complete, just before the descriptor is renamed into place. A `diskwright convert` or `create`
 * killed (SIGKILL, test/crash/inject.cjs) at sampled I/O steps leaves no final-named file that is not provably
 * its own (a hard link of one of its temporaries), the next convert to that target removes what it left and
 * succeeds, and the result passes qemu-img check and compare. A file already bearing an extent's final name is
 * never overwritten: refused before anything is written, or, when it appears meanwhile, the job fails around it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dw, must, run, scratch } from '../helpers';
import { runWriter, stepsToTry } from '../crash/harness';
import { createUnplaced } from '../../src-main/services/create';
import { removeStaleTemporaries } from '../../src-main/services/atomic';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-vmdk-atomic-');
after(() => s.cleanup());

const GiB = 1024 * 1024 * 1024;
/** A sparse raw source of 2 GiB + 3 MiB: data at the start, across the 2 GiB boundary and at the very end. */
const SRC = s.path('src.raw');
must('qemu-img', ['create', '-q', '-f', 'raw', SRC, String(2 * GiB + 3 * 1024 * 1024)]);
must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 300k', '-c', `write -P 0x22 ${2 * GiB - 70000} 140000`, '-c', `write -P 0x33 ${2 * GiB + 3 * 1024 * 1024 - 4096} 4096`, SRC]);

/** The files of a work folder, hidden ones included, but for the source. */
const listing = (dir: string) => readdirSync(dir).filter((f) => f !== 'src.raw').sort();

function assertQemuAgrees(image: string, label: string): void {
  const c = run('qemu-img', ['check', '-f', 'vmdk', image]);
  assert.equal(c.status, 0, `${label}: qemu-img check: ${c.stdout}${c.stderr}`);
  const r = run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', image, SRC]);
  assert.equal(r.status, 0, `${label}: qemu-img compare: ${r.stdout}${r.stderr}`);
}

/**
 * After a kill: the target is absent, and every file with a final name is the very same file as a hidden
 * temporary of the killed job (so that the next job can prove it is not someone else's). Returns the leftovers.
 */
function assertNothingFinalLeft(dir: string, finals: string[], label: string): string[] {
  const left = listing(dir);
  assert.ok(!left.includes('out.vmdk'), `${label}: the target appeared: ${left.join(' ')}`);
  const hidden = left.filter((f) => f.startsWith('.out.vmdk.diskwright-'));
  assert.deepEqual(left.filter((f) => !hidden.includes(f) && !finals.includes(f)), [], `${label}: only the job's own files are left`);
  const inodes = new Set(hidden.map((f) => statSync(join(dir, f)).ino));
  for (const f of left.filter((x) => finals.includes(x))) assert.ok(inodes.has(statSync(join(dir, f)).ino), `${label}: ${f} is left under its final name and is not a link of the job's temporaries`);
  return left;
}

const CASES: Array<{ label: string; args: string[]; finals: string[]; compare: boolean; sample: number }> = [
  { label: 'convert twoGbMaxExtentSparse', args: ['convert', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', SRC, 'out.vmdk'], finals: ['out-s001.vmdk', 'out-s002.vmdk'], compare: true, sample: 8 },
  { label: 'convert monolithicFlat', args: ['convert', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', SRC, 'out.vmdk'], finals: ['out-flat.vmdk'], compare: true, sample: 4 },
  { label: 'create twoGbMaxExtentFlat', args: ['create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentFlat', 'out.vmdk', '3G'], finals: ['out-f001.vmdk', 'out-f002.vmdk'], compare: false, sample: 4 },
];

for (const c of CASES) {
  test(`${c.label} killed at its I/O steps: nothing under a final name; the next convert cleans up and succeeds`, (t) => {
    const dir = s.path(c.label.replace(/ /g, '-'));
    must('mkdir', ['-p', dir]);
    const count = runWriter(c.args, { cwd: dir });
    assert.equal(count.status, 0, count.stderr);
    assert.deepEqual(listing(dir), ['out.vmdk', ...c.finals].sort(), 'an uninterrupted job leaves exactly the image');
    if (c.compare) assertQemuAgrees(join(dir, 'out.vmdk'), `${c.label} uninterrupted`);
    // Spread over the job, and the last steps always: naming the extents final and renaming the descriptor.
    const steps = new Set([...stepsToTry(count.steps, c.sample), count.steps - 3, count.steps - 2, count.steps - 1, count.steps].filter((n) => n >= 1));
    let withLinks = 0;
    for (const at of [...steps].sort((a, b) => a - b)) {
      for (const f of readdirSync(dir)) if (f !== 'src.raw') rmSync(join(dir, f), { force: true });
      const r = runWriter(c.args, { cwd: dir, at, mode: 'kill' });
      assert.equal(r.signal, 'SIGKILL', `step ${at}/${count.steps}: killed (${r.status} ${r.stderr})`);
      const left = assertNothingFinalLeft(dir, c.finals, `killed at step ${at}/${count.steps}`);
      if (left.some((f) => c.finals.includes(f))) withLinks++;
      // The next convert to the same target removes every leftover and writes the image.
      const again = dw(['convert', '-O', 'vmdk', '-o', `subformat=${c.finals.length > 1 ? 'twoGbMaxExtentSparse' : 'monolithicFlat'}`, SRC, join(dir, 'out.vmdk')]);
      assert.equal(again.status, 0, `after the kill at step ${at}: ${again.stderr}`);
      for (const f of left) assert.match(again.stderr, new RegExp(`removed .*${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, left by an earlier`), `step ${at}: ${f} removed and said so`);
      const expected = c.finals.length > 1 ? ['out-s001.vmdk', 'out-s002.vmdk'] : ['out-flat.vmdk'];
      assert.deepEqual(listing(dir), ['out.vmdk', ...expected].sort(), `step ${at}: exactly the new image is left`);
      assertQemuAgrees(join(dir, 'out.vmdk'), `converted again after the kill at step ${at}`);
    }
    // The step before the descriptor's rename comes after the extents got their final names (as hard links).
    assert.ok(withLinks >= 1, 'one kill fell between naming the extents final and renaming the descriptor');
    t.diagnostic(`${count.steps} steps; killed at ${[...steps].join(', ')}; ${withLinks} left final names (links), all removed`);
  });
}

test('a file already bearing an extent name is refused before anything is written, and left as it was', () => {
  const dir = s.path('taken');
  must('mkdir', ['-p', dir]);
  writeFileSync(join(dir, 'out-s002.vmdk'), 'mine');
  const r = dw(['convert', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', SRC, join(dir, 'out.vmdk')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /out-s002\.vmdk: exists already/);
  assert.deepEqual(listing(dir), ['out-s002.vmdk'], 'nothing was written');
  assert.equal(readFileSync(join(dir, 'out-s002.vmdk'), 'utf8'), 'mine');
  const c = dw(['create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', join(dir, 'out.vmdk'), '3G']);
  assert.equal(c.status, 1);
  assert.match(c.stderr, /out-s002\.vmdk: exists already/);
  assert.deepEqual(listing(dir), ['out-s002.vmdk']);
});

test('a file that takes an extent name while the image is written is left alone and the job fails; temporaries of a live job are kept', async () => {
  const dir = s.path('meanwhile');
  must('mkdir', ['-p', dir]);
  const target = join(dir, 'out.vmdk');
  const tmp = join(dir, '.out.vmdk.diskwright-0a0b0c0d.tmp');
  const extras = await createUnplaced({ path: target, format: 'vmdk', size: 3 * GiB, options: { subformat: 'twoGbMaxExtentSparse' } }, tmp);
  assert.deepEqual(extras.finals, [join(dir, 'out-s001.vmdk'), join(dir, 'out-s002.vmdk')]);
  assert.deepEqual(listing(dir), ['.out.vmdk.diskwright-0a0b0c0d.out-s001.vmdk.tmp', '.out.vmdk.diskwright-0a0b0c0d.out-s002.vmdk.tmp', '.out.vmdk.diskwright-0a0b0c0d.tmp']);
  // Open for writing (as convert holds it), the job's files are not stale: a clean-up leaves them alone.
  const dev = await openImage(tmp, { format: 'vmdk', readOnly: false, backingPolicy: 'anywhere' });
  await dev.write(0, new Uint8Array(65536).fill(5));
  assert.deepEqual(await removeStaleTemporaries(target), []);
  await dev.flush();
  await dev.close();
  writeFileSync(join(dir, 'out-s002.vmdk'), 'mine');
  await assert.rejects(extras.place(), (e: unknown) => e instanceof DiskError && e.code === 'EEXIST' && /out-s002\.vmdk: a file of this name appeared/.test(e.message));
  await extras.discard();
  rmSync(tmp);
  assert.deepEqual(listing(dir), ['out-s002.vmdk'], 'only the other file is left, untouched');
  assert.equal(readFileSync(join(dir, 'out-s002.vmdk'), 'utf8'), 'mine');
  assert.ok(!existsSync(join(dir, 'out-s001.vmdk')));
});
