/**
 * Backing file names as qemu reads them (issue: reliability, item 5 and 8): a qcow2 backing name with a NUL
 * byte ends at the NUL, as qemu's C string does, so info and map agree with qemu-img instead of failing with
 * an internal error; a declared backing format is honoured (a text file declared as VMDK is refused by both).
 */
import assert from 'node:assert/strict';
import { openSync, readSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { dw, must, run, scratch } from '../helpers';

function patchBackingName(img: string, at: number, byte: number): void {
  const fd = openSync(img, 'r+');
  try {
    const h = Buffer.alloc(20);
    readSync(fd, h, 0, 20, 0);
    const off = Number(h.readBigUInt64BE(8));
    writeSync(fd, Buffer.from([byte]), 0, 1, off + at);
  } finally {
    closeSync(fd);
  }
}

test('a NUL inside a qcow2 backing name ends the name there, as in qemu-img', (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const img = s.path('nul.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', 'base.raw', '-F', 'raw', img, '16M']);
  patchBackingName(img, 2, 0);
  const info = dw(['info', img]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, /^backing file: ba( \(actual path: .*\/ba\))?$/m);
  assert.match(must('qemu-img', ['info', img]).stdout, /^backing file: ba( \(actual path: .*\/ba\))?$/m);
  // Neither can follow "ba": the same refusal, in one plain line.
  const map = dw(['map', img]);
  assert.equal(map.status, 1);
  assert.equal(run('qemu-img', ['map', img]).status, 1);
  assert.match(map.stderr, /^diskwright: .*\/ba: no such file\n$/);
  assert.doesNotMatch(map.stderr, /internal error/);
  // With a file called "ba" both read the chain.
  must('qemu-img', ['create', '-q', '-f', 'raw', s.path('ba'), '16M']);
  assert.equal(dw(['map', img]).status, 0);
});

test('a declared backing format is honoured: a text file declared as vmdk is refused, as qemu-img refuses it', (t) => {
  const s = scratch();
  t.after(s.cleanup);
  writeFileSync(s.path('text.txt'), 'hello world\n');
  const img = s.path('top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', 'text.txt', '-F', 'vmdk', img, '16M']);
  const ours = dw(['info', '--backing-chain', img]);
  assert.equal(ours.status, 1);
  assert.match(ours.stderr, /text\.txt: not a VMDK image/);
  assert.notEqual(run('qemu-img', ['info', '--backing-chain', img]).status, 0);
});
