/**
 * The LUKS1 header (the LUKS1 on-disk format spec 1.2.x; qemu's crypto/block-luks.c): 592 big-endian bytes
 * at the start of a LUKS volume, or at the offset a qcow2 FULL_DISK_ENCRYPTION extension names. Pure codec,
 * no I/O: parse validates what the unlock and the info need, encode writes what parse reads.
 */
import { DiskError } from '../block/errors';
import { cipherAlgOf, isCipherMode, isHashAlg, isIvGenAlg, type CipherAlg, type CipherMode, type HashAlg, type IvGenAlg } from './algorithms';

export const LUKS_MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
export const LUKS_HEADER_BYTES = 592;
export const LUKS_SLOTS = 8;
export const LUKS_STRIPES = 4000;
export const LUKS_DIGEST_BYTES = 20;
export const LUKS_SALT_BYTES = 32;
/** Where cryptsetup and qemu put the first key material (bytes), and what they align each slot's to. */
export const LUKS_KEY_SLOT_ALIGN = 4096;
export const SLOT_ENABLED = 0x00ac71f3;
export const SLOT_DISABLED = 0x0000dead;

const OFF = {
  version: 6,
  cipherName: 8,
  cipherMode: 40,
  hashSpec: 72,
  payloadOffset: 104,
  keyBytes: 108,
  mkDigest: 112,
  mkDigestSalt: 132,
  mkDigestIterations: 164,
  uuid: 168,
  slots: 208,
} as const;
const SLOT_BYTES = 48;
const NAME_BYTES = 32;
const UUID_BYTES = 40;

export interface LuksSlot {
  active: boolean;
  iterations: number;
  salt: Buffer;
  /** Start of the slot's key material, in 512-byte sectors from the header. */
  keyOffset: number;
  stripes: number;
}

export interface LuksHeader {
  cipherName: string;
  /** The whole mode field, e.g. "xts-plain64" or "cbc-essiv:sha256". */
  cipherModeSpec: string;
  hashSpec: string;
  /** Start of the payload in 512-byte sectors (a qcow2 ignores it: its data clusters are the payload). */
  payloadOffset: number;
  keyBytes: number;
  mkDigest: Buffer;
  mkDigestSalt: Buffer;
  mkDigestIterations: number;
  uuid: string;
  slots: LuksSlot[];
}

/** What the header's names mean, checked: the parts a SectorCipher and the unlock are built from. */
export interface LuksAlgorithms {
  cipherAlg: CipherAlg;
  cipherMode: CipherMode;
  ivgenAlg: IvGenAlg;
  ivgenHashAlg?: HashAlg;
  hashAlg: HashAlg;
}

function text(buf: Uint8Array, at: number, len: number): string {
  const field = buf.subarray(at, at + len);
  const end = field.indexOf(0);
  return Buffer.from(field.subarray(0, end < 0 ? len : end)).toString('latin1');
}

function putText(buf: Buffer, at: number, len: number, value: string, what: string): void {
  if (value.length >= len) throw new DiskError('EINVAL', `the LUKS ${what} '${value}' is too long for the header`);
  buf.fill(0, at, at + len);
  buf.write(value, at, 'latin1');
}

export function hasLuksMagic(buf: Uint8Array): boolean {
  return buf.length >= 8 && Buffer.from(buf.subarray(0, 6)).equals(LUKS_MAGIC) && ((buf[6] << 8) | buf[7]) === 1;
}

/** Parses the 592-byte header. `where` names it in errors (a path, or "path: LUKS header"). */
export function parseLuksHeader(buf: Uint8Array, where: string): LuksHeader {
  if (buf.length < LUKS_HEADER_BYTES) throw new DiskError('ECORRUPT', `${where}: the LUKS header is cut short`);
  if (!Buffer.from(buf.subarray(0, 6)).equals(LUKS_MAGIC)) throw new DiskError('ECORRUPT', `${where}: no LUKS header here (bad magic)`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, LUKS_HEADER_BYTES);
  const version = b.readUInt16BE(OFF.version);
  if (version !== 1) throw new DiskError('EUNSUPPORTED', `${where}: LUKS version ${version} is not supported (only LUKS1 is)`);
  const slots: LuksSlot[] = [];
  for (let i = 0; i < LUKS_SLOTS; i++) {
    const at = OFF.slots + i * SLOT_BYTES;
    const state = b.readUInt32BE(at);
    slots.push({
      active: state === SLOT_ENABLED,
      iterations: b.readUInt32BE(at + 4),
      salt: Buffer.from(b.subarray(at + 8, at + 8 + LUKS_SALT_BYTES)),
      keyOffset: b.readUInt32BE(at + 40),
      stripes: b.readUInt32BE(at + 44),
    });
  }
  return {
    cipherName: text(b, OFF.cipherName, NAME_BYTES),
    cipherModeSpec: text(b, OFF.cipherMode, NAME_BYTES),
    hashSpec: text(b, OFF.hashSpec, NAME_BYTES),
    payloadOffset: b.readUInt32BE(OFF.payloadOffset),
    keyBytes: b.readUInt32BE(OFF.keyBytes),
    mkDigest: Buffer.from(b.subarray(OFF.mkDigest, OFF.mkDigest + LUKS_DIGEST_BYTES)),
    mkDigestSalt: Buffer.from(b.subarray(OFF.mkDigestSalt, OFF.mkDigestSalt + LUKS_SALT_BYTES)),
    mkDigestIterations: b.readUInt32BE(OFF.mkDigestIterations),
    uuid: text(b, OFF.uuid, UUID_BYTES),
    slots,
  };
}

/** Encodes a header into its 592 bytes. */
export function encodeLuksHeader(h: LuksHeader): Buffer {
  const b = Buffer.alloc(LUKS_HEADER_BYTES);
  LUKS_MAGIC.copy(b, 0);
  b.writeUInt16BE(1, OFF.version);
  putText(b, OFF.cipherName, NAME_BYTES, h.cipherName, 'cipher name');
  putText(b, OFF.cipherMode, NAME_BYTES, h.cipherModeSpec, 'cipher mode');
  putText(b, OFF.hashSpec, NAME_BYTES, h.hashSpec, 'hash');
  b.writeUInt32BE(h.payloadOffset, OFF.payloadOffset);
  b.writeUInt32BE(h.keyBytes, OFF.keyBytes);
  h.mkDigest.copy(b, OFF.mkDigest, 0, LUKS_DIGEST_BYTES);
  h.mkDigestSalt.copy(b, OFF.mkDigestSalt, 0, LUKS_SALT_BYTES);
  b.writeUInt32BE(h.mkDigestIterations, OFF.mkDigestIterations);
  putText(b, OFF.uuid, UUID_BYTES, h.uuid, 'UUID');
  if (h.slots.length !== LUKS_SLOTS) throw new DiskError('EINVAL', `a LUKS1 header has ${LUKS_SLOTS} key slots`);
  h.slots.forEach((s, i) => {
    const at = OFF.slots + i * SLOT_BYTES;
    b.writeUInt32BE(s.active ? SLOT_ENABLED : SLOT_DISABLED, at);
    b.writeUInt32BE(s.iterations, at + 4);
    s.salt.copy(b, at + 8, 0, LUKS_SALT_BYTES);
    b.writeUInt32BE(s.keyOffset, at + 40);
    b.writeUInt32BE(s.stripes, at + 44);
  });
  return b;
}

/**
 * The header's names as algorithms, as qemu reads them: the mode field is `<mode>-<ivgen>[:<ivhash>]`, the
 * cipher's key size comes from key_bytes (halved for XTS). Unknown names are refused by name.
 */
export function luksAlgorithms(h: LuksHeader, where: string): LuksAlgorithms {
  const m = /^([^-]*)-([^:]*)(?::(.*))?$/.exec(h.cipherModeSpec);
  if (!m) throw new DiskError('ECORRUPT', `${where}: unexpected LUKS cipher mode '${h.cipherModeSpec}'`);
  const [, mode, ivgen, ivhash] = m;
  if (!isCipherMode(mode)) throw new DiskError('EUNSUPPORTED', `${where}: LUKS cipher mode ${mode} is not supported`);
  if (!isIvGenAlg(ivgen)) throw new DiskError('EUNSUPPORTED', `${where}: LUKS IV generator ${ivgen} is not supported`);
  if (ivhash !== undefined && !isHashAlg(ivhash)) throw new DiskError('EUNSUPPORTED', `${where}: LUKS hash ${ivhash} is not supported`);
  if (ivgen === 'essiv' && ivhash === undefined) throw new DiskError('ECORRUPT', `${where}: the LUKS essiv IV generator names no hash`);
  if (!isHashAlg(h.hashSpec)) throw new DiskError('EUNSUPPORTED', `${where}: LUKS hash ${h.hashSpec} is not supported`);
  const cipherAlg = cipherAlgOf(h.cipherName, mode, h.keyBytes);
  if (!cipherAlg) throw new DiskError('EUNSUPPORTED', `${where}: LUKS cipher ${h.cipherName} with a ${h.keyBytes}-byte key is not supported`);
  return { cipherAlg, cipherMode: mode, ivgenAlg: ivgen, ...(ivhash !== undefined ? { ivgenHashAlg: ivhash } : {}), hashAlg: h.hashSpec };
}

/**
 * Where key slot material lies, as cryptsetup and qemu lay it out: the first at 4096 bytes, each slot's
 * key_bytes x stripes rounded up to 4096, the payload after the eighth. Returned in 512-byte sectors.
 */
export function luksLayout(keyBytes: number, stripes = LUKS_STRIPES): { slotOffsets: number[]; payloadOffset: number } {
  const align = LUKS_KEY_SLOT_ALIGN / 512;
  const slotSectors = Math.ceil(Math.ceil((keyBytes * stripes) / 512) / align) * align;
  const slotOffsets = Array.from({ length: LUKS_SLOTS }, (_, i) => align + slotSectors * i);
  return { slotOffsets, payloadOffset: align + slotSectors * LUKS_SLOTS };
}
