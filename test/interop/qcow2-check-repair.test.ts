/**
 * qcow2 check and repair on images that qemu-img/qemu-io made and that were then corrupted in known ways.
 * qemu-img is the truth: on identical copies our verdict, exit code, counts and messages must be its; after
 * `-r leaks` / `-r all` qemu-img check must judge our repaired image as it judges its own repair of another
 * copy, the guest must read the same bytes as before, and the repaired file must be qemu's (apart from the
 * clusters qemu hands back to the file system with a discard, which read as zeros in its copy).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { dw, must, qemuIo, run, scratch, type RunResult } from '../helpers';
import { Qcow2Patcher } from './qcow2-check-patch';
import { checkQcow2 } from '../../src-main/formats/qcow2/check/check';
import { checkExitCode } from '../../src-main/services/check';
import { checkText } from '../../src-main/cli/output';

const s = scratch('dw-qcow2-repair-');
after(() => s.cleanup());

const COPIED = 1n << 63n;

function create(img: string, opts: string, size = '16M'): void {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, size]);
}

/** Data in two L2 tables (the second at 9M is past the first L2 table's reach with 4k clusters). */
function fill(img: string): void {
  qemuIo(img, 'qcow2', ['write -P 0xa1 0 256k', 'write -P 0xb2 1M 64k', 'write -P 0xc3 9M 8k']);
}

interface Scenario {
  name: string;
  make: (img: string) => void;
}

const scenarios: Scenario[] = [
  {
    name: 'a leaked cluster appended with refcount 1',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setRefcount(p.appendCluster(0x5a), 1);
    },
  },
  {
    name: 'a data cluster refcount raised to 2 (leak, wrong OFLAG_COPIED)',
    make: (img) => {
      create(img, 'cluster_size=4k');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setRefcount(p.dataClusters()[3].offset / p.clusterSize, 2);
    },
  },
  {
    name: 'a data cluster refcount lowered to 0 (refcount structure rebuilt)',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setRefcount(p.dataClusters()[1].offset / p.clusterSize, 0);
    },
  },
  {
    name: 'a refcount too low but not zero (cluster shared with a snapshot)',
    make: (img) => {
      create(img, 'cluster_size=4k');
      fill(img);
      must('qemu-img', ['snapshot', '-c', 'snap', img]);
      qemuIo(img, 'qcow2', ['write -P 0xd4 0 4k']);
      const p = new Qcow2Patcher(img);
      const shared = p.dataClusters().find((d) => p.refcount(d.offset / p.clusterSize) === 2);
      assert.ok(shared, 'a cluster shared with the snapshot');
      p.setRefcount(shared.offset / p.clusterSize, 1);
    },
  },
  {
    name: 'an L2 entry pointing past the end of the file',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      const d = p.dataClusters()[2];
      p.setL2Entry(d.l1Index, d.l2Index, COPIED | BigInt(p.fileSize + 100 * p.clusterSize));
    },
  },
  {
    name: 'OFLAG_COPIED cleared in an L1 entry and an L2 entry',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setL1Entry(0, p.l1Entry(0) & ~COPIED);
      const d = p.dataClusters()[1];
      p.setL2Entry(d.l1Index, d.l2Index, p.l2Entry(d.l1Index, d.l2Index) & ~COPIED);
    },
  },
  {
    name: 'OFLAG_COPIED set on a cluster shared with a snapshot',
    make: (img) => {
      create(img, 'cluster_size=4k');
      fill(img);
      must('qemu-img', ['snapshot', '-c', 'snap', img]);
      const p = new Qcow2Patcher(img);
      const d = p.dataClusters()[5];
      p.setL2Entry(d.l1Index, d.l2Index, p.l2Entry(d.l1Index, d.l2Index) | COPIED);
    },
  },
  {
    name: 'a dirty lazy-refcounts image after a crash (qemu-io abort)',
    make: (img) => {
      create(img, 'lazy_refcounts=on');
      fill(img);
      // qemu-io's abort simulates a crash: the dirty bit stays set and refcount updates were never written.
      const r = run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xe5 12M 128k', '-c', 'write -P 0xe6 5M 4k', '-c', 'abort', img]);
      assert.notEqual(r.status, 0, 'qemu-io abort ends the process');
      assert.equal(new Qcow2Patcher(img).incompatibleFeatures() & 1n, 1n, 'dirty bit set');
    },
  },
  {
    name: 'the dirty bit set by hand on a clean lazy-refcounts image',
    make: (img) => {
      create(img, 'lazy_refcounts=on');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setIncompatibleFeatures(p.incompatibleFeatures() | 1n);
    },
  },
  {
    name: 'the corrupt bit set on a clean image',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setIncompatibleFeatures(p.incompatibleFeatures() | 2n);
    },
  },
  {
    name: 'a leak and a refcount too high in a 1-bit-refcount image with 512-byte clusters',
    make: (img) => {
      create(img, 'cluster_size=512,refcount_bits=1', '4M');
      qemuIo(img, 'qcow2', ['write -P 0x17 0 20k', 'write -P 0x18 3M 2k']);
      const p = new Qcow2Patcher(img);
      p.setRefcount(p.appendCluster(0x33), 1);
      p.setRefcount(p.dataClusters()[4].offset / p.clusterSize, 0);
    },
  },
  {
    name: 'a preallocated zero cluster with an unaligned offset',
    make: (img) => {
      create(img, '');
      fill(img);
      qemuIo(img, 'qcow2', ['write -z 64k 64k']); // keeps the cluster allocated, with the zero flag
      const p = new Qcow2Patcher(img);
      const e = p.l2Entry(0, 1);
      assert.equal(e & 1n, 1n, 'a zero-flagged allocated cluster');
      p.setL2Entry(0, 1, e + 0x400n);
    },
  },
  {
    name: 'one data cluster referenced by two L2 entries',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      const [a, b] = p.dataClusters();
      p.setL2Entry(b.l1Index, b.l2Index, p.l2Entry(a.l1Index, a.l2Index));
    },
  },
  {
    name: 'a compressed cluster with OFLAG_COPIED set (not repairable)',
    make: (img) => {
      const src = `${img}.src.qcow2`;
      create(src, '');
      fill(src);
      must('qemu-img', ['convert', '-c', '-O', 'qcow2', src, img]);
      const p = new Qcow2Patcher(img);
      p.setL2Entry(0, 1, p.l2Entry(0, 1) | COPIED);
    },
  },
  {
    name: 'the refcount table offset pointing past the end of the file',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setU64(48, BigInt(p.fileSize + 64 * p.clusterSize));
    },
  },
  {
    name: 'a refcount block outside the image',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setU64(p.reftableOffset + 8, 0x200000n);
    },
  },
  {
    name: 'a refcount block offset that is not cluster aligned',
    make: (img) => {
      create(img, '');
      fill(img);
      const p = new Qcow2Patcher(img);
      p.setU64(p.reftableOffset, p.u64(p.reftableOffset) + 0x200n);
    },
  },
];

/** The human report in-process (what the CLI prints, without starting a process for it). */
async function ourReport(img: string, repair: 'none' | 'leaks' | 'all' = 'none'): Promise<{ status: number; stdout: string }> {
  const r = await checkQcow2(img, repair);
  return { status: checkExitCode(r), stdout: checkText(r) };
}

/** Everything both tools said, as a sorted list of lines: qemu-img splits messages (stderr) from the summary. */
function lines(...texts: string[]): string[] {
  return texts
    .join('\n')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('qemu-img:') && !l.startsWith('qcow2:') && !l.startsWith('diskwright:'))
    .sort();
}

function json(r: RunResult): Record<string, unknown> | undefined {
  if (!r.stdout.trim().startsWith('{')) return undefined;
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  delete j.filename;
  return j;
}

function copy(from: string, name: string): string {
  const to = s.path(name);
  copyFileSync(from, to);
  return to;
}

/** The guest's view of an image, as raw bytes (qemu-img reads it; unreadable images yield undefined). */
function guest(img: string, name: string): Buffer | undefined {
  const raw = s.path(name);
  const r = run('qemu-img', ['convert', '-O', 'raw', img, raw]);
  return r.status === 0 ? readFileSync(raw) : undefined;
}

/** Byte-equal, cluster by cluster, except where qemu's copy reads zeros (clusters it discarded as freed). */
function sameExceptDiscarded(ours: string, theirs: string, clusterSize: number): void {
  const a = readFileSync(ours);
  const b = readFileSync(theirs);
  assert.equal(a.length, b.length, 'same file size as qemu-img after repair');
  for (let off = 0; off < a.length; off += clusterSize) {
    const ca = a.subarray(off, off + clusterSize);
    const cb = b.subarray(off, off + clusterSize);
    if (ca.equals(cb)) continue;
    assert.ok(cb.every((x) => x === 0), `cluster at ${off} differs from qemu-img's repair`);
  }
}

scenarios.forEach((sc, n) => {
  describe(sc.name, () => {
    const orig = s.path(`s${n}.qcow2`);
    let before: Buffer | undefined;
    let clusterSize = 0;

    test('check: verdict, exit code, counts and messages are qemu-img check\'s', () => {
      sc.make(orig);
      clusterSize = new Qcow2Patcher(orig).clusterSize;
      before = guest(orig, `s${n}-before.raw`);
      const q = run('qemu-img', ['check', '--output', 'json', orig]);
      const o = dw(['check', '--output', 'json', orig]);
      assert.equal(o.status, q.status, `exit code (qemu: ${q.stdout}${q.stderr}; ours: ${o.stdout}${o.stderr})`);
      if (q.status !== 1) assert.deepEqual(json(o), json(q));
      assert.doesNotMatch(o.stderr, /\n\s+at /, 'no stack trace');
    });

    test('check: the report reads like qemu-img\'s', async () => {
      const qh = run('qemu-img', ['check', orig]);
      const oh = await ourReport(orig);
      assert.equal(oh.status, qh.status);
      if (qh.status !== 1 || /internal errors/.test(qh.stdout)) assert.deepEqual(lines(oh.stdout), lines(qh.stdout, qh.stderr));
    });

    for (const mode of ['leaks', 'all'] as const) {
      test(`check -r ${mode}: same result as qemu-img's own repair of a copy`, () => {
        const ours = copy(orig, `s${n}-${mode}-ours.qcow2`);
        const theirs = copy(orig, `s${n}-${mode}-qemu.qcow2`);
        const o = dw(['check', '-r', mode, '--output', 'json', ours]);
        const q = run('qemu-img', ['check', '-r', mode, '--output', 'json', theirs]);
        const qemuFailed = q.status === 1 && json(q) === undefined;
        if (!qemuFailed) {
          assert.equal(o.status, q.status, `exit code (qemu: ${q.stdout}${q.stderr}; ours: ${o.stdout}${o.stderr})`);
          assert.deepEqual(json(o), json(q));
        } else {
          // qemu-img gave up (it cannot rebuild with -r leaks, or marked the image corrupt mid-repair): we may
          // do better, but never claim a clean image that is not.
          assert.ok(o.status === 1 || o.status === 0, `ours: ${o.stdout}${o.stderr}`);
        }
        assert.doesNotMatch(o.stderr, /\n\s+at /, 'no stack trace');

        // qemu-img's view of our repaired image is what our double check said.
        const after = run('qemu-img', ['check', '--output', 'json', ours]);
        if (o.status !== 1) {
          assert.equal(after.status, o.status, `qemu-img check after our repair: ${after.stdout}${after.stderr}`);
          const oj = json(o)!;
          const aj = json(after)!;
          for (const k of ['corruptions', 'leaks', 'image-end-offset', 'allocated-clusters'] as const) assert.equal(aj[k], oj[k], k);
        }
        if (!qemuFailed) {
          assert.equal(after.status, run('qemu-img', ['check', theirs]).status, 'same verdict as on qemu-img\'s repair');
          sameExceptDiscarded(ours, theirs, clusterSize);
        }

        // No guest-visible byte changed.
        if (before) assert.ok(guest(ours, `s${n}-${mode}-after.raw`)?.equals(before), 'guest content unchanged by the repair');
      });

      test(`check -r ${mode}: the report reads like qemu-img's`, async () => {
        const ours = copy(orig, `s${n}-${mode}-ours-h.qcow2`);
        const theirs = copy(orig, `s${n}-${mode}-qemu-h.qcow2`);
        const o = await ourReport(ours, mode);
        const q = run('qemu-img', ['check', '-r', mode, theirs]);
        if (q.status === 1 && !/internal errors|errors were found/.test(q.stdout)) return; // qemu-img printed no report
        assert.deepEqual(lines(o.stdout), lines(q.stdout, q.stderr));
      });
    }
  });
});

test('the repaired dirty image is marked clean and its refcounts are qemu-img\'s', () => {
  const img = s.path('dirty.qcow2');
  create(img, 'lazy_refcounts=on');
  fill(img);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 14M 64k', '-c', 'abort', img]);
  const theirs = copy(img, 'dirty-qemu.qcow2');
  assert.equal(dw(['check', '-r', 'all', img]).status, 0);
  assert.equal(run('qemu-img', ['check', '-r', 'all', theirs]).status, 0);
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout) as { 'dirty-flag': boolean };
  assert.equal(info['dirty-flag'], false);
  const p = new Qcow2Patcher(img);
  const t = new Qcow2Patcher(theirs);
  const n = Math.ceil(p.fileSize / p.clusterSize);
  for (let c = 0; c < n; c++) assert.equal(p.refcount(c), t.refcount(c), `refcount of cluster ${c}`);
  assert.equal(run('qemu-img', ['compare', img, theirs]).status, 0);
});
