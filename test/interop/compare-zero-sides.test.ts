/**
 * compare where one image holds data and the other reads as zeros there (unallocated, a zero cluster, a hole in
 * a raw file): that side is not read, the other is checked for zeros. Same verdict, message and exit code as
 * qemu-img compare, in both orders, through the command line and the job.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { compareImages } from '../../src-main/services/compare';
import { dw, must, qemuIo, run, scratch } from '../helpers';

const s = scratch('dw-compare-zero-');
after(() => s.cleanup());

function sameVerdict(a: string, b: string, label: string): void {
  const q = run('qemu-img', ['compare', a, b]);
  const o = dw(['compare', a, b]);
  assert.equal(o.status, q.status, `${label}: exit code (qemu-img said: ${q.stdout}${q.stderr})`);
  assert.equal(o.stdout.trim(), q.stdout.trim(), `${label}: message`);
}

test('data against zeros: zeros written as data match; a non-zero byte is named at its sector, either way round', async () => {
  // A qcow2 with data, a zero cluster and unallocated space; raws that hold the same guest view with their
  // holes elsewhere (data written as zeros where the qcow2 has none), then one byte set in the qcow2's zero range.
  const q = s.path('a.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', q, '8M']);
  qemuIo(q, 'qcow2', ['write -P 0x21 1M 1M', 'write -z 3M 1M', 'write -P 0x22 5M 64k']);
  const dense = s.path('dense.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', dense, '8M']);
  qemuIo(dense, 'raw', ['write -P 0 0 8M', 'write -P 0x21 1M 1M', 'write -P 0x22 5M 64k']);
  sameVerdict(q, dense, 'the raw holds zeros as data');
  sameVerdict(dense, q, 'the raw first');
  assert.equal((await compareImages({ a: q, b: dense })).identical, true);

  for (const at of [0, 3 * 1048576 + 513, 7 * 1048576 + 4095, 8 * 1048576 - 1]) {
    const changed = s.path(`changed-${at}.raw`);
    must('cp', [dense, changed]);
    qemuIo(changed, 'raw', [`write -P 0x5a ${at} 1`]);
    sameVerdict(q, changed, `one byte at ${at} where the qcow2 reads zeros`);
    sameVerdict(changed, q, `one byte at ${at}, the raw first`);
    const job = await compareImages({ a: changed, b: q });
    assert.equal(job.identical, false);
    assert.equal(job.mismatchOffset, Math.floor(at / 512) * 512);
  }

  // The raw sparse where the qcow2 holds data that is zeros only in part: the first non-zero sector is named.
  const sparse = s.path('sparse.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', sparse, '8M']);
  const partly = s.path('partly.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', partly, '8M']);
  qemuIo(partly, 'qcow2', ['write -P 0 2M 1M', 'write -P 0x33 2600k 1']);
  sameVerdict(partly, sparse, 'qcow2 data, zeros then one byte, against a hole');
  sameVerdict(sparse, partly, 'the hole first');
});
