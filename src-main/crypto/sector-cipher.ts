/**
 * Encrypts and decrypts runs of 512-byte sectors in place, each sector with its own IV derived from its
 * number, as dm-crypt, LUKS and qemu do (qemu's qcrypto_block_cipher_*_helper).
 *
 * Why ECB underneath: node:crypto gives a fresh cipher object per IV, and a run of 2 MiB has 4096 sectors.
 * Instead every mode is built on two long-lived AES-ECB ciphers (encrypt, decrypt) that take a whole run per
 * call, with the per-sector work done over 32-bit words here:
 *   - XTS: the tweaks of all sectors are one ECB call under the second key; each block's tweak is the
 *     sector's times alpha^j in GF(2^128), so pre-whiten, one ECB call, post-whiten.
 *   - CBC decrypt: one ECB call, then each block XORed with the ciphertext before it (or the sector's IV).
 *   - CBC encrypt is serial within a sector, so the run is walked block column by block column: block j of
 *     every sector in one ECB call (32 calls a run, whatever its length).
 *   - CTR: the counter blocks of the run in one ECB call, XORed in.
 * test/unit/crypto-sector.test.ts proves each against OpenSSL's own per-sector modes.
 */
import { createCipheriv, createDecipheriv, createHash, type Cipher, type Decipher } from 'node:crypto';
import { DiskError } from '../block/errors';
import { essivCipherAlg, requireRunnable, type CipherAlg, type CipherMode, type HashAlg, type IvGenAlg } from './algorithms';

export const CRYPT_SECTOR = 512;
const BLOCK = 16;
const BLOCKS_PER_SECTOR = CRYPT_SECTOR / BLOCK;
/** Sectors are ciphered in pieces of this many bytes: a 2 MiB run leaves the cache between the passes (measured 2-3x slower). */
const CHUNK = 64 * 1024;

export interface CipherSpec {
  /** qemu's name: aes-128, aes-192, aes-256 (one key; XTS takes two of them). */
  alg: CipherAlg;
  mode: CipherMode;
  ivgen: IvGenAlg;
  /** ESSIV's hash (ignored by plain and plain64, as dm-crypt ignores it). */
  ivgenHash?: HashAlg;
}

/** An AES-ECB cipher over a run, reused for every call (ECB keeps no state between blocks). */
function ecb(keyBits: number, key: Buffer, decrypt: boolean): Cipher | Decipher {
  const c = decrypt ? createDecipheriv(`aes-${keyBits}-ecb`, key, null) : createCipheriv(`aes-${keyBits}-ecb`, key, null);
  c.setAutoPadding(false);
  return c;
}

/** A 32-bit word view of `u8` when it is 4-byte aligned (the hot loops need it), else undefined. */
function words(u8: Uint8Array): Uint32Array | undefined {
  return (u8.byteOffset & 3) === 0 ? new Uint32Array(u8.buffer, u8.byteOffset, u8.byteLength >>> 2) : undefined;
}

/** Words of a cipher's output (a copy in the rare case node hands back an unaligned view). */
function aligned(out: Uint8Array): Uint32Array {
  return words(out) ?? new Uint32Array(Uint8Array.from(out).buffer);
}

/**
 * XTS whitening: out = src XOR the tweak of each block, where the tweak of block j of a sector is the sector's
 * encrypted IV times alpha^j in GF(2^128) (a 128-bit little-endian shift, the carry folded in as 0x87).
 * `src` and `out` may be the same words.
 */
function xtsWhiten(t: Uint32Array, src: Uint32Array, out: Uint32Array): void {
  for (let s = 0, k = 0; s < t.length; s += 4) {
    let t0 = t[s], t1 = t[s + 1], t2 = t[s + 2], t3 = t[s + 3];
    for (let j = 0; j < BLOCKS_PER_SECTOR; j++, k += 4) {
      out[k] = src[k] ^ t0;
      out[k + 1] = src[k + 1] ^ t1;
      out[k + 2] = src[k + 2] ^ t2;
      out[k + 3] = src[k + 3] ^ t3;
      const carry = t3 >>> 31;
      t3 = ((t3 << 1) | (t2 >>> 31)) >>> 0;
      t2 = ((t2 << 1) | (t1 >>> 31)) >>> 0;
      t1 = ((t1 << 1) | (t0 >>> 31)) >>> 0;
      t0 = ((t0 << 1) ^ (carry * 0x87)) >>> 0;
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export class SectorCipher {
  readonly spec: CipherSpec;
  private readonly keyBits: number;
  private readonly key: Buffer;
  private readonly enc: Cipher;
  private readonly dec: Decipher;
  /** XTS: the tweak key's encryptor. */
  private readonly tweakEnc?: Cipher;
  /** ESSIV: the sector-number encryptor, keyed with the hash of the whole key. */
  private readonly essivEnc?: Cipher;
  private readonly essivKey?: Buffer;
  private closed = false;

  /** `key` is copied; the caller wipes its own copy. For XTS it is both keys, data key first. */
  constructor(spec: CipherSpec, key: Uint8Array) {
    if (!LITTLE_ENDIAN) throw new DiskError('EUNSUPPORTED', 'encrypted images need a little-endian machine in this build');
    const { family, keyBytes } = requireRunnable(spec.alg);
    const want = spec.mode === 'xts' ? keyBytes * 2 : keyBytes;
    if (key.length !== want) throw new DiskError('EINVAL', `${spec.alg}-${spec.mode} needs a ${want}-byte key, not ${key.length}`);
    if (family !== 'aes') throw new DiskError('EUNSUPPORTED', `the cipher ${spec.alg} is not supported by this build`);
    if (spec.ivgen === 'essiv' && !spec.ivgenHash) throw new DiskError('EINVAL', 'the essiv IV generator needs a hash (essiv:sha256)');
    this.spec = { ...spec };
    this.keyBits = keyBytes * 8;
    this.key = Buffer.from(key);
    const dataKey = this.key.subarray(0, keyBytes);
    this.enc = ecb(this.keyBits, dataKey, false) as Cipher;
    this.dec = ecb(this.keyBits, dataKey, true) as Decipher;
    if (spec.mode === 'xts') this.tweakEnc = ecb(this.keyBits, this.key.subarray(keyBytes), false) as Cipher;
    if (spec.ivgen === 'essiv' && spec.mode !== 'ecb') {
      const hash = spec.ivgenHash as HashAlg;
      this.essivKey = createHash(hash).update(this.key).digest();
      const essivBits = Number(essivCipherAlg(spec.alg, hash).split('-')[1]);
      this.essivEnc = ecb(essivBits, this.essivKey, false) as Cipher;
    }
  }

  /** Encrypts `buf` (whole sectors) in place; its first sector is number `firstSector`. */
  encrypt(buf: Uint8Array, firstSector: number): void {
    this.run(buf, firstSector, true);
  }

  /** Decrypts `buf` (whole sectors) in place; its first sector is number `firstSector`. */
  decrypt(buf: Uint8Array, firstSector: number): void {
    this.run(buf, firstSector, false);
  }

  /** Wipes the key material this object holds. The object refuses work afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.key.fill(0);
    this.essivKey?.fill(0);
    for (const c of [this.enc, this.dec, this.tweakEnc, this.essivEnc]) {
      try {
        c?.final();
      } catch {
        // final() of a cipher with nothing pending only frees OpenSSL's context (which cleanses its key).
      }
    }
  }

  private run(buf: Uint8Array, firstSector: number, encrypt: boolean): void {
    if (this.closed) throw new DiskError('EINVAL', 'the image key was already closed');
    if (buf.length % CRYPT_SECTOR !== 0) throw new DiskError('EINVAL', `encrypted I/O must be whole 512-byte sectors (got ${buf.length} bytes)`);
    if (!Number.isSafeInteger(firstSector) || firstSector < 0) throw new DiskError('EINVAL', `bad sector number ${firstSector}`);
    if (buf.length === 0) return;
    const w = words(buf);
    if (!w) {
      // An unaligned window (rare): work on an aligned copy.
      const copy = Buffer.from(buf);
      this.run(copy, firstSector, encrypt);
      buf.set(copy);
      return;
    }
    // In pieces that stay in the CPU cache between the passes over them (whiten, ECB, whiten).
    for (let at = 0; at < buf.length; at += CHUNK) {
      const end = Math.min(buf.length, at + CHUNK);
      this.piece(buf.subarray(at, end), w.subarray(at >>> 2, end >>> 2), firstSector + at / CRYPT_SECTOR, encrypt);
    }
  }

  private piece(buf: Uint8Array, w: Uint32Array, firstSector: number, encrypt: boolean): void {
    const sectors = buf.length / CRYPT_SECTOR;
    switch (this.spec.mode) {
      case 'ecb':
        buf.set((encrypt ? this.enc : this.dec).update(buf));
        return;
      case 'xts':
        return this.xts(buf, w, this.ivs(firstSector, sectors), encrypt);
      case 'cbc':
        return encrypt ? this.cbcEncrypt(w, this.ivs(firstSector, sectors)) : this.cbcDecrypt(buf, w, this.ivs(firstSector, sectors));
      case 'ctr':
        return this.ctr(buf, w, this.ivs(firstSector, sectors));
    }
  }

  /** The IVs of `n` sectors from `first`, 16 bytes each, as 32-bit words. */
  private ivs(first: number, n: number): Uint32Array {
    const iv = new Uint32Array(n * 4);
    const plain = this.spec.ivgen === 'plain';
    for (let i = 0; i < n; i++) {
      const s = first + i;
      iv[i * 4] = s >>> 0;
      // plain keeps the low 32 bits; plain64 and ESSIV's input the low 64, little-endian.
      iv[i * 4 + 1] = plain ? 0 : Math.floor(s / 0x100000000) >>> 0;
    }
    if (this.essivEnc) {
      const out = this.essivEnc.update(new Uint8Array(iv.buffer));
      new Uint8Array(iv.buffer).set(out);
    }
    return iv;
  }

  private xts(buf: Uint8Array, d: Uint32Array, ivs: Uint32Array, encrypt: boolean): void {
    const t = aligned((this.tweakEnc as Cipher).update(new Uint8Array(ivs.buffer)));
    // Pre-whiten in place, one ECB call, then post-whiten from its output straight back into the buffer.
    xtsWhiten(t, d, d);
    xtsWhiten(t, aligned((encrypt ? this.enc : this.dec).update(buf)), d);
  }

  private cbcDecrypt(buf: Uint8Array, d: Uint32Array, ivs: Uint32Array): void {
    const p = aligned(this.dec.update(buf));
    const sectorWords = CRYPT_SECTOR / 4;
    for (let s = 0, base = 0; base < d.length; s += 4, base += sectorWords) {
      // From the sector's end backwards, so the ciphertext block before each is still in place.
      for (let k = base + sectorWords - 4; k > base; k -= 4) {
        d[k] = p[k] ^ d[k - 4];
        d[k + 1] = p[k + 1] ^ d[k - 3];
        d[k + 2] = p[k + 2] ^ d[k - 2];
        d[k + 3] = p[k + 3] ^ d[k - 1];
      }
      d[base] = p[base] ^ ivs[s];
      d[base + 1] = p[base + 1] ^ ivs[s + 1];
      d[base + 2] = p[base + 2] ^ ivs[s + 2];
      d[base + 3] = p[base + 3] ^ ivs[s + 3];
    }
  }

  private cbcEncrypt(d: Uint32Array, ivs: Uint32Array): void {
    const n = ivs.length / 4;
    const column = new Uint32Array(n * 4);
    const columnBytes = new Uint8Array(column.buffer);
    const sectorWords = CRYPT_SECTOR / 4;
    for (let j = 0; j < BLOCKS_PER_SECTOR; j++) {
      for (let s = 0; s < n; s++) {
        const k = s * sectorWords + j * 4;
        const prev = j === 0 ? ivs : d;
        const at = j === 0 ? s * 4 : k - 4;
        column[s * 4] = d[k] ^ prev[at];
        column[s * 4 + 1] = d[k + 1] ^ prev[at + 1];
        column[s * 4 + 2] = d[k + 2] ^ prev[at + 2];
        column[s * 4 + 3] = d[k + 3] ^ prev[at + 3];
      }
      columnBytes.set(this.enc.update(columnBytes));
      for (let s = 0; s < n; s++) {
        const k = s * sectorWords + j * 4;
        d[k] = column[s * 4];
        d[k + 1] = column[s * 4 + 1];
        d[k + 2] = column[s * 4 + 2];
        d[k + 3] = column[s * 4 + 3];
      }
    }
  }

  /** CTR: the counter starts at the sector's IV (a big-endian 128-bit number) and counts blocks. */
  private ctr(buf: Uint8Array, d: Uint32Array, ivs: Uint32Array): void {
    const counters = new Uint8Array(buf.length);
    const ivBytes = new Uint8Array(ivs.buffer);
    for (let s = 0; s < ivs.length / 4; s++) {
      const block = counters.subarray(s * CRYPT_SECTOR, (s + 1) * CRYPT_SECTOR);
      block.set(ivBytes.subarray(s * BLOCK, (s + 1) * BLOCK), 0);
      for (let j = 1; j < BLOCKS_PER_SECTOR; j++) {
        const at = j * BLOCK;
        block.copyWithin(at, at - BLOCK, at);
        for (let b = at + BLOCK - 1; b >= at; b--) {
          block[b] = (block[b] + 1) & 0xff;
          if (block[b] !== 0) break;
        }
      }
    }
    const k = aligned(this.enc.update(counters));
    for (let i = 0; i < d.length; i++) d[i] ^= k[i];
  }
}
