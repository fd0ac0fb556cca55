/**
 * `diskwright rebase` against `qemu-img rebase` on the same images made by qemu-img and written by qemu-io:
 * safe mode onto a new qcow2 or raw backing file and onto none (-b ""): the results are identical under
 * qemu-img compare, name the same backing file, and pass qemu-img check; unsafe mode (-u) gives a file byte for
 * byte equal to qemu-img's (header, extensions and name in the first cluster), for v3 and v2 images; a missing
 * -F is refused with qemu-img's message before anything changes; a cancel leaves the image reading as before.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dw, dwOk, must, qemuIo, run, scratch } from '../helpers';
import { rebaseImage } from '../../src-main/services/rebase';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-rebase-');
after(() => s.cleanup());

/** base (qcow2) ← top (qcow2, `opts`), plus new backing files: a qcow2 and a raw one, each sharing some of base's data. */
function setup(name: string, opts = ''): { base: string; top: string; newQcow2: string; newRaw: string } {
  mkdirSync(s.path(name));
  const p = (n: string) => s.path(`${name}/${n}`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', p('base.qcow2'), '12M']);
  qemuIo(p('base.qcow2'), 'qcow2', ['write -P 1 0 4M', 'write -P 2 8M 2M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', p('new.qcow2'), '12M']);
  qemuIo(p('new.qcow2'), 'qcow2', ['write -P 1 0 2M', 'write -P 9 3M 2M', 'write -P 2 9M 1M']);
  must('qemu-img', ['create', '-q', '-f', 'raw', p('new.raw'), '10M']); // shorter: the rest reads as zeros
  qemuIo(p('new.raw'), 'raw', ['write -P 1 1M 3M', 'write -P 7 6M 512k']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), '-b', 'base.qcow2', '-F', 'qcow2', p('top.qcow2')]);
  qemuIo(p('top.qcow2'), 'qcow2', ['write -P 3 1M 1M', 'write -z 8M 64k', 'write -P 4 11M 4k']);
  return { base: p('base.qcow2'), top: p('top.qcow2'), newQcow2: p('new.qcow2'), newRaw: p('new.raw') };
}

function twin(path: string, tag: string): string {
  const out = path.replace(/\.qcow2$/, `.${tag}.qcow2`);
  copyFileSync(path, out);
  return out;
}

function same(a: string, b: string, what: string): void {
  const r = run('qemu-img', ['compare', a, b]);
  assert.equal(r.status, 0, `${what}: ${r.stdout}${r.stderr}`);
}

function backingOf(path: string): { name?: string; format?: string } {
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', path]).stdout) as { 'backing-filename'?: string; 'backing-filename-format'?: string };
  return { name: info['backing-filename'], format: info['backing-filename-format'] };
}

for (const [label, opts] of [
  ['v3', ''],
  ['v2', 'compat=0.10'],
] as const) {
  test(`safe rebase (${label}) onto a qcow2, a raw (shorter) and no backing file gives what qemu-img rebase gives`, () => {
    const x = setup(`safe-${label}`, opts);
    const original = twin(x.top, 'orig');
    for (const [nb, fmt] of [
      ['new.qcow2', 'qcow2'],
      ['new.raw', 'raw'],
      ['', undefined],
    ] as const) {
      const a = twin(x.top, 'a');
      const b = twin(x.top, 'b');
      must('qemu-img', ['rebase', '-b', nb, ...(fmt ? ['-F', fmt] : []), a]);
      dwOk(['rebase', '-b', nb, ...(fmt ? ['-F', fmt] : []), b]);
      same(a, b, `rebased onto '${nb}'`);
      same(original, b, `guest view unchanged after rebase onto '${nb}'`);
      assert.deepEqual(backingOf(b), backingOf(a));
      assert.equal(run('qemu-img', ['check', b]).status, 0);
    }
  });

  test(`unsafe rebase (${label}) is byte for byte qemu-img rebase -u: new name and format, then none`, () => {
    const x = setup(`unsafe-${label}`, opts);
    const a = twin(x.top, 'a');
    const b = twin(x.top, 'b');
    for (const args of [['-b', 'new.raw', '-F', 'raw'], ['-b', 'a-much-longer-name-for-the-new-backing-file.qcow2', '-F', 'qcow2'], ['-b', '']]) {
      must('qemu-img', ['rebase', '-u', ...args, a]);
      dwOk(['rebase', '-u', ...args, b]);
      assert.ok(readFileSync(a).equals(readFileSync(b)), `files equal after rebase -u ${args.join(' ')}`);
    }
  });
}

test('a new backing file without -F is refused with qemu-img\'s message, before anything changes', () => {
  const x = setup('nofmt');
  const before = readFileSync(x.top);
  const q = run('qemu-img', ['rebase', '-u', '-b', 'new.raw', twin(x.top, 'q')]);
  const r = dw(['rebase', '-b', 'new.raw', x.top]);
  assert.equal(r.status, q.status);
  assert.match(q.stderr, /backing format must be specified/);
  assert.match(r.stderr, /^diskwright: Could not change the backing file to 'new.raw': backing format must be specified\n$/);
  assert.ok(readFileSync(x.top).equals(before));
  const m = dw(['rebase', x.top]);
  assert.equal(m.status, 1);
  assert.match(m.stderr, /Must specify backing file \(-b\) or use unsafe mode \(-u\)/);
});

test('a cancelled safe rebase leaves the image reading as before and naming its old backing file', async () => {
  const x = setup('cancel');
  const original = twin(x.top, 'orig');
  const ctl = new AbortController();
  await assert.rejects(
    rebaseImage({ path: x.top, newBacking: 'new.raw', newBackingFormat: 'raw', unsafe: false, signal: ctl.signal, onProgress: () => ctl.abort() }),
    (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
  );
  same(original, x.top, 'guest view');
  assert.deepEqual(backingOf(x.top), { name: 'base.qcow2', format: 'qcow2' });
  assert.equal(run('qemu-img', ['check', x.top]).status, 0);
});

test('in-chain safe rebase (onto an image further down the chain: only what the layers above it hold is compared) gives what qemu-img rebase gives', () => {
  mkdirSync(s.path('in-chain'));
  const p = (n: string) => s.path(`in-chain/${n}`);
  // base.raw (16M) <- low.qcow2 (16M) <- mid.qcow2 (8M: shorter, so 8M..16M reads as zeros above it) <- top.qcow2 (16M)
  must('qemu-img', ['create', '-q', '-f', 'raw', p('base.raw'), '16M']);
  qemuIo(p('base.raw'), 'raw', ['write -P 1 0 16M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', p('low.qcow2'), '16M']);
  qemuIo(p('low.qcow2'), 'qcow2', ['write -P 2 1M 1M', 'write -z 3M 512k', 'write -c -P 5 5M 64k', 'write -P 6 12M 1M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'low.qcow2', '-F', 'qcow2', p('mid.qcow2'), '8M']);
  qemuIo(p('mid.qcow2'), 'qcow2', ['write -P 3 2M 1M', 'write -z 4M 64k', 'discard 1M 64k', 'write -P 7 7M 4k']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', p('top.qcow2'), '16M']);
  qemuIo(p('top.qcow2'), 'qcow2', ['write -P 4 2M 64k', 'write -P 8 10M 1M']);
  const original = twin(p('top.qcow2'), 'orig');
  for (const [nb, fmt] of [
    ['mid.qcow2', 'qcow2'],
    ['low.qcow2', 'qcow2'],
    ['base.raw', 'raw'],
  ] as const) {
    const a = twin(p('top.qcow2'), 'a');
    const b = twin(p('top.qcow2'), 'b');
    must('qemu-img', ['rebase', '-b', nb, '-F', fmt, a]);
    dwOk(['rebase', '-b', nb, '-F', fmt, b]);
    same(a, b, `rebased onto '${nb}'`);
    same(original, b, `guest view unchanged after rebase onto '${nb}'`);
    assert.deepEqual(backingOf(b), backingOf(a));
    assert.equal(run('qemu-img', ['check', b]).status, 0);
  }
  // Onto the middle of the chain, only what mid.qcow2 holds (and the zeros past its end) was copied: the low
  // layer's own data is not (it is still read from there).
  const b = twin(p('top.qcow2'), 'c');
  dwOk(['rebase', '-b', 'low.qcow2', '-F', 'qcow2', b]);
  const map = JSON.parse(must('qemu-img', ['map', '--output=json', b]).stdout) as Array<{ start: number; length: number; depth: number; data: boolean }>;
  const at = (off: number) => map.find((e) => e.start <= off && off < e.start + e.length)!;
  assert.equal(at(12 * 1024 * 1024).depth, 0, "low's 12M lies past mid's end: zeros were copied into top");
  assert.equal(at(1024 * 1024 + 128 * 1024).depth, 1, "low's own data at 1M is read from low");
  assert.equal(at(2 * 1024 * 1024 + 128 * 1024).depth, 0, "mid's data at 2M was copied into top");
});
