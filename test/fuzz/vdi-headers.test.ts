/**
 * VDI fuzzing: a seeded, deterministic loop sets the header's fields and the block map's entries of images
 * qemu-img and qemu-io wrote (dynamic, static, and a differencing child beside its parent) to interesting values,
 * flips bytes, truncates or extends the file, then runs describe, open with reads and status over the whole
 * guest, check, and a repair of a copy. Every failure must be a DiskError, never a RangeError, a TypeError, a
 * hang, or a buffer larger than the file; a read-only look must leave the file as it was.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { driverFor, openImage } from '../../src-main/registry';
import { parseHeader, serializeHeader, TYPE_DIFFERENCING } from '../../src-main/formats/vdi/layout';
import { must, scratch, seededRandom } from '../helpers';
import { assertLookedOnly, attempt, caseCount, describeStep, rewriteFile, SEED, truncateOrExtend, watch } from './harness';

const CASES = caseCount(250);

const s = scratch('dw-fuzz-vdi-');
after(() => s.cleanup());

/** Header fields (offset, width) that mutations aim at, besides random bytes. */
const FIELDS: Array<[number, 4 | 8]> = [
  [0x40, 4], [0x44, 4], [0x48, 4], [0x4c, 4], [0x154, 4], [0x158, 4], [0x168, 4], [0x170, 8], [0x178, 4], [0x17c, 4], [0x180, 4], [0x184, 4], [0x1a8, 8], [0x1b0, 8],
];

function interesting(fileSize: number, r: () => number): bigint {
  const vals = [0n, 1n, 2n, 511n, 512n, 1024n, 0x100000n, 0x7fffffffn, 0x80000000n, 0xfffffffdn, 0xfffffffen, 0xffffffffn, 0x1fffff80n, 0x1fffff81n, 2n ** 53n, 2n ** 64n - 1n];
  const all = [...vals, BigInt(fileSize), BigInt(fileSize) - 512n, BigInt(fileSize) + 512n];
  return all[Math.floor(r() * all.length)] & (2n ** 64n - 1n);
}

function mutate(original: Buffer, bmapEntries: number, r: () => number): { bytes: Buffer; label: string } {
  let b: Buffer = Buffer.from(original);
  const labels: string[] = [];
  const edits = 1 + Math.floor(r() * 4);
  for (let i = 0; i < edits; i++) {
    const k = r();
    if (k < 0.45) {
      const [at, w] = FIELDS[Math.floor(r() * FIELDS.length)];
      const v = interesting(original.length, r);
      if (w === 4) b.writeUInt32LE(Number(v & 0xffffffffn), at);
      else b.writeBigUInt64LE(v, at);
      labels.push(`u${w * 8} ${at}=${v}`);
    } else if (k < 0.8 && bmapEntries > 0) {
      const g = Math.floor(r() * bmapEntries);
      const v = Number(interesting(original.length, r) & 0xffffffffn);
      const pick = r();
      const value = pick < 0.4 ? v : pick < 0.7 ? Math.floor(r() * (bmapEntries + 3)) : b.readUInt32LE(512 + 4 * Math.floor(r() * bmapEntries));
      b.writeUInt32LE(value >>> 0, 512 + 4 * g);
      labels.push(`entry ${g}=${value}`);
    } else {
      const at = Math.floor(r() * Math.min(b.length, 512 + bmapEntries * 4));
      const bit = Math.floor(r() * 8);
      b[at] ^= 1 << bit;
      labels.push(`flip ${at}.${bit}`);
    }
  }
  b = truncateOrExtend(b, r, labels);
  return { bytes: b, label: labels.join(', ') };
}

async function runCase(work: string, bytes: Buffer, label: string): Promise<string> {
  const before = rewriteFile(work, bytes);
  const driver = driverFor('vdi');
  const describe = await describeStep('vdi', work, label);
  const open = await attempt(`${label}: open`, async () => {
    const dev = await openImage(work, { format: 'vdi', readOnly: true, backingPolicy: 'inside-folder' });
    try {
      const step = 1 << 20;
      for (let pos = 0; pos < dev.size; pos += step) {
        const n = Math.min(step, dev.size - pos);
        await dev.read(pos, new Uint8Array(n));
        for (let at = pos; at < pos + n; ) at += (await dev.status(at, pos + n - at)).length;
      }
    } finally {
      await dev.close();
    }
  });
  await attempt(`${label}: check`, () => driver.check!(work, 'none'));
  assertLookedOnly(work, before, label);
  const copy = `${work}.repair.vdi`;
  copyFileSync(work, copy);
  const repaired = await attempt(`${label}: repair`, () => driver.check!(copy, 'all'));
  if (repaired === 'ok') {
    const again = await driver.check!(copy, 'none');
    assert.equal(again.corruptions, 0, `${label}: a repaired image checks clean`);
  }
  assert.deepEqual(watch.overFile, [], `${label}: the repair read buffers larger than the file`);
  return `${describe}/${open}`;
}

async function fuzz(name: string, path: string, note: (m: string) => void): Promise<void> {
  const original = readFileSync(path);
  const entries = parseHeader(original, path).blocksInImage;
  const work = `${path}.work.vdi`;
  assert.equal(await runCase(work, original, `${name} unmutated`), 'ok/ok');
  const r = seededRandom(SEED ^ name.length * 7919);
  const tally: Record<string, number> = {};
  for (let i = 0; i < CASES; i++) {
    const { bytes, label } = mutate(original, entries, r);
    const res = await runCase(work, bytes, `${name} case ${i} [${label}] (seed ${SEED})`);
    tally[res] = (tally[res] ?? 0) + 1;
  }
  note(`${name}: ${JSON.stringify(tally)}; largest read ${watch.largest} bytes`);
  assert.ok(tally['ok/ok'] > 0 && Object.keys(tally).some((k) => k.includes('refused')), `${name}: both outcomes occur (${JSON.stringify(tally)})`);
}

test('vdi fuzz: dynamic image by qemu-img/qemu-io', async (t) => {
  const p = s.path('d.vdi');
  must('qemu-img', ['create', '-q', '-f', 'vdi', p, '4M']);
  must('qemu-io', ['-f', 'vdi', '-c', 'write -P 1 0 64k', '-c', 'write -P 2 2M 1M', '-c', 'write -P 3 4190208 4096', p]);
  await fuzz('dynamic', p, (m) => t.diagnostic(m));
});

test('vdi fuzz: static image by qemu-img', async (t) => {
  const p = s.path('s.vdi');
  must('qemu-img', ['create', '-q', '-f', 'vdi', '-o', 'static=on', p, '3M']);
  must('qemu-io', ['-f', 'vdi', '-c', 'write -P 4 1M 4k', p]);
  await fuzz('static', p, (m) => t.diagnostic(m));
});

test('vdi fuzz: differencing child beside its parent', async (t) => {
  const parent = s.path('parent.vdi');
  must('qemu-img', ['create', '-q', '-f', 'vdi', parent, '4M']);
  must('qemu-io', ['-f', 'vdi', '-c', 'write -P 5 0 2M', parent]);
  const child = s.path('child.vdi');
  must('qemu-img', ['create', '-q', '-f', 'vdi', child, '4M']);
  must('qemu-io', ['-f', 'vdi', '-c', 'write -P 6 1M 4k', child]);
  const b = readFileSync(child);
  const ph = parseHeader(readFileSync(parent), parent);
  b.set(serializeHeader({ ...parseHeader(b, child), imageType: TYPE_DIFFERENCING, uuidLink: ph.uuidImage, uuidParent: ph.uuidLastSnap }, b), 0);
  writeFileSync(child, b);
  await fuzz('differencing', child, (m) => t.diagnostic(m));
});
