/**
 * The compare job read at a snapshot (`snapshotA`, the verify of a snapshot's export): a qcow2 snapshot compared
 * with `qemu-img convert -l` of it is identical, the image as it is now is not (qemu-img compare agrees on both,
 * and on the first differing offset); the job's arguments refuse an empty snapshot name.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { compareImages } from '../../src-main/services/compare';
import { parseArgs } from '../../src-main/api/schemas';
import { must, qemuIo, run, scratch } from '../helpers';

const s = scratch('dw-compare-snap-');
after(() => s.cleanup());

test('compare with snapshotA reads the snapshot; without it, the current state (as qemu-img compare)', async () => {
  const img = s.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 2M']);
  must('qemu-img', ['snapshot', '-c', 'old', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 1M 1M']);
  const exported = s.path('old.raw');
  must('qemu-img', ['convert', '-O', 'raw', '-l', 'snapshot.name=old', img, exported]);

  const atSnapshot = await compareImages({ a: img, b: exported, formatB: 'raw', snapshotA: 'old' });
  assert.equal(atSnapshot.identical, true, JSON.stringify(atSnapshot));
  const byId = await compareImages({ a: img, b: exported, formatB: 'raw', snapshotA: '1' });
  assert.equal(byId.identical, true, 'a snapshot is named by its id too');

  const now = await compareImages({ a: img, b: exported, formatB: 'raw' });
  assert.equal(now.identical, false);
  const q = run('qemu-img', ['compare', '-F', 'raw', img, exported]);
  assert.equal(q.status, 1);
  assert.match(q.stdout, /Content mismatch at offset 1048576!/);
  assert.match(now.messages.join('\n'), /Content mismatch at offset 1048576!/);

  await assert.rejects(compareImages({ a: img, b: exported, formatB: 'raw', snapshotA: 'missing' }));
});

test('the compare job takes snapshotA as a snapshot key (not empty)', () => {
  const ok = parseArgs('startJob', [{ kind: 'compare', a: '/a.qcow2', b: '/b.raw', snapshotA: 'old' }]);
  assert.ok(ok);
  assert.throws(() => parseArgs('startJob', [{ kind: 'compare', a: '/a.qcow2', b: '/b.raw', snapshotA: '' }]));
});
