/**
 * qcow2 check on malformed structures: absurd sizes and offsets give a DiskError or a reported error (never a
 * stack trace or an allocation the file cannot justify), and where qemu-img reports rather than refuses, we
 * report the same. Ends with a seeded fuzz of the metadata tables, judged by qemu-img.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, truncateSync } from 'node:fs';
import { dw, must, qemuIo, run, scratch, type RunResult, seededRandom } from '../helpers';
import { Qcow2Patcher } from './qcow2-check-patch';
import { checkQcow2 } from '../../src-main/formats/qcow2/check/check';
import { checkExitCode } from '../../src-main/services/check';
import { checkJson } from '../../src-main/cli/output';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-qcow2-malformed-');
after(() => s.cleanup());

function image(name: string, opts = 'cluster_size=4k', size = '16M'): string {
  const img = s.path(name);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, img, size]);
  qemuIo(img, 'qcow2', ['write -P 0x61 0 64k', 'write -P 0x62 9M 8k']);
  return img;
}

function json(r: RunResult): Record<string, unknown> | undefined {
  if (!r.stdout.trim().startsWith('{')) return undefined;
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  delete j.filename;
  return j;
}

/** Our verdict must be qemu-img's: exit code, and the JSON report when qemu-img printed one. */
function sameVerdict(img: string): RunResult {
  const q = run('qemu-img', ['check', '--output', 'json', img]);
  const o = dw(['check', '--output', 'json', img]);
  assert.equal(o.status, q.status, `qemu: ${q.stdout}${q.stderr}\nours: ${o.stdout}${o.stderr}`);
  if (json(q)) assert.deepEqual(json(o), json(q));
  assert.doesNotMatch(o.stderr, /\n\s+at /, 'no stack trace');
  return o;
}

/** A refusal: exit 1 and one plain line on stderr. */
function refused(r: RunResult, pattern: RegExp): void {
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('header fields qemu-img refuses too', () => {
  test('an L1 table larger than qemu allows', () => {
    const img = image('l1-huge.qcow2');
    new Qcow2Patcher(img).write(36, Buffer.from([0x0f, 0xff, 0xff, 0xff]));
    assert.equal(run('qemu-img', ['check', img]).status, 1);
    refused(dw(['check', img]), /L1 table is too large/);
  });

  test('a refcount table larger than qemu allows', () => {
    const img = image('rt-huge.qcow2');
    new Qcow2Patcher(img).write(56, Buffer.from([0x00, 0xff, 0xff, 0xff]));
    assert.equal(run('qemu-img', ['check', img]).status, 1);
    refused(dw(['check', img]), /refcount table is too large/);
  });

  test('a file cut inside the header', () => {
    const img = image('cut.qcow2');
    truncateSync(img, 50);
    assert.equal(run('qemu-img', ['check', img]).status, 1);
    refused(dw(['check', '-f', 'qcow2', img]), /truncated|header/);
  });

  test('an L1 table offset beyond 2^53 is refused as damage', () => {
    const img = image('l1-far.qcow2');
    new Qcow2Patcher(img).setU64(40, 0x7f00000000003000n);
    refused(dw(['check', img]), /L1 table offset .* impossibly large/);
  });
});

describe('damage qemu-img reports, and so do we', () => {
  test('the refcount table past the end of the file', () => {
    const img = image('rt-past-eof.qcow2');
    const p = new Qcow2Patcher(img);
    p.setU64(48, BigInt(p.fileSize + 1024 * 1024));
    assert.equal(sameVerdict(img).status, 2);
  });

  test('a refcount table entry with reserved bits set', () => {
    const img = image('rt-reserved.qcow2');
    const p = new Qcow2Patcher(img);
    p.setU64(p.reftableOffset, p.u64(p.reftableOffset) | 0x10n);
    assert.equal(sameVerdict(img).status, 2);
  });

  test('a refcount block offset near 2^63 cannot be read (internal errors)', () => {
    const img = image('rb-far.qcow2');
    const p = new Qcow2Patcher(img);
    p.setU64(p.reftableOffset, 0x8a00000000000400n & ~0x1ffn);
    assert.equal(sameVerdict(img).status, 1);
  });

  test('a refcount block offset that is not cluster aligned', () => {
    const img = image('rb-unaligned.qcow2');
    const p = new Qcow2Patcher(img);
    p.setU64(p.reftableOffset, p.u64(p.reftableOffset) + 0x200n);
    assert.equal(sameVerdict(img).status, 1);
  });

  test('an L1 entry pointing far past the end of the file', () => {
    const img = image('l2-far.qcow2');
    const p = new Qcow2Patcher(img);
    p.setL1Entry(0, (1n << 63n) | 0x00ff000000000000n);
    assert.equal(sameVerdict(img).status, 2);
  });

  test('a garbage 64-bit refcount is printed exactly, as qemu-img prints it', () => {
    const img = image('r64.qcow2', 'refcount_bits=64');
    const p = new Qcow2Patcher(img);
    const l2Cluster = p.l2Offset(0) / p.clusterSize;
    const rb = Number(p.u64(p.reftableOffset));
    p.setU64(rb + 8 * l2Cluster, 0xfedcba9876543210n);
    assert.equal(sameVerdict(img).status, 2);
    const q = run('qemu-img', ['check', img]);
    const o = dw(['check', img]);
    const sorted = (t: string) => t.split('\n').filter((l) => l.trim()).sort();
    assert.deepEqual(sorted(o.stdout + '\n' + o.stderr), sorted(q.stdout + '\n' + q.stderr));
    assert.match(o.stderr, /refcount=18364758544493064720/);
  });

  test('a snapshot L1 table that is not cluster aligned', () => {
    const img = image('snap-unaligned.qcow2');
    must('qemu-img', ['snapshot', '-c', 'snap', img]);
    const p = new Qcow2Patcher(img);
    const snapshots = Number(p.u64(64));
    p.setU64(snapshots, p.u64(snapshots) + 0x200n);
    assert.equal(sameVerdict(img).status, 2);
  });
});

describe('file sizes and memory', () => {
  test('a 1 TiB sparse file with 64k clusters is checked with memory bounded by its clusters', () => {
    const img = image('sparse-1t.qcow2', 'cluster_size=64k');
    truncateSync(img, 2 ** 40);
    const o = sameVerdict(img);
    assert.equal(o.status, 0);
  });

  test('a 2 TiB sparse file with 512-byte clusters is refused before allocating', async () => {
    const img = image('sparse-2t.qcow2', 'cluster_size=512');
    truncateSync(img, 2 ** 41);
    assert.equal(run('qemu-img', ['check', img]).status, 1, 'qemu-img: File too large');
    refused(dw(['check', img]), /too many clusters/);
    await assert.rejects(checkQcow2(img, 'all'), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED');
  });
});

const rng = seededRandom;

test('fuzzed L1, L2 and refcount tables: qemu-img\'s verdict, and after -r all qemu-img agrees with our double check', async () => {
  const base = image('fuzz-base.qcow2');
  must('qemu-img', ['snapshot', '-c', 'snap', base]);
  qemuIo(base, 'qcow2', ['write -P 0x63 8k 8k', 'write -P 0x64 6M 4k']);
  const p = new Qcow2Patcher(base);
  const tables = [p.l1Offset, p.reftableOffset];
  for (let i = 0; i < p.l1Size; i++) if (p.l2Offset(i)) tables.push(p.l2Offset(i));
  for (let i = 0; i < (p.reftableClusters * p.clusterSize) / 8; i++) {
    const rb = Number(p.u64(p.reftableOffset + 8 * i));
    if (rb) tables.push(rb);
  }
  const random = rng(Number(process.env.QCOW2_FUZZ_SEED ?? 20240611));
  for (let it = 0; it < 40; it++) {
    const img = s.path(`fuzz-${it}.qcow2`);
    copyFileSync(base, img);
    const f = new Qcow2Patcher(img);
    const edits = 1 + Math.floor(random() * 3);
    for (let e = 0; e < edits; e++) {
      const at = tables[Math.floor(random() * tables.length)] + Math.floor(random() * (p.clusterSize / 8)) * 8 + Math.floor(random() * 8);
      const old = f.read(at, 1)[0];
      f.write(at, Buffer.from([random() < 0.5 ? old ^ (1 << Math.floor(random() * 8)) : Math.floor(random() * 256)]));
    }
    const what = `case ${it}`;
    // Read-only: the verdict is qemu-img's.
    const q = run('qemu-img', ['check', '--output', 'json', img]);
    const ours = await checkQcow2(img, 'none');
    assert.equal(checkExitCode(ours), q.status, `${what}: ${q.stdout}${q.stderr}`);
    const oj = JSON.parse(checkJson({ ...ours, filename: 'x' })) as Record<string, unknown>;
    delete oj.filename;
    if (json(q)) assert.deepEqual(oj, json(q), what);
    // Repair: qemu-img then judges our repaired file as our double check did.
    const repaired = s.path(`fuzz-${it}-r.qcow2`);
    copyFileSync(img, repaired);
    const r = await checkQcow2(repaired, 'all');
    const code = checkExitCode(r);
    if (code !== 1) assert.equal(run('qemu-img', ['check', repaired]).status, code, `${what}: after our -r all`);
  }
});
