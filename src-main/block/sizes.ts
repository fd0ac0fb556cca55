/**
 * Sizes as people and qemu-img write them: parsing `10G`-style sizes (binary units up to e), printing them
 * the way qemu-img does, and rounding to a unit (alignUp, alignDown).
 */
import { DiskError } from './errors';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/** Parses qemu-img style sizes: 4096, 512M, 10G, 1.5T (binary units; a bare number is bytes). */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpe]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new DiskError('EINVAL', `invalid ${what} '${text}': use a number of bytes or a suffix k, M, G, T, P (e.g. 10G)`);
  const value = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) throw new DiskError('EINVAL', `${what} '${text}' is too large`);
  if (!Number.isInteger(value)) throw new DiskError('EINVAL', `${what} '${text}' is not a whole number of bytes`);
  return value;
}

/** Human size the way qemu-img prints it: "10 GiB", "1.5 MiB", "512 B". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${bytes} B`;
  const s = v.toFixed(3 - String(Math.floor(v)).length + 1);
  return `${Number(s)} ${units[i]}`;
}

export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
export function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}
