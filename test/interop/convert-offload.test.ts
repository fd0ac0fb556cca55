/**
 * convert -C (copy offload: copy_file_range through the native helper), judged by qemu-img: the target is
 * identical by `qemu-img compare`, and, on one file system, allocated exactly where qemu-img convert -C
 * allocates its own (both copy data ranges whole, zeros inside them included, which the plain convert leaves
 * as holes: so the map proves the offload ran). Across file systems (tmpfs to the scratch folder's) the
 * kernel refuses with EXDEV and the copy falls back to reads and writes in silence: the same content, and the
 * zeros inside data left out as a plain convert leaves them. Data held by a backing file is copied from that
 * file; what a qcow2 overlay holds over it is read as usual. Into a qcow2, whole new clusters are copied in the
 * kernel (the image stays clean by qemu-img check); out of a qcow2, plain clusters are copied from where they lie
 * and compressed ones read. -C with -c or -S is refused as qemu-img refuses it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assertPlainError, dwOk, must, scratch } from '../helpers';
import { qemuIo } from '../oracles';
import { identical, mapOf as rawMapOf, offloadSourceRaw } from './offload-common';

const s = scratch('dw-convert-offload-');
after(() => s.cleanup());
let n = 0;

/** The shared source (offload-common.ts), named afresh in `dir`. */
function sourceRaw(dir = s.dir): string {
  return offloadSourceRaw(join(dir, `src${n++}.raw`));
}
const mapOf = (image: string) => rawMapOf(image, 'raw');

test('convert -C raw -> raw: identical, and allocated as qemu-img convert -C allocates (zeros inside data copied)', () => {
  const src = sourceRaw();
  const ours = s.path(`ours${n++}.raw`);
  const theirs = s.path(`theirs${n++}.raw`);
  const plain = s.path(`plain${n++}.raw`);
  dwOk(['convert', '-C', '-f', 'raw', '-O', 'raw', src, ours]);
  must('qemu-img', ['convert', '-C', '-f', 'raw', '-O', 'raw', src, theirs]);
  dwOk(['convert', '-f', 'raw', '-O', 'raw', src, plain]);
  identical(src, ours);
  identical(src, plain);
  assert.equal(statSync(ours).size, statSync(theirs).size);
  assert.deepEqual(mapOf(ours), mapOf(theirs));
  // The plain convert skips the zeros inside data, so the two maps differ there: the offload really ran.
  assert.notDeepEqual(mapOf(plain), mapOf(ours));
  assert.ok(mapOf(ours).some(([start, length, data]) => data && start <= 1048576 && start + length >= 1048576 + 65536), 'the zeros inside data are copied as data');
});

function qcow2Clean(image: string): void {
  const c = JSON.parse(must('qemu-img', ['check', '--output', 'json', image]).stdout);
  assert.equal(c['check-errors'] ?? 0, 0, `check errors in ${image}`);
  assert.equal(c.corruptions ?? 0, 0, `corruptions in ${image}`);
  assert.equal(c.leaks ?? 0, 0, `leaks in ${image}`);
}

for (const opts of ['cluster_size=64k', 'cluster_size=512', 'cluster_size=2M', 'extended_l2=on', 'cluster_size=64k,refcount_bits=1']) {
  test(`convert -C raw -> qcow2 (${opts}) and back: identical, qemu-img check clean; the clusters are copied in the kernel`, () => {
    const src = sourceRaw();
    const q = s.path(`q${n++}.qcow2`);
    dwOk(['convert', '-C', '-O', 'qcow2', '-o', opts, src, q]);
    qcow2Clean(q);
    identical(src, q);
    // The zeros inside the data went in as data (copied whole, not read): as qemu-img map sees the new image.
    const zerosAt = (JSON.parse(must('qemu-img', ['map', '--output', 'json', q]).stdout) as Array<{ start: number; length: number; data: boolean }>).find((e) => e.start <= 1048576 && e.start + e.length > 1048576);
    assert.equal(zerosAt?.data, true, 'the zeros inside data are stored as data');
    const back = s.path(`qb${n++}.raw`);
    dwOk(['convert', '-C', '-O', 'raw', q, back]);
    identical(src, back);
    // Into a qcow2 that another convert -C wrote from a qcow2: clusters line up (or not, with 512 B) on both sides.
    const qq = s.path(`qq${n++}.qcow2`);
    dwOk(['convert', '-C', '-O', 'qcow2', q, qq]);
    qcow2Clean(qq);
    identical(src, qq);
  });
}

test('convert -C from a qcow2 with compressed clusters beside plain ones: identical', () => {
  const src = sourceRaw();
  const packed = s.path(`p${n++}.qcow2`);
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', src, packed]);
  qemuIo(packed, 'qcow2', ['write -P 0x3c 2M 256k']);
  for (const fmt of ['raw', 'qcow2']) {
    const out = s.path(`pc${n++}.${fmt}`);
    dwOk(['convert', '-C', '-O', fmt, packed, out]);
    identical(packed, out);
    if (fmt === 'qcow2') qcow2Clean(out);
  }
});

test('convert -C -t unsafe and into an existing target (-n): identical', () => {
  const src = sourceRaw();
  const a = s.path(`u${n++}.raw`);
  dwOk(['convert', '-C', '-t', 'unsafe', '-O', 'raw', src, a]);
  identical(src, a);
  const b = s.path(`n${n++}.raw`);
  must('qemu-img', ['create', '-q', '-f', 'raw', b, String(statSync(src).size + 24)]);
  qemuIo(b, 'raw', ['write -P 0x55 0 5M']);
  dwOk(['convert', '-C', '-n', '-O', 'raw', src, b]);
  identical(src, b);
});

test('convert -C from a qcow2 over a raw backing file: the backing data is copied from its file, the overlay read', () => {
  const base = sourceRaw();
  const top = s.path(`top${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]);
  qemuIo(top, 'qcow2', ['write -P 0xa1 512k 192k', 'write -z 2M 64k', 'write -P 0xb2 4M 1M']);
  for (const fmt of ['raw', 'qcow2']) {
    const out = s.path(`chain${n++}.${fmt}`);
    dwOk(['convert', '-C', '-O', fmt, top, out]);
    identical(top, out);
  }
});

test('convert -C across file systems (tmpfs to the scratch folder): the kernel refuses, the copy falls back in silence', (t) => {
  if (!existsSync('/dev/shm') || statSync('/dev/shm').dev === statSync(s.dir).dev) {
    t.skip('no tmpfs beside the scratch folder');
    return;
  }
  const shm = mkdtempSync('/dev/shm/dw-offload-');
  try {
    const src = sourceRaw(shm);
    const out = s.path(`x${n++}.raw`);
    const plain = s.path(`xp${n++}.raw`);
    const r = dwOk(['convert', '-C', '-O', 'raw', src, out]);
    assert.equal(r.stderr, '');
    identical(src, out);
    // Nothing was copied by the kernel, so the fallback wrote the file as a plain convert does.
    dwOk(['convert', '-O', 'raw', src, plain]);
    assert.deepEqual(mapOf(out), mapOf(plain));
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
});

test('convert -C with -c or -S is refused as qemu-img refuses it', () => {
  const src = sourceRaw();
  assertPlainError(['convert', '-C', '-c', '-O', 'qcow2', src, s.path(`c${n++}.qcow2`)], /Cannot enable copy offloading when -c is used/);
  assertPlainError(['convert', '-C', '-S', '0', '-O', 'raw', src, s.path(`c${n++}.raw`)], /Cannot enable copy offloading when -S is used/);
});
