/**
 * Crash injection into the step that empties an overlay after a commit (makeEmpty): the base already holds the
 * overlay's view (qemu-img commit -d, or uml_moo -d, made it), so whatever part of the overlay was emptied, the
 * overlay must read as the base, and its format's own rules must hold. The overlay's file is made to fail every
 * write, truncate and sync from the N-th on (a crash there: nothing later reaches the disk), for N = 0, 1, 2, …
 * until makeEmpty completes. qcow2: qemu-img check finds leaks at most, and qemu-img compare says the overlay
 * reads as the base. COW: the overlay reads as the backing file uml_moo -d wrote. VHDX: once its log is replayed,
 * the child reads as the raw model written by qemu-io.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { ImageFile } from '../../src-main/block/file';
import { openImage } from '../../src-main/registry';
import { dw, dwOk, must, qemuIo, run, scratch } from '../helpers';

const s = scratch('dw-commit-crash-');
after(() => s.cleanup());

/** Makes the mutating calls on `path` fail from the (budget+1)-th on; returns the undo. */
function failAfter(path: string, budget: number): { undo: () => void; crashed: () => boolean } {
  const proto = ImageFile.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const saved: Record<string, (...a: unknown[]) => Promise<unknown>> = {};
  let left = budget;
  let hit = false;
  for (const m of ['write', 'truncate', 'sync']) {
    const orig = proto[m];
    saved[m] = orig;
    proto[m] = async function (this: ImageFile, ...a: unknown[]) {
      if (this.path === path && left-- <= 0) {
        hit = true;
        throw new Error('injected crash');
      }
      return orig.apply(this, a);
    };
  }
  return { undo: () => Object.assign(proto, saved), crashed: () => hit };
}

/** Runs makeEmpty on a fresh copy of `overlay` for each N until it completes; `verify` checks each stopped copy. */
async function crashEveryStep(overlay: string, verify: (copy: string, step: number) => void | Promise<void>, opts: { acceptChangedBacking?: boolean } = {}): Promise<number> {
  for (let n = 0; n < 500; n++) {
    const copy = overlay.replace(/(\.\w+)$/, `.crash$1`);
    copyFileSync(overlay, copy);
    const dev = await openImage(copy, { readOnly: false, backingPolicy: 'anywhere', acceptChangedBacking: opts.acceptChangedBacking });
    const f = failAfter(copy, n);
    try {
      await dev.makeEmpty!();
    } catch {
      // the injected crash
    } finally {
      await dev.close().catch(() => undefined);
      f.undo();
    }
    await verify(copy, n);
    if (!f.crashed()) return n;
  }
  throw new Error('makeEmpty never completed');
}

test('qcow2: a crash at any step of emptying leaves leaks at most, and the overlay reads as the base', async () => {
  const base = s.path('q.base.qcow2');
  const top = s.path('q.top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '8M']);
  qemuIo(base, 'qcow2', ['write -P 1 0 8M']);
  // 4 KiB clusters: an L2 table covers 2 MiB, so the overlay has four to empty.
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', base, '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 2 100k 12k', 'write -z 2M 64k', 'write -P 3 4100k 8k', 'write -P 4 7M 16k']);
  must('qemu-img', ['commit', '-d', top]);
  const steps = await crashEveryStep(top, (copy, n) => {
    const check = run('qemu-img', ['check', copy]);
    assert.ok(check.status === 0 || check.status === 3, `step ${n}: qemu-img check exited ${check.status}: ${check.stdout}${check.stderr}`);
    const cmp = run('qemu-img', ['compare', copy, base]);
    assert.equal(cmp.status, 0, `step ${n}: ${cmp.stdout}${cmp.stderr}`);
  });
  assert.ok(steps >= 6, `emptying took ${steps} steps`);
});

test('COW: a crash at any step of emptying leaves an overlay that reads as the backing file uml_moo -d wrote', async () => {
  const dir = s.path('cow');
  mkdirSync(dir);
  const back = `${dir}/back.img`;
  writeFileSync(back, Buffer.alloc(2 << 20, 7));
  utimesSync(back, 1700000000, 1700000000);
  const cow = `${dir}/disk.cow`;
  must('uml_mkcow', [cow, back]);
  for (const [off, v] of [[4096, 1], [1 << 20, 2], [(2 << 20) - 1024, 3]]) {
    writeFileSync(`${dir}/piece`, Buffer.alloc(1024, v));
    dwOk(['write', cow, String(off), `${dir}/piece`]);
  }
  must('uml_moo', ['-d', cow]);
  const expected = readFileSync(back);
  await crashEveryStep(
    cow,
    async (copy, n) => {
      const dev = await openImage(copy, { backingPolicy: 'anywhere', acceptChangedBacking: true });
      const b = Buffer.alloc(dev.size);
      await dev.read(0, b);
      await dev.close();
      assert.ok(b.equals(expected), `step ${n}: the overlay reads as the backing file`);
    },
    { acceptChangedBacking: true },
  );
});

test('VHDX: a crash at any step of emptying leaves a child that, its log replayed, reads as the model', async () => {
  const dir = s.path('vhdx');
  mkdirSync(dir);
  const parent = `${dir}/parent.vhdx`;
  const child = `${dir}/child.vhdx`;
  const model = `${dir}/model.raw`;
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', parent, '8M']);
  qemuIo(parent, 'vhdx', ['write -P 1 0 3M']);
  must('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', parent, model]);
  dwOk(['create', '-q', '-f', 'vhdx', '-b', 'parent.vhdx', '-F', 'vhdx', child]);
  for (const [off, len, v] of [[1000000, 70000, 0x41], [5 << 20, 1 << 20, 0x42]]) {
    writeFileSync(`${dir}/piece`, Buffer.alloc(len, v));
    dwOk(['write', child, String(off), `${dir}/piece`]);
    qemuIo(model, 'raw', [`write -P ${v} ${off} ${len}`]);
  }
  dwOk(['commit', '-d', child]);
  // The commit changed the parent's data write GUID: link the child to it again (unsafe rebase to the same parent).
  dwOk(['rebase', '-u', '-b', 'parent.vhdx', '-F', 'vhdx', child]);
  const expected = readFileSync(model);
  await crashEveryStep(child, async (copy, n) => {
    const dev = await openImage(copy, { backingPolicy: 'anywhere' }); // read-only: the log is replayed in memory
    const b = Buffer.alloc(dev.size);
    await dev.read(0, b);
    await dev.close();
    assert.ok(b.equals(expected), `step ${n}: the child reads as the model`);
  });
  assert.equal(dw(['compare', child, model]).status, 0);
});
