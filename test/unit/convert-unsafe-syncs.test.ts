/**
 * convert -t unsafe flushes nothing of its target (as qemu-img's unsafe cache mode), its create and open
 * included, and only its target: skipSyncs is scoped by the temporary's stem (block/file.ts), so a file of
 * another job synced meanwhile is still synced. Counted on FileHandle.datasync itself, every format with a
 * writer, the files written beside a VMDK descriptor and a Parallels bundle's folder among them; the default
 * mode must flush (else the count could not tell anything).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { promises as fsp, writeFileSync } from 'node:fs';
import { ImageFile, skipSyncs } from '../../src-main/block/file';
import { convertImage } from '../../src-main/services/convert';
import { scratch } from '../helpers';

async function countingSyncs<T>(work: () => Promise<T>): Promise<{ result: T; syncs: string[] }> {
  const probe = await fsp.open(__filename, 'r');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void>; sync: () => Promise<void> };
  await probe.close();
  const { datasync, sync } = proto;
  const syncs: string[] = [];
  proto.datasync = function (this: fsp.FileHandle) {
    syncs.push(`datasync fd ${this.fd}`);
    return datasync.call(this);
  };
  proto.sync = function (this: fsp.FileHandle) {
    syncs.push(`sync fd ${this.fd}`);
    return sync.call(this);
  };
  try {
    return { result: await work(), syncs };
  } finally {
    proto.datasync = datasync;
    proto.sync = sync;
  }
}

const TARGETS: Array<{ format: string; name: string; options?: Record<string, string> }> = [
  { format: 'qcow2', name: 'o.qcow2' },
  { format: 'raw', name: 'o.raw' },
  { format: 'vmdk', name: 'split.vmdk', options: { subformat: 'twoGbMaxExtentSparse' } },
  { format: 'vhdx', name: 'o.vhdx' },
  { format: 'vdi', name: 'o.vdi' },
  { format: 'vpc', name: 'o.vhd' },
  { format: 'parallels', name: 'o.hdd' },
];

test('convert -t unsafe syncs nothing of its target, every format; the default mode does', async (t) => {
  const s = scratch('dw-unsafe-syncs-');
  t.after(s.cleanup);
  const src = s.path('src.raw');
  const data = Buffer.alloc(4 << 20);
  for (let i = 0; i < data.length; i += 4096) data[i] = (i >> 12) & 0xff || 1;
  writeFileSync(src, data);
  for (const { format, name, options } of TARGETS) {
    for (const cache of ['unsafe', 'writeback'] as const) {
      const target = s.path(`${cache}-${name}`);
      const { syncs } = await countingSyncs(() => convertImage({ source: src, sourceFormat: 'raw', target, targetFormat: format, options, cache }));
      if (cache === 'unsafe') assert.deepEqual(syncs, [], `${format} -t unsafe synced`);
      else assert.ok(syncs.length > 0, `${format} by default syncs its target`);
    }
  }
});

test("skipSyncs skips only the files under its stem: another file's sync meanwhile happens", async (t) => {
  const s = scratch('dw-unsafe-syncs-');
  t.after(s.cleanup);
  const mine = await ImageFile.create(s.path('.t.raw.diskwright-0000abcd.tmp'));
  const beside = await ImageFile.create(s.path('.t.raw.diskwright-0000abcd.extent-1.raw.tmp'));
  const other = await ImageFile.create(s.path('other.raw'));
  t.after(() => Promise.all([mine.close(), beside.close(), other.close()]));
  const keepSyncs = skipSyncs(s.path('.t.raw.diskwright-0000abcd.'));
  const { syncs } = await countingSyncs(async () => {
    await mine.sync();
    await beside.sync();
    await other.sync();
  });
  keepSyncs();
  assert.equal(syncs.length, 1, 'only the file outside the stem synced');
  // Once it is over, the same files sync again.
  const after = await countingSyncs(async () => {
    await mine.sync();
    await beside.sync();
  });
  assert.equal(after.syncs.length, 2);
});

/** Runs `work` counting fs.fdatasync (the callback form: ImageFile's writeback while a copy runs), by descriptor. */
async function countingWritebacks<T>(work: () => Promise<T>): Promise<number> {
  const original = fs.fdatasync;
  let calls = 0;
  (fs as { fdatasync: unknown }).fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    calls++;
    return original(fd, cb);
  };
  try {
    await work();
    return calls;
  } finally {
    (fs as { fdatasync: unknown }).fdatasync = original;
  }
}

test('a target that will be flushed goes to the disk while the copy runs; an unsafe one does not, new or existing (-n)', async (t) => {
  const s = scratch('dw-unsafe-syncs-');
  t.after(s.cleanup);
  // 80 MiB of data (every 4 KiB block non-zero, so all of it is written): past two of ImageFile's 32 MiB steps.
  const src = s.path('src.raw');
  const data = Buffer.alloc(80 << 20);
  for (let i = 0; i < data.length; i += 4096) data[i] = 1;
  writeFileSync(src, data);
  for (const format of ['raw', 'qcow2']) {
    const early = await countingWritebacks(() => convertImage({ source: src, sourceFormat: 'raw', target: s.path(`wb.${format}`), targetFormat: format, cache: 'writeback' }));
    assert.ok(early >= 1, `${format}: no writeback was started during an 80 MiB copy`);
    const unsafe = await countingWritebacks(() => convertImage({ source: src, sourceFormat: 'raw', target: s.path(`unsafe.${format}`), targetFormat: format, cache: 'unsafe' }));
    assert.equal(unsafe, 0, `${format} -t unsafe started a writeback`);
    // -n: into the existing image, written in place (no temporary under skipSyncs; the device's skipFlushes says it).
    const inPlace = (cache: 'unsafe' | 'writeback') => countingWritebacks(() => convertImage({ source: src, sourceFormat: 'raw', target: s.path(`wb.${format}`), targetFormat: format, cache, existingTarget: true }));
    assert.ok((await inPlace('writeback')) >= 1, `${format} -n: no writeback was started`);
    assert.equal(await inPlace('unsafe'), 0, `${format} -n -t unsafe started a writeback`);
  }
  // Small writes never reach a step: nothing is started for them.
  const small = await ImageFile.create(s.path('small.raw'));
  t.after(() => small.close());
  assert.equal(await countingWritebacks(() => small.write(0, Buffer.alloc(1 << 20, 1))), 0);
});

test("a writeback's failure is reported by the next sync, not lost to it", async (t) => {
  const s = scratch('dw-unsafe-syncs-');
  t.after(s.cleanup);
  const file = await ImageFile.create(s.path('failing.raw'));
  t.after(() => file.close());
  const original = fs.fdatasync;
  // The kernel reports a write-back error once per open file: after the background fdatasync took it, the final
  // one on the same descriptor would succeed.
  (fs as { fdatasync: unknown }).fdatasync = (_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 })));
  };
  try {
    await file.write(0, Buffer.alloc(40 << 20, 1));
  } finally {
    (fs as { fdatasync: unknown }).fdatasync = original;
  }
  await assert.rejects(file.sync(), (err: Error & { code?: string }) => err.name === 'DiskError' && /failing\.raw/.test(err.message));
  // Reported once: the next sync is the file's own again.
  await file.sync();
});
