/**
 * The fast paths of convert and compare, judged by qemu-img: the pipelined copy (reads ahead, several writes
 * under way, qcow2 clusters allocated in runs that land while the next write goes on) leaves `qemu-img check`
 * clean and `qemu-img compare` identical for cluster sizes 512 B, 64 KiB and 2 MiB with refcount widths 1, 16
 * and 64 (512 B clusters with 64-bit refcounts make the refcount table grow many times during one convert);
 * the cache modes (-t) write the same image; the raw driver without the native hole-seeking helper converts
 * and compares to the same result; -B and -n still write what qemu-img writes; overlapping writes through the
 * device land in call order; and compare names the first difference as qemu-img does when it lies pieces
 * ahead of the first read.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { CLI, dw, dwOk, must, run, scratch } from '../helpers';
import { qemuIo } from '../oracles';
import { assertQemuAccepts, io } from './qcow2-common';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-convert-pipeline-');
after(() => s.cleanup());
let n = 0;

/**
 * 6 MiB + 3 KiB of guest data: patterned runs, a hole, all-zero 4 KiB blocks inside data, zeros written as
 * data, a run crossing 2 MiB boundaries, and data up to the very last byte (the size is no cluster multiple).
 */
function sourceRaw(): string {
  const size = 6 * 1048576 + 3072;
  const b = Buffer.alloc(size);
  const fill = (from: number, to: number, seed: number) => {
    for (let i = from; i < to; i++) b[i] = (seed * 7 + i * 13 + (i >> 9)) & 0xff || 1;
  };
  fill(0, 700000, 1);
  b.fill(0, 8192, 16384); // zero blocks inside data
  fill(1048576 + 512, 2 * 1048576 + 70000, 2); // unaligned start, crosses a 2 MiB boundary
  b.fill(0, 1048576 + 300000, 1048576 + 300000 + 65536);
  fill(3 * 1048576, 4 * 1048576 + 5000, 3);
  fill(5 * 1048576 + 4096, size, 4); // to the last byte
  const p = s.path(`src${n++}.raw`);
  writeFileSync(p, b);
  // Punch a real hole in the middle so the file is sparse where it reads as zero.
  must('fallocate', ['--punch-hole', '--offset', String(2 * 1048576 + 131072), '--length', String(917504), p]);
  return p;
}

const SRC = sourceRaw();

function qcow2Clean(image: string): void {
  const c = JSON.parse(must('qemu-img', ['check', '--output', 'json', image]).stdout);
  assert.equal(c['check-errors'] ?? 0, 0, `check errors in ${image}`);
  assert.equal(c.corruptions ?? 0, 0, `corruptions in ${image}`);
  assert.equal(c.leaks ?? 0, 0, `leaks in ${image}`);
}

function identical(a: string, b: string): void {
  const r = run('qemu-img', ['compare', a, b]);
  assert.equal(r.status, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

for (const cluster of ['512', '64k', '2M']) {
  for (const bits of [1, 16, 64]) {
    test(`convert -O qcow2 -o cluster_size=${cluster},refcount_bits=${bits}: qemu-img check clean and identical, from raw and from qcow2, plain and -c`, () => {
      const opts = `cluster_size=${cluster},refcount_bits=${bits}`;
      const fromRaw = s.path(`b${n++}.qcow2`);
      dwOk(['convert', '-O', 'qcow2', '-o', opts, SRC, fromRaw]);
      qcow2Clean(fromRaw);
      identical(SRC, fromRaw);
      // A qcow2 source with another cluster size: clusters of source and target do not line up.
      const qsrc = s.path(`q${n++}.qcow2`);
      must('qemu-img', ['convert', '-O', 'qcow2', '-o', 'cluster_size=16k', SRC, qsrc]);
      const fromQcow2 = s.path(`b${n++}.qcow2`);
      dwOk(['convert', '-O', 'qcow2', '-o', opts, qsrc, fromQcow2]);
      qcow2Clean(fromQcow2);
      identical(SRC, fromQcow2);
      const compressed = s.path(`b${n++}.qcow2`);
      dwOk(['convert', '-c', '-O', 'qcow2', '-o', opts, SRC, compressed]);
      qcow2Clean(compressed);
      identical(SRC, compressed);
    });
  }
}

test('convert -t: unsafe and writeback write the same image as the default; an unknown mode fails like qemu-img and leaves nothing behind', () => {
  for (const fmt of ['raw', 'qcow2']) {
    const plain = s.path(`t${n++}.${fmt}`);
    dwOk(['convert', '-O', fmt, SRC, plain]);
    for (const mode of ['unsafe', 'writeback', 'none']) {
      const out = s.path(`t${n++}.${fmt}`);
      dwOk(['convert', '-t', mode, '-O', fmt, SRC, out]);
      identical(SRC, out);
      if (fmt === 'raw') assert.ok(readFileSync(out).equals(readFileSync(plain)), `-t ${mode} raw output`);
      else qcow2Clean(out);
    }
  }
  const q = run('qemu-img', ['convert', '-t', 'bogus', '-O', 'raw', SRC, s.path('never-q.raw')]);
  assert.equal(q.status, 1);
  assert.match(q.stderr, /Invalid cache option: bogus/);
  const before = readdirSync(s.dir).sort();
  const bad = dw(['convert', '-t', 'bogus', '-O', 'raw', SRC, s.path('never.raw')]);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim(), 'diskwright: Invalid cache option: bogus');
  assert.deepEqual(readdirSync(s.dir).sort(), before, 'no target and no temporary file');
});

/** Runs our CLI without the native helper (the raw driver detects zeros by reading). */
function dwNoNative(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, DISKWRIGHT_NO_NATIVE: '1' }, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('without the native helper, convert writes the same bytes and stays as sparse as qemu-img, and compare gives the same verdicts', () => {
  const q = s.path(`nn${n++}.raw`);
  must('qemu-img', ['convert', '-O', 'raw', SRC, q]);
  const native = s.path(`nn${n++}.raw`);
  dwOk(['convert', '-O', 'raw', SRC, native]);
  const fallback = s.path(`nn${n++}.raw`);
  assert.equal(dwNoNative(['convert', '-O', 'raw', SRC, fallback]).status, 0);
  assert.ok(readFileSync(fallback).equals(readFileSync(native)), 'fallback output equals the native output');
  assert.ok(readFileSync(fallback).equals(readFileSync(q)), 'fallback output equals qemu-img output');
  // Equally sparse: qemu-img sees the same data and holes in all three files (st_blocks also counts the file
  // system's extent blocks, which depend on the order of the writes, so the maps are compared instead).
  const map = (p: string) => must('qemu-img', ['map', '--output', 'json', '-f', 'raw', p]).stdout;
  assert.equal(map(fallback), map(q), 'fallback map');
  assert.equal(map(native), map(q), 'native map');
  const qc = s.path(`nn${n++}.qcow2`);
  assert.equal(dwNoNative(['convert', '-O', 'qcow2', SRC, qc]).status, 0);
  qcow2Clean(qc);
  identical(SRC, qc);
  // Compare: identical, and a difference far into the image named at the same offset as qemu-img names it.
  assert.equal(dwNoNative(['compare', SRC, native]).stdout, must('qemu-img', ['compare', SRC, native]).stdout);
  const changed = s.path(`nn${n++}.raw`);
  const b = readFileSync(SRC);
  b[5 * 1048576 + 777] ^= 0xff;
  writeFileSync(changed, b);
  const ours = dwNoNative(['compare', SRC, changed]);
  const theirs = run('qemu-img', ['compare', SRC, changed]);
  assert.equal(ours.status, theirs.status);
  assert.equal(ours.stdout, theirs.stdout);
});

test('compare: the first of two differences lying pieces ahead of the first read is named as qemu-img names it (raw and qcow2, plain and strict)', () => {
  const b = readFileSync(SRC);
  b[3 * 1048576 + 100000] ^= 0x5a;
  b[5 * 1048576 + 9000] ^= 0x5a;
  const changed = s.path(`c${n++}.raw`);
  writeFileSync(changed, b);
  const qa = s.path(`c${n++}.qcow2`);
  const qb = s.path(`c${n++}.qcow2`);
  must('qemu-img', ['convert', '-O', 'qcow2', SRC, qa]);
  must('qemu-img', ['convert', '-O', 'qcow2', '-o', 'cluster_size=4k', changed, qb]);
  for (const [x, y] of [
    [SRC, changed],
    [qa, qb],
    [qa, changed],
  ]) {
    for (const strict of [[], ['-s']]) {
      const ours = dw(['compare', ...strict, x, y]);
      const theirs = run('qemu-img', ['compare', ...strict, x, y]);
      assert.equal(ours.status, theirs.status, `${strict.join('')} ${x} ${y}`);
      assert.equal(ours.stdout, theirs.stdout, `${strict.join('')} ${x} ${y}`);
    }
  }
});

test('convert -B and -n through the pipeline write what qemu-img writes', () => {
  const base = s.path(`base${n++}.raw`);
  writeFileSync(base, Buffer.alloc(4 * 1048576, 0x11));
  const top = s.path(`top${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]);
  io(top, ['write -P 0x22 100k 300k', 'write -z 1M 64k', 'write -P 0x33 3M 1M', 'write -P 0 2M 8k']);
  const ours = s.path(`bo${n++}.qcow2`);
  const theirs = s.path(`bt${n++}.qcow2`);
  dwOk(['convert', '-O', 'qcow2', '-B', base, '-F', 'raw', top, ours]);
  must('qemu-img', ['convert', '-O', 'qcow2', '-B', base, '-F', 'raw', top, theirs]);
  qcow2Clean(ours);
  identical(top, ours);
  identical(theirs, ours);
  // -n into an existing qcow2 full of other data: every byte of the source wins, zeros included.
  for (const fmt of ['qcow2', 'raw']) {
    const target = s.path(`n${n++}.${fmt}`);
    must('qemu-img', ['create', '-q', '-f', fmt, target, '8M']);
    qemuIo(target, fmt, ['write -P 0x77 0 8M']);
    dwOk(['convert', '-n', '-O', fmt, SRC, target]);
    const expected = s.path(`ne${n++}.raw`);
    const b = Buffer.alloc(8 * 1048576, 0x77);
    readFileSync(SRC).copy(b);
    writeFileSync(expected, b);
    const r = run('qemu-img', ['compare', '-F', 'raw', target, expected]);
    assert.equal(r.status, 0, `${fmt}: ${r.stdout}${r.stderr}`);
    if (fmt === 'qcow2') qcow2Clean(target);
  }
});

test('overlapping qcow2 writes issued without waiting land in call order; qemu-img check stays clean', async () => {
  for (const opts of ['cluster_size=4k', 'cluster_size=64k,extended_l2=on', 'cluster_size=512,refcount_bits=64']) {
    const img = s.path(`ov${n++}.qcow2`);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, img, '3M']);
    const mirror = Buffer.alloc(3 * 1048576);
    const dev = await openImage(img, { format: 'qcow2', readOnly: false });
    const pending: Array<Promise<void>> = [];
    let seed = 1;
    const write = (pos: number, len: number) => {
      const data = Buffer.alloc(len);
      for (let i = 0; i < len; i++) data[i] = (seed * 17 + i * 3) & 0xff || 1;
      seed++;
      data.copy(mirror, pos);
      pending.push(dev.write(pos, data));
    };
    // Whole clusters, then partial writes into clusters whose data is still landing, and zeroes between.
    write(0, 1048576);
    write(4096 + 100, 5000);
    write(65536 - 512, 1024);
    write(1048576 - 3000, 70000);
    pending.push(dev.writeZeroes(8192, 8192));
    mirror.fill(0, 8192, 16384);
    write(10000, 300);
    write(2 * 1048576, 1048576);
    write(2 * 1048576 + 512, 512);
    write(0, 512);
    await Promise.all(pending);
    const readBack = Buffer.alloc(mirror.length);
    await dev.read(0, readBack);
    assert.ok(readBack.equals(mirror), `${opts}: reads back what was written in call order`);
    await dev.flush();
    await dev.close();
    qcow2Clean(img);
    const expected = s.path(`ove${n++}.raw`);
    writeFileSync(expected, mirror);
    assertQemuAccepts(img, expected);
  }
});

test('deferred L2 entries past the cache bound are written by a queued flush mid-way (2 MiB clusters, writes 512 GiB apart); qemu-img reads them all', async () => {
  const img = s.path(`far${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', img, '6T']);
  const dev = await openImage(img, { format: 'qcow2', readOnly: false });
  const span = 512 * 1024 ** 3; // one L2 table's range at 2 MiB clusters; the deferred-table bound is 8
  const pending: Array<Promise<void>> = [];
  for (let k = 0; k < 11; k++) pending.push(dev.write(k * span + 4096, Buffer.alloc(8192, k + 1)));
  await Promise.all(pending);
  await dev.close();
  qcow2Clean(img);
  const checks = Array.from({ length: 11 }, (_, k) => `read -P ${k + 1} ${k * span + 4096} 8192`);
  checks.push(`read -P 0 ${3 * span} 4096`);
  must('qemu-io', ['-f', 'qcow2', ...checks.flatMap((c) => ['-c', c]), img]);
});
