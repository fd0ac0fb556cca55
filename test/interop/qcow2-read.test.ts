/**
 * Images made by qemu-img and qemu-io read here exactly as qemu-img reads them: `diskwright convert -O raw`
 * gives the bytes `qemu-img convert -O raw` gives, and `diskwright map --output json` the entries of
 * `qemu-img map --output json`.
 */
import { test, after } from 'node:test';
import { writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { dwOk, must, run, scratch } from '../helpers';
import { qemuIo } from '../oracles';
import { assertReadsLikeQemu, io } from './qcow2-common';

const s = scratch('dw-qcow2-read-');
after(() => s.cleanup());

let n = 0;
function qemuImage(opts: string, size: string, commands: string[]): string {
  const p = s.path(`img${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), p, size]);
  if (commands.length) io(p, commands);
  return p;
}

/** Data, zero writes (allocated and unmapped), discards and unaligned writes across a few MiB. */
const MIXED = [
  'write -P 0x11 0 4k',
  'write -P 0x22 100k 70k',
  'write -z 300k 128k',
  'write -P 0x33 1M 64k',
  'write -z -u 1M 64k',
  'write -P 0x44 2M 128k',
  'write -z 2M 64k',
  'discard 2112k 64k',
  'write -P 0x55 3001000 5000',
  'write -P 0x66 4095k 1k',
];

const LAYOUTS = [
  '',
  'compat=0.10',
  'compat=0.10,cluster_size=512',
  'cluster_size=512',
  'cluster_size=4k,refcount_bits=1',
  'cluster_size=4k,refcount_bits=8',
  'refcount_bits=64',
  'cluster_size=512,refcount_bits=64',
  'cluster_size=2M',
  'lazy_refcounts=on',
];

for (const opts of LAYOUTS) {
  test(`qemu-io writes on a qcow2 with ${opts || 'default options'} read as qemu-img reads them`, () => {
    assertReadsLikeQemu(qemuImage(opts, '4M', MIXED), s.path, opts);
  });
}

for (const opts of ['extended_l2=on', 'extended_l2=on,cluster_size=16k', 'extended_l2=on,cluster_size=2M,refcount_bits=1']) {
  test(`subclusters (${opts}): partial writes, zeroed and discarded subclusters`, () => {
    const img = qemuImage(opts, '4M', [
      ...MIXED,
      'write -P 0x77 3M 2k',
      'write -P 0x78 3148800 1000',
      'write -z 3M 4k',
      'write -z -u 3200k 8k',
      'discard 3M 64k',
    ]);
    assertReadsLikeQemu(img, s.path, opts);
  });
}

for (const opts of ['preallocation=metadata', 'preallocation=full', 'preallocation=metadata,extended_l2=on', 'preallocation=metadata,compat=0.10', 'preallocation=full,cluster_size=4k']) {
  test(`preallocated image (${opts}) with a few writes reads like qemu-img, map included`, () => {
    const img = qemuImage(opts, '3M', ['write -P 0x11 64k 4k', 'write -P 0x12 1M 100k', 'write -z 2M 64k']);
    assertReadsLikeQemu(img, s.path, opts);
  });
}

/** A raw file with patterned data, zero runs and a short tail. */
function rawSource(size: number): string {
  const p = s.path(`src${n++}.raw`);
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 7 + (i >> 9)) & 0xff;
  buf.fill(0, 65536, 3 * 65536); // zero clusters in the middle
  buf.fill(0x5a, size - 5000); // a repetitive tail that compresses well
  writeFileSync(p, buf);
  return p;
}

for (const cs of ['512', '4k', '64k', '2M']) {
  test(`compressed clusters (qemu-img convert -c, cluster_size=${cs}), then partly overwritten by qemu-io`, () => {
    const src = rawSource(3 * 1024 * 1024 + 4096);
    const img = s.path(`comp${n++}.qcow2`);
    must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, src, img]);
    assertReadsLikeQemu(img, s.path, `compressed ${cs}`);
    io(img, ['write -P 0x99 1000 3000', 'write -z 1M 64k', 'write -P 0x98 2M 512']);
    assertReadsLikeQemu(img, s.path, `compressed ${cs} after writes`);
  });
}

for (const cs of ['512', '64k', '2M']) {
  test(`zstd-compressed clusters (compression_type=zstd, cluster_size=${cs}) read like qemu-img; our writes over them pass check`, () => {
    const src = rawSource(2 * 1024 * 1024 + 4096);
    const img = s.path(`zstd${n++}.qcow2`);
    must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', `compression_type=zstd,cluster_size=${cs}`, src, img]);
    assertReadsLikeQemu(img, s.path, `zstd ${cs}`);
    const f = s.path(`zw${n++}.bin`);
    writeFileSync(f, Buffer.alloc(3000, 0x7e));
    dwOk(['write', img, '70000', f]);
    const c = run('qemu-img', ['check', img]);
    assert.equal(c.status, 0, c.stdout + c.stderr);
    assertReadsLikeQemu(img, s.path, `zstd ${cs} after our write`);
  });
}

test('backing chains: raw under qcow2 under qcow2, each image larger than its backing file', () => {
  const base = s.path('base.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', base, '1M']);
  qemuIo(base, 'raw', ['write -P 0x61 0 1M']);
  const mid = s.path('mid.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid, '2M']);
  io(mid, ['write -P 0x62 64k 64k', 'write -z 256k 64k', 'write -P 0x63 1500k 10k']);
  const top = s.path('top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top, '3M']);
  io(top, ['write -P 0x64 1000 100', 'write -z 512k 64k', 'write -z -u 64k 64k', 'write -P 0x65 2500k 4k']);
  assertReadsLikeQemu(mid, s.path, 'mid');
  assertReadsLikeQemu(top, s.path, 'top');
});

test('subclusters over a raw backing file read through where unallocated', () => {
  const base = s.path('base2.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', base, '512k']);
  qemuIo(base, 'raw', ['write -P 0x41 0 512k']);
  const top = s.path('sub-top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', '-b', 'base2.raw', '-F', 'raw', top, '1M']);
  io(top, ['write -P 0x42 0 2k', 'write -P 0x43 5000 100', 'write -z 8k 2k', 'write -P 0x44 600k 3k']);
  assertReadsLikeQemu(top, s.path, 'extended L2 over raw');
});

test('the current state of an image with qemu-img snapshots reads like qemu-img', () => {
  const img = qemuImage('', '2M', ['write -P 0x21 0 256k']);
  must('qemu-img', ['snapshot', '-c', 'one', img]);
  io(img, ['write -P 0x22 64k 64k', 'write -z 128k 64k', 'write -P 0x23 1M 4k']);
  must('qemu-img', ['snapshot', '-c', 'two', img]);
  io(img, ['write -P 0x24 0 1k', 'discard 1M 64k']);
  assertReadsLikeQemu(img, s.path, 'snapshots');
});
