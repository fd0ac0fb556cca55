/**
 * Reading VHDX images made by qemu-img and written by qemu-io (dynamic, fixed, block sizes, a log size,
 * block_state_zero off) gives the bytes qemu-img reads; an image whose last BAT update lives only in its log reads
 * (read-only, replayed in memory) as qemu-img reads it after `qemu-img check -r all`, with the file unchanged, and
 * our `check -r all` replays it so that qemu-img opens it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { qemuReads } from '../oracles';
import { assertSameContent, io, makePendingLog } from './vhdx-common';

const s = scratch('dw-vhdx-read-');
after(() => s.cleanup());

const WRITES = ['write -P 0x11 0 64k', 'write -P 0x22 1536k 5000', 'write -z 3M 64k', 'write -P 0x33 3200k 512', 'write -P 0x44 7M 1M'];

const CASES: Array<[string, string]> = [
  ['subformat=dynamic', '16M'],
  ['subformat=dynamic,block_size=1M', '9M'],
  ['subformat=dynamic,block_size=32M,log_size=4M', '40M'],
  ['subformat=dynamic,block_state_zero=off', '12M'],
  ['subformat=fixed,block_size=2M', '9M'],
  ['subformat=fixed,block_state_zero=off,block_size=1M', '10M'],
];

CASES.forEach(([opts, size], i) => {
  test(`vhdx ${opts} ${size} written by qemu-io reads as qemu-img reads it`, () => {
    const p = s.path(`r${i}.vhdx`);
    must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', opts, p, size]);
    assertSameContent(p, s.path, `${opts} fresh`);
    io(p, WRITES);
    assertSameContent(p, s.path, opts);
    const raw = qemuReads(p, 'vhdx', s.path);
    assert.equal(raw[0], 0x11);
  });
});

test('a BAT update that only the log holds: read-only reads replay it in memory, the file stays as it was', () => {
  const p = s.path('pending.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '8M']);
  io(p, ['write -P 0x5a 0 1M']);
  makePendingLog(p, 'write -P 0x6b 3M 128k');
  const bytes = readFileSync(p);
  // qemu-img refuses to open it read-only; after its own replay it reads the write.
  assert.notEqual(run('qemu-img', ['info', p]).status, 0);
  const qcopy = s.path('pending-qemu.vhdx');
  copyFileSync(p, qcopy);
  must('qemu-img', ['check', '-r', 'all', qcopy]);
  const qraw = s.path('pending-qemu.raw');
  must('qemu-img', ['convert', '-O', 'raw', qcopy, qraw]);
  const ours = s.path('pending-ours.raw');
  dwOk(['convert', '-O', 'raw', p, ours]);
  const expected = readFileSync(qraw);
  assert.equal(expected[3 * 1024 * 1024], 0x6b);
  assert.ok(readFileSync(ours).equals(expected), 'in-memory replay reads as qemu-img after its replay');
  const info = JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
  assert.equal(info['format-specific'].data['log-needs-replay'], true);
  assert.equal(info['dirty-flag'], true);
  assert.ok(readFileSync(p).equals(bytes), 'read-only work left the file unchanged');
  // check without repair: qemu-img cannot check it (exit 1); neither do we, and we say why.
  const qc = run('qemu-img', ['check', p]);
  const oc = dw(['check', p]);
  assert.equal(oc.status, qc.status, `check exit: ours ${oc.status} ${oc.stderr}${oc.stdout}, qemu-img ${qc.status}`);
  assert.ok(readFileSync(p).equals(bytes));
  // check -r all replays it into the file: qemu-img opens it and reads the same bytes.
  const r = dw(['check', '-r', 'all', p]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  must('qemu-img', ['check', p]);
  const after1 = s.path('pending-after.raw');
  must('qemu-img', ['convert', '-O', 'raw', p, after1]);
  assert.ok(readFileSync(after1).equals(expected));
});

test('a log whose entry fails its checksum is skipped: the image reads as before the write, as qemu-img reads it', () => {
  const p = s.path('badlog.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '4M']);
  makePendingLog(p, 'write -P 0x6b 1M 4k');
  const bytes = readFileSync(p);
  bytes[1024 * 1024 + 64 + 40] ^= 0xff; // inside the entry's descriptor: its checksum fails
  writeFileSync(p, bytes);
  // qemu finds no valid entry, so it opens the image as it is in place.
  assertSameContent(p, s.path, 'bad log');
  const raw = qemuReads(p, 'vhdx', s.path);
  assert.equal(raw[1024 * 1024], 0);
});

test('256 MiB blocks past the first chunk (16 blocks per sector bitmap entry): the BAT interleaving as qemu writes it', () => {
  const p = s.path('chunks.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=256M', p, '5G']);
  const at17 = 17 * 256 * 1024 * 1024 + 4096; // block 17: BAT index 18, after chunk 0's bitmap slot
  const at15 = 16 * 256 * 1024 * 1024 - 512; // the last sector of block 15, the last of chunk 0
  io(p, [`write -P 0x21 ${at17} 64k`, `write -P 0x22 ${at15} 512`]);
  const a = dwOk(['read', p, String(at17 - 512), String(65536 + 1024)]).stdoutBytes;
  assert.ok(a.subarray(0, 512).every((b) => b === 0) && a.subarray(512, 512 + 65536).every((b) => b === 0x21) && a.subarray(512 + 65536).every((b) => b === 0));
  const b = dwOk(['read', p, String(at15 - 512), '1536']).stdoutBytes;
  assert.ok(b.subarray(0, 512).every((x) => x === 0) && b.subarray(512, 1024).every((x) => x === 0x22) && b.subarray(1024).every((x) => x === 0));
});
