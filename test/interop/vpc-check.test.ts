/**
 * check for VHD (qemu-img has none for vpc, so qemu's reading is the oracle for what a repair must keep): on
 * qemu-made images with damage put in by hand, our check reports what is wrong with qemu-img check's exit codes
 * (2 corruption, 3 leaks), a repair mends what it can, and qemu-img reads the same guest bytes before and after.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { io, qemuBytes, qemuInfo } from './vpc-common';

const s = scratch('dw-vpc-check-');
after(() => s.cleanup());

function check(p: string, extra: string[] = []): { status: number; j: Record<string, number> } {
  const r = dw(['check', '-f', 'vpc', '--output', 'json', ...extra, p]);
  return { status: r.status, j: JSON.parse(r.stdout) as Record<string, number> };
}

function image(name: string): string {
  const p = s.path(name);
  must('qemu-img', ['create', '-q', '-f', 'vpc', p, '8M']);
  io(p, ['write -P 0x11 0 1M', 'write -P 0x22 3M 1M']);
  return p;
}

test('a clean qemu image: exit 0, its blocks counted', () => {
  const p = image('clean.vhd');
  const c = check(p);
  assert.equal(c.status, 0);
  assert.equal(c.j['allocated-clusters'], 2);
  assert.equal(c.j['total-clusters'], Math.ceil(Number(qemuInfo(p)['virtual-size']) / (2 * 1024 * 1024)), 'blocks of the disk qemu sees');
});

test('two BAT entries naming the same block: a corruption (exit 2), which repair cannot settle', () => {
  const p = image('overlap.vhd');
  const b = readFileSync(p);
  b.writeUInt32BE(b.readUInt32BE(1536), 1536 + 4); // block 1 points at block 0's place
  writeFileSync(p, b);
  const c = check(p);
  assert.equal(c.status, 2);
  assert.ok(c.j.corruptions >= 1);
  assert.equal(run('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', p, s.path('o.raw')]).status, 0, 'qemu still reads it');
});

test("a damaged header checksum (qemu ignores it): a corruption that check -r all mends; qemu reads the same", () => {
  const p = image('hdr.vhd');
  const before = qemuBytes(p, s.path('b.raw'));
  const b = readFileSync(p);
  b[512 + 36] ^= 0xff;
  writeFileSync(p, b);
  assert.equal(check(p).status, 2);
  const r = check(p, ['-r', 'all']);
  assert.equal(r.status, 0, JSON.stringify(r.j));
  assert.equal(r.j['corruptions-fixed'], 1);
  assert.equal(check(p).status, 0);
  assert.ok(qemuBytes(p, s.path('a.raw')).equals(before));
});

test('a block allocated but never entered in the BAT (a crash): leaked space (exit 3), given back by check -r leaks', () => {
  const p = image('leak.vhd');
  const before = qemuBytes(p, s.path('b.raw'));
  const b = readFileSync(p);
  const footer = b.subarray(b.length - 512);
  // The footer moved one block (bitmap + 2 MiB) further, as our writer leaves it when stopped before the BAT entry.
  const grown = Buffer.concat([b.subarray(0, b.length - 512), Buffer.alloc(512 + 2 * 1024 * 1024), footer]);
  writeFileSync(p, grown);
  const c = check(p);
  assert.equal(c.status, 3, JSON.stringify(c.j));
  assert.equal(c.j.leaks, 1);
  const r = check(p, ['-r', 'leaks']);
  assert.equal(r.status, 0, JSON.stringify(r.j));
  assert.equal(r.j['leaks-fixed'], 1);
  assert.equal(statSync(p).size, b.length, 'the file is cut back to where it was');
  assert.ok(qemuBytes(p, s.path('a.raw')).equals(before));
});

test('a BAT entry past the end of the file: refused by qemu and by us, with a plain message', () => {
  const p = image('past.vhd');
  const b = readFileSync(p);
  b.writeUInt32BE(0x00100000, 1536 + 8); // block 2 at 512 MiB
  writeFileSync(p, b);
  assert.notEqual(run('qemu-img', ['info', '-f', 'vpc', p]).status, 0);
  const r = dw(['info', '-f', 'vpc', p]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /past the end of the file.*truncated/);
  const c = check(p);
  assert.equal(c.j['check-errors'], 1);
});

test('a fixed image cut short: a corruption', () => {
  const p = s.path('cut.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', p, '4M']);
  const b = readFileSync(p);
  writeFileSync(p, Buffer.concat([b.subarray(0, 1024 * 1024), b.subarray(b.length - 512)]));
  assert.equal(check(p).status, 2);
  dwOk(['info', '-f', 'vpc', p]);
});
