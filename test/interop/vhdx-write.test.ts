/**
 * VHDX images we create and write (dynamic, fixed, block sizes, a log size, block_state_zero off, 4 KiB logical
 * sectors; convert of a real ext4 image) pass `qemu-img check`, equal the same writes applied to a raw file under
 * `qemu-img compare`, and 7-Zip extracts the same bytes. Differencing images we create (which qemu-img cannot)
 * read correctly after writes at both levels, checked against a raw copy; a parent changed afterwards makes the
 * chain stale, which is refused in a plain line.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { openImage } from '../../src-main/registry';
import { dw, dwOk, must, scratch, seededRandom } from '../helpers';
import { assert7zipReads, assertPlainError, assertQemuAccepts, assertSameContent, io, MiB } from './vhdx-common';
import type { BlockDevice } from '../../src-main/block/types';

const s = scratch('dw-vhdx-write-');
after(() => s.cleanup());

type Op = { kind: 'write'; at: number; data: Uint8Array } | { kind: 'zero'; at: number; len: number };

/** A small seeded sequence of writes and zeroings over `size` bytes: unaligned, block-crossing, whole blocks. */
function ops(seed: number, size: number, blockSize: number, n = 12): Op[] {
  const rnd = seededRandom(seed);
  const out: Op[] = [];
  const pick = (max: number) => Math.floor(rnd() * max);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.7) {
      const len = 1 + pick(Math.min(3 * blockSize, 200 * 1024));
      const at = pick(size - len);
      const data = new Uint8Array(len);
      for (let k = 0; k < len; k += 512) data.fill(1 + pick(250), k, Math.min(len, k + 512));
      out.push({ kind: 'write', at, data });
    } else if (r < 0.85) {
      const b = pick(Math.ceil(size / blockSize));
      out.push({ kind: 'zero', at: b * blockSize, len: Math.min(blockSize, size - b * blockSize) });
    } else {
      const len = 1 + pick(100 * 1024);
      out.push({ kind: 'zero', at: pick(size - len), len });
    }
  }
  return out;
}

async function apply(dev: BlockDevice, list: Op[], model: Buffer): Promise<void> {
  for (const op of list) {
    if (op.kind === 'write') {
      await dev.write(op.at, op.data);
      model.set(op.data, op.at);
    } else {
      await dev.writeZeroes(op.at, op.len);
      model.fill(0, op.at, op.at + op.len);
    }
  }
}

async function writeWith(path: string, list: Op[], model: Buffer): Promise<void> {
  const dev = await openImage(path, { readOnly: false, backingPolicy: 'inside-folder' });
  try {
    await apply(dev, list, model);
  } finally {
    await dev.close();
  }
}

const CASES: Array<[string, number]> = [
  ['', 20 * MiB],
  ['block_size=1M,log_size=2M', 9 * MiB],
  ['block_size=1M', 5 * MiB + 512],
  ['block_state_zero=off,block_size=2M', 7 * MiB],
  ['subformat=fixed,block_size=1M', 5 * MiB],
  ['logical_sector_size=4096,block_size=1M', 6 * MiB],
];

CASES.forEach(([opts, size], i) => {
  test(`created with '${opts || 'defaults'}' and written: qemu-img check, compare and 7-Zip agree`, async () => {
    const p = s.path(`w${i}.vhdx`);
    dwOk(['create', '-f', 'vhdx', ...(opts ? ['-o', opts] : []), p, String(size)]);
    const info = JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
    assert.equal(info['virtual-size'], size);
    // qemu 7.2 opens no image with 4 KiB logical sectors ("Operation not supported"); 7-Zip is the oracle there.
    const qemuReads = !opts.includes('logical_sector_size=4096');
    // 7-Zip refuses any VHDX whose size is not whole MiB (qemu-img's own too).
    const sevenReads = size % MiB === 0;
    if (qemuReads) {
      const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);
      assert.equal(q['virtual-size'], size);
      assert.equal(q['cluster-size'], info['cluster-size']);
      assertQemuAccepts(p);
    }
    const model = Buffer.alloc(size);
    await writeWith(p, ops(100 + i, size, info['cluster-size']), model);
    const raw = s.path(`w${i}.raw`);
    writeFileSync(raw, model);
    if (sevenReads) assert7zipReads(p, model, opts);
    const ours = s.path(`w${i}.ours.raw`);
    dwOk(['convert', '-O', 'raw', p, ours]);
    assert.ok(readFileSync(ours).equals(model), `${opts}: we read back what we wrote`);
    if (!qemuReads) return;
    assertQemuAccepts(p, raw);
    // And qemu writes into our image: still consistent, for qemu and for us.
    io(p, ['write -P 0x77 4096 70000']);
    model.fill(0x77, 4096, 4096 + 70000);
    writeFileSync(raw, model);
    assertQemuAccepts(p, raw);
    assertSameContent(p, s.path, opts);
  });
});

test('convert -O vhdx of a real ext4 image (mke2fs -d): qemu-img compare finds it identical; 7-Zip reads it', () => {
  const tree = s.path('tree');
  mkdirSync(tree);
  const rnd = seededRandom(7);
  for (let i = 0; i < 20; i++) {
    const b = Buffer.alloc(1 + Math.floor(rnd() * 300000));
    for (let k = 0; k < b.length; k++) b[k] = (k * 7 + i) & 0xff;
    writeFileSync(`${tree}/f${i}.bin`, b);
  }
  const ext4 = s.path('fs.raw');
  must('mke2fs', ['-q', '-t', 'ext4', '-d', tree, ext4, '24M']);
  const p = s.path('fs.vhdx');
  dwOk(['convert', '-O', 'vhdx', '-o', 'block_size=1M', ext4, p]);
  assertQemuAccepts(p, ext4);
  assert7zipReads(p, readFileSync(ext4), 'ext4');
});

test('differencing chain we create: reads after writes at both levels equal a raw copy; a changed parent is a stale chain', async () => {
  const size = 6 * MiB;
  const base = s.path('base.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', base, String(size)]);
  const model = Buffer.alloc(size);
  await writeWith(base, ops(1, size, MiB, 8), model);
  const mid = s.path('mid.vhdx');
  dwOk(['create', '-f', 'vhdx', '-b', 'base.vhdx', '-F', 'vhdx', mid]);
  const info = JSON.parse(dwOk(['info', '--output', 'json', mid]).stdout);
  assert.equal(info['backing-filename'], 'base.vhdx');
  assert.equal(info['virtual-size'], size);
  assert.equal(info['format-specific'].data.subformat, 'differencing');
  await writeWith(mid, ops(2, size, MiB, 10), model);
  const top = s.path('top.vhdx');
  dwOk(['create', '-f', 'vhdx', '-b', 'mid.vhdx', top]);
  await writeWith(top, ops(3, size, MiB, 10), model);
  const raw = s.path('chain.raw');
  dwOk(['convert', '-O', 'raw', top, raw]);
  assert.ok(readFileSync(raw).equals(model), 'the chain reads as the raw copy');
  assert7zipReads(top, model, '7-Zip follows the chain'); // 7-Zip opens the parents by their locators
  const map = JSON.parse(dwOk(['map', '--output', 'json', top]).stdout) as Array<{ depth: number }>;
  assert.ok(map.some((r) => r.depth === 0) && map.some((r) => r.depth > 0), 'map shows data at several levels');
  // qemu-img 7.2 cannot open differencing VHDX; our convert flattens the chain into one qemu accepts.
  const flat = s.path('flat.vhdx');
  dwOk(['convert', '-O', 'vhdx', top, flat]);
  assertQemuAccepts(flat, raw);
  // Writing to the parent gives it a new data write GUID: the child's linkage is stale now.
  const dev = await openImage(mid, { readOnly: false, backingPolicy: 'inside-folder' });
  await dev.write(0, new Uint8Array(512).fill(9));
  await dev.close();
  assertPlainError(['convert', '-O', 'raw', top, s.path('stale.raw')], /stale/);
  assert.equal(dw(['info', mid]).status, 0);
});

test('a differencing image whose parent is missing or outside the folder: plain errors', () => {
  const dir = s.path('sub');
  mkdirSync(dir);
  const parent = s.path('outside.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', parent, '4M']);
  const child = `${dir}/child.vhdx`;
  dwOk(['create', '-f', 'vhdx', '-b', '../outside.vhdx', child]);
  // The CLI follows parents as qemu-img follows backing files; a missing parent is one plain line.
  dwOk(['convert', '-O', 'raw', child, s.path('child.raw')]);
  writeFileSync(parent, Buffer.alloc(0)); // not an image any more
  assertPlainError(['convert', '-O', 'raw', child, s.path('child2.raw')], /too small to be a VHDX/);
  rmSync(parent);
  assertPlainError(['convert', '-O', 'raw', child, s.path('child3.raw')], /parent image was not found/);
});

test('discard releases whole blocks (they read as zeros, qemu-img agrees); a fixed image refuses; writeZeroes keeps a fixed image fixed', async () => {
  const p = s.path('disc.vhdx');
  dwOk(['create', '-f', 'vhdx', '-o', 'block_size=1M', p, '4M']);
  const data = s.path('disc.bin');
  writeFileSync(data, Buffer.alloc(3 * MiB, 0x3c));
  dwOk(['write', p, '0', data]);
  dwOk(['discard', p, String(MiB / 2), String(2 * MiB)]); // block 1 whole; halves of blocks 0 and 2 stay
  const model = Buffer.alloc(4 * MiB);
  model.fill(0x3c, 0, 3 * MiB);
  model.fill(0, MiB, 2 * MiB);
  const raw = s.path('disc.raw');
  writeFileSync(raw, model);
  assertQemuAccepts(p, raw);
  const f = s.path('fixed.vhdx');
  dwOk(['create', '-f', 'vhdx', '-o', 'subformat=fixed,block_size=1M', f, '2M']);
  assertPlainError(['discard', f, '0', String(2 * MiB)], /fixed/);
  const size = readFileSync(f).length;
  const m2 = Buffer.alloc(2 * MiB);
  await writeWith(f, [{ kind: 'write', at: 0, data: new Uint8Array(2 * MiB).fill(5) }, { kind: 'zero', at: MiB, len: MiB }], m2);
  assert.equal(readFileSync(f).length, size, 'no block moved to the end of the file');
  const raw2 = s.path('fixed.raw');
  writeFileSync(raw2, m2);
  assertQemuAccepts(f, raw2);
});

test('differencing over a parent with 4 KiB logical sectors: unaligned writes widen to whole sectors; 7-Zip reads the chain alike', async () => {
  const size = 5 * MiB;
  const parent = s.path('p4k.vhdx');
  dwOk(['create', '-f', 'vhdx', '-o', 'logical_sector_size=4096,block_size=1M', parent, String(size)]);
  const model = Buffer.alloc(size);
  await writeWith(parent, [{ kind: 'write', at: 0, data: new Uint8Array(size).fill(7) }], model);
  const child = s.path('c4k.vhdx');
  dwOk(['create', '-f', 'vhdx', '-b', 'p4k.vhdx', child]);
  assert.equal(JSON.parse(dwOk(['info', '--output', 'json', child]).stdout)['format-specific'].data['logical-sector-size'], 4096);
  const bytes = (len: number, v: number) => new Uint8Array(len).fill(v);
  await writeWith(
    child,
    [
      { kind: 'write', at: 100, data: bytes(10, 1) },
      { kind: 'write', at: 4090, data: bytes(20, 2) },
      { kind: 'write', at: 2 * MiB - 5, data: bytes(10, 3) },
      { kind: 'zero', at: 3 * MiB + 1000, len: 5000 },
      { kind: 'zero', at: 4 * MiB, len: MiB },
    ],
    model,
  );
  const raw = s.path('c4k.raw');
  dwOk(['convert', '-O', 'raw', child, raw]);
  assert.ok(readFileSync(raw).equals(model));
  assert7zipReads(child, model, '4k chain');
});
