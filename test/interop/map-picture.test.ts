/**
 * The app's map picture against qemu-img map: data stored compressed is counted apart (qemu-img map --output
 * json gives compressed clusters no host offset), and what a backing file provides is counted apart too.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { must, scratch } from '../helpers';
import { qemuIo } from '../oracles';
import { io } from './qcow2-common';
import { mapPicture } from '../../src-main/services/map';

const s = scratch('dw-map-picture-');
after(() => s.cleanup());

test('compressed data in the picture = qemu-img map data entries without a host offset', async () => {
  const raw = s.path('src.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '8M']);
  qemuIo(raw, 'raw', ['write -P 0x11 0 1M', 'write -P 0x22 3M 512k']);
  const packed = s.path('packed.qcow2');
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', raw, packed]);
  io(packed, ['write -P 0x33 6M 256k']); // plain data beside the compressed
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', packed]).stdout) as Array<{ length: number; data: boolean; offset?: number }>;
  const compressed = entries.filter((e) => e.data && e.offset === undefined).reduce((n, e) => n + e.length, 0);
  const data = entries.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
  const pic = await mapPicture(packed, 16);
  const sum = (k: 'data' | 'compressed') => pic.buckets.reduce((n, b) => n + (b[k] ?? 0), 0);
  assert.equal(sum('compressed'), compressed);
  assert.equal(sum('data'), data);
  assert.ok(compressed > 0 && compressed < data);
});
