/**
 * Commit and rebase of differencing VHDX images. qemu cannot read differencing VHDX, so the oracle is a raw
 * model: the parent's content (qemu-img convert) with the same writes made by qemu-io; after a commit, the
 * parent (a plain VHDX qemu reads) must be identical to the model under qemu-img compare and pass qemu-img check.
 * A rebased child is committed into its new parent, which qemu then reads and compares with the model too.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, qemuIo, run, scratch } from '../helpers';

const s = scratch('dw-commit-vhdx-');
after(() => s.cleanup());

/** Unaligned writes into blocks that are absent, partly and wholly written, and one over a whole 1 MiB block. */
const WRITES: Array<[number, number, number]> = [
  [0x41, 1000000, 70000],
  [0x42, 5 << 20, 1 << 20],
  [0x43, 12000000, 4096],
  [0x44, 12001000, 300],
];

function setup(name: string): { dir: string; parent: string; child: string; model: string } {
  const dir = s.path(name);
  mkdirSync(dir);
  const parent = `${dir}/parent.vhdx`;
  const child = `${dir}/child.vhdx`;
  const model = `${dir}/model.raw`;
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', parent, '16M']);
  qemuIo(parent, 'vhdx', ['write -P 1 0 3M', 'write -P 2 9M 1M', 'write -P 3 12M 1M']);
  must('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', parent, model]);
  dwOk(['create', '-q', '-f', 'vhdx', '-b', 'parent.vhdx', '-F', 'vhdx', child]);
  for (const [pat, off, len] of WRITES) {
    writeFileSync(`${dir}/piece`, Buffer.alloc(len, pat));
    dwOk(['write', child, String(off), `${dir}/piece`]);
    qemuIo(model, 'raw', [`write -P ${pat} ${off} ${len}`]);
  }
  assert.equal(dw(['compare', child, model]).status, 0, 'the child reads as the model before anything');
  return { dir, parent, child, model };
}

function qemuSame(a: string, fa: string, b: string): void {
  const r = run('qemu-img', ['compare', '-f', fa, '-F', 'raw', a, b]);
  assert.equal(r.status, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

test('commit of a differencing VHDX into its VHDX parent: qemu reads the parent as the model; the child is emptied and still opens', () => {
  const x = setup('commit');
  assert.equal(dwOk(['commit', x.child]).stdout.trim(), 'Image committed.');
  qemuSame(x.parent, 'vhdx', x.model);
  assert.equal(run('qemu-img', ['check', x.parent]).status, 0);
  // The emptied child links to the parent's new data write GUID, so it opens and reads the parent.
  assert.equal(dw(['compare', x.child, x.model]).status, 0);
  assert.equal(dw(['check', x.child]).status, 0);
  const map = JSON.parse(dwOk(['map', '--output', 'json', x.child]).stdout) as Array<{ depth: number; data: boolean }>;
  assert.ok(map.every((e) => !e.data || e.depth === 1), 'no data left in the child');
});

test('commit -d leaves the child byte for byte as it was; the parent reads as the model', () => {
  const x = setup('keep');
  const before = readFileSync(x.child);
  dwOk(['commit', '-d', x.child]);
  qemuSame(x.parent, 'vhdx', x.model);
  assert.ok(readFileSync(x.child).equals(before));
});

test('safe rebase onto another VHDX keeps the child\'s view; committed into its new parent, qemu reads that parent as the model', () => {
  const x = setup('rebase');
  const other = `${x.dir}/other.vhdx`;
  must('qemu-img', ['create', '-q', '-f', 'vhdx', other, '16M']);
  qemuIo(other, 'vhdx', ['write -P 7 2M 4M', 'write -P 2 9M 1M']);
  dwOk(['rebase', '-b', 'other.vhdx', '-F', 'vhdx', x.child]);
  assert.equal(dw(['compare', x.child, x.model]).status, 0, 'view unchanged');
  assert.equal(dw(['check', x.child]).status, 0);
  const info = JSON.parse(dwOk(['info', '--output', 'json', x.child]).stdout) as { 'backing-filename'?: string };
  assert.match(info['backing-filename'] ?? '', /other\.vhdx$/);
  dwOk(['commit', x.child]);
  qemuSame(other, 'vhdx', x.model);
  assert.equal(run('qemu-img', ['check', other]).status, 0);
});

test('a differencing VHDX cannot stand alone in place (-b ""): refused plainly, nothing changed', () => {
  const x = setup('alone');
  const before = readFileSync(x.child);
  const r = dw(['rebase', '-u', '-b', '', x.child]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^diskwright: .*cannot be made to stand alone in place; convert it instead\n$/);
  assert.ok(readFileSync(x.child).equals(before));
});
