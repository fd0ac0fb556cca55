import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isZero } from '../../src-main/block/bytes';
import { parseSize, formatSize } from '../../src-main/block/sizes';
import { DiskError } from '../../src-main/block/errors';
import { readSize } from '../../src-shared/sizes';
import { parseSizeText } from '../../src-renderer/sizes';

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

test('the app and the CLI read sizes with one reader (src-shared/sizes.ts), exabytes included', () => {
  for (const [text, bytes] of [['4096', 4096], ['64k', 65536], ['1.5T', 1.5 * 2 ** 40], ['0E', 0], ['0.5P', 2 ** 49], ['10GB', 10 * 2 ** 30]] as const) {
    assert.equal(readSize(text), bytes, text);
    assert.equal(parseSize(text), bytes, text);
    assert.equal(parseSizeText(text), bytes, text);
  }
  // An exabyte is past 2^53 bytes: the unit is read (the renderer used to call "1E" unreadable), the size refused.
  assert.equal(readSize('1E'), 'too-large');
  assert.equal(readSize('1.3'), 'not-whole');
  assert.equal(readSize('12Q'), 'unreadable');
  assert.match(String(parseSizeText('12Q')), /number with an optional unit/);
  assert.match(String(parseSizeText('1E')), /larger than any disk/);
});
