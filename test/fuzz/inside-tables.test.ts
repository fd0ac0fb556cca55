/**
 * Fuzzing the "inside the disk" readers: a seeded loop mutates the partition tables (MBR, EBR chain, GPT headers
 * and entries) and the file systems' superblocks and first structures (ext superblock and group descriptors,
 * FAT boot sector, FAT and root folder, NTFS boot sector and MFT records) of disks built by sgdisk/sfdisk,
 * mke2fs, mkfs.vfat and mkfs.ntfs, then inspects the disk, lists the root folders, maps the files and the free
 * space. Every failure must be a DiskError: never a RangeError, a TypeError, a hang, a read past the disk or an
 * allocation larger than the disk. The same seed gives the same mutations.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { DiskError } from '../../src-main/block/errors';
import { inspectDisk, openVolume, type ByteSource } from '../../src-main/inside';
import { must, scratch, seededRandom } from '../helpers';

const SEED = Number(process.env.DISKWRIGHT_FUZZ_SEED ?? 0x1a51de);
const CASES = Number(process.env.DISKWRIGHT_FUZZ_CASES ?? 150);
const MiB = 1 << 20;
const s = scratch('dw-fuzz-inside-');
after(() => s.cleanup());

/** A disk in memory that records any read outside it and the largest read asked for. */
class WatchedDisk implements ByteSource {
  largest = 0;
  outside: string[] = [];
  reads = 0;
  constructor(readonly bytes: Uint8Array) {}
  get size() {
    return this.bytes.length;
  }
  async read(offset: number, into: Uint8Array): Promise<void> {
    this.reads++;
    this.largest = Math.max(this.largest, into.length);
    if (offset < 0 || offset + into.length > this.bytes.length) this.outside.push(`${offset}+${into.length}`);
    into.set(this.bytes.subarray(offset, offset + into.length));
  }
}

interface Built {
  name: string;
  bytes: Uint8Array;
  /** Byte ranges whose mutation is interesting. */
  regions: Array<[number, number]>;
}

function build(): Built[] {
  const gpt = s.path('gpt.raw');
  must('truncate', ['-s', '20M', gpt]);
  must('sgdisk', ['-n1:2048:+8M', '-t1:8300', '-n2:0:+4M', '-t2:0700', '-n3:0:+6M', '-t3:0700', gpt]);
  const tree = s.path('tree');
  must('mkdir', ['-p', `${tree}/sub`]);
  for (let i = 0; i < 20; i++) writeFileSync(`${tree}/${i % 2 ? 'sub/' : ''}file ${i}`, Buffer.alloc(i * 3000 + 1, i));
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, s.path('ext.fs'), '8M']);
  must('truncate', ['-s', '4M', s.path('fat.fs')]);
  must('mkfs.vfat', [s.path('fat.fs')]);
  must('mcopy', ['-s', '-i', s.path('fat.fs'), `${tree}/sub`, `${tree}/file 0`, '::/']);
  must('truncate', ['-s', '6M', s.path('ntfs.fs')]);
  must('mkfs.ntfs', ['-F', '-Q', '-q', s.path('ntfs.fs')]);
  must('ntfscp', ['-q', s.path('ntfs.fs'), `${tree}/file 4`, 'file 4']);
  const g = new Uint8Array(readFileSync(gpt));
  const place = (fs: string, at: number) => g.set(readFileSync(s.path(fs)), at);
  place('ext.fs', 1 * MiB);
  place('fat.fs', 9 * MiB);
  place('ntfs.fs', 13 * MiB);
  const mbr = s.path('mbr.raw');
  must('truncate', ['-s', '12M', mbr]);
  must('sfdisk', ['-q', mbr], { input: Buffer.from('label: dos\n,4M,1\n,,5\n,1M,83\n,1M,83\n,1M,83\n') });
  const m = new Uint8Array(readFileSync(mbr));
  m.set(readFileSync(s.path('fat.fs')), 1 * MiB);
  return [
    {
      name: 'GPT with ext4, FAT, NTFS',
      bytes: g,
      regions: [
        [0, 512], [512, 1024], [1024, 1024 + 512], [g.length - 512, g.length], // MBR, GPT header, entries, backup header
        [MiB + 1024, MiB + 2048], [MiB + 2048, MiB + 4096], // ext superblock, group descriptors
        [9 * MiB, 9 * MiB + 512], [9 * MiB + 512, 9 * MiB + 8192], // FAT boot sector, FAT and root
        [13 * MiB, 13 * MiB + 512],
      ],
    },
    { name: 'MBR with a chain of logical partitions', bytes: m, regions: [[0, 512], [4 * MiB + MiB, 4 * MiB + MiB + 512], [MiB, MiB + 512]] },
  ];
}

/** Adds the NTFS MFT records (found by the boot sector) to the regions worth mutating. */
function ntfsRegions(d: Built): void {
  const at = 13 * MiB;
  if (d.bytes.length < at + 512) return;
  const v = new DataView(d.bytes.buffer, d.bytes.byteOffset);
  const cs = v.getUint16(at + 11, true) * d.bytes[at + 13];
  const mft = at + Number(v.getBigUint64(at + 48, true)) * cs;
  if (mft > 0 && mft + 8 * 1024 <= d.bytes.length) d.regions.push([mft, mft + 8 * 1024]);
}

async function exercise(disk: WatchedDisk): Promise<void> {
  const layout = await inspectDisk(disk);
  assert.ok(Array.isArray(layout.findings));
  for (const p of layout.partitions) {
    if (!p.filesystem?.browsable) continue;
    const vol = await openVolume(disk, p.number).catch(expectDiskError);
    if (!vol) continue;
    await vol.fs.freeRanges().catch(expectDiskError);
    const entries = await vol.fs.list('/').catch(expectDiskError);
    for (const e of (entries ?? []).slice(0, 12)) {
      if (e.type === 'file') await vol.fs.runs('/' + e.name).catch(expectDiskError);
      if (e.type === 'dir') await vol.fs.list('/' + e.name).catch(expectDiskError);
    }
  }
}

function expectDiskError(err: unknown): undefined {
  if (!(err instanceof DiskError)) throw err;
  return undefined;
}

test(`mutated tables and superblocks give findings or DiskErrors, never a crash, a hang or a read past the disk (seed ${SEED}, ${CASES} cases)`, { timeout: 600_000 }, async () => {
  const disks = build();
  for (const d of disks) ntfsRegions(d);
  // The unmutated disks read cleanly: the mutations start from something that works.
  for (const d of disks) await exercise(new WatchedDisk(d.bytes));
  const rnd = seededRandom(SEED);
  const int = (n: number) => Math.floor(rnd() * n);
  let errors = 0;
  for (let c = 0; c < CASES; c++) {
    const d = disks[c % disks.length];
    const saved: Array<[number, number]> = [];
    const flips = 1 + int(8);
    for (let i = 0; i < flips; i++) {
      const [a, b] = d.regions[int(d.regions.length)];
      const at = a + int(b - a);
      saved.push([at, d.bytes[at]]);
      const kind = int(4);
      d.bytes[at] = kind === 0 ? 0 : kind === 1 ? 0xff : kind === 2 ? d.bytes[at] ^ (1 << int(8)) : int(256);
    }
    const disk = new WatchedDisk(d.bytes);
    try {
      await exercise(disk);
    } catch (err) {
      if (!(err instanceof DiskError)) throw new Error(`case ${c} (${d.name}): ${(err as Error).stack}`);
      errors++;
    } finally {
      for (const [at, v] of saved.reverse()) d.bytes[at] = v;
    }
    assert.deepEqual(disk.outside, [], `case ${c}: reads outside the disk`);
    assert.ok(disk.largest <= d.bytes.length, `case ${c}: a read of ${disk.largest} bytes from a ${d.bytes.length}-byte disk`);
    assert.ok(disk.reads < 200_000, `case ${c}: ${disk.reads} reads: a loop`);
  }
  assert.ok(errors < CASES, 'some mutations still read');
});
