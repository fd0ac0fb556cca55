/**
 * Raw images: `diskwright write`/`read` round trips checked through qemu-io's view (read -P), `create -f raw`
 * with preallocation off/full against qemu-img's sizes and allocation, and resize grow/shrink against
 * qemu-img resize on twin files.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { allocated } from './raw-common';

const s = scratch('dw-raw-rw-');
after(() => s.cleanup());

const qio = (p: string, cmds: string[]) => run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), p]);

test('write then qemu-io reads the pattern; qemu-io writes then read returns it (odd offsets, the last byte)', () => {
  const p = s.path('rw.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', p, '2M']);
  const cases: Array<[number, number, number]> = [
    [0, 512, 0x11],
    [12345, 4096, 0x22],
    [1048575, 3, 0x33],
    [2097152 - 1, 1, 0x44],
    [700000, 70000, 0x55],
  ];
  for (const [off, len, pat] of cases) {
    const f = s.path(`pat-${off}.bin`);
    writeFileSync(f, Buffer.alloc(len, pat));
    dwOk(['write', p, String(off), f]);
    const r = qio(p, [`read -P 0x${pat.toString(16)} ${off} ${len}`]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.ok(!/Pattern verification failed/.test(r.stdout + r.stderr), `qemu-io sees our write at ${off}`);
  }
  // The other way round, through standard output.
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 1000000 1000', p]);
  const got = dwOk(['read', p, '1000000', '1000']).stdoutBytes;
  assert.ok(got.equals(Buffer.alloc(1000, 0x66)));
  // Standard input works for write.
  const r = dw(['write', p, '5', '-'], { input: Buffer.from('hello') });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qio(p, ['read -P 0x68 5 1']).status, 0);
  assert.ok(readFileSync(p).subarray(5, 10).equals(Buffer.from('hello')));
  // The file's length never changes.
  assert.equal(statSync(p).size, 2 * 1024 * 1024);
});

test('read and write outside the image are refused with one line; the image is left alone', () => {
  const p = s.path('bounds.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', p, '1M']);
  const f = s.path('four.bin');
  writeFileSync(f, Buffer.alloc(4096, 1));
  for (const args of [['write', p, '1048575', f], ['read', p, '1048000', '4096'], ['read', p, '-1', '1']]) {
    const r = dw(args);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.equal(statSync(p).size, 1024 * 1024);
  assert.equal(allocated(p) <= 4096, true);
  // qemu-io refuses the same write past the end.
  const q = qio(p, ['write 1048575 4096']);
  assert.match(q.stdout + q.stderr, /write failed/i);
  assert.equal(statSync(p).size, 1024 * 1024);
});

test('create -f raw: sizes as qemu-img (rounded up to 512), preallocation=off stays sparse, full allocates everything', () => {
  for (const size of ['10M', '1000', '1', '0', '3G']) {
    for (const prealloc of size === '3G' ? ['off'] : ['off', 'full']) {
      const q = s.path(`cq-${size}-${prealloc}.raw`);
      const o = s.path(`co-${size}-${prealloc}.raw`);
      must('qemu-img', ['create', '-q', '-f', 'raw', '-o', `preallocation=${prealloc}`, q, size]);
      dwOk(['create', '-q', '-f', 'raw', '-o', `preallocation=${prealloc}`, o, size]);
      assert.equal(statSync(o).size, statSync(q).size, `${size} ${prealloc}: file size`);
      const qi = JSON.parse(must('qemu-img', ['info', '--output', 'json', q]).stdout);
      const oi = JSON.parse(must('qemu-img', ['info', '--output', 'json', o]).stdout);
      assert.equal(oi['virtual-size'], qi['virtual-size']);
      if (prealloc === 'full') assert.equal(oi['actual-size'], qi['actual-size'], `${size}: full preallocation allocates what qemu-img allocates`);
      // qemu-img allocates the first 4 KiB block of a sparse raw file (for its alignment probing); we need not.
      else assert.ok(oi['actual-size'] <= qi['actual-size'], `${size}: off stays at most as allocated as qemu-img's`);
      assert.equal(must('qemu-img', ['compare', q, o]).status, 0);
    }
  }
});

test('create -f raw -o help lists the options; an unknown option or value gives one line, like qemu-img', () => {
  const help = dwOk(['create', '-f', 'raw', '-o', 'help']).stdout;
  assert.match(help, /preallocation/);
  // qemu-img lists preallocation under its file protocol, not the raw format; the heading is the same.
  assert.match(help, /^Supported raw options:/);
  assert.match(must('qemu-img', ['create', '-f', 'raw', '-o', 'help']).stdout, /^Supported raw options:/);
  for (const opt of ['colour=blue', 'preallocation=sideways']) {
    const r = dw(['create', '-f', 'raw', '-o', opt, s.path('x.raw'), '1M']);
    assert.equal(r.status, 1, opt);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.notEqual(run('qemu-img', ['create', '-f', 'raw', '-o', opt, s.path('xq.raw'), '1M']).status, 0);
  }
});

test('resize grow and shrink: the same file lengths as qemu-img resize, data kept, shrink needs --shrink', () => {
  const q = s.path('rq.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', q, '1M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', q]);
  const o = s.path('ro.raw');
  copyFileSync(q, o);
  const steps: string[][] = [['3M'], ['+1M'], ['--shrink', '1000001'], ['+1M'], ['--shrink', '--', '-512K'], ['--shrink', '512K'], ['4G']];
  for (const step of steps) {
    const size = step[step.length - 1];
    const flags = step.slice(0, -1).filter((f) => f !== '--');
    const qr = run('qemu-img', ['resize', '-f', 'raw', ...flags, q, ...(size.startsWith('-') ? ['--', size] : [size])]);
    const orr = dw(['resize', '-f', 'raw', ...flags, o, ...(size.startsWith('-') ? ['--', size] : [size])]);
    assert.equal(orr.status, qr.status, `${step.join(' ')}: exit (${qr.stderr}${orr.stderr})`);
    assert.equal(orr.stdout.trim(), qr.stdout.trim(), `${step.join(' ')}: message`);
    assert.equal(statSync(o).size, statSync(q).size, `${step.join(' ')}: length`);
  }
  assert.equal(must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', q, o]).status, 0);
  // Shrinking without --shrink: both refuse and leave the file as it is.
  const before = statSync(o).size;
  const qr = run('qemu-img', ['resize', '-f', 'raw', q, '1M']);
  const orr = dw(['resize', '-f', 'raw', o, '1M']);
  assert.notEqual(qr.status, 0);
  assert.equal(orr.status, 1);
  assert.equal(orr.stderr.trim().split('\n').length, 1);
  assert.equal(statSync(o).size, before);
});
