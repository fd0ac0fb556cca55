/**
 * `diskwright commit` of a differencing VHDX stopped at every I/O step (kill and power cut): the chain opens with
 * no `rebase -u` and reads as before (qemu-img cannot open a differencing VHDX, so the overlay is read by us and
 * the base by qemu-img: old or new per sector, no corruption), and a base changed by anything but our commit is
 * still refused, after a stopped commit and after a completed one.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe as suite, test } from 'node:test';
import { dwOk, must, qemuIo, scratch } from '../helpers';
import { assertForeignBaseWriteRefused, commitCrashCase, keepAsTemplates, type CommitChainCase } from './commit-common';
import { crashEveryStep, describe } from './harness';

const s = scratch('dw-crash-commit-vhdx-');
after(() => s.cleanup());

let chain: CommitChainCase;

before(() => {
  const base = s.path('base.vhdx');
  const model = s.path('model.raw');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', base, '4M']);
  qemuIo(base, 'vhdx', ['write -P 0x11 0 1M', 'write -P 0x22 3M 512k']);
  must('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', base, model]);
  dwOk(['create', '-q', '-f', 'vhdx', '-b', 'base.vhdx', '-F', 'vhdx', s.path('ov.vhdx')]);
  for (const [off, len, v] of [[64 << 10, 128 << 10, 0x33], [2 << 20, 1 << 20, 0x44], [3584 << 10, 4 << 10, 0x55]]) {
    writeFileSync(s.path('piece'), Buffer.alloc(len, v));
    dwOk(['write', s.path('ov.vhdx'), String(off), s.path('piece')]);
    qemuIo(model, 'raw', [`write -P ${v} ${off} ${len}`]);
  }
  keepAsTemplates(s.dir, ['base.vhdx', 'ov.vhdx']);
  chain = { overlay: 'ov.vhdx', format: 'vhdx', base: 'base.vhdx', baseFormat: 'vhdx', model: readFileSync(model), qemuReadsChain: false };
});

suite('VHDX commit: a stop at any step leaves a chain that opens and reads as before', () => {
  test('every step killed, sampled steps cut', () => {
    const counts = { inFlight: 0, checked: 0 };
    const c = commitCrashCase(s.dir, chain, counts);
    // Every step killed; the power cut at SAMPLE steps (DISKWRIGHT_CRASH_FULL=1: every one), to keep the run short.
    for (const r of [crashEveryStep(s.dir, c, ['kill']), crashEveryStep(s.dir, { ...c, everyStep: false }, ['cut'])]) {
      assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) left a chain that fails:\n${describe(r.failures)}`);
    }
  });

  test('a base changed by anything else is still refused: after a stopped commit and after a completed one', () => {
    assertForeignBaseWriteRefused(s.dir, 'vhdx', 'ov.vhdx', 'base.vhdx', () => {
      // A plain write gives the base a new data write GUID, which no commit planned (ours: qemu-io refuses to
      // write a base whose log a stop left pending).
      writeFileSync(s.path('piece'), Buffer.alloc(64 << 10, 0x66));
      dwOk(['write', s.path('base.vhdx'), String(1 << 20), s.path('piece')]);
    });
  });
});
