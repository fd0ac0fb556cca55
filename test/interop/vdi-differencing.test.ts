/**
 * Differencing VDI images (a link UUID naming the parent's image UUID), which qemu refuses and VirtualBox reads:
 * the parent made by qemu-img and qemu-io, the child made by hand-editing a qemu-img image's header or laid out
 * as VirtualBox lays it out, then written by us; every read is compared with a model (the parent's raw bytes with
 * the same writes applied by qemu-io). The parent is found beside the child by UUID; a parent modified since
 * (its modification UUID changed) is refused unless accepted; commit and rebase work on the pair.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dw, dwOk, run, scratch } from '../helpers';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';
import { parseHeader, serializeHeader, TYPE_DIFFERENCING, type VdiHeader } from '../../src-main/formats/vdi/layout';
import { io, ioCmds, MiB, ourRead, ourWrites, qimg, vboxImage, type W } from './vdi-common';

const s = scratch('dw-vdi-diff-');
after(() => s.cleanup());

const headerOf = (p: string) => parseHeader(readFileSync(p).subarray(0, 512), p);
function patchHeader(p: string, change: Partial<VdiHeader>): void {
  const b = readFileSync(p);
  b.set(serializeHeader({ ...parseHeader(b.subarray(0, 512), p), ...change }, b.subarray(0, 512)), 0);
  writeFileSync(p, b);
}

/** A parent by qemu-img/qemu-io, and its raw model. */
function parent(dir: string, name: string, size = '8M'): { path: string; raw: string } {
  const path = `${dir}/${name}.vdi`;
  const raw = `${dir}/${name}.model.raw`;
  qimg(['create', '-q', '-f', 'vdi', path, size]);
  io(path, ['write -P 0x31 0 3M', 'write -P 0x32 5M 100k', 'write -P 0x33 7M 1M']);
  qimg(['convert', '-f', 'vdi', '-O', 'raw', path, raw]);
  return { path, raw };
}

/** A child of `p`: a fresh qemu-img image whose header is edited to name the parent (type differencing). */
function child(p: string, path: string, size = '8M'): void {
  qimg(['create', '-q', '-f', 'vdi', path, size]);
  const ph = headerOf(p);
  patchHeader(path, { imageType: TYPE_DIFFERENCING, uuidLink: ph.uuidImage, uuidParent: ph.uuidLastSnap });
}

const WRITES: W[] = [[MiB + 4096, 8192, 0x41], [2 * MiB - 10, 20, 0x42], [6 * MiB, 2 * MiB, 0x43], [0, 512, 0x44]];

test('vdi differencing: a child made by editing a qemu-img header, written by us, reads as the model; qemu refuses it', async () => {
  const d = s.path('a');
  run('mkdir', [d]);
  const p = parent(d, 'base');
  const c = `${d}/child.vdi`;
  child(p.path, c);
  assert.ok((await ourRead(c)).equals(readFileSync(p.raw)), 'an empty child reads its parent');
  await ourWrites(c, WRITES);
  io(p.raw, ioCmds(WRITES), 'raw');
  assert.ok((await ourRead(c)).equals(readFileSync(p.raw)), 'child reads differ from the model');
  const q = run('qemu-img', ['info', '-f', 'vdi', c]);
  assert.notEqual(q.status, 0);
  assert.match(q.stderr, /non-NULL link UUID/);
  // The parent was not written; our check of both is clean; map shows the parent's data at depth 1.
  assert.equal(run('qemu-img', ['check', '-f', 'vdi', p.path]).status, 0);
  assert.equal(dw(['check', c]).status, 0);
  const map = JSON.parse(dwOk(['map', '--output=json', c]).stdout) as Array<{ start: number; depth: number; data: boolean }>;
  assert.deepEqual(map.find((e) => e.start === 3 * MiB), { start: 3 * MiB, length: 2 * MiB, depth: 1, present: true, zero: true, data: false });
  assert.ok(map.some((e) => e.start === 5 * MiB && e.depth === 1 && e.data));
  assert.ok(map.some((e) => e.start === 0 && e.depth === 0 && e.data));
  const info = JSON.parse(dwOk(['info', '--output=json', c]).stdout);
  assert.equal(info['backing-filename'], 'base.vdi');
  assert.equal(info['format-specific'].data['parent-uuid'], headerOf(p.path).uuidImage);
  // convert flattens the chain: qemu-img compare of the result with the model.
  const flat = `${d}/flat.vdi`;
  dwOk(['convert', '-O', 'vdi', c, flat]);
  assert.equal(run('qemu-img', ['compare', '-f', 'vdi', '-F', 'raw', flat, p.raw]).status, 0);
});

test('vdi differencing: a VirtualBox-laid-out child (400-byte header, blocks at 1 MiB alignment, a discarded block) reads as the model', async () => {
  const d = s.path('b');
  run('mkdir', [d]);
  const p = parent(d, 'parent');
  const ph = headerOf(p.path);
  const c = `${d}/snap.vdi`;
  vboxImage(c, 8 * MiB, [[7, 0x57], [1, 0x51]], { imageType: TYPE_DIFFERENCING, uuidLink: ph.uuidImage, uuidParent: ph.uuidLastSnap }, [0]);
  io(p.raw, ['write -P 0x57 7M 1M', 'write -P 0x51 1M 1M', 'write -P 0 0 1M'], 'raw');
  assert.ok((await ourRead(c)).equals(readFileSync(p.raw)));
  // Our zeros over the parent's data mark a whole block discarded (no data written), and write a part.
  const before = readFileSync(c).length;
  const dev = await openImage(c, { readOnly: false });
  await dev.writeZeroes(5 * MiB, MiB);
  await dev.writeZeroes(2 * MiB + 512, 512);
  await dev.close();
  io(p.raw, ['write -z 5M 1M', 'write -z 2097664 512'], 'raw');
  assert.ok((await ourRead(c)).equals(readFileSync(p.raw)));
  assert.equal(readFileSync(c).length, before + MiB, 'one block written (the partial zeroing), none for the whole one');
  assert.equal(dw(['check', c]).status, 0);
});

test('vdi differencing: parent missing, modified since (refused unless accepted), or not beside the child', async () => {
  const d = s.path('c');
  run('mkdir', [d]);
  const p = parent(d, 'p');
  const c = `${d}/c.vdi`;
  child(p.path, c);
  await ourWrites(c, [[0, 4096, 9]]);
  // Opened without its parent (rebase -u does so), a block already in the child takes writes; a new one cannot be filled.
  const alone = await openImage(c, { readOnly: false, backingPolicy: 'none' });
  await alone.write(100, new Uint8Array(10).fill(9));
  await assert.rejects(alone.write(3 * MiB, new Uint8Array(10)), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED' && /opened without its parent/.test(e.message));
  await assert.rejects(alone.writeZeroes(4 * MiB, MiB), (e: unknown) => e instanceof DiskError && e.code === 'EUNSUPPORTED');
  await alone.close();
  patchHeader(p.path, { uuidLastSnap: randomUUID() });
  await assert.rejects(ourRead(c), (e: unknown) => e instanceof DiskError && e.code === 'EBACKINGCHANGED' && /modified after this image was made/.test(e.message));
  const r = dw(['convert', '-O', 'raw', c, `${d}/out.raw`]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /accept-changed-backing/);
  io(p.raw, ['write -P 9 0 4k'], 'raw');
  assert.ok((await ourRead(c, { acceptChangedBacking: true })).equals(readFileSync(p.raw)));
  patchHeader(p.path, { uuidImage: randomUUID() });
  const m = dw(['convert', '-O', 'raw', c, `${d}/out.raw`]);
  assert.equal(m.status, 1);
  assert.match(m.stderr, /its parent image \(a VDI whose image UUID is [0-9a-f-]+\) was not found among the \.vdi files beside it/);
  assert.doesNotMatch(m.stderr, /\n\s+at /);
});

test('vdi differencing: commit writes the child into the parent and empties the child; rebase names another parent by UUID', async () => {
  const d = s.path('d');
  run('mkdir', [d]);
  const p = parent(d, 'base');
  const c = `${d}/top.vdi`;
  child(p.path, c);
  await ourWrites(c, WRITES);
  io(p.raw, ioCmds(WRITES), 'raw');
  const other = `${d}/other.vdi`;
  copyFileSync(p.path, other);
  patchHeader(other, { uuidImage: randomUUID(), uuidLastSnap: randomUUID() });
  dwOk(['commit', c]);
  assert.equal(run('qemu-img', ['compare', '-f', 'vdi', '-F', 'raw', p.path, p.raw]).status, 0, 'the parent holds the committed data');
  assert.equal(run('qemu-img', ['check', '-f', 'vdi', p.path]).status, 0);
  assert.equal(headerOf(c).blocksAllocated, 0);
  assert.ok((await ourRead(c)).equals(readFileSync(p.raw)), 'the emptied child reads the parent');
  assert.equal(dw(['check', c]).status, 0);
  // Unsafe rebase onto the untouched copy: the header now names it; the child reads it.
  dwOk(['rebase', '-u', '-F', 'vdi', '-b', 'other.vdi', c]);
  assert.equal(headerOf(c).uuidLink, headerOf(other).uuidImage);
  assert.equal(headerOf(c).uuidParent, headerOf(other).uuidLastSnap);
  const o = s.path('other.raw');
  qimg(['convert', '-f', 'vdi', '-O', 'raw', other, o]);
  assert.ok((await ourRead(c)).equals(readFileSync(o)));
  // Safe rebase back onto base keeps what the guest reads.
  dwOk(['rebase', '-F', 'vdi', '-b', 'base.vdi', c]);
  assert.equal(headerOf(c).uuidLink, headerOf(p.path).uuidImage);
  assert.ok((await ourRead(c)).equals(readFileSync(o)));
  // A parent outside the child's folder is refused by name.
  const away = s.path('away.vdi');
  copyFileSync(other, away);
  const r = dw(['rebase', '-u', '-F', 'vdi', '-b', away, c]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /looked for among the \.vdi files beside it/);
});
