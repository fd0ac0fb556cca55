/**
 * VHD fuzzing: a seeded, deterministic loop mutates the footer copies, the dynamic header, the parent locators and
 * the BAT of valid images (dynamic and fixed made by qemu-img and written by qemu-io, a differencing child made
 * here), in half the cases recomputing the checksums so that the mutation reaches the parsers behind them, and
 * runs describe, open with reads and block status, check, and a write into a copy. Every failure must be a
 * DiskError, never a RangeError, a TypeError or a hang, and no read may be larger than the file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { driverFor, openImage } from '../../src-main/registry';
import { vhdChecksum } from '../../src-main/formats/vpc/layout';
import { dwOk, must, scratch, seededRandom } from '../helpers';
import { attempt, caseCount, describeStep, rewriteFile, SEED, truncateOrExtend, watch } from './harness';

const CASES = caseCount(200);

const s = scratch('dw-fuzz-vpc-');
after(() => s.cleanup());

interface Target {
  name: string;
  path: string;
  regions: Array<[number, number]>;
}

function makeTargets(): Target[] {
  const dyn = s.path('t-dyn.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', dyn, '10M']);
  must('qemu-io', ['-f', 'vpc', '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 5M 1M', dyn]);
  const fixed = s.path('t-fixed.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', fixed, '4M']);
  const parentDir = s.path('');
  copyFileSync(dyn, `${parentDir}/base.vhd`);
  const child = s.path('t-child.vhd');
  dwOk(['create', '-q', '-f', 'vpc', '-b', 'base.vhd', '-F', 'vpc', child]);
  must('sh', ['-c', `head -c 70000 /dev/urandom > ${s.path('p.bin')}`]);
  dwOk(['write', '-f', 'vpc', child, '1000', s.path('p.bin')]);
  const len = (p: string) => readFileSync(p).length;
  return [
    // footer copy, header, BAT (1536..), the end footer
    { name: 'dynamic', path: dyn, regions: [[0, 512], [512, 1536], [1536, 2048], [len(dyn) - 512, len(dyn)]] },
    { name: 'fixed', path: fixed, regions: [[len(fixed) - 512, len(fixed)]] },
    // footer copy, header with parent fields and locators, locator data, BAT, the end footer
    { name: 'differencing', path: child, regions: [[0, 512], [512, 1536], [1536, 2560], [2560, 3072], [len(child) - 512, len(child)]] },
  ];
}

function fixChecksums(b: Buffer): void {
  for (const at of [0, b.length - 512]) {
    if (at < 0 || b.toString('latin1', at, at + 8) !== 'conectix') continue;
    b.writeUInt32BE(0, at + 64);
    b.writeUInt32BE(vhdChecksum(b.subarray(at, at + 512), 64), at + 64);
  }
  if (b.length >= 1536 && b.toString('latin1', 512, 520) === 'cxsparse') b.writeUInt32BE(vhdChecksum(b.subarray(512, 1536), 36), 512 + 36);
}

function mutate(original: Buffer, t: Target, r: () => number): { bytes: Buffer; label: string } {
  let bytes: Buffer = Buffer.from(original);
  const labels: string[] = [];
  const vals = [0n, 1n, 511n, 512n, 0x7fffffffn, 0xffffffffn, 2n ** 53n + 1n, 2n ** 64n - 1n, BigInt(original.length), BigInt(original.length / 512)];
  for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) {
    const [a, z] = t.regions[Math.floor(r() * t.regions.length)];
    const at = a + Math.floor(r() * (Math.min(z, bytes.length) - a));
    if (at >= bytes.length) continue;
    const kind = r();
    if (kind < 0.4) {
      bytes[at] ^= 1 << Math.floor(r() * 8);
      labels.push(`flip ${at}`);
    } else if (kind < 0.9) {
      const width = r() < 0.5 ? 4 : 8;
      const aligned = at - (at % width);
      if (aligned + width > bytes.length) continue;
      const v = vals[Math.floor(r() * vals.length)];
      if (width === 4) bytes.writeUInt32BE(Number(v & 0xffffffffn), aligned);
      else bytes.writeBigUInt64BE(v & (2n ** 64n - 1n), aligned);
      labels.push(`u${width * 8} ${aligned}=${v}`);
    } else {
      const len = Math.floor(r() * 64);
      bytes.fill(r() < 0.5 ? 0 : 0xff, at, Math.min(bytes.length, at + len));
      labels.push(`fill ${at}+${len}`);
    }
  }
  if (r() < 0.5) {
    fixChecksums(bytes);
    labels.push('checksums fixed');
  }
  bytes = truncateOrExtend(bytes, r, labels, false);
  return { bytes, label: labels.join(', ') };
}

test(`vpc: ${CASES} seeded mutations per image give DiskErrors or sound reads, never a crash or a hang (seed ${SEED})`, async () => {
  const driver = driverFor('vpc');
  for (const t of makeTargets()) {
    const original = readFileSync(t.path);
    const r = seededRandom(SEED ^ t.name.length);
    const work = s.path(`work-${t.name}.vhd`);
    for (let i = 0; i < CASES; i++) {
      const { bytes, label: what } = mutate(original, t, r);
      const label = `${t.name} case ${i} (${what})`;
      rewriteFile(work, bytes);
      await describeStep('vpc', work, label);
      await attempt(`${label}: open and read`, async () => {
        const dev = await openImage(work, { format: 'vpc', readOnly: true, backingPolicy: 'inside-folder' });
        try {
          const n = Math.min(dev.size, 1 << 20);
          if (n > 0) {
            await dev.read(0, new Uint8Array(n));
            await dev.status(0, n);
            const tail = Math.max(0, dev.size - 4096);
            await dev.read(tail, new Uint8Array(dev.size - tail));
          }
        } finally {
          await dev.close();
        }
      });
      await attempt(`${label}: check`, () => driver.check!(work, 'none'));
      await attempt(`${label}: write`, async () => {
        const dev = await openImage(work, { format: 'vpc', readOnly: false, backingPolicy: 'inside-folder' });
        try {
          if (dev.size >= 8192) await dev.write(dev.size - 8192 + 7, new Uint8Array(3000).fill(0x5a));
        } finally {
          await dev.close();
        }
      });
      assert.deepEqual(watch.overFile, [], `${label}: reads larger than the file`);
    }
  }
});
