// LUKS1 pieces in isolation: the header codec, the slot layout qemu and cryptsetup use, the AF splitter, the
// iteration scaling, and refusals of damaged headers (qemu and cryptsetup are the oracles of
// test/interop/crypto-luks.test.ts; here the properties that need no oracle).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { afMerge, afSplit } from '../../src-main/crypto/af-split';
import { createLuks, luksInfo, unlockLuks, NO_SLOT_OPENS } from '../../src-main/crypto/luks';
import { LUKS_HEADER_BYTES, encodeLuksHeader, hasLuksMagic, luksAlgorithms, luksLayout, parseLuksHeader } from '../../src-main/crypto/luks-header';
import { iterationsPerSecond } from '../../src-main/crypto/pbkdf2';
import { HASH_ALGS } from '../../src-main/crypto/algorithms';
import { DiskError } from '../../src-main/block/errors';
import { seededRandom } from '../helpers';

test('the slot layout is qemu-img info\'s: slots at 4096 + 258048*i bytes, payload at 2068480 for a 64-byte key', () => {
  const { slotOffsets, payloadOffset } = luksLayout(64);
  assert.deepEqual(slotOffsets.map((s) => s * 512), [4096, 262144, 520192, 778240, 1036288, 1294336, 1552384, 1810432]);
  assert.equal(payloadOffset * 512, 2068480);
  assert.equal(luksLayout(32).payloadOffset, 8 + 256 * 8); // 128000 bytes -> 250 sectors -> 256
});

test('AF split then merge gives the key back, for every hash and odd key sizes; one changed stripe loses it', () => {
  for (const hash of HASH_ALGS) {
    for (const n of [16, 24, 32, 64, 65]) {
      const key = randomBytes(n);
      const split = afSplit(hash, key, 37);
      assert.equal(split.length, n * 37);
      assert.deepEqual(afMerge(hash, split, n, 37), key, `${hash} ${n}`);
      split[5] ^= 1;
      assert.notDeepEqual(afMerge(hash, split, n, 37), key);
    }
  }
});

test('the header codec round-trips, and refuses bad magic, LUKS2 and short buffers by name', async () => {
  const made = await createLuks({ passphrase: Buffer.from('pw'), iterTime: 10 });
  made.cipher.close();
  const bytes = made.region.subarray(0, LUKS_HEADER_BYTES);
  const h = parseLuksHeader(bytes, 'x');
  assert.deepEqual(encodeLuksHeader(h), Buffer.from(bytes));
  assert.ok(hasLuksMagic(bytes));
  assert.equal(h.cipherName, 'aes');
  assert.equal(h.cipherModeSpec, 'xts-plain64');
  assert.equal(h.hashSpec, 'sha256');
  assert.equal(h.keyBytes, 64);
  assert.equal(h.slots.filter((s) => s.active).length, 1);
  assert.match(h.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const bad = Buffer.from(bytes);
  bad[0] = 0;
  assert.throws(() => parseLuksHeader(bad, 'x'), /bad magic/);
  const v2 = Buffer.from(bytes);
  v2.writeUInt16BE(2, 6);
  assert.throws(() => parseLuksHeader(v2, 'x'), /LUKS version 2 is not supported/);
  assert.throws(() => parseLuksHeader(bytes.subarray(0, 100), 'x'), /cut short/);
  const info = luksInfo(h, 'x');
  assert.equal(info['cipher-alg'], 'aes-256');
  assert.equal(info.slots[0].iters, h.slots[0].iterations);
});

test('iter-time is honoured: iterations are the measured rate times iter-time (at least 1000), the digest an eighth', async () => {
  for (const iterTime of [10, 40]) {
    const made = await createLuks({ passphrase: Buffer.from('pw'), iterTime, hashAlg: 'sha1' });
    made.cipher.close();
    assert.equal(made.header.slots[0].iterations, Math.max(1000, Math.floor((iterationsPerSecond('sha1', 64) * iterTime) / 1000)));
    assert.equal(made.header.mkDigestIterations, Math.max(1000, Math.floor((iterationsPerSecond('sha1', 20) * iterTime) / 1000 / 8)));
  }
});

test('unlock: the right passphrase opens slot 0, a wrong one is refused in one plain line, a slot past the region is damage', async () => {
  const made = await createLuks({ passphrase: Buffer.from('right'), iterTime: 10 });
  made.cipher.close();
  const region = made.region;
  const readAt = async (o: number, n: number) => region.subarray(o, o + n);
  const h = parseLuksHeader(region, 'img');
  const ok = await unlockLuks(h, readAt, region.length, Buffer.from('right'), 'img');
  assert.equal(ok.slot, 0);
  ok.cipher.close();
  await assert.rejects(unlockLuks(h, readAt, region.length, Buffer.from('wrong'), 'img'), (e: unknown) => e instanceof DiskError && e.message === `img: ${NO_SLOT_OPENS}`);
  await assert.rejects(unlockLuks(h, readAt, 100_000, Buffer.from('right'), 'img'), /lies outside the header region/);
  const huge = { ...h, slots: h.slots.map((s, i) => (i === 0 ? { ...s, stripes: 0xffffffff } : s)) };
  await assert.rejects(unlockLuks(huge, readAt, region.length, Buffer.from('right'), 'img'), /malformed/);
  const none = { ...h, slots: h.slots.map((s) => ({ ...s, active: false })) };
  await assert.rejects(unlockLuks(none, readAt, region.length, Buffer.from('right'), 'img'), /no LUKS key slot is active/);
});

test('random damage to a header is refused as a DiskError or parsed, never a RangeError or TypeError', async () => {
  const made = await createLuks({ passphrase: Buffer.from('pw'), iterTime: 10 });
  made.cipher.close();
  const rnd = seededRandom(20);
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(made.region.subarray(0, LUKS_HEADER_BYTES));
    for (let k = 0; k < 4; k++) b[Math.floor(rnd() * 200)] = Math.floor(rnd() * 256);
    try {
      const h = parseLuksHeader(b, 'f');
      luksAlgorithms(h, 'f');
      luksInfo(h, 'f');
    } catch (e) {
      assert.ok(e instanceof DiskError, `seed 20 round ${i}: ${String(e)}`);
    }
  }
});
