import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isZero } from '../../src-main/block/bytes';
import { parseSize, formatSize } from '../../src-main/block/sizes';
import { DiskError } from '../../src-main/block/errors';

test('parseSize reads qemu-img suffixes', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512M'), 512 * 2 ** 20);
  assert.equal(parseSize('10G'), 10 * 2 ** 30);
  assert.equal(parseSize('1.5k'), 1536);
  assert.equal(parseSize('2T'), 2 * 2 ** 40);
});

test('parseSize refuses nonsense with a DiskError', () => {
  for (const bad of ['12Q', '', 'G', '-5', '1.3', '99999999999E']) {
    assert.throws(() => parseSize(bad), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL', bad);
  }
});

test('formatSize prints like qemu-img', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(1048576), '1 MiB');
  assert.equal(formatSize(3 * 2 ** 30), '3 GiB');
  assert.equal(formatSize(73728), '72 KiB');
});

test('isZero finds a single non-zero byte anywhere', () => {
  const buf = new Uint8Array(3 * 1024 * 1024 + 7);
  assert.equal(isZero(buf), true);
  for (const at of [0, 4095, 1048576, buf.length - 1]) {
    buf[at] = 1;
    assert.equal(isZero(buf), false, `byte ${at}`);
    buf[at] = 0;
  }
  assert.equal(isZero(buf.subarray(3)), true);
});
