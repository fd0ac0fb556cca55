/**
 * Reading VDI images qemu-img and qemu-io made (dynamic, static, odd sizes) and one laid out as VirtualBox lays
 * it out: every byte equal to qemu-img convert's raw output, `map` equal to qemu-img map, and info's figures
 * equal to qemu-img info's.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dwOk, ROOT, scratch } from '../helpers';
import { io, MiB, ourRead, qimg, vboxImage } from './vdi-common';

const s = scratch('dw-vdi-read-');
after(() => s.cleanup());

/** Without the native helper our map cannot see a static image's holes, which qemu-img map shows as zeros. */
const seesHoles = existsSync(join(ROOT, 'dist', 'native', 'fileops.node'));

const CASES: Array<{ name: string; make: (p: string) => void; holes?: boolean }> = [
  {
    name: 'dynamic, scattered writes, a write across blocks and one at the very end',
    make: (p) => {
      qimg(['create', '-q', '-f', 'vdi', p, '10M']);
      io(p, ['write -P 0x5a 1M 4k', 'write -P 1 5000k 2M', 'write -P 2 0 512', 'write -P 3 10484736 512', 'write -z 3M 64k']);
    },
  },
  {
    name: 'dynamic, writes in reverse guest order (host order differs from guest order)',
    make: (p) => {
      qimg(['create', '-q', '-f', 'vdi', p, '6M']);
      io(p, ['write -P 0x61 5M 1M', 'write -P 0x62 3M 100k', 'write -P 0x63 1M 1', 'write -P 0x64 0 3000']);
    },
  },
  {
    name: 'static, with writes',
    holes: true,
    make: (p) => {
      qimg(['create', '-q', '-f', 'vdi', '-o', 'static=on', p, '10M']);
      io(p, ['write -P 7 3M 5k', 'write -P 8 9M 1M', 'write -P 9 100 1000']);
    },
  },
  {
    name: 'odd size (1000000 bytes: rounded up to a sector), written at its end',
    make: (p) => {
      qimg(['create', '-q', '-f', 'vdi', p, '1000000']);
      io(p, ['write -P 0x70 999424 576', 'write -P 0x71 0 65536']);
    },
  },
  {
    name: 'empty dynamic image',
    make: (p) => qimg(['create', '-q', '-f', 'vdi', p, '3M']),
  },
  {
    name: 'VirtualBox layout (its text, 400-byte header, map at 1 MiB, data at 2 MiB), host order reversed, a discarded block',
    make: (p) => {
      vboxImage(p, 8 * MiB, [[6, 0xa6], [2, 0xa2], [0, 0xa0], [7, 0xa7]], {}, [3]);
    },
  },
];

CASES.forEach((c, i) => {
  test(`vdi read: ${c.name}: bytes equal to qemu-img convert's, map equal to qemu-img map's, info's size and cluster size equal`, async () => {
    const img = s.path(`r${i}.vdi`);
    const raw = s.path(`r${i}.raw`);
    c.make(img);
    qimg(['convert', '-f', 'vdi', '-O', 'raw', img, raw]);
    const theirs = readFileSync(raw);
    assert.ok(theirs.equals(await ourRead(img)), 'guest bytes differ from qemu-img convert -O raw');
    const ours = s.path(`r${i}.ours.raw`);
    dwOk(['convert', '-O', 'raw', img, ours]);
    assert.ok(theirs.equals(readFileSync(ours)), 'our convert -O raw differs');
    const map = (out: string) => (JSON.parse(out) as Array<Record<string, unknown>>).map((e) => (c.holes && !seesHoles ? { ...e, zero: false } : e));
    assert.deepEqual(map(dwOk(['map', '--output=json', img]).stdout), map(qimg(['map', '--output=json', '-f', 'vdi', img]).stdout));
    const qi = JSON.parse(qimg(['info', '--output=json', '-f', 'vdi', img]).stdout);
    const di = JSON.parse(dwOk(['info', '--output=json', img]).stdout);
    assert.equal(di.format, 'vdi');
    assert.equal(di['virtual-size'], qi['virtual-size']);
    assert.equal(di['cluster-size'], qi['cluster-size']);
  });
});
