/**
 * qcow2 refcount structures and codecs on their own: allocation, freeing and refcount-table growth checked
 * against a model of what must be counted, for every refcount width; compressed descriptors round-trip.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { OPEN_WRITABLE_NO_BACKING, scratch } from '../helpers';
import { createQcow2 } from '../../src-main/formats/qcow2/create';
import { openQcow2 } from '../../src-main/formats/qcow2/device';
import { Refcounts } from '../../src-main/formats/qcow2/refcount';
import { compressedExtent, encodeCompressedEntry } from '../../src-main/formats/qcow2/layout';
import { ImageFile } from '../../src-main/block/file';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-qcow2-unit-');
after(() => s.cleanup());

const OPEN = OPEN_WRITABLE_NO_BACKING;

test('compressed cluster descriptors round-trip for every cluster size', () => {
  for (let bits = 9; bits <= 21; bits++) {
    for (const [offset, length] of [[512 * 7 + 13, 100], [2 ** 30 + 5, 2 ** bits - 1], [1000, 1]]) {
      const e = encodeCompressedEntry(offset, length, bits);
      const d = compressedExtent(e, bits);
      assert.equal(d.offset, offset);
      // The descriptor counts whole sectors: it covers at least the data, ending at a sector boundary.
      assert.ok(d.length >= length && (d.offset + d.length) % 512 === 0, `bits ${bits}`);
      assert.ok(d.offset + d.length - (offset + length) < 512);
    }
  }
});

for (const bits of [1, 2, 4, 8, 16, 32, 64]) {
  test(`refcounts of width ${bits}: allocation, freeing and table growth keep exactly what is in use counted`, async () => {
    const path = s.path(`rc${bits}.qcow2`);
    await createQcow2(path, 1 << 20, { options: { cluster_size: 512, refcount_bits: bits } });
    const dev = await openQcow2(path, OPEN);
    const refs = await dev.refcounts();
    const tableBefore = refs.tableOffset;
    // Clusters the image itself uses: header, refcount table and block, L1.
    const inUse = new Set<number>();
    for (let c = 0; c < Math.ceil(dev.file.size / 512); c++) if ((await refs.get(c)) > 0) inUse.add(c);
    const mine: number[][] = [];
    let seed = bits;
    const rnd = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    for (let i = 0; i < 300; i++) {
      const len = 1 + Math.floor(rnd() * 12);
      const at = (await refs.alloc(len)) / 512;
      for (let c = at; c < at + len; c++) {
        assert.ok(!inUse.has(c), `cluster ${c} handed out twice`);
        inUse.add(c);
      }
      mine.push([at, len]);
      await dev.file.write(at * 512, new Uint8Array(len * 512)); // as a real allocation would
      if (bits > 1 && i % 7 === 3) {
        // Share a cluster (a snapshot would), then let it go again.
        await refs.change(at, 1, +1);
        assert.equal(await refs.get(at), 2);
        await refs.change(at, 1, -1);
      }
      if (i % 5 === 4) {
        const [fa, fl] = mine.splice(Math.floor(rnd() * mine.length), 1)[0];
        await refs.change(fa, fl, -1);
        for (let c = fa; c < fa + fl; c++) inUse.delete(c);
      }
    }
    // One long run past what one table cluster of refcount blocks covers: the table must grow.
    const covered = refs.coveredClusters;
    const bigLen = covered + 100;
    const big = (await refs.alloc(bigLen)) / 512;
    for (let c = big; c < big + bigLen; c++) inUse.add(c);
    mine.push([big, bigLen]);
    await dev.file.write((big + bigLen) * 512 - 1, new Uint8Array(1));
    assert.notEqual(refs.tableOffset, tableBefore, 'the refcount table grew and moved');
    assert.ok(refs.coveredClusters > covered);
    await dev.close();
    // Read everything back from disk and count: the refcount structures must account for themselves too.
    const file = await ImageFile.open(path, false);
    const hdr = new Uint8Array(72);
    await file.readExact(0, hdr);
    const v = new DataView(hdr.buffer);
    const fresh = await Refcounts.load({
      file,
      clusterBits: 9,
      refcountBits: bits,
      tableOffset: Number(v.getBigUint64(48)),
      tableClusters: v.getUint32(56),
      writeTableLocation: async () => undefined,
    });
    const meta = new Set<number>();
    for (let c = fresh.tableOffset / 512; c < fresh.tableOffset / 512 + fresh.tableClusters; c++) meta.add(c);
    for (const b of fresh.table) if (b) meta.add(b / 512);
    const l1 = Number(v.getBigUint64(40));
    const l1Size = v.getUint32(36);
    for (let c = l1 / 512; c < Math.ceil((l1 + l1Size * 8) / 512); c++) meta.add(c);
    meta.add(0);
    const expected = new Set<number>([...meta, ...[...inUse].filter((c) => mine.some(([a, l]) => c >= a && c < a + l))]);
    const end = Math.ceil(file.size / 512) + 64;
    for (let c = 0; c < end; c++) {
      const rc = await fresh.get(c);
      assert.equal(rc, expected.has(c) ? 1 : 0, `cluster ${c}`);
    }
    await file.close();
  });
}

test('refcount overflow is a plain DiskError, not a wrapped number', async () => {
  const path = s.path('ovf.qcow2');
  await createQcow2(path, 1 << 20, { options: { refcount_bits: 1 } });
  const dev = await openQcow2(path, OPEN);
  const refs = await dev.refcounts();
  await assert.rejects(refs.change(0, 1, +1), (e: unknown) => e instanceof DiskError && /exceed 1/.test((e as Error).message));
  await dev.close();
});

test('create refuses option combinations qemu-img refuses', async () => {
  const bad: Array<Record<string, string | number | boolean>> = [
    { compat: '0.10', lazy_refcounts: true },
    { compat: '0.10', refcount_bits: 8 },
    { compat: '0.10', extended_l2: true },
    { extended_l2: true, cluster_size: 4096 },
  ];
  for (const options of bad) {
    await assert.rejects(createQcow2(s.path('bad.qcow2'), 1 << 20, { options }), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL', JSON.stringify(options));
  }
  await assert.rejects(
    createQcow2(s.path('bad2.qcow2'), 1 << 20, { options: { preallocation: 'metadata' }, backingFile: 'x.raw', backingFormat: 'raw' }),
    (e: unknown) => e instanceof DiskError && /extended_l2/.test((e as Error).message),
  );
});
