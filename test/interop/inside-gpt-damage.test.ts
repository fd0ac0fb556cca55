// A GPT whose primary header or entry array is damaged is read from the backup and says so; a missing backup
// is reported. The oracles: sfdisk --json of the disk before the damage, and sgdisk -v, which must see the same
// damage (so the test damages what it means to).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { copyFileSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import { dwOk, must, run, scratch } from '../helpers';
import { sfdiskPartitions } from './inside-common';

const s = scratch('dw-inside-gptd-');
const disk = s.path('gpt.raw');
let want: ReturnType<typeof sfdiskPartitions>;

before(() => {
  must('truncate', ['-s', '24M', disk]);
  must('sgdisk', ['-n1:2048:+4M', '-t1:8300', '-c1:one', '-n2:0:+6M', '-t2:ef00', '-c2:two', '-n3:0:0', '-t3:8200', disk]);
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
