/**
 * Crash injection: a small sequence of writes is run again and again on a copy of the same image, stopping at
 * every I/O step in turn (a file whose write/truncate/sync throws after N calls). Every stopped image must read as
 * the state before or after the operation under way: read-only by us (the log replayed in memory), by us after
 * replaying it into the file, and, for images qemu opens, by qemu-img after `qemu-img check -r all` (so qemu
 * replays the log we wrote) with `qemu-img check` clean afterwards.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { ImageFile } from '../../src-main/block/file';
import type { BlockDevice, OpenOptions } from '../../src-main/block/types';
import { openVhdxFile } from '../../src-main/formats/vhdx/device';
import { openImage } from '../../src-main/registry';
import { dwOk, must, run, scratch } from '../helpers';
import { MiB } from './vhdx-common';

const s = scratch('dw-vhdx-crash-');
after(() => s.cleanup());

type Op = (d: BlockDevice, m: Buffer) => Promise<void>;
const w = (at: number, len: number, v: number): Op => async (d, m) => {
  const b = new Uint8Array(len).fill(v);
  await d.write(at, b);
  m.fill(v, at, at + len);
};
const z = (at: number, len: number): Op => async (d, m) => {
  await d.writeZeroes(at, len);
  m.fill(0, at, at + len);
};

const openBacking: OpenOptions['openBacking'] = (p) => openImage(p, { readOnly: true, backingPolicy: 'anywhere' });

/** Opens `path` for writing on a file whose mutating calls fail from the (budget+1)-th on. */
async function openFailing(path: string, budget: number): Promise<{ dev?: BlockDevice; file: ImageFile; close: () => Promise<void> }> {
  const file = await ImageFile.open(path, true);
  const realClose = file.close.bind(file);
  let left = budget;
  for (const m of ['write', 'truncate', 'sync'] as const) {
    const orig = (file[m] as (...a: unknown[]) => Promise<void>).bind(file);
    (file as unknown as Record<string, unknown>)[m] = async (...a: unknown[]) => {
      if (left-- <= 0) throw new Error('injected crash');
      return orig(...a);
    };
  }
  return { file, close: realClose };
}

async function readAll(path: string, readOnly: boolean, size: number): Promise<Buffer> {
  const dev = await openImage(path, { readOnly, backingPolicy: 'anywhere' });
  try {
    const b = Buffer.alloc(size);
    await dev.read(0, b);
    return b;
  } finally {
    await dev.close();
  }
}

/** The content after each op: [before any, after op 1, …], from one complete run on a copy. */
async function modelsOf(image: string, size: number, ops: Op[]): Promise<Buffer[]> {
  const copy = s.path('model-run.vhdx');
  copyFileSync(image, copy);
  const dev = await openImage(copy, { readOnly: false, backingPolicy: 'anywhere' });
  const m = Buffer.alloc(size);
  await dev.read(0, m);
  const models = [Buffer.from(m)];
  for (const op of ops) {
    await op(dev, m);
    models.push(Buffer.from(m));
  }
  await dev.close();
  assert.ok((await readAll(copy, true, size)).equals(m), 'the complete run reads as its model');
  return models;
}

/** Runs `ops` on copies of `image`, crashing after 0, 1, 2, … I/O steps until a run completes; checks every crashed copy. */
async function crashEverywhere(image: string, size: number, ops: Op[], qemuReads: boolean): Promise<number> {
  const pristine = readFileSync(image);
  const models = await modelsOf(image, size, ops);
  const seenByQemu = new Set<string>(); // a sync changes no bytes: identical files need qemu's view only once
  let checkedAfterReplay = 0;
  for (let budget = 0; ; budget++) {
    writeFileSync(image, pristine);
    const h = await openFailing(image, budget);
    let done = 0;
    let crashed = false;
    let dev: BlockDevice | undefined;
    try {
      dev = await openVhdxFile(h.file, { readOnly: false, backingPolicy: 'anywhere', openBacking });
      const m = Buffer.from(models[0]);
      for (const op of ops) {
        await op(dev, m);
        done++;
      }
      await dev.close();
    } catch (err) {
      crashed = true;
      assert.match(String((err as Error).message), /injected crash/, `a crash, not another failure: ${err}`);
      await dev?.backing?.close();
    }
    await h.close();
    if (!crashed) return budget;
    const label = `crash after ${budget} I/O steps (in op ${done + 1} of ${ops.length})`;
    const allowed = [models[done], models[Math.min(done + 1, ops.length)]];
    const before = readFileSync(image);
    const ro = await readAll(image, true, size);
    assert.ok(readFileSync(image).equals(before), `${label}: read-only reading changed the file`);
    assert.ok(allowed.some((a) => a.equals(ro)), `${label}: reads neither the old nor the new content`);
    const digest = createHash('sha1').update(before).digest('hex');
    if (qemuReads && !seenByQemu.has(digest)) {
      seenByQemu.add(digest);
      const copy = s.path('qemu-copy.vhdx');
      copyFileSync(image, copy);
      must('qemu-img', ['check', '-r', 'all', copy]);
      const raw = s.path('qemu-copy.raw');
      must('qemu-img', ['convert', '-O', 'raw', copy, raw]);
      assert.ok(readFileSync(raw).equals(ro), `${label}: qemu's replay of our log reads differently from our in-memory replay`);
    }
    const rw = await readAll(image, false, size); // replays into the file
    assert.ok(rw.equals(ro), `${label}: replay into the file reads differently from in memory`);
    if (qemuReads && seenByQemu.size > checkedAfterReplay) {
      checkedAfterReplay = seenByQemu.size;
      const c = run('qemu-img', ['check', image]);
      assert.equal(c.status, 0, `${label}: qemu-img check after our replay: ${c.stdout}${c.stderr}`);
    }
  }
}

test('crash at every I/O step of writes to a dynamic image: old or new content; our log replays in qemu too', async () => {
  const size = 4 * MiB;
  const p = s.path('dyn.vhdx');
  dwOk(['create', '-f', 'vhdx', '-o', 'block_size=1M', p, String(size)]);
  const ops: Op[] = [w(100 * 1024, 5000, 0x11), w(200 * 1024, 4096, 0x22), w(2 * MiB + 512, 70000, 0x33), z(2 * MiB, MiB), z(100 * 1024, 1000), w(3 * MiB + 10, 20, 0x44)];
  const steps = await crashEverywhere(p, size, ops, true);
  assert.ok(steps > 20, `the sequence has many I/O steps (${steps})`);
});

test('crash at every I/O step of writes to a differencing image: old or new content', async () => {
  const size = 3 * MiB;
  const base = s.path('base.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', base, String(size)]);
  must('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x5a 0 3M', base]);
  const child = s.path('child.vhdx');
  dwOk(['create', '-f', 'vhdx', '-b', 'base.vhdx', child]);
  const ops: Op[] = [w(1000, 3000, 0x11), w(700 * 1024, 512, 0x22), w(MiB + 4096, 8192, 0x33), z(2 * MiB, MiB), w(1000, 100, 0x44)];
  const steps = await crashEverywhere(child, size, ops, false);
  assert.ok(steps > 15, `the sequence has many I/O steps (${steps})`);
});

test('a session long enough to wrap the log, stopped before close: its newest entry, split by the wrap, replays here and in qemu', async () => {
  const size = 600 * MiB;
  const p = s.path('wrap.vhdx');
  dwOk(['create', '-f', 'vhdx', '-o', 'block_size=1M,log_size=1M,block_state_zero=off', p, String(size)]);
  const pristine = readFileSync(p);
  const file = await ImageFile.open(p, true);
  const dev = await openVhdxFile(file, { readOnly: false, backingPolicy: 'none', openBacking });
  const written: Array<[number, number]> = []; // offset, byte value
  // Zeroing blocks 511 and 512 changes two BAT pages: one 12 KiB entry; then 127 entries of 8 KiB each, so that
  // the last one starts 4 KiB before the end of the 1 MiB log and ends past its start.
  await dev.writeZeroes(511 * MiB, 2 * MiB);
  for (let i = 0; i < 127; i++) {
    const v = (i % 250) + 1;
    await dev.write(i * MiB + 512, new Uint8Array(4096).fill(v));
    written.push([i * MiB + 512, v]);
  }
  await file.close(); // stopped: no flush, no close; the header still names the log
  const bytes = readFileSync(p);
  const logEnd = 2 * MiB;
  assert.equal(bytes.toString('latin1', logEnd - 4096, logEnd - 4092), 'loge', 'the newest entry starts in the last log sector');
  // Put the BAT back as it was before the session, as if none of its in-place writes had reached the disk.
  const batStart = 3 * MiB;
  bytes.set(pristine.subarray(batStart, batStart + MiB), batStart);
  writeFileSync(p, bytes);
  const ro = await openImage(p, { readOnly: true, backingPolicy: 'none' });
  for (const [at, v] of [...written, [600 * MiB - 4096, 0], [127 * MiB + 512, 0]] as Array<[number, number]>) {
    const b = new Uint8Array(4096);
    await ro.read(at, b);
    assert.ok(b.every((x) => x === v), `read-only, log replayed in memory: ${at} reads ${v}`);
  }
  await ro.close();
  assert.ok(readFileSync(p).equals(bytes));
  const copy = s.path('wrap-qemu.vhdx');
  copyFileSync(p, copy);
  must('qemu-img', ['check', '-r', 'all', copy]);
  // qemu replays our wrapped entry to the same content.
  must('qemu-io', ['-f', 'vhdx', ...written.flatMap(([at, v]) => ['-c', `read -q -P ${v} ${at} 4096`]), '-c', `read -q -P 0 ${127 * MiB} 512`, copy]);
});
