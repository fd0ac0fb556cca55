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
import { dw, must, run, scratch } from '../helpers';
import { assertLeaksOnly, assertOldOrNew, crashEveryStep, describe, guestBytes, qemuCheck, type CrashCase } from './harness';

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

/**
 * After a stop, each format recovered its own way before it is read: a VDI count left ahead of its map (a leak)
 * by our check -r leaks (qemu has no VDI repair), Parallels' in-use mark and a VHDX log by qemu-img check -r all
 * (as qemu does on open); then qemu-img check (ours for VHD, which qemu cannot check) finds no corruption.
 */
function recovered(p: string, format: string): void {
  if (format === 'qcow2') return assertLeaksOnly(p, format);
  if (format === 'vpc') {
    const r = dw(['check', '-f', 'vpc', '--output', 'json', p]);
    const j = JSON.parse(r.stdout) as { corruptions?: number; 'check-errors'?: number };
    assert.equal((j.corruptions ?? 0) + (j['check-errors'] ?? 0), 0, `diskwright check: ${r.stdout}${r.stderr}`);
    return;
  }
  let c = qemuCheck(p, format);
  if (c.corruptions !== 0 || c.checkErrors !== 0) {
    if (format === 'vdi') {
      assert.match(c.text, /allocated blocks mismatch/, `a VDI's only damage may be its count: ${c.text.trim()}`);
      const r = dw(['check', '-q', '-r', 'leaks', p]);
      assert.equal(r.status, 0, `check -r leaks: ${r.stdout}${r.stderr}`);
    } else run('qemu-img', ['check', '-q', '-r', 'all', '-f', format, p]);
    c = qemuCheck(p, format);
  }
  if (c.corruptions !== 0 || c.checkErrors !== 0) assert.fail(`qemu-img check after recovery: ${c.corruptions} corruptions, ${c.checkErrors} check errors: ${c.text.trim()}`);
}

function verifier(name: string, format: string) {
  const beforeBytes = guestBytes(join(s.dir, `template-${name}`), format, s.dir);
  let done: Buffer | undefined;
  return (dir: string, completed: boolean) => {
    const p = join(dir, name);
    if (format !== 'raw') recovered(p, format);
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

/** A 24 MiB ext4 whose two 6 MiB files were deleted: whole 1-2 MiB blocks of every format fall free. */
function bigFilesTemplate(raw: string): void {
  const tree = s.path('tree-big');
  mkdirSync(tree, { recursive: true });
  for (const [i, name] of ['a.bin', 'keep.bin', 'c.bin'].entries()) {
    const b = Buffer.alloc(name === 'keep.bin' ? MiB : 6 * MiB);
    for (let j = 0; j < b.length; j += 4) b.writeUInt32LE((Math.imul(j + 1, 2654435761 + i) ^ (j >>> 3)) >>> 0, j);
    writeFileSync(join(tree, name), b);
    if (name === 'keep.bin') keep = b;
  }
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, raw, '24M']);
  must('debugfs', ['-w', '-R', 'rm /a.bin', raw]);
  must('debugfs', ['-w', '-R', 'rm /c.bin', raw]);
}

suite('sparsify --in-place in the other formats: a crash at any step leaves an image that reads the same once the format recovers', () => {
  const formats: Array<{ name: string; format: string; opts: string[] }> = [
    { name: 'big.vdi', format: 'vdi', opts: [] },
    { name: 'big.vhd', format: 'vpc', opts: [] },
    { name: 'big.vmdk', format: 'vmdk', opts: [] },
    { name: 'big.hdd', format: 'parallels', opts: [] },
    { name: 'big.vhdx', format: 'vhdx', opts: ['-o', 'block_size=1M'] },
  ];
  before(() => {
    const raw = s.path('big.raw');
    bigFilesTemplate(raw);
    for (const f of formats) must('qemu-img', ['convert', '-O', f.format, ...f.opts, raw, s.path(`template-${f.name}`)]);
  });
  for (const f of formats) {
    test(`${f.format}: blocks released${f.format === 'vdi' ? ', the last moved into the holes, the file cut' : ' and punched'}`, () => {
      expectOldOrNew({ image: f.name, format: f.format, args: ['sparsify', '--in-place', '-f', f.format, f.name], verify: verifier(f.name, f.format) });
    });
  }
});

test('vmdk child over a parent (zeroed_grain=on): grains released as zeroed grains, never showing the parent', () => {
  // The parent holds the disk before the deletion (the deleted files' data); the child holds every block after it.
  const tree = s.path('tree-big');
  const parentRaw = s.path('parent-big.raw');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, parentRaw, '24M']);
  const parent = s.path('parent-big.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', parentRaw, parent]);
  const tpl = s.path('template-child.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', parent, '-F', 'vmdk', tpl]);
  must('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'vmdk', s.path('big.raw'), tpl]);
  expectOldOrNew({ image: 'child.vmdk', format: 'vmdk', args: ['sparsify', '--in-place', 'child.vmdk'], verify: verifier('child.vmdk', 'vmdk') });
});
