/**
 * `diskwright commit` of a qcow2 overlay stopped at every I/O step: qcow2 records no identity of its backing
 * file, so the commit only has to keep the data: the chain opens and reads as before for us and for qemu-img
 * (compare with the model), the base reads old or new per sector, and qemu-img check finds leaks at most.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe as suite, test } from 'node:test';
import { must, qemuIo, scratch } from '../helpers';
import { commitCrashCase, keepAsTemplates, type CommitChainCase } from './commit-common';
import { crashEveryStep, describe, guestBytes } from './harness';

const s = scratch('dw-crash-commit-qcow2-');
after(() => s.cleanup());

let chain: CommitChainCase;

before(() => {
  const base = s.path('base.qcow2');
  const ov = s.path('ov.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 1M', 'write -P 0x22 3M 512k']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', ov]);
  qemuIo(ov, 'qcow2', ['write -P 0x33 64k 128k', 'write -z 3M 128k', 'write -P 0x44 2M 192k']);
  const model = guestBytes(ov, 'qcow2', s.dir);
  writeFileSync(s.path('model.raw'), model);
  keepAsTemplates(s.dir, ['base.qcow2', 'ov.qcow2']);
  chain = { overlay: 'ov.qcow2', format: 'qcow2', base: 'base.qcow2', baseFormat: 'qcow2', model, qemuReadsChain: true };
});

suite('qcow2 commit: a stop at any step leaves a chain that reads as before', () => {
  test('every step killed, sampled steps cut', () => {
    const c = commitCrashCase(s.dir, chain, { inFlight: 0, checked: 0 });
    for (const r of [crashEveryStep(s.dir, c, ['kill']), crashEveryStep(s.dir, { ...c, everyStep: false }, ['cut'])]) {
      assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) left a chain that fails:\n${describe(r.failures)}`);
    }
  });
});
