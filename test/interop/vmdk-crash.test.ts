/**
 * Crash safety of writes into sparse VMDK extents, judged by qemu: a write stopped after each of its I/O steps
 * in turn (every file write from then on fails, as if the process died there) leaves an image qemu-img check
 * passes and where every grain reads, under qemu-img, either as before or as after the write. Also a
 * `diskwright write` child killed at a few seeded moments, and the count of file writes per MiB of new data.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { CLI, must, run, scratch, seededRandom } from '../helpers';
import { io, qemuCreate } from './vmdk-common';
import { openImage } from '../../src-main/registry';
import { ImageFile } from '../../src-main/block/file';

const s = scratch('dw-vmdk-crash-');
after(() => s.cleanup());

const GRAIN = 65536;
const MiB = 1 << 20;

/** Runs `fn` with every ImageFile write counted; after `limit` writes each further write throws (the crash). */
async function withWrites<T>(limit: number, fn: () => Promise<T>): Promise<{ writes: number; result?: T; crashed: boolean }> {
  const real = ImageFile.prototype.write;
  let writes = 0;
  ImageFile.prototype.write = function (this: ImageFile, pos: number, data: Uint8Array) {
    if (writes >= limit) return Promise.reject(new Error('simulated crash'));
    writes++;
    return real.call(this, pos, data);
  };
  try {
    const result = await fn();
    return { writes, result, crashed: false };
  } catch {
    return { writes, crashed: true };
  } finally {
    ImageFile.prototype.write = real;
  }
}

/** Writes `writes` through the registry's device (as `diskwright write` does), then closes it. */
async function apply(image: string, writes: Array<[number, number, number]>): Promise<void> {
  const dev = await openImage(image, { readOnly: false, backingPolicy: 'anywhere' });
  try {
    for (const [off, len, pat] of writes) await dev.write(off, new Uint8Array(len).fill(pat));
  } finally {
    await dev.close().catch(() => undefined);
  }
}

const toRaw = (image: string, raw: string) => must('qemu-img', ['convert', '-O', 'raw', image, raw]);

/** qemu-img check passes and every grain of `image` reads (under qemu) as in `before` or in `afterRaw`. */
function assertOldOrNew(image: string, before: Buffer, afterRaw: Buffer, label: string): void {
  const c = run('qemu-img', ['check', image]);
  assert.equal(c.status, 0, `${label}: qemu-img check: ${c.stdout}${c.stderr}`);
  const raw = s.path('crashed.raw');
  toRaw(image, raw);
  const got = readFileSync(raw);
  for (let g = 0; g < got.length; g += GRAIN) {
    const x = got.subarray(g, g + GRAIN);
    assert.ok(x.equals(before.subarray(g, g + GRAIN)) || x.equals(afterRaw.subarray(g, g + GRAIN)), `${label}: grain at ${g} is neither old nor new`);
  }
}

/**
 * Zeroes both grain directories of a qemu-made monolithicSparse from entry 1 on: those grain tables no longer
 * exist and are made on demand by a write (qemu cannot do that: it only fills tables it finds).
 */
function dropTables(image: string): void {
  const b = readFileSync(image);
  const capacity = Number(b.readBigUInt64LE(12));
  const entries = Math.ceil(capacity / (512 * 128));
  for (const at of [Number(b.readBigUInt64LE(48)), Number(b.readBigUInt64LE(56))]) b.fill(0, at * 512 + 4, at * 512 + entries * 4);
  writeFileSync(image, b);
}

// Over old data and holes, partial grains at both ends, across the 32 MiB grain table boundary.
const WRITES: Array<[number, number, number]> = [
  [32 * MiB - 3 * GRAIN - 1000, 6 * GRAIN + 3000, 0x77],
  [100 * 1024, 200 * 1024, 0x78],
];

for (const tables of ['preallocated', 'made on demand']) {
  test(`a write stopped after each of its I/O steps (grain tables ${tables}): qemu-img check passes, every grain old or new`, async () => {
    const pristine = s.path(`pristine-${tables}.vmdk`);
    qemuCreate(pristine, '', '40M');
    io(pristine, ['write -P 0x11 31M 960k', 'write -P 0x12 0 128k']);
    if (tables !== 'preallocated') dropTables(pristine);
    const before = s.path('before.raw');
    toRaw(pristine, before);
    const expected = s.path('expected.raw');
    copyFileSync(before, expected);
    must('qemu-io', ['-f', 'raw', ...WRITES.flatMap(([o, l, p]) => ['-c', `write -P ${p} ${o} ${l}`]), expected]);
    const img = s.path('work.vmdk');
    copyFileSync(pristine, img);
    const all = await withWrites(Infinity, () => apply(img, WRITES));
    assert.ok(!all.crashed);
    assertOldOrNew(img, readFileSync(before), readFileSync(expected), 'no crash');
    assert.ok(readFileSync(s.path('crashed.raw')).equals(readFileSync(expected)), 'uninterrupted, the write lands whole');
    let total = 0;
    for (let limit = 0; ; limit++) {
      copyFileSync(pristine, img);
      const r = await withWrites(limit, () => apply(img, WRITES));
      assertOldOrNew(img, readFileSync(before), readFileSync(expected), `stopped after ${limit} writes`);
      if (!r.crashed) break;
      total = limit + 1;
    }
    assert.ok(total >= 4, `the workload has several steps (${total})`);
  });
}

test('a `diskwright write` killed at seeded moments leaves qemu-img check clean and every grain old or new', async () => {
  const pristine = s.path('kill-pristine.vmdk');
  qemuCreate(pristine, '', '24M');
  io(pristine, ['write -P 0x21 4M 4M']);
  const before = s.path('kill-before.raw');
  toRaw(pristine, before);
  const data = s.path('kill-data.bin');
  writeFileSync(data, Buffer.alloc(16 * MiB, 0x5a));
  const expected = s.path('kill-expected.raw');
  copyFileSync(before, expected);
  must('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a ${2 * MiB + 4096} ${16 * MiB}`, expected]);
  const img = s.path('kill.vmdk');
  for (const seed of [1, 2, 3, 4]) {
    copyFileSync(pristine, img);
    const rnd = seededRandom(seed);
    const child = spawn(process.execPath, [CLI, 'write', img, String(2 * MiB + 4096), data], { stdio: 'ignore' });
    const delay = 150 + Math.floor(rnd() * 250);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), delay);
      child.on('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
    assertOldOrNew(img, readFileSync(before), readFileSync(expected), `seed ${seed}, killed after ${delay} ms`);
  }
});

test('file writes per MiB of new data: one data write and one entry write per table copy for each write call', async (t) => {
  const img = s.path('count.vmdk');
  qemuCreate(img, '', '16M');
  const r = await withWrites(Infinity, () => apply(img, [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [i * MiB, MiB, 0x40 + i] as [number, number, number])));
  // 8 MiB in 1 MiB calls: 8 × (data + primary entries + redundant entries), plus the CID on the first write.
  t.diagnostic(`${r.writes} file writes for 8 MiB of new grains (${((r.writes - 1) / 8).toFixed(1)} per MiB; grain by grain it was 48 per MiB)`);
  assert.ok(r.writes <= 8 * 3 + 1, `${r.writes} writes`);
  const raw = s.path('count.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '16M']);
  must('qemu-io', ['-f', 'raw', ...[0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => ['-c', `write -P ${0x40 + i} ${i * MiB} ${MiB}`]), raw]);
  assert.equal(run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', img, raw]).status, 0);
});
