/**
 * Header fuzzing: for each format, a seeded, deterministic loop flips bytes and sets fields of a valid image
 * written by qemu-img (uml_mkcow for COW) and runs describe (qcow2 also readLayout/parseHeader) and open, with
 * a few reads when open succeeds. Every failure must be a DiskError — never a RangeError, a TypeError, a hang
 * or a read/allocation larger than the file. The same seed gives the same mutations, so a failure reproduces.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { ImageFile } from '../../src-main/block/file';
import { openImage } from '../../src-main/registry';
import type { FormatName } from '../../src-main/block/types';
import { parseHeader as parseQcow2Header, readLayout } from '../../src-main/formats/qcow2/layout';
import { crc32c } from '../../src-main/formats/vhdx/layout';
import { must, scratch, seededRandom } from '../helpers';
import { assertLookedOnly, attempt, caseCount, describeStep, rewriteFile, SEED, truncateOrExtend, watch } from './harness';

const CASES = caseCount(300);

const s = scratch('dw-fuzz-');
after(() => s.cleanup());

// ---- mutations ----

interface Region {
  start: number;
  end: number;
}

interface Target {
  format: FormatName;
  /** The image as qemu-img wrote it. */
  path: string;
  /** Where the header-level structures lie; mutations land there. */
  regions: Region[];
  /** Called after mutating: lets a target repair checksums so the mutation reaches the parsers behind them. */
  fixup?: (b: Buffer, r: () => number) => void;
  /** Extra checks per case (qcow2: the pure codecs too). */
  extra?: (file: ImageFile, bytes: Buffer) => Promise<void>;
}

function interesting(fileSize: number, r: () => number): bigint {
  const vals = [0n, 1n, 2n, 7n, 511n, 512n, 4096n, 65535n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
  const sizes = [BigInt(fileSize), BigInt(fileSize) - 1n, BigInt(fileSize) + 1n, BigInt(fileSize) / 512n, BigInt(fileSize) * 2n];
  const all = [...vals, ...sizes];
  return all[Math.floor(r() * all.length)] & (2n ** 64n - 1n);
}

/** Applies 1-4 random edits inside the target's regions; sometimes truncates or extends the file. */
function mutate(original: Buffer, t: Target, r: () => number): { bytes: Buffer; label: string } {
  let bytes: Buffer = Buffer.from(original);
  const labels: string[] = [];
  const edits = 1 + Math.floor(r() * 4);
  for (let i = 0; i < edits; i++) {
    const reg = t.regions[Math.floor(r() * t.regions.length)];
    const end = Math.min(reg.end, bytes.length);
    if (reg.start >= end) continue;
    const span = end - reg.start;
    const at = reg.start + Math.floor(r() * span);
    const kind = r();
    if (kind < 0.3) {
      const bit = Math.floor(r() * 8);
      bytes[at] ^= 1 << bit;
      labels.push(`flip ${at}.${bit}`);
    } else if (kind < 0.5) {
      const v = Math.floor(r() * 256);
      bytes[at] = v;
      labels.push(`byte ${at}=${v}`);
    } else if (kind < 0.9) {
      const width = r() < 0.5 ? 4 : 8;
      const aligned = at - (at % width);
      if (aligned + width > bytes.length) continue;
      const v = interesting(original.length, r);
      const le = r() < 0.5;
      if (width === 4) {
        const x = Number(v & 0xffffffffn);
        if (le) bytes.writeUInt32LE(x, aligned);
        else bytes.writeUInt32BE(x, aligned);
      } else if (le) bytes.writeBigUInt64LE(v, aligned);
      else bytes.writeBigUInt64BE(v, aligned);
      labels.push(`u${width * 8}${le ? 'le' : 'be'} ${aligned}=${v}`);
    } else {
      const len = Math.floor(r() * Math.min(64, end - at));
      bytes.fill(r() < 0.5 ? 0 : 0xff, at, at + len);
      labels.push(`fill ${at}+${len}`);
    }
  }
  t.fixup?.(bytes, r);
  bytes = truncateOrExtend(bytes, r, labels);
  return { bytes, label: labels.join(', ') };
}

// ---- running one case ----

async function runCase(t: Target, work: string, bytes: Buffer, label: string): Promise<{ describe: string; open: string }> {
  const before = rewriteFile(work, bytes);
  const describe = await describeStep(t.format, work, label, (f) => t.extra?.(f, bytes) ?? Promise.resolve());
  const open = await attempt(`${label}: open`, async () => {
    const dev = await openImage(work, { format: t.format, readOnly: true, backingPolicy: 'inside-folder' });
    try {
      const n = Math.min(dev.size, 65536);
      if (n > 0) {
        await dev.read(0, new Uint8Array(n));
        await dev.status(0, n);
        const tail = Math.max(0, dev.size - 4096);
        await dev.read(tail, new Uint8Array(dev.size - tail));
        await dev.status(tail, dev.size - tail);
      }
    } finally {
      await dev.close();
    }
  });
  assertLookedOnly(work, before, label);
  return { describe, open };
}

async function fuzz(t: Target, note: (msg: string) => void): Promise<void> {
  const original = readFileSync(t.path);
  const work = s.path(`work-${t.format}-${t.path.split('/').pop()}`);
  copyFileSync(t.path, work);
  // The unmutated image is accepted: otherwise the loop would only test the first check.
  const clean = await runCase(t, work, original, `${t.format} unmutated`);
  assert.equal(clean.describe, 'ok', `${t.format}: describe accepts the image qemu-img wrote`);
  const r = seededRandom(SEED ^ crc32c(Buffer.from(t.format + t.path.split('/').pop())));
  const tally = { describeOk: 0, describeRefused: 0, openOk: 0, openRefused: 0 };
  for (let i = 0; i < CASES; i++) {
    const { bytes, label } = mutate(original, t, r);
    const res = await runCase(t, work, bytes, `${t.format} case ${i} [${label}] (seed ${SEED})`);
    if (res.describe === 'ok') tally.describeOk++;
    else tally.describeRefused++;
    if (res.open === 'ok') tally.openOk++;
    else tally.openRefused++;
  }
  note(`${t.format}: describe accepted ${tally.describeOk}, refused ${tally.describeRefused}; open accepted ${tally.openOk}, refused ${tally.openRefused}; largest read ${watch.largest} bytes`);
  // Both outcomes must occur: all-refused would mean the mutations never got past the first check.
  assert.ok(tally.describeOk > 0, `${t.format}: no mutation was accepted (${JSON.stringify(tally)})`);
  assert.ok(tally.describeRefused > 0, `${t.format}: no mutation was refused (${JSON.stringify(tally)})`);
}

// ---- targets ----

function qcow2Target(): Target {
  const base = s.path('q-base.raw');
  writeFileSync(base, Buffer.alloc(1 << 20, 0x3c));
  const p = s.path('q.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'q-base.raw', '-F', 'raw', p, '2M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -z 128k 64k', '-c', 'write -c -P 0x22 256k 4k', p]);
  must('qemu-img', ['snapshot', '-c', 'snap1', p]);
  const b = readFileSync(p);
  const l1 = Number(b.readBigUInt64BE(40));
  const rt = Number(b.readBigUInt64BE(48));
  const snaps = Number(b.readBigUInt64BE(64));
  return {
    format: 'qcow2',
    path: p,
    regions: [
      { start: 0, end: 112 }, // the header
      { start: 0, end: 4096 }, // extensions and backing name in the first cluster
      { start: l1, end: l1 + 16 },
      { start: rt, end: rt + 16 },
      { start: snaps, end: snaps + 64 },
    ],
    extra: async (f, bytes) => {
      parseQcow2Header(bytes.subarray(0, Math.min(bytes.length, 4096)), f.path, bytes.length);
      await readLayout(f);
    },
  };
}

function vmdkSparseTarget(sub: string): Target {
  const p = s.path(`v-${sub}.vmdk`);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, p, '8M']);
  must('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x44 0 64k', p]);
  return {
    format: 'vmdk',
    path: p,
    regions: [
      { start: 0, end: 80 }, // the sparse header
      { start: 512, end: 1024 }, // the embedded descriptor
      { start: 0, end: 64 * 1024 }, // grain directory and tables
    ],
  };
}

function vmdkDescriptorTarget(): Target {
  const p = s.path('v-desc.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', p, '3G']);
  const len = statSync(p).size;
  return { format: 'vmdk', path: p, regions: [{ start: 0, end: len }] };
}

function vhdxTarget(): Target {
  const p = s.path('x.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M,log_size=1M', p, '8M']);
  must('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x55 0 1M', p]);
  const b = readFileSync(p);
  const rtCount = b.readUInt32LE(192 * 1024 + 8);
  let md = 0;
  for (let i = 0; i < rtCount; i++) {
    const at = 192 * 1024 + 16 + i * 32;
    if (b.readUInt32LE(at) === 0x8b7ca206) md = Number(b.readBigUInt64LE(at + 16));
  }
  const K = 1024;
  return {
    format: 'vhdx',
    path: p,
    regions: [
      { start: 0, end: 16 },
      { start: 64 * K, end: 64 * K + 80 },
      { start: 128 * K, end: 128 * K + 80 },
      { start: 192 * K, end: 192 * K + 16 + rtCount * 32 },
      { start: 256 * K, end: 256 * K + 16 + rtCount * 32 },
      { start: md, end: md + 32 + 6 * 32 },
      { start: md + 64 * K, end: md + 64 * K + 64 },
    ],
    // Most of the time make the checksums right again, so mutations reach the region and metadata parsers.
    fixup: (buf, r) => {
      if (r() < 0.25) return;
      for (const [off, len] of [[64 * K, 4 * K], [128 * K, 4 * K], [192 * K, 64 * K], [256 * K, 64 * K]]) {
        if (off + len > buf.length) continue;
        const region = buf.subarray(off, off + len);
        region.writeUInt32LE(0, 4);
        region.writeUInt32LE(crc32c(region), 4);
      }
    },
  };
}

function parallelsTarget(): Target {
  const p = s.path('p.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', '-o', 'cluster_size=64k', p, '4M']);
  must('qemu-io', ['-f', 'parallels', '-c', 'write -P 0x66 0 128k', p]);
  return { format: 'parallels', path: p, regions: [{ start: 0, end: 64 }, { start: 64, end: 64 + 64 * 4 }] };
}

function cowTarget(): Target {
  const back = s.path('c-back.img');
  writeFileSync(back, Buffer.alloc(1 << 20, 0x77));
  const p = s.path('c.cow');
  must('uml_mkcow', [p, back]);
  return { format: 'cow', path: p, regions: [{ start: 0, end: 36 }, { start: 0, end: 4136 }, { start: 4136, end: 8192 + 256 }] };
}

const TARGETS: Array<[string, () => Target]> = [
  ['qcow2 (backing file, snapshot, compressed and zero clusters)', qcow2Target],
  ['vmdk monolithicSparse', () => vmdkSparseTarget('monolithicSparse')],
  ['vmdk streamOptimized', () => vmdkSparseTarget('streamOptimized')],
  ['vmdk descriptor file with sparse extents', vmdkDescriptorTarget],
  ['vhdx (checksums mostly repaired after mutating)', vhdxTarget],
  ['parallels', parallelsTarget],
  ['cow (made by uml_mkcow)', cowTarget],
];

for (const [name, make] of TARGETS) {
  test(`fuzz ${name}: ${CASES} seeded header mutations give DiskErrors only, no hang, no read past the file`, { timeout: 120_000 }, async (ctx) => {
    watch.largest = 0;
    await fuzz(make(), (msg) => ctx.diagnostic(msg));
  });
}
