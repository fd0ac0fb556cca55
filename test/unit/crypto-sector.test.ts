// The sector ciphers against OpenSSL's own per-sector modes: every mode and IV generator built on ECB in
// src-main/crypto/sector-cipher.ts must give, sector by sector, what one createCipheriv per sector gives.
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SectorCipher, type CipherSpec } from '../../src-main/crypto/sector-cipher';
import { qcowAesCipher } from '../../src-main/crypto/qcow-aes';
import { DiskError } from '../../src-main/block/errors';

/** The IV qemu's ivgen gives sector `s` (plain: low 32 bits; plain64: 64 bits; essiv: encrypted plain64). */
function referenceIv(spec: CipherSpec, key: Buffer, s: bigint): Buffer {
  const iv = Buffer.alloc(16);
  if (spec.ivgen === 'plain') iv.writeUInt32LE(Number(s & 0xffffffffn), 0);
  else iv.writeBigUInt64LE(s, 0);
  if (spec.ivgen === 'essiv') {
    const salt = createHash(spec.ivgenHash as string).update(key).digest();
    const c = createCipheriv(`aes-${salt.length * 8}-ecb`, salt, null).setAutoPadding(false);
    return c.update(iv);
  }
  return iv;
}

function referenceSector(spec: CipherSpec, key: Buffer, s: bigint, data: Buffer): Buffer {
  const bits = Number(spec.alg.split('-')[1]);
  const name = `aes-${bits}-${spec.mode}`;
  const iv = spec.mode === 'ecb' ? null : referenceIv(spec, key, s);
  const c = createCipheriv(name, key, iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

const specs: CipherSpec[] = [
  { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' },
  { alg: 'aes-128', mode: 'xts', ivgen: 'plain64' },
  { alg: 'aes-256', mode: 'xts', ivgen: 'plain' },
  { alg: 'aes-256', mode: 'xts', ivgen: 'essiv', ivgenHash: 'sha256' },
  { alg: 'aes-256', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' },
  { alg: 'aes-128', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' },
  { alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' },
  { alg: 'aes-192', mode: 'cbc', ivgen: 'plain' },
  { alg: 'aes-256', mode: 'cbc', ivgen: 'plain64' },
  { alg: 'aes-256', mode: 'ecb', ivgen: 'plain64' },
  { alg: 'aes-128', mode: 'ctr', ivgen: 'plain64' },
  { alg: 'aes-256', mode: 'ctr', ivgen: 'essiv', ivgenHash: 'sha256' },
];

for (const spec of specs) {
  const label = `${spec.alg}-${spec.mode}-${spec.ivgen}${spec.ivgenHash ? ':' + spec.ivgenHash : ''}`;
  test(`${label}: every sector equals OpenSSL's own ${spec.mode} with qemu's IV, and decrypts back`, () => {
    const bytes = Number(spec.alg.split('-')[1]) / 8;
    const key = randomBytes(spec.mode === 'xts' ? bytes * 2 : bytes);
    // Sector numbers past 2^32 (plain wraps there, plain64 does not) and a run of 37 sectors.
    const first = 0x1_0000_0000 - 5;
    const plain = randomBytes(37 * 512);
    const buf = Buffer.from(plain);
    const c = new SectorCipher(spec, key);
    c.encrypt(buf, first);
    assert.notDeepEqual(buf, plain);
    for (let i = 0; i < 37; i++) {
      const want = referenceSector(spec, key, BigInt(first + i), plain.subarray(i * 512, (i + 1) * 512));
      assert.deepEqual(buf.subarray(i * 512, (i + 1) * 512), want, `sector ${first + i}`);
    }
    c.decrypt(buf, first);
    assert.deepEqual(buf, plain);
    c.close();
  });
}

test('a run split anywhere on sector boundaries encrypts as the whole run', () => {
  const spec: CipherSpec = { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' };
  const key = randomBytes(64);
  const plain = randomBytes(64 * 512);
  const whole = Buffer.from(plain);
  new SectorCipher(spec, key).encrypt(whole, 1000);
  const parts = Buffer.from(plain);
  const c = new SectorCipher(spec, key);
  c.encrypt(parts.subarray(0, 512 * 3), 1000);
  c.encrypt(parts.subarray(512 * 3, 512 * 40), 1003);
  c.encrypt(parts.subarray(512 * 40), 1040);
  assert.deepEqual(parts, whole);
});

test('an unaligned window into a larger buffer is encrypted in place like an aligned one', () => {
  const spec: CipherSpec = { alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' };
  const key = randomBytes(16);
  const plain = randomBytes(4 * 512);
  const aligned = Buffer.from(plain);
  new SectorCipher(spec, key).encrypt(aligned, 7);
  const backing = Buffer.alloc(4 * 512 + 3);
  const window = backing.subarray(3);
  plain.copy(window);
  new SectorCipher(spec, key).encrypt(window, 7);
  assert.deepEqual(Buffer.from(window), aligned);
});

test('partial sectors, a wrong key length and use after close are refused as DiskErrors', () => {
  assert.throws(() => new SectorCipher({ alg: 'aes-256', mode: 'xts', ivgen: 'plain64' }, randomBytes(32)), DiskError);
  assert.throws(() => new SectorCipher({ alg: 'serpent-256', mode: 'xts', ivgen: 'plain64' }, randomBytes(64)), /not supported/);
  const c = new SectorCipher({ alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' }, randomBytes(16));
  assert.throws(() => c.encrypt(Buffer.alloc(100), 0), /whole 512-byte sectors/);
  c.close();
  assert.throws(() => c.decrypt(Buffer.alloc(512), 0), DiskError);
});

test('close wipes the key the cipher holds', () => {
  const c = new SectorCipher({ alg: 'aes-256', mode: 'xts', ivgen: 'essiv', ivgenHash: 'sha256' }, randomBytes(64));
  const held = (c as unknown as { key: Buffer; essivKey: Buffer });
  c.close();
  assert.ok(held.key.every((b) => b === 0));
  assert.ok(held.essivKey.every((b) => b === 0));
});

test("qcow's legacy AES: key = the passphrase's first 16 bytes zero padded, AES-128-CBC, IV = sector (plain64)", () => {
  const plain = randomBytes(3 * 512);
  for (const pass of ['short', 'a passphrase longer than sixteen bytes']) {
    const buf = Buffer.from(plain);
    qcowAesCipher(Buffer.from(pass)).encrypt(buf, 0x1_0000_0002);
    const key = Buffer.alloc(16);
    Buffer.from(pass).copy(key, 0, 0, 16);
    for (let i = 0; i < 3; i++) {
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64LE(BigInt(0x1_0000_0002 + i));
      const want = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false).update(plain.subarray(i * 512, (i + 1) * 512));
      assert.deepEqual(buf.subarray(i * 512, (i + 1) * 512), want);
    }
  }
});

test('runs longer than the internal piece (64 KiB) match OpenSSL sector by sector across piece boundaries', () => {
  for (const spec of [{ alg: 'aes-256', mode: 'xts', ivgen: 'plain64' }, { alg: 'aes-128', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' }] as CipherSpec[]) {
    const bytes = Number(spec.alg.split('-')[1]) / 8;
    const key = randomBytes(spec.mode === 'xts' ? bytes * 2 : bytes);
    const plain = randomBytes(301 * 512);
    const buf = Buffer.from(plain);
    const c = new SectorCipher(spec, key);
    c.encrypt(buf, 77);
    for (let i = 0; i < 301; i++) {
      assert.deepEqual(buf.subarray(i * 512, (i + 1) * 512), referenceSector(spec, key, BigInt(77 + i), plain.subarray(i * 512, (i + 1) * 512)), `sector ${77 + i}`);
    }
    c.decrypt(buf, 77);
    assert.deepEqual(buf, plain);
  }
});
