/**
 * The snapshot browser's listing (services/snapshot.ts snapshotListing), which reads every snapshot's disk size with
 * the table in one open of the file: proven against qemu-img.
 * - The snapshots listed are those of qemu-img info (ids, names, dates, VM state sizes, clocks).
 * - Each snapshot's disk size is the virtual size qemu-img info reports after qemu-img snapshot -a on a copy (qemu
 *   resizes the image to the size recorded with the snapshot), and the size now is qemu-img info's.
 * - With 300 snapshots (taken through the engine, the image resized by qemu-img between), the listing is the same as the one built by opening a view on each
 *   snapshot (the way it was read before, one open per snapshot).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { must, scratch } from '../helpers';
import { io } from './qcow2-common';
import { createSnapshot, snapshotListing } from '../../src-main/services/snapshot';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-snap-listing-');
after(() => s.cleanup());

function qemuInfo(img: string): { 'virtual-size': number; snapshots?: Record<string, unknown>[] } {
  return JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
}

test('listing: snapshots as qemu-img info lists them; disk sizes as qemu-img snapshot -a restores them', async () => {
  const img = s.path('grown.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  io(img, ['write -P 7 0 1M']);
  must('qemu-img', ['snapshot', '-c', 'at16', img]);
  must('qemu-img', ['resize', '-q', img, '32M']);
  io(img, ['write -P 8 20M 1M']);
  must('qemu-img', ['snapshot', '-c', 'at32', img]);
  must('qemu-img', ['resize', '-q', img, '48M']);
  must('qemu-img', ['snapshot', '-c', 'at48', img]);
  must('qemu-img', ['resize', '-q', img, '64M']);

  const listing = await snapshotListing(img);
  const info = qemuInfo(img);
  assert.deepEqual(listing.snapshots, info.snapshots);
  assert.equal(listing.currentSize, info['virtual-size']);
  assert.equal(listing.refusal, undefined);
  const restored: Record<string, number> = {};
  for (const sn of listing.snapshots) {
    const copy = s.path(`applied-${sn.id}.qcow2`);
    copyFileSync(img, copy);
    must('qemu-img', ['snapshot', '-a', sn.name, copy]);
    restored[sn.id] = qemuInfo(copy)['virtual-size'];
  }
  assert.deepEqual(listing.diskSizes, restored);
  assert.deepEqual(Object.values(restored), [16, 32, 48].map((m) => m * 1024 * 1024), 'qemu restores each size');
});

test('listing: 300 snapshots read in one open equal what a view opened on each snapshot says', async () => {
  const img = s.path('many.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '8M']);
  for (let i = 1; i <= 300; i++) {
    if (i % 100 === 0) must('qemu-img', ['resize', '-q', img, `${8 + i / 10}M`]);
    await createSnapshot(img, `s${i}`);
  }
  const listing = await snapshotListing(img);
  assert.deepEqual(listing.snapshots, qemuInfo(img).snapshots);
  assert.equal(listing.snapshots.length, 300);
  const viaViews: Record<string, number> = {};
  for (const sn of listing.snapshots) {
    const view = await openImage(img, { readOnly: true, backingPolicy: 'none', snapshot: sn.id });
    viaViews[sn.id] = view.size;
    await view.close();
  }
  assert.deepEqual(listing.diskSizes, viaViews);
  assert.equal(new Set(Object.values(viaViews)).size, 4, 'four different sizes among them');
});
