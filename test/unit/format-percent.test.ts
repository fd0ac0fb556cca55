/** The renderer's percentages: one decimal, and a share that is neither none nor all never reads as 0.0% or 100.0%. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPercent } from '../../src-renderer/text';

test('formatPercent: one decimal; a sliver is "<0.1%" and nearly all ">99.9%", never 0.0% or 100.0%', () => {
  assert.equal(formatPercent(0.125), '12.5%');
  assert.equal(formatPercent(0), '0.0%');
  assert.equal(formatPercent(1), '100.0%');
  // 2 MiB of data on a 5 GiB disk, and what is left of it unallocated.
  const share = (2 * 2 ** 20) / (5 * 2 ** 30);
  assert.equal(formatPercent(share), '<0.1%');
  assert.equal(formatPercent(1 - share), '>99.9%');
  // The edges: 0.05% rounds up to 0.1% as it always did; 99.95% is no longer "100.0%".
  assert.equal(formatPercent(0.0005), '0.1%');
  assert.equal(formatPercent(0.0004999), '<0.1%');
  assert.equal(formatPercent(0.9994), '99.9%');
  assert.equal(formatPercent(0.9995), '>99.9%');
});
