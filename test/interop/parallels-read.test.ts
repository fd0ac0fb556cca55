/**
 * Reading Parallels images made by qemu-img/qemu-io (cluster sizes from 512 bytes to odd ones, both magics):
 * content (convert -O raw), map, check and compare, each against qemu-img on the same file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { counts, maps, ourCheck, PRL_CASES, qemuCheck } from './parallels-common';

const s = scratch('dw-prl-read-');
after(() => s.cleanup());

PRL_CASES.forEach((c, i) => {
  test(`parallels read: ${c.name}: content, map, check and compare agree with qemu-img`, () => {
    const p = s.path(`r${i}.hds`);
    c.make(p);
    const before = readFileSync(p);
    const ours = s.path(`r${i}.ours.raw`);
    const theirs = s.path(`r${i}.qemu.raw`);
    dwOk(['convert', '-O', 'raw', p, ours]);
    must('qemu-img', ['convert', '-f', 'parallels', '-O', 'raw', p, theirs]);
    assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'convert -O raw gives qemu-img\'s bytes');
    const m = maps(p);
    assert.deepEqual(m.ours, m.qemu, 'map --output json');
    const q = qemuCheck(p);
    const o = ourCheck(p);
    assert.equal(o.status, q.status, `check exit code (qemu: ${q.stderr})`);
    assert.deepEqual(counts(o.json), counts(q.json), 'check --output json');
    // compare both ways, and against qemu-img's raw copy.
    assert.equal(dw(['compare', p, theirs]).status, 0);
    assert.equal(dw(['compare', theirs, p]).status, 0);
    assert.equal(run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', p, ours]).status, 0);
    assert.ok(readFileSync(p).equals(before), 'reading left the image untouched');
  });
});

test('parallels read: a changed byte is found by compare, as qemu-img finds it', () => {
  const p = s.path('diff.hds');
  PRL_CASES[2].make(p);
  const raw = s.path('diff.raw');
  must('qemu-img', ['convert', '-f', 'parallels', '-O', 'raw', p, raw]);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 600000 1', raw]);
  const q = run('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', p, raw]);
  const o = dw(['compare', p, raw]);
  assert.equal(q.status, 1);
  assert.equal(o.status, 1);
  assert.equal(o.stdout, q.stdout, 'the same first mismatching offset');
});
