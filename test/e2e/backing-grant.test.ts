/**
 * The browser host's answer to a backing file outside an image's folder, over the WebSocket as the page
 * speaks it: inspect stops the chain there, the map is the chain as far as it was followed (checked against
 * qemu-img map of the same images with the backing cut in a json: filename), allowBackingPath grants exactly
 * one image → backing pair, and a new launch of the host has forgotten it.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { ImageInfo, MapPicture } from '../../src-shared/api';
import { startHost, type Host } from '../../src-main/host/server';
import { must, qemuIo, scratch } from '../helpers';
import { SocketClient } from './socket-client';

const MiB = 1024 * 1024;
const work = scratch('dw-e2e-grant-');
let host: Host;

before(async () => {
  host = await startHost({ port: 0 });
});
after(async () => {
  await host?.close();
  work.cleanup();
});

interface OracleMapEntry {
  start: number;
  length: number;
  present: boolean;
  data: boolean;
  depth: number;
}

/** qemu-img map of `spec` (a path, or a json: filename) drawn into `n` buckets as mapPicture draws them. */
function oracleBuckets(spec: string, n: number, size: number): MapPicture['buckets'] {
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', spec]).stdout) as OracleMapEntry[];
  const bucketSize = Math.ceil(size / n);
  const out: MapPicture['buckets'] = Array.from({ length: n }, () => ({ data: 0, zero: 0, unallocated: 0 }));
  for (const e of entries) {
    const kind = e.data ? 'data' : e.present ? 'zero' : 'unallocated';
    for (let pos = e.start; pos < e.start + e.length; ) {
      const b = Math.floor(pos / bucketSize);
      const end = Math.min(e.start + e.length, (b + 1) * bucketSize);
      out[b][kind] += end - pos;
      // Data from below the top image (mapPicture's 'backing' share, left out where there is none).
      if (e.data && e.depth > 0) out[b].backing = (out[b].backing ?? 0) + end - pos;
      pos = end;
    }
  }
  return out;
}

/** A json: filename for qemu-img: `top` as qcow2, its chain followed through `through`, then cut. */
function cutChain(top: string, ...through: string[]): string {
  let node: Record<string, unknown> = { driver: 'qcow2', file: { driver: 'file', filename: through.length ? through[through.length - 1] : top }, backing: null };
  for (let i = through.length - 2; i >= -1; i--) {
    node = { driver: 'qcow2', file: { driver: 'file', filename: i >= 0 ? through[i] : top }, backing: node };
  }
  return 'json:' + JSON.stringify(node);
}

/** Each folder its own: a base in one, overlays (absolute backing names, as qemu-img -b /path writes them) in others. */
function layout() {
  const dir = (name: string) => {
    const d = work.path(name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const bases = dir('bases');
  const base = `${bases}/base.qcow2`;
  const base2 = `${bases}/base2.qcow2`;
  must('qemu-img', ['create', '-f', 'qcow2', base, '16M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 4M', 'write -P 0x12 12M 1M']);
  must('qemu-img', ['create', '-f', 'qcow2', base2, '16M']);
  const overlay = `${dir('vm1')}/overlay.qcow2`;
  const other = `${dir('vm2')}/overlay.qcow2`;
  const onBase2 = `${dir('vm3')}/overlay.qcow2`;
  for (const [o, b] of [
    [overlay, base],
    [other, base],
    [onBase2, base2],
  ]) {
    must('qemu-img', ['create', '-f', 'qcow2', '-b', b, '-F', 'qcow2', o]);
    qemuIo(o, 'qcow2', ['write -P 0x22 1M 1M', 'write -z 6M 1M', 'write -P 0x33 8M 2M']);
  }
  return { base, base2, overlay, other, onBase2 };
}

test('without a grant: the chain stops at the outside file, the map is the overlay’s own (qemu-img with backing null)', async () => {
  const { base, overlay } = layout();
  const c = await SocketClient.connect(host);
  try {
    const info = await c.result<ImageInfo>('inspect', [overlay]);
    assert.equal(info['backing-filename'], base);
    assert.equal(info['backing-image'], undefined);
    assert.equal(info['backing-error']?.code, 'EOUTSIDE');
    assert.equal(info['backing-error']?.path, base);
    const pic = await c.result<MapPicture>('mapPicture', [overlay, 16]);
    assert.equal(pic.virtualSize, 16 * MiB);
    assert.deepEqual(pic.buckets, oracleBuckets(cutChain(overlay), 16, 16 * MiB));
    assert.ok(pic.buckets[0].unallocated > 0 && pic.buckets[12].data === 0, 'the base’s data does not show through');
    // Jobs keep refusing: a convert or map job never follows an outside file the user did not allow.
    const id = await c.result<string>('startJob', [{ kind: 'map', path: overlay, buckets: 4 }]);
    await c.until((ev) => ev.some((e) => e.id === id && e.type !== 'progress'));
    const end = c.events.find((e) => e.id === id && e.type !== 'progress');
    assert.ok(end && end.type === 'failed' && end.error.code === 'EOUTSIDE', JSON.stringify(end));
  } finally {
    c.close();
  }
});

test('a grant follows that one backing file for that one image; the map then matches qemu-img map of the chain', async () => {
  const { base, base2, overlay, other, onBase2 } = layout();
  const c = await SocketClient.connect(host);
  try {
    // Only the backing file the image names can be granted, and only to an image that has one.
    const wrong = await c.error('allowBackingPath', [overlay, base2]);
    assert.equal(wrong.code, 'EINVAL');
    assert.match(wrong.message, /base2\.qcow2 is not a file this image uses \(it uses .*base\.qcow2\)/);
    assert.equal((await c.error('allowBackingPath', [base, base])).code, 'EINVAL');
    assert.equal((await c.error('allowBackingPath', [overlay])).code, 'EINVAL');
    assert.equal((await c.error('allowBackingPath', [overlay, 7])).code, 'EINVAL');
    assert.equal((await c.error('allowBackingPath', [work.path('nothing.qcow2'), base])).code, 'ENOENT');
    assert.equal((await c.result<ImageInfo>('inspect', [overlay]))['backing-error']?.code, 'EOUTSIDE', 'failed grants grant nothing');

    assert.equal(await c.result('allowBackingPath', [overlay, base]), null);
    const info = await c.result<ImageInfo>('inspect', [overlay]);
    assert.equal(info['backing-error'], undefined);
    assert.equal(info['backing-image']?.filename, base);
    assert.equal(info['backing-image']?.['virtual-size'], 16 * MiB);
    const pic = await c.result<MapPicture>('mapPicture', [overlay, 16]);
    assert.deepEqual(pic.buckets, oracleBuckets(overlay, 16, 16 * MiB));
    assert.ok(pic.buckets[12].data === MiB, 'the base’s data shows through');
    // Jobs see the grant too.
    const id = await c.result<string>('startJob', [{ kind: 'map', path: overlay, buckets: 16 }]);
    await c.until((ev) => ev.some((e) => e.id === id && e.type !== 'progress'));
    const end = c.events.find((e) => e.id === id && e.type !== 'progress');
    assert.ok(end && end.type === 'done', JSON.stringify(end));
    assert.deepEqual((end.result as MapPicture).buckets, pic.buckets);

    // The same base for another image, and another base beside it, are still refused.
    assert.equal((await c.result<ImageInfo>('inspect', [other]))['backing-error']?.code, 'EOUTSIDE');
    assert.deepEqual((await c.result<MapPicture>('mapPicture', [other, 16])).buckets, oracleBuckets(cutChain(other), 16, 16 * MiB));
    const third = await c.result<ImageInfo>('inspect', [onBase2]);
    assert.equal(third['backing-error']?.code, 'EOUTSIDE');
    assert.equal(third['backing-error']?.path, base2);
  } finally {
    c.close();
  }

  // A new launch has forgotten every grant.
  const next = await startHost({ port: 0 });
  const c2 = await SocketClient.connect(next);
  try {
    const again = await c2.result<ImageInfo>('inspect', [overlay]);
    assert.equal(again['backing-error']?.code, 'EOUTSIDE');
    assert.equal(again['backing-image'], undefined);
    assert.deepEqual((await c2.result<MapPicture>('mapPicture', [overlay, 16])).buckets, oracleBuckets(cutChain(overlay), 16, 16 * MiB));
  } finally {
    c2.close();
    await next.close();
  }
});

test('deeper down: the chain shows every level it could follow and stops at the image that names the outside file', async () => {
  // top (folder t) → mid (folder m, granted) → low (folder m, inside mid's folder) → bottom (folder b, not granted)
  const t = work.path('deep-t');
  const m = work.path('deep-m');
  const b = work.path('deep-b');
  for (const d of [t, m, b]) mkdirSync(d, { recursive: true });
  const bottom = `${b}/bottom.qcow2`;
  const low = `${m}/low.qcow2`;
  const mid = `${m}/mid.qcow2`;
  const top = `${t}/top.qcow2`;
  must('qemu-img', ['create', '-f', 'qcow2', bottom, '8M']);
  qemuIo(bottom, 'qcow2', ['write -P 0x44 0 8M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', bottom, '-F', 'qcow2', low]);
  qemuIo(low, 'qcow2', ['write -P 0x55 2M 1M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', 'low.qcow2', '-F', 'qcow2', mid]);
  qemuIo(mid, 'qcow2', ['write -P 0x66 4M 1M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 0x77 6M 1M']);

  const c = await SocketClient.connect(host);
  try {
    await c.result('allowBackingPath', [top, mid]);
    const info = await c.result<ImageInfo>('inspect', [top]);
    assert.equal(info['backing-image']?.filename, mid);
    assert.equal(info['backing-image']?.['backing-image']?.filename, low);
    assert.equal(info['backing-image']?.['backing-image']?.['backing-image'], undefined);
    assert.equal(info['backing-error']?.code, 'EOUTSIDE');
    assert.equal(info['backing-error']?.path, bottom);
    const pic = await c.result<MapPicture>('mapPicture', [top, 8]);
    assert.deepEqual(pic.buckets, oracleBuckets(cutChain(top, mid, low), 8, 8 * MiB));

    // The grant that question asks for is low → bottom (low names it), not top → bottom.
    assert.equal((await c.error('allowBackingPath', [top, bottom])).code, 'EINVAL');
    await c.result('allowBackingPath', [low, bottom]);
    const whole = await c.result<ImageInfo>('inspect', [top]);
    assert.equal(whole['backing-error'], undefined);
    assert.equal(whole['backing-image']?.['backing-image']?.['backing-image']?.filename, bottom);
    assert.deepEqual((await c.result<MapPicture>('mapPicture', [top, 8])).buckets, oracleBuckets(top, 8, 8 * MiB));
  } finally {
    c.close();
  }
});
