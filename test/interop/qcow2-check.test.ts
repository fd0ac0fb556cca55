/**
 * `diskwright check` on clean qcow2 images made by qemu-img/qemu-io with many option combinations: the
 * verdict, exit code, counts and image end offset must be qemu-img check's, in JSON and in the human report.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dw, must, qemuImgLuks, qemuIo, run, scratch } from '../helpers';

const s = scratch('dw-qcow2-check-');
after(() => s.cleanup());

interface Case {
  name: string;
  /** Makes the image; returns extra qemu-img check arguments when it needs them (encryption). */
  make: (img: string) => unknown;
}

function create(img: string, opts: string, size = '64M'): void {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, size]);
}

/** A few scattered writes, so that several L2 entries and at least two L2 tables are in use. */
function fill(img: string, stride = '9M'): void {
  qemuIo(img, 'qcow2', ['write -P 0x11 0 192k', `write -P 0x22 ${stride} 64k`, 'write -P 0x33 40M 4k']);
}

const cases: Case[] = [
  { name: 'defaults (64k clusters, 16-bit refcounts)', make: (img) => (create(img, ''), fill(img)) },
  { name: 'empty image', make: (img) => create(img, '') },
  { name: '512-byte clusters, 1-bit refcounts', make: (img) => (create(img, 'cluster_size=512,refcount_bits=1', '8M'), qemuIo(img, 'qcow2', ['write -P 0x11 0 192k', 'write -P 0x22 3M 64k', 'write -P 0x33 7M 4k'])) },
  { name: '4k clusters, 64-bit refcounts', make: (img) => (create(img, 'cluster_size=4k,refcount_bits=64'), fill(img)) },
  { name: '4k clusters, 2-bit refcounts', make: (img) => (create(img, 'cluster_size=4k,refcount_bits=2'), fill(img)) },
  { name: '8-bit refcounts', make: (img) => (create(img, 'refcount_bits=8'), fill(img)) },
  { name: '32-bit refcounts', make: (img) => (create(img, 'cluster_size=16k,refcount_bits=32'), fill(img)) },
  {
    name: 'snapshots (qemu-img snapshot -c) with copy-on-write after each',
    make: (img) => {
      create(img, 'cluster_size=4k');
      fill(img);
      must('qemu-img', ['snapshot', '-c', 'one', img]);
      qemuIo(img, 'qcow2', ['write -P 0x44 4k 8k', 'write -P 0x45 20M 4k']);
      must('qemu-img', ['snapshot', '-c', 'two', img]);
      qemuIo(img, 'qcow2', ['write -P 0x46 0 4k']);
    },
  },
  {
    name: 'compat=0.10 (version 2) with a snapshot',
    make: (img) => {
      create(img, 'compat=0.10,cluster_size=4k');
      fill(img);
      must('qemu-img', ['snapshot', '-c', 'old', img]);
      qemuIo(img, 'qcow2', ['write -P 0x55 0 4k']);
    },
  },
  {
    name: 'compressed clusters (qemu-img convert -c)',
    make: (img) => {
      const src = `${img}.src.qcow2`;
      create(src, '');
      fill(src);
      must('qemu-img', ['convert', '-c', '-O', 'qcow2', src, img]);
      qemuIo(img, 'qcow2', ['write -P 0x66 30M 64k']); // plus an uncompressed cluster
    },
  },
  {
    name: 'compressed clusters in 4k clusters (several per host cluster)',
    make: (img) => {
      const src = `${img}.src.raw`;
      must('qemu-img', ['create', '-q', '-f', 'raw', src, '1M']);
      qemuIo(src, 'raw', ['write -P 0x01 0 64k', 'write -P 0x02 512k 16k']);
      must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', src, img]);
    },
  },
  {
    name: 'extended L2 entries with subcluster writes and zero writes',
    make: (img) => {
      create(img, 'extended_l2=on,cluster_size=64k');
      qemuIo(img, 'qcow2', ['write -P 0x77 0 2k', 'write -P 0x78 6k 2k', 'write -P 0x79 1M 128k', 'write -z 4M 64k', 'write -z 2M 2k']);
    },
  },
  { name: 'lazy refcounts, cleanly closed', make: (img) => (create(img, 'lazy_refcounts=on'), fill(img)) },
  {
    name: 'zero clusters and preallocation=metadata',
    make: (img) => {
      create(img, 'preallocation=metadata,cluster_size=64k', '8M');
      qemuIo(img, 'qcow2', ['write -P 0x12 0 64k', 'write -z 1M 128k', 'write -z -u 2M 64k']);
    },
  },
  {
    name: 'persistent dirty bitmaps',
    make: (img) => {
      create(img, '');
      must('qemu-img', ['bitmap', '--add', img, 'b0']);
      must('qemu-img', ['bitmap', '--add', '-g', '512', img, 'b1']);
      fill(img);
    },
  },
  {
    name: 'an overlay with a backing file',
    make: (img) => {
      const base = `${img}.base.qcow2`;
      create(base, '');
      fill(base);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', img]);
      qemuIo(img, 'qcow2', ['write -P 0x99 64k 64k']);
    },
  },
  {
    name: 'LUKS encryption (crypto header clusters)',
    make: (img) => {
      const args = ['create', '-q', '--object', 'secret,id=s0,data=pw', '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=100,cluster_size=4k', img, '16M'];
      qemuImgLuks(args);
      // qemu-img needs the key to open the image; we do not, the check never decrypts.
      return ['--object', 'secret,id=s0,data=pw', '--image-opts', `driver=qcow2,file.filename=${img},encrypt.key-secret=s0`];
    },
  },
];

describe('qcow2 check on clean images agrees with qemu-img check', () => {
  cases.forEach((c, n) => {
    test(c.name, () => {
      const img = s.path(`clean-${n}.qcow2`);
      const made = c.make(img);
      const qemuTarget = Array.isArray(made) ? made : [img];
      const q = run('qemu-img', ['check', '--output', 'json', ...qemuTarget]);
      const ours = dw(['check', '--output', 'json', img]);
      assert.equal(q.status, 0, `qemu-img check: ${q.stderr}`);
      assert.equal(ours.status, q.status, ours.stderr);
      const qj = JSON.parse(q.stdout) as Record<string, unknown>;
      const oj = JSON.parse(ours.stdout) as Record<string, unknown>;
      delete qj.filename;
      delete oj.filename;
      assert.deepEqual(oj, qj);
      assert.equal(ours.stdout.trim(), JSON.stringify({ ...JSON.parse(ours.stdout) }, null, 4), 'JSON printed qemu-style');
      // The human report, line for line.
      const qh = run('qemu-img', ['check', ...qemuTarget]);
      const oh = dw(['check', img]);
      assert.equal(oh.status, 0);
      assert.equal(oh.stdout.trim(), qh.stdout.trim());
      assert.equal(oh.stderr, '');
    });
  });
});

test('check does not modify the image it checks', () => {
  const img = s.path('untouched.qcow2');
  create(img, 'lazy_refcounts=on');
  fill(img);
  const before = must('sha256sum', [img]).stdout.split(' ')[0];
  const r = dw(['check', img]);
  assert.equal(r.status, 0);
  assert.equal(must('sha256sum', [img]).stdout.split(' ')[0], before);
});

test('check -f qcow2 on a raw file is refused as not qcow2', () => {
  const img = s.path('plain.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', img, '1M']);
  const r = dw(['check', '-f', 'qcow2', img]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /qcow2|magic/i);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});
