/**
 * Raw images made by qemu-img/qemu-io: `diskwright convert -O raw` gives the bytes `qemu-img convert -O raw`
 * gives and stays as sparse; `convert -n` writes into an existing target as qemu-img does; `diskwright compare`
 * gives qemu-img compare's exit codes and messages (identical, different with the same first offset,
 * different sizes, strict mode, missing files).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { RAW_CASES, allocated } from './raw-common';

const s = scratch('dw-raw-conv-');
after(() => s.cleanup());

RAW_CASES.forEach((c, i) => {
  test(`raw ${c.name}: convert -O raw equals qemu-img's output byte for byte and stays sparse`, () => {
    const src = s.path(`src${i}.raw`);
    c.make(src);
    const before = readFileSync(src);
    const q = s.path(`q${i}.raw`);
    const o = s.path(`o${i}.raw`);
    must('qemu-img', ['convert', '-O', 'raw', src, q]);
    dwOk(['convert', '-O', 'raw', src, o]);
    const qb = readFileSync(q);
    const ob = readFileSync(o);
    assert.equal(ob.length, qb.length, 'length');
    assert.ok(ob.equals(qb), 'content');
    assert.equal(must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', q, o]).stdout.trim(), 'Images are identical.');
    assert.ok(allocated(o) <= allocated(q), `ours allocates ${allocated(o)} bytes, qemu-img ${allocated(q)}`);
    assert.ok(readFileSync(src).equals(before), 'the source is not modified');
    // And through qcow2 and back: qemu-img's qcow2 of our output reads the same.
    dwOk(['compare', src, o]);
  });
});

test('convert -n into an existing larger target: same bytes as qemu-img convert -n; a smaller target fails in both', () => {
  const src = s.path('n-src.raw');
  RAW_CASES[1].make(src); // 4 MiB with holes and zero runs
  const tq = s.path('n-q.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', tq, '6M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 0 6M', tq]); // old content everywhere: zeros must overwrite it
  const to = s.path('n-o.raw');
  copyFileSync(tq, to);
  must('qemu-img', ['convert', '-n', '-O', 'raw', src, tq]);
  dwOk(['convert', '-n', '-O', 'raw', src, to]);
  assert.ok(readFileSync(to).equals(readFileSync(tq)), 'convert -n content');
  const small = s.path('n-small.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', small, '1M']);
  const smallBefore = readFileSync(small);
  assert.equal(run('qemu-img', ['convert', '-n', '-O', 'raw', src, small]).status, 1);
  const r = dw(['convert', '-n', '-O', 'raw', src, small]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.ok(readFileSync(small).equals(smallBefore), 'a refused convert -n leaves the target alone');
});

function both(args: string[]): { q: ReturnType<typeof run>; o: ReturnType<typeof run> } {
  return { q: run('qemu-img', ['compare', ...args]), o: dw(['compare', ...args]) };
}

function assertSameVerdict(args: string[], label: string): void {
  const { q, o } = both(args);
  assert.equal(o.status, q.status, `${label}: exit code (qemu-img said: ${q.stdout}${q.stderr})`);
  assert.equal(o.stdout.trim(), q.stdout.trim(), `${label}: message`);
}

test('compare: identical, differing (first differing sector as qemu-img names it), different sizes, strict mode', () => {
  const a = s.path('c-a.raw');
  RAW_CASES[1].make(a);
  const same = s.path('c-same.raw');
  copyFileSync(a, same);
  assertSameVerdict([a, same], 'identical copy');
  assertSameVerdict(['-s', a, same], 'identical copy, strict');

  // A copy with the same content but different allocation: equal normally, a strict mismatch only if allocation differs.
  const dense = s.path('c-dense.raw');
  writeFileSync(dense, readFileSync(a));
  assertSameVerdict([a, dense], 'same content, fully allocated');

  for (const at of [0, 1, 511, 512, 300000, 1048576 + 100, 3 * 1048576 + 7, 4194303]) {
    const b = s.path(`c-diff-${at}.raw`);
    copyFileSync(a, b);
    must('qemu-io', ['-f', 'raw', '-c', `write -P 0x3c ${at} 1`, b]);
    assertSameVerdict([a, b], `one byte differs at ${at}`);
    assertSameVerdict(['-s', a, b], `one byte differs at ${at}, strict`);
  }

  const longer = s.path('c-longer.raw');
  copyFileSync(a, longer);
  must('qemu-img', ['resize', '-q', '-f', 'raw', longer, '5M']);
  assertSameVerdict([a, longer], 'longer, zero tail');
  assertSameVerdict([longer, a], 'longer first');
  assertSameVerdict(['-s', a, longer], 'longer, strict');
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 4718592 10', longer]);
  assertSameVerdict([a, longer], 'longer with data in the tail');
  const shorterDiff = s.path('c-shorter-diff.raw');
  copyFileSync(longer, shorterDiff);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 2 1000 1', shorterDiff]);
  assertSameVerdict([a, shorterDiff], 'different content and different size');
});

test('compare: a missing or unreadable image exits 2 in both tools, with one line from us', () => {
  const a = s.path('m-a.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', a, '1M']);
  for (const args of [[a, s.path('nope.raw')], [s.path('nope.raw'), a], [a, s.dir]]) {
    const { q, o } = both(args);
    assert.equal(q.status, 2);
    assert.equal(o.status, 2, o.stderr);
    assert.equal(o.stderr.trim().split('\n').length, 1, o.stderr);
    assert.ok(!o.stderr.includes('    at '));
  }
});
