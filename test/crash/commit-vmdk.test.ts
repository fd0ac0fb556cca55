/**
 * `diskwright commit` of a VMDK overlay stopped at every I/O step (kill and power cut): the chain opens without
 * --accept-changed-backing and reads as before, qemu-img reads it (except while the overlay's parentCID is one
 * step ahead of the base's CID, where qemu refuses reads as it does after its own commit), and a base changed by
 * anything but our commit is still refused, after a stopped commit and after a completed one.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { must, qemuIo, scratch } from '../helpers';
import { assertForeignBaseWriteRefused, commitCrashCase, keepAsTemplates, type CommitChainCase } from './commit-common';
import { crashEveryStep, describe, guestBytes } from './harness';

const s = scratch('dw-crash-commit-vmdk-');
after(() => s.cleanup());

/** The CID= or parentCID= value of a VMDK's embedded descriptor, and our handover key's value, as text. */
function descriptorField(path: string, key: string): string | undefined {
  const text = readFileSync(path).subarray(0, 64 * 1024).toString('latin1');
  return new RegExp(`^${key.replace(/\./g, '\\.')}\\s*=\\s*"?([0-9a-fA-F]+)"?`, 'm').exec(text)?.[1]?.toLowerCase();
}

let chain: CommitChainCase;

before(() => {
  const base = s.path('base.vmdk');
  const ov = s.path('ov.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicSparse', base, '4M']);
  qemuIo(base, 'vmdk', ['write -P 0x11 0 1M', 'write -P 0x22 3M 512k']);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', ov]);
  qemuIo(ov, 'vmdk', ['write -P 0x33 64k 128k', 'write -P 0x44 2M 192k', 'write -P 0x55 3584k 4k']);
  const model = guestBytes(ov, 'vmdk', s.dir);
  writeFileSync(s.path('model.raw'), model);
  keepAsTemplates(s.dir, ['base.vmdk', 'ov.vmdk']);
  chain = {
    overlay: 'ov.vmdk',
    format: 'vmdk',
    base: 'base.vmdk',
    baseFormat: 'vmdk',
    model,
    qemuReadsChain: true,
    // The overlay names the base's next CID and keeps the old one, which the base still has.
    inFlight: (dir) => {
      const old = descriptorField(join(dir, 'ov.vmdk'), 'ddb.diskwright.parentCidBeforeCommit');
      return old !== undefined && descriptorField(join(dir, 'base.vmdk'), 'CID') === old;
    },
  };
});

suite('VMDK commit: a stop at any step leaves a chain that opens and reads as before', () => {
  test('every step, kill and power cut', () => {
    const counts = { inFlight: 0, checked: 0 };
    const r = crashEveryStep(s.dir, commitCrashCase(s.dir, chain, counts));
    console.log(`VMDK: ${counts.inFlight} of ${counts.checked} stops had the parentCID one step ahead (qemu refuses reads there)`);
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) left a chain that fails:\n${describe(r.failures)}`);
    // Two files cannot change together: at most the stops around the base's CID write are in flight.
    assert.ok(counts.inFlight <= 4, `${counts.inFlight} stops in flight`);
  });

  test('a base changed by anything else is still refused: after a stopped commit and after a completed one', () => {
    assertForeignBaseWriteRefused(s.dir, 'vmdk', 'ov.vmdk', 'base.vmdk', () => qemuIo(s.path('base.vmdk'), 'vmdk', ['write -P 0x66 1M 64k']));
  });
});
