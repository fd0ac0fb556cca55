/** The renderer's sizes for people: a size that rounds to whole units without being one is marked "≈". */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatBytesAbout } from '../../src-renderer/text';

test('formatBytes: whole units plain, decimals where they show, "≈" where rounding would read as exact', () => {
  assert.equal(formatBytes(64 * 2 ** 20), '64 MiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(512), '512 bytes');
  assert.equal(formatBytes(2154496), '2.05 MiB');
  // qemu-img's 16 MiB VHD (the geometry rounds it up) and a 64 MiB disk plus a sector.
  assert.equal(formatBytes(16781312), '≈16 MiB');
  assert.equal(formatBytes(64 * 2 ** 20 + 512), '≈64 MiB');
  assert.equal(formatBytes(100.4 * 2 ** 30), '≈100 GiB');
});

test('formatBytesAbout: a sentence that says "about" gets no "≈" as well', () => {
  assert.equal(formatBytesAbout(16781312), '16 MiB');
  assert.equal(formatBytesAbout(2154496), '2.05 MiB');
});
