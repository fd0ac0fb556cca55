/**
 * convert -t unsafe flushes nothing of its target (as qemu-img's unsafe cache mode), its create and open
 * included, and only its target: skipSyncs is scoped by the temporary's stem (block/file.ts), so a file of
 * another job synced meanwhile is still synced. Counted on FileHandle.datasync itself, every format with a
 * writer, the files written beside a VMDK descriptor and a Parallels bundle's folder among them; the default
 * mode must flush (else the count could not tell anything).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync } from 'node:fs';
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
