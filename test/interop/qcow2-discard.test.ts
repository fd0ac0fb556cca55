/**
 * qcow2 discard against qemu-io's: the same discards (aligned, unaligned edges, inside one cluster, to the
 * end of an image whose last cluster is partial, the whole image) go to two copies of one image, one through
 * `diskwright discard`, one through `qemu-io -c 'discard OFF LEN'`. After every step qemu-img says our copy is
 * clean (exit 0, no leaks), holds the same content as qemu's copy, maps the same (allocation status; host
 * offsets may differ) and has as many allocated clusters. Images: v2 and v3, 4k and 64k clusters, extended L2
 * entries (64k: qemu refuses them below 16k), plain, over a backing file, with a snapshot taken before the
 * discards (applied afterwards, it restores the original content) and compressed by qemu-img convert -c.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, must, qemuIo, run, scratch } from '../helpers';
import { openQcow2 } from '../../src-main/formats/qcow2/device';
import type { BlockDevice } from '../../src-main/block/types';
import { assertPlainError, io } from './qcow2-common';

const s = scratch('dw-qcow2-discard-');
after(() => s.cleanup());
let n = 0;

const KiB = 1024;
const MiB = 1024 * KiB;
/** Not a multiple of any cluster size (the last cluster is partial), and past 2 MiB (a second L2 table with 4k clusters). */
const SIZE = 2 * MiB + 512 * KiB + 3 * KiB;

interface Variant {
  label: string;
  opts: string;
  cs: number;
  version: 2 | 3;
}

const VARIANTS: Variant[] = [
  { label: 'v2, 4k clusters', opts: 'compat=0.10,cluster_size=4k', cs: 4 * KiB, version: 2 },
  { label: 'v3, 4k clusters', opts: 'compat=1.1,cluster_size=4k', cs: 4 * KiB, version: 3 },
  { label: 'v2, 64k clusters', opts: 'compat=0.10,cluster_size=64k', cs: 64 * KiB, version: 2 },
  { label: 'v3, 64k clusters', opts: 'compat=1.1,cluster_size=64k', cs: 64 * KiB, version: 3 },
  { label: 'v3, 64k clusters, extended L2', opts: 'compat=1.1,cluster_size=64k,extended_l2=on', cs: 64 * KiB, version: 3 },
];

/** Data, zeroed ranges, unallocated gaps and a write up to the end of the image. */
const CONTENT = [
  'write -P 0x11 0 900k',
  'write -z 300k 64k',
  'write -P 0x22 1000k 1200k',
  'write -z 1500k 8k',
  `write -P 0x33 ${SIZE - 7 * KiB} 7k`,
];

function steps(cs: number): Array<{ label: string; offset: number; length: number }> {
  return [
    { label: 'aligned', offset: 2 * cs, length: 3 * cs },
    { label: 'unaligned edges across an L2 table boundary (4k)', offset: 2 * MiB - 3 * cs + 1000, length: 6 * cs },
    { label: 'inside one cluster', offset: cs + 100, length: 200 },
    { label: 'to the end of the image (partial last cluster)', offset: SIZE - 2 * cs - 500, length: 2 * cs + 500 },
    { label: 'whole image', offset: 0, length: SIZE },
  ];
}

type Row = Record<string, unknown>;

/** qemu-img's map without host offsets and file names, with neighbouring rows of one state merged. */
function allocation(image: string): Row[] {
  const rows = JSON.parse(must('qemu-img', ['map', '--output', 'json', image]).stdout) as Row[];
  const out: Row[] = [];
  for (const r of rows) {
    delete r.offset;
    delete r.filename;
    const prev = out[out.length - 1];
    const key = (x: Row) => JSON.stringify({ ...x, start: 0, length: 0 });
    if (prev && key(prev) === key(r) && (prev.start as number) + (prev.length as number) === r.start) prev.length = (prev.length as number) + (r.length as number);
    else out.push(r);
  }
  return out;
}

function checkJson(image: string): { status: number; j: Record<string, number> } {
  const r = run('qemu-img', ['check', '--output', 'json', image]);
  return { status: r.status, j: JSON.parse(r.stdout || '{}') };
}

/** Our copy passes qemu-img check and agrees with qemu's copy in content, allocation and allocated clusters. */
function assertAgree(ours: string, theirs: string, label: string): void {
  const c = checkJson(ours);
  assert.equal(c.status, 0, `${label}: qemu-img check exit status (${JSON.stringify(c.j)})`);
  assert.equal(c.j.leaks ?? 0, 0, `${label}: leaked clusters`);
  assert.equal(c.j.corruptions ?? 0, 0, `${label}: corruptions`);
  const cmp = run('qemu-img', ['compare', ours, theirs]);
  assert.equal(cmp.status, 0, `${label}: qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
  assert.deepEqual(allocation(ours), allocation(theirs), `${label}: qemu-img map of ours vs qemu's copy`);
  assert.equal(c.j['allocated-clusters'] ?? 0, checkJson(theirs).j['allocated-clusters'] ?? 0, `${label}: allocated clusters`);
}

function rawOf(image: string, snapshot?: string): string {
  const out = s.path(`view${n++}.raw`);
  must('qemu-img', ['convert', '-O', 'raw', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), image, out]);
  return out;
}

/** Applies every step to both copies and compares after each. `refused`: ours must refuse (v2 over a backing file). */
function discardBoth(ours: string, theirs: string, v: Variant, refused = false): void {
  for (const st of steps(v.cs)) {
    const label = `${v.label}: ${st.label} (${st.offset}+${st.length})`;
    const before = allocation(theirs);
    if (refused) {
      assertPlainError(['discard', ours, String(st.offset), String(st.length)], /version 2 .* backing file cannot discard/);
    } else {
      const r = dw(['discard', ours, String(st.offset), String(st.length)]);
      assert.equal(r.status, 0, `${label}: diskwright discard: ${r.stderr}`);
    }
    io(theirs, [`discard ${st.offset} ${st.length}`]);
    if (st.label === 'aligned' && !refused) assert.notDeepEqual(allocation(theirs), before, `${label}: qemu's discard changed the map (the step is not vacuous)`);
    assertAgree(ours, theirs, label);
  }
}

function twoCopies(image: string): { ours: string; theirs: string } {
  const ours = s.path(`ours${n}.qcow2`);
  const theirs = s.path(`theirs${n++}.qcow2`);
  copyFileSync(image, ours);
  copyFileSync(image, theirs);
  return { ours, theirs };
}

function plainImage(v: Variant): string {
  const img = s.path(`plain${n++}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', v.opts, img, String(SIZE)]);
  io(img, CONTENT);
  return img;
}

for (const v of VARIANTS) {
  test(`discard, ${v.label}: same result as qemu-io's`, () => {
    const { ours, theirs } = twoCopies(plainImage(v));
    discardBoth(ours, theirs, v);
  });

  test(`discard over a backing file, ${v.label}: ${v.version === 2 ? "refused (qemu skips it: v2 has no zero flag)" : 'released clusters read as zeros, as qemu makes them'}`, () => {
    const base = s.path(`base${n++}.qcow2`);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(SIZE)]);
    io(base, [`write -P 0x55 0 ${SIZE}`]);
    const child = s.path(`child${n++}.qcow2`);
    // Relative backing name: the copies lie in the same folder and find the same base.
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', v.opts, '-b', base.split('/').pop()!, '-F', 'qcow2', child], { cwd: s.dir });
    io(child, ['write -P 0x66 100k 700k', 'write -z 1200k 64k', 'write -P 0x77 2000k 100k']);
    const { ours, theirs } = twoCopies(child);
    discardBoth(ours, theirs, v, v.version === 2);
  });

  test(`discard after a snapshot, ${v.label}: shared clusters keep their references; applying the snapshot restores the content`, () => {
    const img = plainImage(v);
    must('qemu-img', ['snapshot', '-c', 'before', img]);
    const original = rawOf(img);
    const { ours, theirs } = twoCopies(img);
    discardBoth(ours, theirs, v);
    // The snapshot still reads as the content it was taken with.
    assert.ok(readFileSync(rawOf(ours, 'before')).equals(readFileSync(original)), 'qemu-img reads our snapshot as taken');
    must('qemu-img', ['snapshot', '-a', 'before', ours]);
    const c = checkJson(ours);
    assert.equal(c.status, 0, `check after applying the snapshot: ${JSON.stringify(c.j)}`);
    assert.equal(c.j.leaks ?? 0, 0);
    const cmp = run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', ours, original]);
    assert.equal(cmp.status, 0, `applying the snapshot restores the original content: ${cmp.stdout}${cmp.stderr}`);
  });

  test(`discard of compressed clusters (qemu-img convert -c), ${v.label}: shared host clusters freed when their last user goes`, () => {
    const comp = s.path(`comp${n++}.qcow2`);
    must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', v.opts, plainImage(v), comp]);
    assert.ok((checkJson(comp).j['compressed-clusters'] ?? 0) > 10, 'the image holds compressed clusters');
    const { ours, theirs } = twoCopies(comp);
    // One cluster out of a run packed into shared host clusters, then its neighbours.
    const c = 10 * v.cs;
    for (const [offset, length] of [[c, v.cs], [c - v.cs, v.cs], [c + v.cs, v.cs]]) {
      assert.equal(dw(['discard', '-q', ours, String(offset), String(length)]).status, 0);
      io(theirs, [`discard ${offset} ${length}`]);
      assertAgree(ours, theirs, `${v.label}: compressed cluster at ${offset}`);
    }
    discardBoth(ours, theirs, v);
  });
}

test('discard with lazy refcounts: the dirty flag set for the change is cleared on close', () => {
  const v: Variant = { label: 'v3 lazy refcounts', opts: 'compat=1.1,cluster_size=64k,lazy_refcounts=on', cs: 64 * KiB, version: 3 };
  const { ours, theirs } = twoCopies(plainImage(v));
  discardBoth(ours, theirs, v);
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', ours]).stdout);
  assert.equal(info['dirty-flag'], false);
});

test('discard says which part was released when the range has partial clusters at its edges', () => {
  const img = plainImage(VARIANTS[3]);
  const r = dw(['discard', img, String(70000), String(200000)]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Discarded 131072 of 200000 bytes: only whole 65536-byte clusters are released/);
  assert.equal(dw(['discard', img, '0', String(128 * KiB)]).stdout, '', 'nothing to say when the range is whole clusters');
});

test('raw images discard by punching a hole, as qemu-io does; bad ranges and arguments are plain errors', () => {
  const raw = s.path('r.raw');
  const theirs = s.path('r-qemu.raw');
  writeFileSync(raw, Buffer.alloc(256 * KiB, 0x42));
  writeFileSync(theirs, Buffer.alloc(256 * KiB, 0x42));
  assert.equal(dw(['discard', '-f', 'raw', raw, String(64 * KiB), String(128 * KiB)]).status, 0);
  qemuIo(theirs, 'raw', [`discard ${64 * KiB} ${128 * KiB}`]);
  assert.ok(readFileSync(raw).equals(readFileSync(theirs)), 'the same content as qemu-io discard gives');
  assert.ok(readFileSync(raw).subarray(64 * KiB, 192 * KiB).every((b) => b === 0), 'the range reads as zeros');
  assert.ok(statSync(raw).blocks * 512 <= 128 * KiB, 'and its blocks went back to the host');
  assert.equal(statSync(raw).size, 256 * KiB, 'the file keeps its length');
  const img = plainImage(VARIANTS[1]);
  const before = readFileSync(img);
  assertPlainError(['discard', img, String(SIZE), '4096'], /outside the image/);
  assertPlainError(['discard', img, '0', String(SIZE + 1)], /outside the image/);
  assertPlainError(['discard', img, '-5', '10']);
  assertPlainError(['discard', img, '0'], /expecting IMAGE OFFSET LENGTH/);
  assert.ok(readFileSync(img).equals(before), 'a refused discard changes nothing');
});

test('crash safety: the L2 entries reach the disk before any refcount drops; a crash in between only leaks', async () => {
  const v = VARIANTS[3];
  const img = plainImage(v);
  const crashed = s.path(`crashed${n++}.qcow2`);
  const noBacking = async (): Promise<BlockDevice> => {
    throw new Error('no backing file expected');
  };
  const dev = await openQcow2(img, { readOnly: false, backingPolicy: 'none', openBacking: noBacking });
  const l2 = dev.l1Entry(0).offset;
  const refBlocks = new Set((await dev.refcounts()).table.filter((o) => o !== 0));
  const events: string[] = [];
  const file = dev.file;
  const write = file.write.bind(file);
  const sync = file.sync.bind(file);
  file.write = async (pos: number, data: Uint8Array) => {
    const cluster = Math.floor(pos / v.cs) * v.cs;
    events.push(cluster === l2 ? 'l2' : refBlocks.has(cluster) ? 'refcount' : `other@${pos}`);
    return write(pos, data);
  };
  file.sync = async () => {
    events.push('sync');
    await sync();
    // The file as a crash right after the sync would leave it (before any refcount drop).
    if (!events.includes('refcount')) copyFileSync(img, crashed);
  };
  await dev.discard(4 * v.cs, 4 * v.cs);
  await dev.close();
  const firstRef = events.indexOf('refcount');
  assert.ok(firstRef > 0, `refcounts dropped: ${events.join(' ')}`);
  assert.ok(events.lastIndexOf('l2', firstRef) >= 0, 'the L2 entries were written');
  assert.ok(events.indexOf('sync', events.lastIndexOf('l2', firstRef)) < firstRef, `a sync lies between the L2 write and the first refcount write: ${events.join(' ')}`);
  assert.equal(events.slice(firstRef).filter((e) => e === 'l2').length, 0, 'no L2 write after the refcounts dropped');
  const c = checkJson(img);
  assert.equal(c.status, 0, JSON.stringify(c.j));
  const k = checkJson(crashed);
  assert.equal(k.j.corruptions ?? 0, 0, `the crashed file holds no corruption: ${JSON.stringify(k.j)}`);
  assert.equal(k.j.leaks, 4, 'the four released clusters leak');
  assert.equal(k.status, 3, 'qemu-img check: leaks only');
});
