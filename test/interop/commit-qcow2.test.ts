/**
 * `diskwright commit` against `qemu-img commit` on the same chains made by qemu-img and written by qemu-io:
 * the bases (and the overlays) must be identical under qemu-img compare and pass qemu-img check, for qcow2 v3,
 * v2 (compat=0.10) and extended L2 overlays, over qcow2, raw and VHDX bases; -d and -b leave the overlay byte
 * for byte as it was (as qemu-img does); a base smaller than the overlay grows; an overlay with an internal
 * snapshot (shared L2 tables) is emptied without touching the snapshot; the errors are qemu-img's; a cancel
 * leaves the overlay untouched; a qemu-io holding the base makes the commit refuse it (locks).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dw, dwOk, must, qemuIo, run, scratch } from '../helpers';
import { commitImage, commitPlan } from '../../src-main/services/commit';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-commit-');
after(() => s.cleanup());

const M = 1 << 20;

/** Writes the same chain twice (a = for qemu-img, b = for us): base (format `baseFmt`) ← top (qcow2, `opts`). */
function chain(name: string, baseFmt: string, opts: string, topSize = '16M'): { a: { base: string; top: string }; b: { base: string; top: string } } {
  const make = (tag: string) => {
    const base = s.path(`${name}-${tag}.base.${baseFmt}`);
    const top = s.path(`${name}-${tag}.top.qcow2`);
    must('qemu-img', ['create', '-q', '-f', baseFmt, base, '16M']);
    qemuIo(base, baseFmt, ['write -P 0x11 0 3M', 'write -P 0x22 9M 1M', 'write -P 0x33 15M 1M']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), '-b', base, '-F', baseFmt, top, topSize]);
    // Data over data, data over holes, zeros over data (also v2: written as zeros), an unaligned edge.
    qemuIo(top, 'qcow2', ['write -P 0x44 1M 2M', 'write -P 0x55 5M 64k', 'write -z 9M 512k', 'write -P 0x66 12345678 70000', 'write -z 15M 4k']);
    return { base, top };
  };
  return { a: make('a'), b: make('b') };
}

function same(a: string, b: string, what: string): void {
  const r = run('qemu-img', ['compare', a, b]);
  assert.equal(r.status, 0, `${what}: ${r.stdout}${r.stderr}`);
}

function clean(path: string): void {
  const r = run('qemu-img', ['check', path]);
  assert.equal(r.status, 0, `qemu-img check ${path}: ${r.stdout}${r.stderr}`);
}

for (const [label, opts] of [
  ['v3', ''],
  ['v2 (compat=0.10)', 'compat=0.10'],
  ['extended L2, 128k clusters', 'extended_l2=on,cluster_size=128k'],
] as const) {
  test(`commit of a qcow2 overlay (${label}) into its qcow2 base gives what qemu-img commit gives`, () => {
    const { a, b } = chain(label.replace(/\W+/g, '_'), 'qcow2', opts);
    must('qemu-img', ['commit', a.top]);
    const r = dwOk(['commit', b.top]);
    assert.equal(r.stdout.trim(), 'Image committed.');
    same(a.base, b.base, 'bases after commit');
    same(a.top, b.top, 'overlays after commit (emptied: they read the base)');
    clean(b.base);
    clean(b.top);
    // The overlay is empty: every range reads through (qemu-img map names the base for all data).
    const map = JSON.parse(must('qemu-img', ['map', '--output=json', b.top]).stdout) as Array<{ depth: number; data: boolean }>;
    assert.ok(map.every((e) => !e.data || e.depth === 1), 'no data left in the overlay');
  });
}

test('commit into a raw base and into a VHDX base (qemu-img writes both) gives what qemu-img commit gives', () => {
  for (const fmt of ['raw', 'vhdx']) {
    const { a, b } = chain(`fmt-${fmt}`, fmt, '');
    must('qemu-img', ['commit', a.top]);
    dwOk(['commit', '-q', b.top]);
    same(a.base, b.base, `${fmt} bases`);
    same(a.top, b.top, `${fmt} overlays`);
    if (fmt === 'raw') assert.ok(readFileSync(a.base).equals(readFileSync(b.base)), 'raw bases byte for byte');
    else clean(b.base);
    clean(b.top);
  }
});

test('a base whose clusters lie out of guest order, with an allocated zero cluster among them: in-place runs stop where the host offsets do', () => {
  const make = (tag: string) => {
    const base = s.path(`order-${tag}.base.qcow2`);
    const top = s.path(`order-${tag}.top.qcow2`);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
    // MiB 3 then 2 then 1 (host order reversed against guest order), MiB 0 cluster by cluster from its end,
    // then an allocated zero cluster (zero flag, host cluster kept) inside MiB 2's contiguous run.
    const backwards = Array.from({ length: 16 }, (_, k) => `write -P ${k + 5} ${(15 - k) * 64}k 64k`);
    qemuIo(base, 'qcow2', ['write -P 1 3M 1M', 'write -P 2 2M 1M', 'write -P 3 1M 1M', ...backwards, 'write -z 2176k 64k']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    // Unaligned at both ends, over every cluster of the base.
    qemuIo(top, 'qcow2', ['write -P 0x77 100k 3900k']);
    return { base, top };
  };
  const a = make('a');
  const b = make('b');
  must('qemu-img', ['commit', a.top]);
  dwOk(['commit', b.top]);
  same(a.base, b.base, 'bases');
  clean(b.base);
  // Every cluster was written where it was: the base did not grow.
  assert.equal(readFileSync(b.base).length, readFileSync(a.base).length);
});

test('-d leaves the overlay byte for byte as it was; the base is what qemu-img commit -d makes', () => {
  const { a, b } = chain('keep', 'qcow2', '');
  const before = readFileSync(b.top);
  must('qemu-img', ['commit', '-d', a.top]);
  dwOk(['commit', '-d', b.top]);
  same(a.base, b.base, 'bases');
  assert.ok(readFileSync(b.top).equals(before), 'overlay untouched');
  clean(b.base);
});

test('-b BASE down a three-image chain: the base gets the top\'s view, the top is kept (-b implies -d), as qemu-img does', async () => {
  const make = (tag: string) => {
    const base = s.path(`three-${tag}.base.qcow2`);
    const mid = s.path(`three-${tag}.mid.qcow2`);
    const top = s.path(`three-${tag}.top.qcow2`);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '8M']);
    qemuIo(base, 'qcow2', ['write -P 1 0 8M']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid]);
    qemuIo(mid, 'qcow2', ['write -P 2 1M 2M', 'write -z 6M 1M']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
    qemuIo(top, 'qcow2', ['write -P 3 2M 2M', 'write -P 4 7M 4k']);
    return { base, mid, top };
  };
  const a = make('a');
  const b = make('b');
  const topBefore = readFileSync(b.top);
  const midBefore = readFileSync(b.mid);
  must('qemu-img', ['commit', '-b', a.base, a.top]);
  const plan = await commitPlan({ path: b.top, base: b.base });
  assert.equal(plan.base, b.base);
  assert.deepEqual(plan.between, [b.mid]);
  assert.equal(plan.emptiesOverlay, false);
  const r = dwOk(['commit', '-b', b.base, b.top]);
  assert.equal(r.stdout.trim(), 'Image committed.');
  same(a.base, b.base, 'bases');
  same(a.top, b.top, 'tops');
  assert.ok(readFileSync(b.top).equals(topBefore), 'top untouched');
  assert.ok(readFileSync(b.mid).equals(midBefore), 'mid untouched (it now reads differently, as with qemu-img)');
  clean(b.base);
});

test('an overlay larger than its base: the base grows to the overlay\'s size, as qemu-img commit makes it', () => {
  const { a, b } = chain('grow', 'qcow2', '', '20M');
  for (const top of [a.top, b.top]) qemuIo(top, 'qcow2', ['write -P 0x77 18M 1M']);
  must('qemu-img', ['commit', a.top]);
  dwOk(['commit', b.top]);
  same(a.base, b.base, 'grown bases');
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', b.base]).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], 20 * M);
  clean(b.base);
});

test('an overlay with an internal snapshot (L2 tables shared) is emptied, its snapshot kept; qemu-img check is clean', () => {
  const { a, b } = chain('snap', 'qcow2', '');
  for (const top of [a.top, b.top]) must('qemu-img', ['snapshot', '-c', 'before', top]);
  must('qemu-img', ['commit', a.top]);
  dwOk(['commit', b.top]);
  same(a.base, b.base, 'bases');
  same(a.top, b.top, 'tops');
  clean(b.top);
  // The snapshot still reads what the overlay held (compare the snapshots through qemu-img convert -l).
  must('qemu-img', ['convert', '-l', 'before', '-O', 'raw', a.top, s.path('snap-a.raw')]);
  must('qemu-img', ['convert', '-l', 'before', '-O', 'raw', b.top, s.path('snap-b.raw')]);
  assert.ok(readFileSync(s.path('snap-a.raw')).equals(readFileSync(s.path('snap-b.raw'))), 'snapshots read the same');
});

test('errors are qemu-img\'s: no backing file, a base not in the chain; exit 1, one line, nothing changed', () => {
  const alone = s.path('alone.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', alone, '1M']);
  const q1 = run('qemu-img', ['commit', alone]);
  const d1 = dw(['commit', alone]);
  assert.equal(d1.status, q1.status);
  assert.match(q1.stderr, /Image does not have a backing file/);
  assert.match(d1.stderr, /^diskwright: Image does not have a backing file\n$/);
  const { b } = chain('errs', 'qcow2', '');
  const before = readFileSync(b.base);
  const q2 = run('qemu-img', ['commit', '-b', alone, b.top]);
  const d2 = dw(['commit', '-b', alone, b.top]);
  assert.equal(d2.status, q2.status);
  assert.match(q2.stderr, /Did not find '.*' in the backing chain of/);
  assert.match(d2.stderr, /Did not find '.*' in the backing chain of/);
  assert.ok(readFileSync(b.base).equals(before));
});

test('a cancel part way leaves the overlay untouched and the base consistent (qemu-img check clean)', async () => {
  const { b } = chain('cancel', 'qcow2', '');
  const topBefore = readFileSync(b.top);
  const ctl = new AbortController();
  await assert.rejects(
    commitImage({ path: b.top, keepOverlay: false, signal: ctl.signal, onProgress: (done) => done > 0 && ctl.abort() }),
    (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
  );
  assert.ok(readFileSync(b.top).equals(topBefore), 'overlay untouched');
  clean(b.base);
  clean(b.top);
});

test('locks: a qemu-io holding the base makes the commit refuse it (nothing written); our own two opens of the base do not conflict', async () => {
  const { b } = chain('locks', 'qcow2', '');
  const topBefore = readFileSync(b.top);
  const baseBefore = readFileSync(b.base);
  const child: ChildProcess = spawn('qemu-io', ['-f', 'qcow2', b.base], { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('qemu-io did not open the image')), 10_000);
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('qemu-io>') && (clearTimeout(timer), resolve()));
    });
    const r = dw(['commit', b.top]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`(in use by|being written by) qemu-io \\(pid ${child.pid}: `));
  } finally {
    const done = new Promise((r) => child.once('exit', r));
    child.stdin!.end('quit\n');
    await done;
  }
  assert.ok(readFileSync(b.top).equals(topBefore));
  assert.ok(readFileSync(b.base).equals(baseBefore));
  dwOk(['commit', b.top]);
  clean(b.base);
});
