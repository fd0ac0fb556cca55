/**
 * Every failure of the command line is exactly one plain line on stderr (no stack trace) and a non-zero exit,
 * with qemu-img's exit code for the same mistake: missing files, directories, empty and unreadable files,
 * unknown formats, bad sizes, unknown commands and flags, missing arguments. Plus `create -o help` and
 * `check` on raw (63).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dw, must, run, scratch } from '../helpers';

const s = scratch('dw-cli-err-');
after(() => {
  chmodSync(s.dir, 0o755);
  s.cleanup();
});

const img = s.path('ok.raw');
must('qemu-img', ['create', '-q', '-f', 'raw', img, '1M']);
const dir = s.path('a-folder');
mkdirSync(dir);
const empty = s.path('empty.img');
writeFileSync(empty, Buffer.alloc(0));
const missing = s.path('missing.img');
const out = s.path('out.img');

function assertOneLine(args: string[], label: string, qemuArgs: string[] | null = args): void {
  const r = dw(args);
  assert.notEqual(r.status, 0, `${label}: exit code`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `${label}: stderr should be one line, was:\n${r.stderr}`);
  assert.ok(lines[0].startsWith('diskwright: '), `${label}: ${lines[0]}`);
  assert.ok(!r.stderr.includes('    at '), `${label}: stack trace`);
  assert.ok(!/RangeError|TypeError|undefined|\[object/.test(r.stderr), `${label}: ${r.stderr}`);
  if (qemuArgs) {
    const q = run('qemu-img', qemuArgs);
    assert.equal(r.status, q.status, `${label}: exit code like qemu-img's (${q.stderr.trim()})`);
  }
}

const CASES: Array<[string, string[]]> = [
  ['info on a missing file', ['info', missing]],
  ['map on a missing file', ['map', missing]],
  ['check on a missing file', ['check', missing]],
  ['convert from a missing file', ['convert', '-O', 'raw', missing, out]],
  ['compare with a missing file', ['compare', img, missing]],
  ['info on a directory', ['info', dir]],
  ['map on a directory', ['map', dir]],
  ['convert from a directory', ['convert', '-O', 'raw', dir, out]],
  ['info -f with an unknown format', ['info', '-f', 'floppy', img]],
  ['create with an unknown format', ['create', '-f', 'floppy', out, '1M']],
  ['convert to an unknown format', ['convert', '-O', 'floppy', img, out]],
  ['create with size 12Q', ['create', '-f', 'raw', out, '12Q']],
  ['create with -o size=12Q', ['create', '-f', 'raw', '-o', 'size=12Q', out]],
  ['resize to 12Q', ['resize', img, '12Q']],
  ['create with a negative size', ['create', '-f', 'raw', out, '-5']],
  ['an unknown command', ['frobnicate', img]],
  ['an unknown long flag', ['info', '--bogus', img]],
  ['an unknown short flag', ['info', '-Z', img]],
  ['a flag missing its value', ['info', img, '-f']],
  ['info without an image', ['info']],
  ['create without an image', ['create', '-f', 'raw']],
  ['create without a size', ['create', '-f', 'raw', out]],
  ['convert with one file', ['convert', img]],
  ['compare with one file', ['compare', img]],
  ['resize without a size', ['resize', img]],
  ['map without an image', ['map']],
  ['check without an image', ['check']],
];

for (const [label, args] of CASES) {
  test(`${label}: one line on stderr, qemu-img's exit code`, () => assertOneLine(args, label));
}

test('read/write with missing arguments or a missing file: one line, exit 1 (qemu-img has no such commands)', () => {
  assertOneLine(['read', img, '0'], 'read without a length', null);
  assertOneLine(['read', missing, '0', '512'], 'read from a missing file', null);
  assertOneLine(['write', img, '0'], 'write without an input', null);
  assertOneLine(['write', img, '0', missing], 'write from a missing input file', null);
  assertOneLine(['read', img, 'lots', '512'], 'read at a non-number offset', null);
});

test('info on a zero-length file without -f: one line saying it is empty (qemu-img takes it as a 0-byte raw image)', () => {
  const r = dw(['info', empty]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /empty/);
  const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', empty]).stdout);
  assert.equal(q['virtual-size'], 0);
  // With -f raw we agree with qemu-img.
  const o = JSON.parse(dw(['info', '-f', 'raw', '--output', 'json', empty]).stdout);
  assert.equal(o['virtual-size'], 0);
});

const isRoot = process.getuid?.() === 0;
test(
  isRoot
    ? 'an unreadable file (chmod 000): skipped, running as root, whom file permissions do not stop'
    : 'an unreadable file (chmod 000): one line, exit 1 like qemu-img',
  { skip: isRoot ? 'root reads any file regardless of its mode' : false },
  () => {
    const locked = s.path('locked.raw');
    must('qemu-img', ['create', '-q', '-f', 'raw', locked, '1M']);
    chmodSync(locked, 0o000);
    try {
      assertOneLine(['info', locked], 'unreadable file');
      assertOneLine(['map', locked], 'unreadable file (map)');
    } finally {
      chmodSync(locked, 0o644);
    }
  },
);

test('create -f FMT -o help lists the options of each format and exits 0', () => {
  for (const fmt of ['raw', 'qcow2', 'vmdk', 'vhdx', 'parallels', 'cow']) {
    const r = dw(['create', '-f', fmt, '-o', 'help']);
    assert.equal(r.status, 0, `${fmt}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.ok(r.stdout.trim().length > 0, fmt);
  }
  assert.match(dw(['create', '-f', 'raw', '-o', 'help']).stdout, /preallocation/);
});

test('check on a raw image exits 63 with one line, as qemu-img does', () => {
  const q = run('qemu-img', ['check', img]);
  const r = dw(['check', img]);
  assert.equal(q.status, 63);
  assert.equal(r.status, 63);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /does not support checks/);
  assert.equal(dw(['check', '-f', 'raw', img]).status, 63);
});

test('--help and --version exit 0; no command at all exits 1 with the usage', () => {
  assert.equal(dw(['--help']).status, 0);
  assert.match(dw(['--help']).stdout, /usage: diskwright/);
  assert.equal(dw(['--version']).status, 0);
  const r = dw([]);
  assert.equal(r.status, 1);
  assert.equal(run('qemu-img', []).status, 1);
});

test('a target in a missing folder, under a file, or that is a folder: one line naming the target, and no file left behind', () => {
  const q = s.path('src.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', q, '1M']);
  const cases: Array<[string[], RegExp]> = [
    [['convert', '-O', 'raw', q, s.path('no-such-folder/x.raw')], /x\.raw: the folder .*no-such-folder does not exist/],
    [['create', '-f', 'qcow2', s.path('no-such-folder/x.qcow2'), '1M'], /x\.qcow2: the folder .*no-such-folder does not exist/],
    [['convert', '-O', 'qcow2', q, dir], /a-folder: is a directory/],
    [['create', '-f', 'raw', dir, '1M'], /a-folder: is a directory/],
    [['create', '-f', 'raw', `${img}/x.raw`, '1M'], /is not a folder/],
  ];
  for (const [args, message] of cases) {
    const label = args.join(' ');
    assertOneLine(args, label, ['convert', 'create'].includes(args[0]) ? args : null);
    assert.match(dw(args).stderr, message, label);
    assert.doesNotMatch(dw(args).stderr, /diskwright-[0-9a-f]+\.tmp/, `${label}: names our temporary file`);
  }
  const leftovers = run('sh', ['-c', `ls -a ${JSON.stringify(s.dir)} ${JSON.stringify(dir)} | grep -c diskwright || true`]).stdout.trim();
  assert.equal(leftovers, '0');
});
