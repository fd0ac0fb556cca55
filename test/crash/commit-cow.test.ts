/**
 * `diskwright commit` of a UML COW file stopped at every I/O step (kill and power cut): the pair opens without
 * --accept-changed-backing and reads as before; uml_moo merges it as the model except while the header records
 * the mtime the commit will leave and the backing file still has its old one (the handover in flight: uml_moo
 * checks the one mtime a header holds); the backing file is old or new per sector. A backing file changed by
 * anything else after a completed commit is refused.
 */
import assert from 'node:assert/strict';
import { openSync, closeSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { dw, dwOk, must, scratch } from '../helpers';
import { commitCrashCase, keepAsTemplates, restoreTemplates, type CommitChainCase } from './commit-common';
import { crashEveryStep, describe, runWriter } from './harness';

const s = scratch('dw-crash-commit-cow-');
after(() => s.cleanup());

const SIZE = 4 << 20;

/** The mtime a v3 COW header records (32-bit big-endian seconds at byte 8, as uml_mkcow writes it). */
function recordedMtime(path: string): number {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(12);
  readSync(fd, b, 0, 12, 0);
  closeSync(fd);
  return b.readUInt32BE(8);
}

let chain: CommitChainCase;

before(() => {
  const base = s.path('base.raw');
  const b = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) b.fill((i / 4096) & 0xff, i, i + 2048);
  writeFileSync(base, b);
  must('uml_mkcow', [s.path('ov.cow'), base]);
  const model = Buffer.from(b);
  for (const [off, len, v] of [[64 << 10, 128 << 10, 0x33], [2 << 20, 192 << 10, 0x44], [(4 << 20) - 4096, 4096, 0x55]]) {
    writeFileSync(s.path('piece'), Buffer.alloc(len, v));
    dwOk(['write', s.path('ov.cow'), String(off), s.path('piece')]);
    model.fill(v, off, off + len);
  }
  keepAsTemplates(s.dir, ['base.raw', 'ov.cow']);
  chain = {
    overlay: 'ov.cow',
    format: 'cow',
    base: 'base.raw',
    baseFormat: 'raw',
    model,
    qemuReadsChain: false,
    umlMoo: true,
    inFlight: (dir) => Math.floor(statSync(join(dir, 'base.raw')).mtimeMs / 1000) !== recordedMtime(join(dir, 'ov.cow')),
  };
});

suite('UML COW commit: a stop at any step leaves a pair that opens and reads as before', () => {
  test('every step, kill and power cut', () => {
    const counts = { inFlight: 0, checked: 0 };
    const r = crashEveryStep(s.dir, commitCrashCase(s.dir, chain, counts));
    console.log(`COW: ${counts.inFlight} of ${counts.checked} stops had the header's mtime one step ahead (uml_moo refuses there)`);
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) left a pair that fails:\n${describe(r.failures)}`);
    assert.ok(counts.inFlight <= 4, `${counts.inFlight} stops in flight`);
  });

  test('a backing file changed by anything else is refused after a completed commit', () => {
    restoreTemplates(s.dir, ['base.raw', 'ov.cow']);
    const r = runWriter(['commit', '-f', 'cow', 'ov.cow'], { cwd: s.dir });
    assert.equal(r.status, 0, r.stderr);
    const read = () => dw(['convert', '-O', 'raw', s.path('ov.cow'), s.path('read.raw')]);
    assert.equal(read().status, 0, 'the pair reads before the backing file is changed');
    // Another program writes into the backing file a second later: a new mtime the header never recorded.
    const later = Date.now() + 2000;
    while (Date.now() < later) {
      // wait: mtimes are compared in whole seconds
    }
    const fd = openSync(s.path('base.raw'), 'r+');
    writeSync(fd, Buffer.alloc(512, 0x77), 0, 512, 1 << 20);
    closeSync(fd);
    const refused = read();
    assert.notEqual(refused.status, 0, 'a backing file written by another program was accepted');
    assert.match(refused.stderr, /changed/);
  });
});
