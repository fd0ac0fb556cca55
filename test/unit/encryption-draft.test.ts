// "Encrypt with a passphrase" in the wizards (src-renderer/encryptionDraft.ts): the options a create is given,
// what keeps the wizard from going on, and the strength hint.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { draftLabel, draftProblem, newDraft, strength, withEncryption } from '../../src-renderer/encryptionDraft';

test('the create options: encrypt.format when on (LUKS settings kept), no encrypt.* at all when off, none for AES', () => {
  const options = { cluster_size: 65536, 'encrypt.iter-time': 50, 'encrypt.cipher-alg': 'aes-128' };
  const d = newDraft();
  assert.deepEqual(withEncryption(options, d), { cluster_size: 65536 });
  d.enabled = true;
  assert.deepEqual(withEncryption(options, d), { cluster_size: 65536, 'encrypt.iter-time': 50, 'encrypt.cipher-alg': 'aes-128', 'encrypt.format': 'luks' });
  d.format = 'aes';
  assert.deepEqual(withEncryption(options, d), { cluster_size: 65536, 'encrypt.format': 'aes' });
  assert.match(draftLabel(d), /weak/);
  d.format = 'luks';
  assert.equal(draftLabel(d, 'aes-128', 'cbc'), 'LUKS (aes-128-cbc)');
  assert.equal(draftLabel(d), 'LUKS (aes-256-xts)');
});

test('the wizard goes on only with the passphrase typed twice alike, or one already handed over for this target', () => {
  const d = newDraft();
  assert.equal(draftProblem(d, '/t.qcow2'), '', 'off: nothing to type');
  d.enabled = true;
  assert.match(draftProblem(d, '/t.qcow2'), /Type the passphrase/);
  d.passphrase = 'one two three';
  assert.match(draftProblem(d, '/t.qcow2'), /again/);
  d.confirm = 'one two thre';
  assert.equal(draftProblem(d, '/t.qcow2'), 'The two passphrases differ.');
  d.confirm = 'one two three';
  assert.equal(draftProblem(d, '/t.qcow2'), '');
  // Handed over (the fields emptied): fine for that target, to be typed again for another.
  Object.assign(d, { passphrase: '', confirm: '', keySetFor: '/t.qcow2' });
  assert.equal(draftProblem(d, '/t.qcow2'), '');
  assert.match(draftProblem(d, '/other.qcow2'), /Type the passphrase/);
});

test('the strength hint: short, one-class or repeated passphrases are weak; several words are strong', () => {
  for (const weak of ['abc', 'password', 'aaaaaaaaaaaaaaaaaaaa', 'abcabcabcabcabcabc', '12345678']) assert.equal(strength(weak).label, 'Weak', weak);
  assert.ok(strength('Tr0ub4dor&3').level >= 1);
  assert.equal(strength('correct horse battery staple').label, 'Strong');
  assert.equal(strength('purple monkey dishwasher 42').label, 'Strong');
  // Characters beyond ASCII count (a passphrase in any language).
  assert.ok(strength('сложный пароль из слов').level >= 2);
});
