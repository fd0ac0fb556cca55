/**
 * qcow2 writers stopped at every I/O step (harness.ts): after each stop qemu-img check may find leaks but
 * never a corruption, the guest content is the old or the new one sector by sector, and the snapshot table
 * is the old or the new one with every snapshot still reading as it was taken (qemu-img reads them).
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { dw, must, run, scratch } from '../helpers';
import { assertLeaksOnly, assertOldOrNew, crashEveryStep, describe, guestBytes, qemuCheck, qemuSnapshots, type CrashCase } from './harness';

const s = scratch('dw-crash-qcow2-');
after(() => s.cleanup());

const SIZE = 4 * 1024 * 1024;

/**
 * A 4 MiB qcow2 with 64 KiB clusters, data here and there, and (with `snap`) one snapshot taken by qemu-img,
 * or by us with `snapBy: 'dw'`; with `writesAfter: false` nothing is written after it, so the active layer
 * still shares its L2 tables with the snapshot.
 */
function template(name: string, opts: { snap?: boolean; snapBy?: 'qemu' | 'dw'; writesAfter?: boolean; extra?: string[]; create?: string[] } = {}): string {
  const p = s.path(`template-${name}`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts.create ?? []), p, String(SIZE)]);
  const io = (cmds: string[]) => must('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), p]);
  io(['write -P 0x11 0 192k', 'write -P 0x22 1M 64k', 'write -P 0x33 3M 100k']);
  if (opts.snap) {
    if (opts.snapBy === 'dw') {
      const r = dw(['snapshot', '-c', 'base', p]);
      assert.equal(r.status, 0, r.stderr);
    } else must('qemu-img', ['snapshot', '-c', 'base', p]);
    if (opts.writesAfter !== false) io(['write -P 0x44 64k 64k', 'write -P 0x55 2M 64k']);
  }
  if (opts.extra) io(opts.extra);
  return p;
}

/** Content of the image and of each of its snapshots, by snapshot name. */
function state(path: string): { active: Buffer; snaps: Map<string, Buffer> } {
  const snaps = new Map<string, Buffer>();
  for (const r of qemuSnapshots(path)) snaps.set(r.name, guestBytes(path, 'qcow2', s.dir, r.name));
  return { active: guestBytes(path, 'qcow2', s.dir), snaps };
}

/**
 * A verifier for a qcow2 writer: leaks only; the active content old or new per sector; the snapshot list is
 * the old or the new one, each snapshot reading as before (or, for one the writer made, as the old active).
 */
function qcow2Verifier(name: string, before: ReturnType<typeof state>) {
  let done: ReturnType<typeof state> | undefined;
  return (dir: string, completed: boolean) => {
    const p = join(dir, name);
    assertLeaksOnly(p, 'qcow2');
    const now = state(p);
    if (completed) done = now;
    const fin = done!;
    assertOldOrNew(now.active, before.active, fin.active, 'active layer');
    const names = [...now.snaps.keys()].sort().join(',');
    const oldNames = [...before.snaps.keys()].sort().join(',');
    const newNames = [...fin.snaps.keys()].sort().join(',');
    assert.ok(names === oldNames || names === newNames, `snapshots [${names}] are neither the old [${oldNames}] nor the new [${newNames}]`);
    for (const [n, b] of now.snaps) {
      const want = before.snaps.get(n) ?? fin.snaps.get(n)!;
      assert.ok(b.equals(want), `snapshot ${n} does not read as it was taken`);
    }
  };
}

function qcow2Case(name: string, args: (img: string) => string[]): CrashCase {
  const tpl = s.path(`template-${name}`);
  const before = state(tpl);
  return { image: name, format: 'qcow2', args: args(name), verify: qcow2Verifier(name, before) };
}

function expectLeaksOnly(c: CrashCase): void {
  const r = crashEveryStep(s.dir, c);
  assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) broke the image:\n${describe(r.failures)}`);
}

suite('qcow2: a crash at any step can only leak', () => {
  before(() => {
    template('snap-c.qcow2');
    template('snap-a.qcow2', { snap: true });
    template('snap-d.qcow2', { snap: true });
    // L2 tables shared by the active layer and a snapshot: a new snapshot shares them once more; deleting
    // the snapshot makes them the active layer's alone again (copied, with OFLAG_COPIED set).
    template('snap-c-shared.qcow2', { snap: true, snapBy: 'dw', writesAfter: false });
    template('snap-d-shared.qcow2', { snap: true, snapBy: 'dw', writesAfter: false });
  });

  test('snapshot -c', () => expectLeaksOnly(qcow2Case('snap-c.qcow2', (img) => ['snapshot', '-c', 'taken', img])));
  test('snapshot -a', () => expectLeaksOnly(qcow2Case('snap-a.qcow2', (img) => ['snapshot', '-a', 'base', img])));
  test('snapshot -d', () => expectLeaksOnly(qcow2Case('snap-d.qcow2', (img) => ['snapshot', '-d', 'base', img])));
  test('snapshot -c over L2 tables shared with a snapshot', () => expectLeaksOnly(qcow2Case('snap-c-shared.qcow2', (img) => ['snapshot', '-c', 'taken', img])));
  test('snapshot -d of a snapshot sharing L2 tables with the active layer', () => expectLeaksOnly(qcow2Case('snap-d-shared.qcow2', (img) => ['snapshot', '-d', 'base', img])));
});

/** A file of `len` bytes with a pattern, for `diskwright write`. */
function payload(name: string, len: number, byte: number): string {
  const p = s.path(name);
  writeFileSync(p, Buffer.alloc(len, byte));
  return p;
}

suite('qcow2 writes, discard, resize, repair, convert: a crash at any step can only leak', () => {
  before(() => {
    template('write.qcow2');
    template('write-snap.qcow2', { snap: true });
    template('write-dwsnap.qcow2', { snap: true, snapBy: 'dw', writesAfter: false });
    template('write-lazy.qcow2', { create: ['-o', 'lazy_refcounts=on'] });
    template('discard.qcow2', { snap: true });
    template('grow.qcow2', { create: ['-o', 'cluster_size=4k'] }); // 2 MiB per L2 table: growing grows the L1 table
    // Data right below the new end, zeroed (still allocated) clusters past it, freed by the shrink.
    template('shrink.qcow2', { extra: ['write -P 0x66 1984k 64k', 'write -z 3M 128k'] });
    template('convert-src.qcow2', { snap: true });
  });

  // A write over allocated clusters, into new ones and across an L2 boundary of shared (COW) clusters.
  const data = () => payload('payload.bin', 300 * 1024, 0x77);
  test('write (new clusters and overwrites)', () => expectLeaksOnly(qcow2Case('write.qcow2', (img) => ['write', img, '100k', data()])));
  test('write over clusters shared with a snapshot (copy on write)', () => expectLeaksOnly(qcow2Case('write-snap.qcow2', (img) => ['write', img, '1000k', data()])));
  test('write into L2 tables our snapshot shares (L2 and cluster copy on write)', () => expectLeaksOnly(qcow2Case('write-dwsnap.qcow2', (img) => ['write', img, '1000k', data()])));
  test('write with lazy refcounts', () => expectLeaksOnly(qcow2Case('write-lazy.qcow2', (img) => ['write', img, '100k', data()])));
  test('discard (clusters shared with a snapshot and not)', () => expectLeaksOnly(qcow2Case('discard.qcow2', (img) => ['discard', '-q', img, '0', '2304k'])));
  test('resize: grow', () => expectLeaksOnly(qcow2Case('grow.qcow2', (img) => ['resize', img, '64M'])));
  test('resize: shrink an image with data at the end', () => expectLeaksOnly(qcow2Case('shrink.qcow2', (img) => ['resize', '--shrink', img, '2M'])));

  // Leak repair lowers refcounts 2 -> 1 where the active entry must gain OFLAG_COPIED at the same moment:
  // done in place (qemu's way) a crash in between was a corruption; qcow2/check/switch.ts makes it one header write.
  test('check -r all on a leaky image', () => {
    // qemu-img's snapshot forgotten by the header: its L1 and L2 tables and its share of the data leak.
    const tpl = template('leaky.qcow2', { snap: true });
    const h = Buffer.alloc(12);
    const fd = openSync(tpl, 'r+');
    writeSync(fd, h, 0, 12, 60);
    closeSync(fd);
    assert.ok(qemuCheck(tpl, 'qcow2').leaks > 0, 'the template leaks');
    const c = qcow2Case('leaky.qcow2', (img) => ['check', '-r', 'all', img]);
    const verify = c.verify;
    c.verify = (dir, completed) => {
      verify(dir, completed);
      // The repair itself, once complete, leaves nothing for qemu-img check to report.
      if (completed) assert.equal(run('qemu-img', ['check', join(dir, 'leaky.qcow2')]).status, 0, 'qemu-img check after the repair');
    };
    expectLeaksOnly(c);
    // What the repair reports fixing is what qemu-img's own repair of a copy reports.
    const ours = s.path('leaky-ours.qcow2');
    const theirs = s.path('leaky-qemu.qcow2');
    copyFileSync(tpl, ours);
    copyFileSync(tpl, theirs);
    const a = JSON.parse(dw(['check', '-r', 'all', '--output', 'json', ours]).stdout) as Record<string, number>;
    const q = JSON.parse(run('qemu-img', ['check', '-r', 'all', '--output', 'json', theirs]).stdout) as Record<string, number>;
    for (const k of ['leaks-fixed', 'corruptions-fixed', 'leaks', 'corruptions', 'allocated-clusters']) assert.equal(a[k], q[k], k);
    assert.ok(guestBytes(ours, 'qcow2', s.dir).equals(guestBytes(theirs, 'qcow2', s.dir)), 'the same content after both repairs');
  });

  test('check -r all on an image with refcounts too low (killed with lazy refcounts)', () => {
    const tpl = s.path('template-lowref.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', tpl, String(SIZE)]);
    must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 192k', tpl]);
    run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 1M 256k', '-c', 'sigraise 9', tpl]);
    const before = qemuCheck(tpl, 'qcow2').corruptions;
    assert.ok(before > 0, 'the template is corrupt');
    const content = guestBytes(tpl, 'qcow2', s.dir);
    const r = crashEveryStep(s.dir, {
      image: 'lowref.qcow2',
      format: 'qcow2',
      args: ['check', '-r', 'all', 'lowref.qcow2'],
      verify: (dir) => {
        const p = join(dir, 'lowref.qcow2');
        const c = qemuCheck(p, 'qcow2');
        // A repair stopped half-way may leave what it found, never more (leaks allowed).
        assert.ok(c.checkErrors === 0 && c.corruptions <= before, `qemu-img check: ${c.corruptions} corruptions (before: ${before}): ${c.text}`);
        assert.ok(guestBytes(p, 'qcow2', dir).equals(content), 'the repair changed what the guest reads');
      },
    });
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) went wrong:\n${describe(r.failures)}`);
  });

  test('convert: the source untouched, the target absent or complete', () => {
    const src = s.path('template-convert-src.qcow2');
    const srcBytes = readFileSync(src);
    const content = guestBytes(src, 'qcow2', s.dir);
    const r = crashEveryStep(s.dir, {
      image: 'convert-src.qcow2',
      format: 'qcow2',
      args: ['convert', '-O', 'qcow2', 'convert-src.qcow2', 'out.qcow2'],
      verify: (dir, completed) => {
        assert.ok(readFileSync(join(dir, 'convert-src.qcow2')).equals(srcBytes), 'the source changed');
        const out = join(dir, 'out.qcow2');
        if (existsSync(out)) {
          assertLeaksOnly(out, 'qcow2');
          assert.ok(guestBytes(out, 'qcow2', dir).equals(content), 'the target is there but not complete');
          if (!completed) rmSync(out);
        } else assert.ok(!completed, 'no target after a complete convert');
      },
    });
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) went wrong:\n${describe(r.failures)}`);
  });
});
