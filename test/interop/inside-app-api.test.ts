/**
 * The app's "inside the disk" calls through the contract (callApi validates every argument as the bridges do),
 * against the oracles: partitions as sfdisk --json and blkid say; a folder as debugfs and ntfsls list it; the
 * "free in the file system" layer equal to dumpe2fs's free blocks met with qemu-img map's data, bucket for
 * bucket; the 'inside-copy' job's copies equal to what was put in, an existing name refused, a cancel leaving
 * nothing; bad arguments and a hostile table answered in plain words.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { DiskErrorDto, DiskLayout, InsideCopyResult, InsideFreePicture, InsideListing, JobSpec } from '../../src-shared/api';
import { callApi, createApi } from '../../src-main/api';
import { JobManager } from '../../src-main/services/jobs';
import { must, scratch } from '../helpers';
import { jobEnd } from '../job-end';
import { assertSameTree, blkid, dumpe2fs, sfdiskPartitions } from './inside-common';
import { buildAppDisk, type AppDisk } from './inside-app-disk';

const work = scratch('dw-inside-app-api-');
const jobs = new JobManager('anywhere');
const api = createApi(jobs, { backingPolicy: 'anywhere' });
let disk: AppDisk;

before(() => {
  disk = buildAppDisk(work.dir, 16);
});
after(() => work.cleanup());

const call = <T>(method: string, ...args: unknown[]) => callApi(api, method, args) as Promise<T>;

async function refusal(p: Promise<unknown>): Promise<DiskErrorDto> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: string; message: string };
    assert.doesNotMatch(e.message, /\bat \w+ \(|TypeError|RangeError/, 'a plain message');
    return { code: e.code as DiskErrorDto['code'], message: e.message };
  }
  assert.fail('expected a refusal');
}

/** Starts a job through the contract and waits for its end; `cancel` cancels it right after the start. */
async function runJob(spec: JobSpec, cancel = false): Promise<{ result?: InsideCopyResult; error?: DiskErrorDto }> {
  const end = await jobEnd((l) => jobs.onEvent(l), async () => {
    const jobId = await call<string>('startJob', spec);
    if (cancel) void call('cancelJob', jobId);
    return jobId;
  });
  return end.type === 'done' ? { result: end.result as InsideCopyResult } : { error: end.error };
}

test('partitions: as sfdisk --json and blkid -p say', async () => {
  const got = await call<DiskLayout>('partitions', disk.qcow2);
  const truth = sfdiskPartitions(disk.raw);
  assert.equal(got.table, 'gpt');
  assert.equal(got.sectorSize, truth.sectorSize);
  assert.equal(got.id, truth.id);
  assert.deepEqual(got.findings, []);
  assert.deepEqual(
    got.partitions.map((p) => ({ number: p.number, start: p.start, size: p.size, type: p.type, uuid: p.uuid, name: p.name })),
    truth.partitions.map((p) => ({ number: p.number, start: p.start, size: p.size, type: p.type, uuid: p.uuid, name: p.name })),
  );
  for (const p of got.partitions) {
    const id = blkid(disk.raw, p.start);
    assert.deepEqual([p.filesystem?.type, p.filesystem?.label, p.filesystem?.uuid, p.filesystem?.browsable], [id.TYPE, id.LABEL, id.UUID, true]);
  }
  assert.equal(got.partitions[0].filesystem?.used, dumpe2fs(disk.extImage).used, 'ext4 used bytes as dumpe2fs counts them');
});

test('insideList: a folder as debugfs and ntfsls list it; a file, .. and a bad partition are refused plainly', async () => {
  const docs = await call<InsideListing>('insideList', disk.qcow2, 1, 'docs/');
  assert.equal(docs.path, '/docs');
  // debugfs ls -p: /inode/mode/uid/gid/name/size/ per entry.
  const debugfs = must('debugfs', ['-R', 'ls -p /docs', disk.extImage])
    .stdout.split('\n')
    .map((l) => l.split('/'))
    .filter((f) => f.length >= 7 && f[5] !== '.' && f[5] !== '..')
    .map((f) => ({ name: f[5], size: f[6] === '' ? 0 : Number(f[6]), dir: (Number.parseInt(f[2], 8) & 0o170000) === 0o040000 }));
  assert.deepEqual(
    docs.entries.map((e) => ({ name: e.name, dir: e.type === 'dir', size: e.type === 'dir' ? 0 : e.size })).sort((a, b) => a.name.localeCompare(b.name)),
    debugfs.map((d) => ({ name: d.name, dir: d.dir, size: d.dir ? 0 : d.size })).sort((a, b) => a.name.localeCompare(b.name)),
  );
  const ntfs = await call<InsideListing>('insideList', disk.qcow2, 3, '/');
  const ntfsls = must('ntfsls', [join(work.dir, 'ntfs.img')]).stdout.split('\n').filter(Boolean);
  assert.deepEqual(ntfs.entries.map((e) => e.name).sort(), ntfsls.sort());

  assert.match((await refusal(call('insideList', disk.qcow2, 1, '/hello.txt'))).message, /\/hello\.txt is not a folder \(it is a file\)/);
  assert.match((await refusal(call('insideList', disk.qcow2, 1, '/link-to-readme'))).message, /is not a folder \(it is a symlink to docs\/readme\.txt\)/);
  assert.match((await refusal(call('insideList', disk.qcow2, 1, '/docs/../..'))).message, /cannot go up with '\.\.'/);
  assert.match((await refusal(call('insideList', disk.qcow2, 9, '/'))).message, /there is no partition 9/);
  assert.equal((await refusal(call('insideList', disk.qcow2, -1, '/'))).code, 'EINVAL');
  assert.equal((await refusal(call('insideList', disk.qcow2, 1, 'a\0b'))).code, 'EINVAL');
});

test('insideFree: the image’s data in ext4’s free blocks, bucket for bucket as dumpe2fs and qemu-img map say', async () => {
  const buckets = 1024;
  const got = await call<InsideFreePicture>('insideFree', disk.qcow2, buckets);
  const size = readFileSync(disk.raw).length;
  const bucketSize = Math.ceil(size / buckets);
  assert.equal(got.bucketSize, bucketSize);
  assert.equal(got.virtualSize, size);
  assert.equal(got.buckets.reduce((a, b) => a + b, 0), got.bytes);
  assert.deepEqual(got.partitions.map((p) => [p.number, p.type, p.status]), [[1, 'ext4', 'mapped'], [2, 'vfat', 'mapped'], [3, 'ntfs', 'mapped']]);

  // The oracle: ext4's free blocks (dumpe2fs) on the disk, met with the qcow2's data runs (qemu-img map).
  const ext = disk.parts[0];
  const free = dumpe2fs(disk.extImage).free.map((r) => ({ start: ext.start + r.start, end: ext.start + r.start + r.length }));
  const data = (JSON.parse(must('qemu-img', ['map', '--output=json', disk.qcow2]).stdout) as Array<{ start: number; length: number; data: boolean; depth: number }>)
    .filter((e) => e.data && e.depth === 0)
    .map((e) => ({ start: e.start, end: e.start + e.length }));
  const want = new Array<number>(buckets).fill(0);
  for (const f of free) {
    for (const d of data) {
      let pos = Math.max(f.start, d.start);
      const end = Math.min(f.end, d.end);
      while (pos < end) {
        const b = Math.floor(pos / bucketSize);
        const bEnd = Math.min(end, (b + 1) * bucketSize);
        want[b] += bEnd - pos;
        pos = bEnd;
      }
    }
  }
  let compared = 0;
  for (let b = 0; b < buckets; b++) {
    if (b * bucketSize < ext.start || (b + 1) * bucketSize > ext.start + ext.size) continue;
    assert.equal(got.buckets[b], want[b], `bucket ${b}`);
    compared++;
  }
  assert.ok(compared > 50);
  const inExt = want.reduce((a, b) => a + b, 0);
  assert.ok(inExt >= 8 << 20, `the deleted 8 MiB file lies in free blocks holding data: ${inExt}`);
});

test('inside-copy: files and folders come out as put in; an existing name is refused; a cancel leaves nothing', async () => {
  const file = work.path('out-report.bin');
  const r1 = await runJob({ kind: 'inside-copy', path: disk.qcow2, partition: 1, inner: '/docs/report.bin', target: file });
  assert.equal(r1.error, undefined);
  assert.deepEqual([r1.result?.target, r1.result?.files], [file, 1]);
  assert.ok(readFileSync(file).equals(readFileSync(join(disk.extTree, 'docs', 'report.bin'))));

  const folder = work.path('out-docs');
  const r2 = await runJob({ kind: 'inside-copy', path: disk.qcow2, partition: 1, inner: '/docs', target: folder });
  assert.equal(r2.error, undefined);
  assert.equal(assertSameTree(join(disk.extTree, 'docs'), folder), 4);

  const fat = work.path('out-efi');
  await runJob({ kind: 'inside-copy', path: disk.qcow2, partition: 2, inner: '/EFI', target: fat });
  assert.equal(assertSameTree(join(disk.fatTree, 'EFI'), fat), 1);

  // An existing name: refused, and what is there is left as it was.
  const taken = work.path('taken.txt');
  writeFileSync(taken, 'mine');
  const r3 = await runJob({ kind: 'inside-copy', path: disk.qcow2, partition: 1, inner: '/hello.txt', target: taken });
  assert.equal(r3.error?.code, 'EEXIST');
  assert.match(r3.error!.message, /already exists: choose a new name/);
  assert.equal(readFileSync(taken, 'utf8'), 'mine');

  const cancelled = work.path('out-big');
  const r4 = await runJob({ kind: 'inside-copy', path: disk.qcow2, partition: 1, inner: '/big', target: cancelled }, true);
  assert.equal(r4.error?.code, 'ECANCELLED');
  assert.equal(existsSync(cancelled), false);
  assert.deepEqual(readdirSync(work.dir).filter((n) => n.includes('out-big')), []);

  assert.match((await refusal(call('startJob', { kind: 'inside-copy', path: disk.qcow2, partition: 1, inner: '/x', target: file, extra: 1 }))).message, /unknown field extra/);
  assert.match((await refusal(call('startJob', { kind: 'nope' }))).message, /inside-copy/);
});

test('a hostile MBR (overlaps, a partition past the end) gives findings, never a crash', async () => {
  const img = work.path('hostile.raw');
  must('truncate', ['-s', '8M', img]);
  const mbr = Buffer.alloc(512);
  const entry = (slot: number, type: number, start: number, sectors: number) => {
    const at = 446 + slot * 16;
    mbr[at + 4] = type;
    mbr.writeUInt32LE(start, at + 8);
    mbr.writeUInt32LE(sectors, at + 12);
  };
  entry(0, 0x83, 2048, 8192);
  entry(1, 0x83, 6144, 4096); // overlaps the first
  entry(2, 0x07, 1_000_000, 0xffffffff - 1_000_000); // far past the end of an 8 MiB disk
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(img, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  const got = await call<DiskLayout>('partitions', img);
  assert.equal(got.table, 'mbr');
  const text = got.findings.map((f) => f.message).join('\n');
  assert.match(text, /overlap/i);
  assert.match(text, /past the end/i);
  assert.equal((await call<InsideFreePicture>('insideFree', img, 64)).buckets.length, 64);
});
