/**
 * The New Image size field after a backing file is picked shows the base's size in the units it was typed in
 * ("1G", not "1073741824"), and what it shows reads back (src-shared's reader) as the same number of bytes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readSize } from '../../src-shared/sizes';
import { sizeText } from '../../src-renderer/sizes';

test('sizes are shown in the largest exact unit and read back to the same bytes', () => {
  const cases: Array<[number, string]> = [
    [2 ** 30, '1G'],
    [10 * 2 ** 30, '10G'],
    [64 * 2 ** 20, '64M'],
    [1536 * 2 ** 20, '1536M'],
    [3 * 2 ** 40, '3T'],
    [512, '512'],
    [1000, '1000'],
    [4096, '4k'],
  ];
  for (const [bytes, text] of cases) {
    assert.equal(sizeText(bytes), text);
    assert.equal(readSize(text), bytes, text);
  }
});
