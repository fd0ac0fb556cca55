/**
 * Byte helpers shared by the format codecs: views, bounded 64-bit reads, GUIDs, range checks and the sector
 * unit. Formats never import each other, so what two of them need lives here.
 */
import { DiskError } from './errors';

/** The 512-byte sector that Parallels, VMDK, COW and raw count in. */
export const SECTOR = 512;

/** A DataView over exactly the bytes of `buf` (which may be a window into a larger buffer). */
export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * A 64-bit field as a number. Offsets and sizes beyond 2^53 cannot be exact in a number and no real image has
 * them, so they are reported as damage naming the field (`what`) rather than rounded.
 */
export function u64(v: DataView, at: number, littleEndian: boolean, what: string, path: string): number {
  const x = v.getBigUint64(at, littleEndian);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new DiskError('ECORRUPT', `${path}: ${what} (${x}) is impossibly large`, path);
  return Number(x);
}

const hex2 = (b: number) => b.toString(16).padStart(2, '0');

/** Reads a mixed-endian (Microsoft) GUID into its canonical lower-case text form. */
export function readGuid(buf: Uint8Array, at: number): string {
  const v = view(buf);
  const d1 = v.getUint32(at, true).toString(16).padStart(8, '0');
  const d2 = v.getUint16(at + 4, true).toString(16).padStart(4, '0');
  const d3 = v.getUint16(at + 6, true).toString(16).padStart(4, '0');
  const d4 = Array.from(buf.subarray(at + 8, at + 10), hex2).join('');
  const d5 = Array.from(buf.subarray(at + 10, at + 16), hex2).join('');
  return `${d1}-${d2}-${d3}-${d4}-${d5}`;
}

/** Writes a canonical GUID text mixed-endian. */
export function writeGuid(buf: Uint8Array, at: number, guid: string): void {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(guid);
  if (!m) throw new DiskError('EINVAL', `'${guid}' is not a GUID`);
  const v = view(buf);
  v.setUint32(at, parseInt(m[1], 16), true);
  v.setUint16(at + 4, parseInt(m[2], 16), true);
  v.setUint16(at + 6, parseInt(m[3], 16), true);
  const rest = m[4] + m[5];
  for (let i = 0; i < 8; i++) buf[at + 8 + i] = parseInt(rest.slice(i * 2, i * 2 + 2), 16);
}

/** Refuses a guest range [offset, offset + length) that does not lie inside an image of `size` bytes. */
export function checkRange(size: number, offset: number, length: number, path: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new DiskError('EINVAL', `${path}: range ${offset}+${length} lies outside the image (${size} bytes)`, path);
  }
}

const ZERO_CHUNK = Buffer.alloc(1 << 20);

/**
 * True when buf[a, b) is all zeros. This is on the hot path of convert, compare and map (once per 4 KiB):
 * most data differs from zero in its first or last bytes, so those are looked at first; the rest is compared
 * against a zero buffer with memcmp, without making a view object per call.
 */
export function isZeroRange(buf: Uint8Array, a: number, b: number): boolean {
  const n = b - a;
  if (n <= 0) return true;
  if ((buf[a] | buf[b - 1]) !== 0) return false;
  if (n >= 8 && (buf[a + 1] | buf[a + 2] | buf[a + 3] | buf[b - 2] | buf[b - 3] | buf[b - 4]) !== 0) return false;
  for (let pos = a; pos < b; pos += ZERO_CHUNK.length) {
    const len = Math.min(ZERO_CHUNK.length, b - pos);
    if (ZERO_CHUNK.compare(buf, pos, pos + len, 0, len) !== 0) return false;
  }
  return true;
}

/** True when every byte of buf is zero (see isZeroRange). */
export function isZero(buf: Uint8Array): boolean {
  return isZeroRange(buf, 0, buf.length);
}

/**
 * How many `unit`-sized units hold at least one byte of `data` (guest ranges, sorted, not overlapping), counting
 * only what lies in [lo, hi): measure's count of the clusters, blocks or grains a new image would allocate.
 */
export function touchedUnits(data: readonly { start: number; length: number }[], unit: number, lo = 0, hi = Number.MAX_SAFE_INTEGER): number {
  let count = 0;
  let lastUnit = -1;
  for (const r of data) {
    const s = Math.max(r.start, lo);
    const e = Math.min(r.start + r.length, hi);
    if (e <= s) continue;
    const first = Math.max(Math.floor(s / unit), lastUnit + 1);
    const end = Math.floor((e - 1) / unit);
    if (end >= first) count += end - first + 1;
    lastUnit = Math.max(lastUnit, end);
  }
  return count;
}
