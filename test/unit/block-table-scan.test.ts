/**
 * The block tables of VDI and Parallels images are held as one Uint32Array each (4 bytes an entry, as qemu holds
 * them), read straight into it, and walked without a JavaScript loop over unused entries (table-scan.ts): what
 * open adds for a 1 TiB image is its table and nothing per entry. The scans are checked against plain loops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageFile } from '../../src-main/block/file';
import * as tableScan from '../../src-main/block/table-scan';
import { examineBmap, readImage as readVdi } from '../../src-main/formats/vdi/image';
import { createVdi } from '../../src-main/formats/vdi/create';
import { createHeader, DISCARDED, UNALLOCATED } from '../../src-main/formats/vdi/layout';
import { readImage as readParallels } from '../../src-main/formats/parallels/device';
import { createParallels } from '../../src-main/formats/parallels/create';
import { sharedEntries } from '../../src-main/formats/parallels/layout';

const TiB = 2 ** 40;

/** A seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A table of `n` entries, mostly `unused`, with runs and single used entries placed at random. */
function sparseTable(n: number, unused: number, seed: number, values: (r: () => number) => number): Uint32Array {
  const r = rng(seed);
  const t = new Uint32Array(n).fill(unused);
  const used = Math.floor(r() * 40);
  for (let k = 0; k < used; k++) {
    const at = Math.floor(r() * n);
    const len = r() < 0.3 ? 1 + Math.floor(r() * 600) : 1;
    for (let i = at; i < Math.min(n, at + len); i++) t[i] = values(r);
  }
  return t;
}

{
  const scan = tableScan;
  test(`table-scan: endOfRun and forEachUsed agree with a plain loop (tables of many sizes and fills)`, () => {
    for (let seed = 1; seed <= 60; seed++) {
      const n = [0, 1, 255, 256, 257, 1000, 70000][seed % 7];
      const unused = seed % 2 ? 0 : UNALLOCATED;
      const t = sparseTable(n, unused, seed, (r) => (r() < 0.5 ? 1 + Math.floor(r() * 50) : unused === 0 ? DISCARDED : 0));
      const seen: Array<[number, number]> = [];
      scan.forEachUsed(t, unused, (i, v) => seen.push([i, v]));
      const want: Array<[number, number]> = [];
      for (let i = 0; i < n; i++) if (t[i] !== unused) want.push([i, t[i]]);
      assert.deepEqual(seen, want, `seed ${seed}`);
      const r = rng(seed + 1000);
      for (let k = 0; k < 50 && n > 0; k++) {
        const from = Math.floor(r() * n);
        const to = from + Math.floor(r() * (n - from + 1));
        const value = t[from];
        let end = from;
        while (end < to && t[end] === value) end++;
        assert.equal(scan.endOfRun(t, from, to, value), end, `seed ${seed}: run of ${value} from ${from} to ${to}`);
      }
    }
  });
}

test('uint32TableFromLittleEndian: little-endian bytes on disk become the entries, on either path (a VDI map and a Parallels BAT use it)', () => {
  assert.equal(tableScan.HOST_LITTLE_ENDIAN, endianness() === 'LE');
  const r = rng(7);
  const want = Array.from({ length: 1000 }, (_, i) => (i % 3 ? Math.floor(r() * 2 ** 32) : [0, UNALLOCATED, DISCARDED, 1][i % 4]));
  const onDisk = Buffer.alloc(want.length * 4);
  want.forEach((v, i) => onDisk.writeUInt32LE(v, i * 4));
  const read = () => {
    const table = new Uint32Array(want.length);
    new Uint8Array(table.buffer).set(onDisk);
    return table;
  };
  const table = read();
  assert.equal(tableScan.uint32TableFromLittleEndian(table), table, 'converted in place');
  assert.deepEqual([...table], want, "on this host's path");
  const swapped = read();
  assert.deepEqual([...tableScan.uint32TableFromLittleEndian(swapped, false)], want, 'the byte-swapping loop reads each entry as little-endian');
});

test('vdi examineBmap: shared, out-of-range and past-count entries as a plain loop with an owner per data block finds them', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const blocks = [16, 300, 5000][seed % 3];
    const h = { ...createHeader(blocks * 1048576, false, '', ''), blocksAllocated: Math.floor(blocks / 3) };
    const bmap = sparseTable(blocks, UNALLOCATED, seed, (r) => (r() < 0.05 ? DISCARDED : Math.floor(r() * (blocks + 4))));
    const owner = new Map<number, number>();
    const want = { tooLarge: [] as number[], shared: [] as Array<[number, number]>, counted: 0, pastCount: [] as number[] };
    for (let g = 0; g < blocks; g++) {
      const e = bmap[g];
      if (e === UNALLOCATED || e === DISCARDED) continue;
      if (e >= blocks) {
        want.tooLarge.push(g);
        continue;
      }
      want.counted++;
      const first = owner.get(e);
      if (first !== undefined) want.shared.push([g, first]);
      else {
        owner.set(e, g);
        if (e >= h.blocksAllocated) want.pastCount.push(g);
      }
    }
    assert.deepEqual(examineBmap(h, bmap), want, `seed ${seed}`);
  }
});

test('parallels sharedEntries: each entry naming a cluster an earlier entry names, with that earlier entry', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const n = [10, 400, 6000][seed % 3];
    const bat = sparseTable(n, 0, seed, (r) => 1 + Math.floor(r() * 30));
    const first = new Map<number, number>();
    const want: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      if (bat[i] === 0) continue;
      const f = first.get(bat[i]);
      if (f === undefined) first.set(bat[i], i);
      else want.push([i, f]);
    }
    assert.deepEqual(sharedEntries(bat), want, `seed ${seed}`);
  }
});

/** What open's table read leaves held in ArrayBuffers, and the table. */
async function heldByRead(path: string, read: (f: ImageFile) => Promise<Uint32Array>): Promise<{ held: number; table: Uint32Array }> {
  const file = await ImageFile.open(path, false);
  try {
    const before = process.memoryUsage().arrayBuffers;
    const table = await read(file);
    return { held: process.memoryUsage().arrayBuffers - before, table };
  } finally {
    await file.close();
  }
}

test('a 1 TiB VDI and Parallels image: the table is one Uint32Array of 4 bytes an entry, and reading it holds nothing more', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dw-table-'));
  try {
    const vdi = join(dir, 'big.vdi');
    await createVdi(vdi, TiB, { options: {} });
    const v = await heldByRead(vdi, async (f) => (await readVdi(f)).bmap);
    assert.ok(v.table instanceof Uint32Array);
    assert.equal(v.table.length, TiB / 1048576);
    assert.equal(v.table.buffer.byteLength, v.table.length * 4, 'the map owns exactly its entries');
    // The old read held the bytes and the parsed table (8 MiB); now the table alone (4 MiB), with 256 KiB to spare.
    assert.ok(v.held <= v.table.byteLength + 256 * 1024, `reading the map holds ${v.held} bytes for a ${v.table.byteLength}-byte table`);
    assert.equal(v.table.every((e) => e === UNALLOCATED), true);

    const hds = join(dir, 'big.parallels');
    await createParallels(hds, TiB, { options: {} });
    const p = await heldByRead(hds, async (f) => (await readParallels(f)).bat);
    assert.equal(p.table.length, TiB / 1048576);
    assert.equal(p.table.buffer.byteLength, p.table.length * 4);
    assert.ok(p.held <= p.table.byteLength + 256 * 1024, `reading the BAT holds ${p.held} bytes for a ${p.table.byteLength}-byte table`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

{
  const scan = tableScan;
  test(`RunMemo: answers as endOfRun for questions inside and outside the remembered run, and after forget() a changed table`, () => {
    const t = sparseTable(70000, 0, 7, (r) => 1 + Math.floor(r() * 9));
    const memo = new scan.RunMemo(t);
    const r = rng(99);
    for (let k = 0; k < 2000; k++) {
      const at = k < 1000 ? Math.floor(r() * t.length) : (k * 37) % t.length;
      const to = at + Math.floor(r() * (t.length - at + 1));
      assert.equal(memo.endOf(at, to, t[at]), scan.endOfRun(t, at, to, t[at]), `question ${k}`);
      if (k % 100 === 0) {
        t[Math.floor(r() * t.length)] = t[at] === 0 ? 5 : 0;
        memo.forget();
      }
    }
  });
}
