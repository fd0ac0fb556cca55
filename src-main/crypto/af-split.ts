/**
 * LUKS1's anti-forensic splitter (the LUKS1 spec, section 2.4; qemu's crypto/afsplit.c): a key is stored as
 * `stripes` blocks, all but the last random, the last the key XORed with the "diffusion" of the others, so
 * that wiping any one stripe destroys the key.
 *
 * The diffusion hashes the running block in digest-sized pieces, each piece i hashed together with i as a
 * big-endian 32-bit number in front, the last piece cut to what is left of the block.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { HASH_BYTES, type HashAlg } from './algorithms';

function diffuse(hash: HashAlg, block: Buffer): void {
  const digest = HASH_BYTES[hash];
  const index = Buffer.alloc(4);
  for (let i = 0, at = 0; at < block.length; i++, at += digest) {
    const piece = block.subarray(at, Math.min(at + digest, block.length));
    index.writeUInt32BE(i, 0);
    const out = createHash(hash).update(index).update(piece).digest();
    out.copy(piece, 0, 0, piece.length);
    out.fill(0);
  }
}

function xorInto(a: Uint8Array, b: Uint8Array, out: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i] ^ b[i];
}

/** Splits `key` into `stripes` blocks of key.length bytes (the key material a slot stores, before encryption). */
export function afSplit(hash: HashAlg, key: Uint8Array, stripes: number): Buffer {
  const n = key.length;
  const out = Buffer.alloc(n * stripes);
  const block = Buffer.alloc(n);
  for (let i = 0; i < stripes - 1; i++) {
    const stripe = out.subarray(i * n, (i + 1) * n);
    randomFillSync(stripe);
    xorInto(stripe, block, block);
    diffuse(hash, block);
  }
  xorInto(key, block, out.subarray((stripes - 1) * n));
  block.fill(0);
  return out;
}

/** Joins `stripes` blocks of `keyBytes` back into the key. */
export function afMerge(hash: HashAlg, material: Uint8Array, keyBytes: number, stripes: number): Buffer {
  const block = Buffer.alloc(keyBytes);
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(material.subarray(i * keyBytes, (i + 1) * keyBytes), block, block);
    diffuse(hash, block);
  }
  const key = Buffer.alloc(keyBytes);
  xorInto(material.subarray((stripes - 1) * keyBytes, stripes * keyBytes), block, key);
  block.fill(0);
  return key;
}
