/**
 * Sizes for the engine and the CLI: qemu-img's size syntax (read by src-shared/sizes.ts, the one reader the app
 * shares) with the CLI's messages, qemu-img's human size, and alignment.
 */
import { readSize } from '../../src-shared/sizes';
import { DiskError } from './errors';

/** Parses qemu-img style sizes: 4096, 512M, 10G, 1.5T (binary units; a bare number is bytes). */
export function parseSize(text: string, what = 'size'): number {
  const size = readSize(text);
  if (size === 'unreadable') throw new DiskError('EINVAL', `invalid ${what} '${text}': use a number of bytes or a suffix k, M, G, T, P or E (e.g. 10G)`);
  if (size === 'too-large') throw new DiskError('EINVAL', `${what} '${text}' is too large`);
  if (size === 'not-whole') throw new DiskError('EINVAL', `${what} '${text}' is not a whole number of bytes`);
  return size;
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
