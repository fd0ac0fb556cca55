/**
 * sparsify --in-place stopped at every I/O step (harness.ts): a qcow2 holding an ext4 whose files were deleted
 * (its free clusters discarded: L2 entries, a sync, then refcounts), and a raw image on a system without hole
 * punching (DISKWRIGHT_NO_NATIVE=1: the free ranges are zeroed by plain writes). After every stop, in both
 * crash modes: qemu-img check finds leaks at most, every sector reads as before or as after the whole run,
 * and e2fsck -fn finds the file system clean with its kept file intact (the guest reads the same).
 * The hole punches themselves go through the native helper, which the injector does not see; each one is one
 * fallocate, after which the range reads as zeros: old or new, per block.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { must, run, scratch } from '../helpers';
import { assertLeaksOnly, assertOldOrNew, crashEveryStep, describe, guestBytes, type CrashCase } from './harness';

const s = scratch('dw-crash-sparsify-');
after(() => s.cleanup());

const MiB = 1 << 20;
let keep: Buffer;

/** An 8 MiB ext4 (4 KiB blocks) that held three 1 MiB files, two of them deleted by debugfs. */
function ext4Template(raw: string): void {
  const tree = s.path('tree');
  mkdirSync(tree, { recursive: true });
  for (const [i, name] of ['a.bin', 'keep.bin', 'c.bin'].entries()) {
    const b = Buffer.alloc(MiB);
    for (let j = 0; j < b.length; j += 4) b.writeUInt32LE((Math.imul(j + 1, 2654435761 + i) ^ (j >>> 3)) >>> 0, j);
    writeFileSync(join(tree, name), b);
    if (name === 'keep.bin') keep = b;
  }
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, raw, '8M']);
  must('debugfs', ['-w', '-R', 'rm /a.bin', raw]);
  must('debugfs', ['-w', '-R', 'rm /c.bin', raw]);
}

function verifier(name: string, format: string) {
  const beforeBytes = guestBytes(join(s.dir, `template-${name}`), format, s.dir);
  let done: Buffer | undefined;
  return (dir: string, completed: boolean) => {
    const p = join(dir, name);
    if (format === 'qcow2') assertLeaksOnly(p, format);
    const now = guestBytes(p, format, dir);
    if (completed) {
      done = now;
      assert.ok(!now.equals(beforeBytes), 'the complete run changed the free blocks');
    }
    assertOldOrNew(now, beforeBytes, done!, 'guest content');
    const raw = join(dir, '.guest-check.raw');
    writeFileSync(raw, now);
    try {
      const fsck = run('e2fsck', ['-fn', raw]);
      assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}`);
      const out = join(dir, '.keep.out');
      must('debugfs', ['-R', `dump /keep.bin ${out}`, raw]);
      assert.ok(readFileSync(out).equals(keep), 'the kept file reads the same');
      rmSync(out);
    } finally {
      rmSync(raw, { force: true });
    }
  };
}

function expectOldOrNew(c: CrashCase): void {
  const r = crashEveryStep(s.dir, c);
  assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) broke the image:\n${describe(r.failures)}`);
}

suite('sparsify --in-place: a crash at any step leaves an image that reads the same to the guest', () => {
  before(() => {
    const raw = s.path('template-ext4.raw');
    ext4Template(raw);
    must('qemu-img', ['convert', '-O', 'qcow2', raw, s.path('template-ext4.qcow2')]);
  });

  test('qcow2: free clusters discarded', () => {
    expectOldOrNew({ image: 'ext4.qcow2', format: 'qcow2', args: ['sparsify', '--in-place', 'ext4.qcow2'], verify: verifier('ext4.qcow2', 'qcow2') });
  });

  test('raw without hole punching: free ranges zeroed by writes', () => {
    const saved = process.env.DISKWRIGHT_NO_NATIVE;
    process.env.DISKWRIGHT_NO_NATIVE = '1';
    try {
      expectOldOrNew({ image: 'ext4.raw', format: 'raw', args: ['sparsify', '--in-place', 'ext4.raw'], verify: verifier('ext4.raw', 'raw') });
    } finally {
      if (saved === undefined) delete process.env.DISKWRIGHT_NO_NATIVE;
      else process.env.DISKWRIGHT_NO_NATIVE = saved;
    }
  });
});
