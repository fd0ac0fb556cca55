/**
 * I/O of an encrypted image that does not cover whole 512-byte sectors (the ciphers work on whole sectors):
 * the device widens it here to the sectors it touches, so that the read and write paths meet only whole
 * sectors. An edge sector is read (and decrypted) whole, patched, and written (and encrypted) whole.
 */
import { SECTOR as CRYPT_SECTOR } from '../../block/bytes'; // the encryption sector (crypto/'s CRYPT_SECTOR), without loading the ciphers
import { readAt } from './read';
import type { Qcow2State } from './state';
import { write } from './write';
import { writeZeroes } from './zero';

const down = (x: number) => Math.floor(x / CRYPT_SECTOR) * CRYPT_SECTOR;
const up = (x: number) => Math.ceil(x / CRYPT_SECTOR) * CRYPT_SECTOR;
export const sectorAligned = (offset: number, length: number): boolean => offset % CRYPT_SECTOR === 0 && length % CRYPT_SECTOR === 0;

/** A read that does not cover whole sectors: the sectors it touches are read (and decrypted) whole. */
export async function readAligned(d: Qcow2State, offset: number, into: Uint8Array): Promise<void> {
  const a = down(offset);
  const bounce = new Uint8Array(up(offset + into.length) - a);
  await readAt(d, a, bounce);
  into.set(bounce.subarray(offset - a, offset - a + into.length));
}

/** A write that does not cover whole sectors: the edge sectors are read, patched, and written whole. */
export async function writeAligned(d: Qcow2State, offset: number, data: Uint8Array): Promise<void> {
  const a = down(offset);
  const b = up(offset + data.length);
  const bounce = new Uint8Array(b - a);
  if (a < offset) await readAt(d, a, bounce.subarray(0, CRYPT_SECTOR));
  if (offset + data.length < b) await readAt(d, b - CRYPT_SECTOR, bounce.subarray(bounce.length - CRYPT_SECTOR));
  bounce.set(data, offset - a);
  await write(d, a, bounce);
}

/** Zeroes that do not cover whole sectors: the whole sectors inside as zeroes, the edges as written zero bytes. */
export async function writeZeroesAligned(d: Qcow2State, offset: number, length: number): Promise<void> {
  const end = offset + length;
  const a = up(offset);
  const b = down(end);
  if (a >= b) return writeAligned(d, offset, new Uint8Array(length));
  if (offset < a) await writeAligned(d, offset, new Uint8Array(a - offset));
  await writeZeroes(d, a, b - a);
  if (end > b) await writeAligned(d, b, new Uint8Array(end - b));
}
