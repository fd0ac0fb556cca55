// A GPT whose primary header or entry array is damaged is read from the backup and says so; a missing backup
// is reported. The oracles: sfdisk --json of the disk before the damage, and sgdisk -v, which must see the same
// damage (so the test damages what it means to).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { copyFileSync, openSync, writeSync, closeSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import { crc32 } from '../../src-main/inside/crc32';
import { dwOk, must, run, scratch } from '../helpers';
import { sfdiskPartitions } from './inside-common';

const s = scratch('dw-inside-gptd-');
const disk = s.path('gpt.raw');
let want: ReturnType<typeof sfdiskPartitions>;

before(() => {
  must('truncate', ['-s', '24M', disk]);
  must('sgdisk', ['-n1:2048:+4M', '-t1:8300', '-c1:one', '-n2:0:+6M', '-t2:ef00', '-c2:two', '-n3:0:+4M', '-t3:8200', disk]);
  want = sfdiskPartitions(disk);
});
after(() => s.cleanup());

function damaged(name: string, at: number, bytes: Buffer): string {
  const p = s.path(name);
  copyFileSync(disk, p);
  const fd = openSync(p, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
  return p;
}

function partitions(p: string) {
  return JSON.parse(dwOk(['partitions', '--output', 'json', p]).stdout);
}

// Through JSON, so that a name left out stays left out (as sfdisk leaves out an empty one).
const strip = (parts: any[]) => JSON.parse(JSON.stringify(parts.map((p) => ({ number: p.number, start: p.start, size: p.size, type: p.type, uuid: p.uuid, name: p.name, bootable: p.bootable }))));

test('the undamaged disk has no findings', () => {
  const got = partitions(disk);
  assert.deepEqual(strip(got.partitions), want.partitions);
  assert.deepEqual(got.findings, []);
});

for (const [what, at] of [['header', 512 + 40], ['entry array', 1024 + 20]] as const) {
  test(`a damaged primary ${what} is read from the backup, and said so`, () => {
    const p = damaged(`bad-${what.replace(' ', '-')}.raw`, at, Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    assert.match(run('sgdisk', ['-v', p]).stdout, /corrupt|invalid|CRC/i, 'sgdisk sees the damage');
    const got = partitions(p);
    assert.deepEqual(strip(got.partitions), want.partitions);
    assert.equal(got.findings.length, 1);
    assert.match(got.findings[0].message, /primary GPT header is damaged.*read from the backup/);
  });
}

test('a primary header wiped whole (no signature left) is read from the backup, and said so', () => {
  const p = damaged('wiped-header.raw', 512, Buffer.alloc(512));
  assert.match(run('sgdisk', ['-v', p]).stdout, /corrupt|invalid|damaged/i, 'sgdisk sees the damage');
  const got = partitions(p);
  assert.equal(got.table, 'gpt');
  assert.deepEqual(strip(got.partitions), want.partitions);
  assert.equal(got.findings.length, 1, JSON.stringify(got.findings));
  assert.match(got.findings[0].message, /primary GPT header is damaged.*read from the backup/);
});

test('a missing backup is reported; the primary is used', () => {
  const size = statSync(disk).size;
  const p = damaged('no-backup.raw', size - 512, Buffer.alloc(512));
  assert.match(run('sgdisk', ['-v', p]).stdout, /corrupt GPT/i, 'sgdisk sees the damage');
  const got = partitions(p);
  assert.deepEqual(strip(got.partitions), want.partitions);
  assert.ok(got.findings.some((f: any) => /backup GPT header is missing or damaged/.test(f.message)), JSON.stringify(got.findings));
});

test('a hybrid MBR (sgdisk -h) is reported and the GPT shown', () => {
  const p = s.path('hybrid.raw');
  copyFileSync(disk, p);
  must('sgdisk', ['-h', '1', p]);
  const got = partitions(p);
  assert.deepEqual(strip(got.partitions), want.partitions);
  assert.ok(got.findings.some((f: any) => /hybrid MBR/.test(f.message)), JSON.stringify(got.findings));
});

/**
 * The same GPT re-laid for 4096-byte sectors (LBAs scaled by 8, header at byte 4096, entries at LBA 2, the backup
 * at the last 4 KiB sector; CRCs recomputed with our crc32, which test/unit/inside-tables checks against the
 * standard check value): no tool here writes one to a plain file, and sfdisk's 512-byte table says what it must
 * contain.
 */
function as4k(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(src.length);
  const lbas = src.length / 4096;
  const hdr = Buffer.from(src.subarray(512, 1024));
  const entries = Buffer.from(src.subarray(1024, 1024 + 128 * 128));
  for (let i = 0; i < 128; i++) {
    const e = entries.subarray(i * 128);
    if (e.readBigUInt64LE(32) === 0n) continue;
    e.writeBigUInt64LE(e.readBigUInt64LE(32) / 8n, 32);
    e.writeBigUInt64LE((e.readBigUInt64LE(40) + 1n) / 8n - 1n, 40);
  }
  const entriesCrc = crc32(entries);
  const header = (current: number, backup: number, entriesLba: number) => {
    const h = Buffer.from(hdr);
    h.writeBigUInt64LE(BigInt(current), 24);
    h.writeBigUInt64LE(BigInt(backup), 32);
    h.writeBigUInt64LE(6n, 40);
    h.writeBigUInt64LE(BigInt(lbas - 6), 48);
    h.writeBigUInt64LE(BigInt(entriesLba), 72);
    h.writeUInt32LE(entriesCrc, 88);
    h.writeUInt32LE(0, 16);
    h.writeUInt32LE(crc32(h.subarray(0, h.readUInt32LE(12))), 16);
    return h;
  };
  out.set(src.subarray(0, 512));
  const mbr = Buffer.from(out.buffer, out.byteOffset, 512);
  mbr.writeUInt32LE(Math.min(lbas - 1, 0xffffffff), 446 + 12);
  out.set(header(1, lbas - 1, 2), 4096);
  out.set(entries, 2 * 4096);
  out.set(entries, (lbas - 5) * 4096);
  out.set(header(lbas - 1, 1, lbas - 5), (lbas - 1) * 4096);
  return out;
}

test('a GPT in 4096-byte sectors is found and read in bytes as its 512-byte original', () => {
  const p = s.path('gpt-4k.raw');
  writeFileSync(p, as4k(readFileSync(disk)));
  const got = partitions(p);
  assert.equal(got['sector-size'], 4096);
  assert.deepEqual(strip(got.partitions), want.partitions);
  assert.deepEqual(got.findings, []);
});
