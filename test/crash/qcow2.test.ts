/**
 * qcow2 writers stopped at every I/O step (harness.ts): after each stop qemu-img check may find leaks but
 * never a corruption, the guest content is the old or the new one sector by sector, and the snapshot table
 * is the old or the new one with every snapshot still reading as it was taken (qemu-img reads them).
 */
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { must, scratch } from '../helpers';
import { assertLeaksOnly, assertOldOrNew, crashEveryStep, describe, guestBytes, qemuSnapshots, type CrashCase } from './harness';

const s = scratch('dw-crash-qcow2-');
after(() => s.cleanup());

const SIZE = 4 * 1024 * 1024;

/** A 4 MiB qcow2 with 64 KiB clusters, data here and there, and (with `snap`) one snapshot taken by qemu-img. */
function template(name: string, opts: { snap?: boolean; extra?: string[]; create?: string[] } = {}): string {
  const p = s.path(`template-${name}`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts.create ?? []), p, String(SIZE)]);
  const io = (cmds: string[]) => must('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), p]);
  io(['write -P 0x11 0 192k', 'write -P 0x22 1M 64k', 'write -P 0x33 3M 100k']);
  if (opts.snap) {
    must('qemu-img', ['snapshot', '-c', 'base', p]);
    io(['write -P 0x44 64k 64k', 'write -P 0x55 2M 64k']);
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
  });

  test('snapshot -c', () => expectLeaksOnly(qcow2Case('snap-c.qcow2', (img) => ['snapshot', '-c', 'taken', img])));
  test('snapshot -a', () => expectLeaksOnly(qcow2Case('snap-a.qcow2', (img) => ['snapshot', '-a', 'base', img])));
  test('snapshot -d', () => expectLeaksOnly(qcow2Case('snap-d.qcow2', (img) => ['snapshot', '-d', 'base', img])));
});

void copyFileSync;
void writeFileSync;
