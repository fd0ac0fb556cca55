/**
 * commit and rebase of VMDK chains (qemu-img made them): commit gives the base `qemu-img commit` gives on a
 * copy of the same chain, and an emptied overlay that reads as its base (qemu-img 7.2's own emptying leaves a
 * VMDK overlay it cannot read again: "Invalid argument" at offset 0, so its overlay is no oracle); rebase keeps what the guest reads (qemu-img 7.2 cannot
 * rebase a VMDK, so the oracle is the content qemu-img reads before) and qemu-img info names the new parent.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { dwOk, must, scratch } from '../helpers';
import { qemuIo } from '../oracles';

const s = scratch('dw-commit-vmdk-');
after(() => s.cleanup());
let n = 0;

function chain(subformat: string): string {
  const dir = s.path(`c${n++}`);
  mkdirSync(dir);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, join(dir, 'base.vmdk'), '16M']);
  qemuIo(join(dir, 'base.vmdk'), 'vmdk', ['write -P 0x11 0 4M', 'write -P 0x12 12M 1M']);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', join(dir, 'top.vmdk')]);
  qemuIo(join(dir, 'top.vmdk'), 'vmdk', ['write -P 0x22 2M 4M', 'write -P 0x23 15M 64k']);
  return dir;
}

for (const subformat of ['monolithicSparse', 'twoGbMaxExtentSparse']) {
  test(`commit of a VMDK overlay into a ${subformat} base equals qemu-img commit's`, () => {
    const ours = chain(subformat);
    const theirs = s.path(`q${n++}`);
    cpSync(ours, theirs, { recursive: true });
    must('qemu-img', ['commit', '-q', join(theirs, 'top.vmdk')]);
    dwOk(['commit', join(ours, 'top.vmdk')]);
    for (const f of ['base.vmdk', 'top.vmdk']) must('qemu-img', ['check', join(ours, f)]);
    must('qemu-img', ['compare', join(ours, 'base.vmdk'), join(theirs, 'base.vmdk')]);
    must('qemu-img', ['compare', join(ours, 'top.vmdk'), join(ours, 'base.vmdk')]);
    const own = JSON.parse(must('qemu-img', ['map', '--output=json', join(ours, 'top.vmdk')]).stdout).filter((e: { depth: number; data: boolean }) => e.depth === 0 && e.data);
    assert.deepEqual(own, [], 'the overlay was emptied: everything comes from the base');
  });
}

test('rebase of a VMDK overlay onto another parent keeps what it reads, and qemu-img names the new parent', () => {
  const dir = chain('monolithicSparse');
  const other = join(dir, 'other.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', other, '16M']);
  qemuIo(other, 'vmdk', ['write -P 0x33 0 1M', 'write -P 0x34 8M 2M']);
  const before = join(dir, 'before.raw');
  must('qemu-img', ['convert', '-O', 'raw', join(dir, 'top.vmdk'), before]);
  dwOk(['rebase', '-b', 'other.vmdk', '-F', 'vmdk', join(dir, 'top.vmdk')]);
  must('qemu-img', ['check', join(dir, 'top.vmdk')]);
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', join(dir, 'top.vmdk')]).stdout);
  assert.equal(info['backing-filename'], 'other.vmdk');
  must('qemu-img', ['compare', '-F', 'raw', join(dir, 'top.vmdk'), before]);
});
