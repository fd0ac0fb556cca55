/** The renderer's label for an option or field key: words spaced, the first capitalised, abbreviations in capitals. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { humanKey } from '../../src-renderer/text';

test('humanKey: "Extended L2", not "Extended l2"; ordinary words untouched', () => {
  assert.equal(humanKey('extended_l2'), 'Extended L2');
  assert.equal(humanKey('lazy_refcounts'), 'Lazy refcounts');
  assert.equal(humanKey('cluster-size'), 'Cluster size');
  assert.equal(humanKey('uuid'), 'UUID');
  assert.equal(humanKey('parent_cid'), 'Parent CID');
  // An abbreviation inside a word is not one.
  assert.equal(humanKey('civil_build'), 'Civil build');
  // qemu's dotted option keys read as words, not "Encrypt.cipher alg".
  assert.equal(humanKey('encrypt.cipher-alg'), 'Encrypt cipher algorithm');
  assert.equal(humanKey('encrypt.ivgen-alg'), 'Encrypt IV generator algorithm');
  assert.equal(humanKey('encrypt.iter-time'), 'Encrypt iteration time');
});
