/**
 * Differencing VHDs. qemu cannot make one (vpc has no backing files: "Backing file not supported") and reads one
 * as a dynamic image without its parent, so the oracles are a model (the same writes applied to a raw copy of
 * the parent) and 7-Zip, which follows a VHD's parent locators: a child made here over a qemu-made parent and
 * written here reads as the model, here and in 7-Zip; a parent replaced by another disk is refused by its unique
 * id (EBACKINGCHANGED) unless accepted; commit, rebase and a rebase to no parent keep what the guest reads (the
 * stand-alone result judged by qemu-img too).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch, seededRandom } from '../helpers';
import { assert7zipReads, io, qemuBytes } from './vpc-common';

const s = scratch('dw-vpc-diff-');
after(() => s.cleanup());

const base = s.path('base.vhd');
let model: Buffer;

function payload(seed: number, n: number): Buffer {
  const r = seededRandom(seed);
  return Buffer.from(Array.from({ length: n }, () => (r() * 256) | 0));
}

/** Our reading of the child, through its parent. */
function ours(image: string, extra: string[] = []): Buffer {
  const out = s.path('ours.raw');
  dwOk(['convert', ...extra, '-O', 'raw', image, out]);
  return readFileSync(out);
}

/** A child over base.vhd with the model's writes (made fresh for each test). */
function makeChild(name: string): string {
  const child = s.path(name);
  dwOk(['create', '-q', '-f', 'vpc', '-b', 'base.vhd', '-F', 'vpc', child]);
  const writes: Array<[number, number]> = [
    [1000, 5000], // sub-sector edges: the sectors' other bytes come from the parent
    [2 * 1024 * 1024 - 512, 1024], // across a block boundary
    [6 * 1024 * 1024, 2 * 1024 * 1024], // a whole block
    [9 * 1024 * 1024 + 4096, 512],
  ];
  writes.forEach(([at, n], i) => {
    writeFileSync(s.path('p.bin'), payload(i + 10, n));
    dwOk(['write', '-f', 'vpc', child, String(at), s.path('p.bin')]);
  });
  return child;
}

before(() => {
  must('qemu-img', ['create', '-q', '-f', 'vpc', base, '12M']);
  io(base, ['write -P 0x11 0 3M', 'write -P 0x22 5M 2M', 'write -P 0x33 9M 1M']);
  const m = qemuBytes(base, s.path('base.raw'));
  for (const [i, [at, n]] of ([[1000, 5000], [2 * 1024 * 1024 - 512, 1024], [6 * 1024 * 1024, 2 * 1024 * 1024], [9 * 1024 * 1024 + 4096, 512]] as Array<[number, number]>).entries()) {
    payload(i + 10, n).copy(m, at);
  }
  model = m;
});

test('a child made and written here reads as the model, here and in 7-Zip; info names the parent', () => {
  const child = makeChild('c1.vhd');
  assert.ok(ours(child).equals(model), 'our reading is the model');
  assert7zipReads(child, model, '7-Zip through the parent');
  const info = JSON.parse(dwOk(['info', '--output', 'json', child]).stdout);
  assert.equal(info['backing-filename'], 'base.vhd');
  assert.equal(info['format-specific'].data.subformat, 'differencing');
  assert.equal(info['format-specific'].data['parent-locators'].W2ru, '.\\base.vhd');
  // The map: written sectors in the child, the rest from the parent (depth 1) or zeros.
  const map = JSON.parse(dwOk(['map', '--output', 'json', child]).stdout) as Array<{ start: number; length: number; depth: number; data: boolean }>;
  const at = (pos: number) => map.find((e) => e.start <= pos && pos < e.start + e.length)!;
  assert.equal(at(1024).depth, 0);
  assert.equal(at(8192).depth, 1, 'an unwritten sector of an allocated block reads the parent');
  assert.equal(at(6 * 1024 * 1024 + 100).depth, 0);
  assert.equal(at(4 * 1024 * 1024).depth, 1);
  assert.equal(dw(['check', child]).status, 0);
});

test('a parent replaced by another disk is refused by its unique id; accepted, the new parent is read', () => {
  const dir = s.path('stale');
  must('mkdir', ['-p', dir]);
  copyFileSync(base, `${dir}/base.vhd`);
  const child = `${dir}/c.vhd`;
  dwOk(['create', '-q', '-f', 'vpc', '-b', 'base.vhd', '-F', 'vpc', child]);
  writeFileSync(s.path('p.bin'), payload(1, 4096));
  dwOk(['write', '-f', 'vpc', child, '0', s.path('p.bin')]);
  // Another disk under the parent's name: same size, other id and content.
  renameSync(`${dir}/base.vhd`, `${dir}/old-base.vhd`);
  must('qemu-img', ['create', '-q', '-f', 'vpc', `${dir}/base.vhd`, '12M']);
  io(`${dir}/base.vhd`, ['write -P 0x44 1M 1M']);
  const r = dw(['convert', '-O', 'raw', child, s.path('stale.raw')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /is not the disk this image was made over.*--accept-changed-backing/s);
  const got = ours(child, ['--accept-changed-backing']);
  assert.equal(got[1024 * 1024], 0x44, 'accepted: the new parent is read');
  assert.ok(got.subarray(0, 4096).equals(payload(1, 4096)));
  // The old parent back in place: the pair is whole again.
  renameSync(`${dir}/old-base.vhd`, `${dir}/base.vhd`);
  assert.equal(ours(child)[1024 * 1024], 0x11);
});

test('commit: the parent then holds the model (qemu-img reads it), the child is emptied and still reads the model', () => {
  const saved = s.path('base-saved.vhd');
  copyFileSync(base, saved);
  try {
    const child = makeChild('c2.vhd');
    const before = statSync(child).size;
    assert.equal(dwOk(['commit', child]).stdout.trim(), 'Image committed.');
    assert.ok(qemuBytes(base, s.path('q.raw')).equals(model), 'qemu-img reads the committed parent as the model');
    assert.ok(statSync(child).size < before, 'the child gave its blocks back');
    assert.ok(ours(child).equals(model), 'the emptied child reads the model through its parent');
    assert7zipReads(child, model, '7-Zip after commit');
    assert.equal(dw(['check', child]).status, 0);
  } finally {
    copyFileSync(saved, base);
  }
});

test('rebase onto a copy of the parent, then to no parent: the guest reads the model throughout; qemu-img reads the stand-alone image', () => {
  const child = makeChild('c3.vhd');
  must('qemu-img', ['convert', '-f', 'vpc', '-O', 'vpc', base, s.path('other.vhd')]);
  dwOk(['rebase', '-b', 'other.vhd', '-F', 'vpc', child]);
  const info = JSON.parse(dwOk(['info', '--output', 'json', child]).stdout);
  assert.equal(info['backing-filename'], 'other.vhd');
  assert.ok(ours(child).equals(model), 'rebased onto other.vhd');
  assert7zipReads(child, model, '7-Zip after rebase');
  dwOk(['rebase', '-b', '', child]);
  const alone = JSON.parse(dwOk(['info', '--output', 'json', child]).stdout);
  assert.equal(alone['backing-filename'], undefined);
  assert.equal(alone['format-specific'].data.subformat, 'dynamic');
  assert.ok(ours(child).equals(model), 'stand-alone');
  assert.ok(qemuBytes(child, s.path('q.raw')).equals(model), 'qemu-img reads the stand-alone image as the model');
  assert.equal(run('7zz', ['t', child]).status, 0);
});
