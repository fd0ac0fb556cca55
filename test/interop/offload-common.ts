/**
 * What the copy-offload suites (convert-offload: -C; convert-reflink: offload by default on btrfs/XFS) share:
 * their source image, and the two judgements by qemu-img: the same content, and where a file is allocated.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { must, run } from '../helpers';

/**
 * A raw image of 5 MiB + 1000 bytes (no whole number of sectors) at `path`: patterned data with 64 KiB of zeros
 * written inside it (data on disk, zeros to read), a punched hole, and data up to the last byte.
 */
export function offloadSourceRaw(path: string): string {
  const size = 5 * 1048576 + 1000;
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 13 + (i >> 9)) & 0xff || 1;
  b.fill(0, 1048576, 1048576 + 65536);
  writeFileSync(path, b);
  must('fallocate', ['--punch-hole', '--offset', String(3 * 1048576), '--length', String(1048576), path]);
  return path;
}

/** qemu-img compare finds the two images identical. */
export function identical(a: string, b: string): void {
  const r = run('qemu-img', ['compare', a, b]);
  assert.equal(r.status, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

/** qemu-img's map as [start, length, data] runs, neighbours of one kind merged (guest offsets; a raw file's are its own). */
export function mapOf(image: string, format?: string): Array<[number, number, boolean]> {
  const runs: Array<[number, number, boolean]> = [];
  const args = ['map', '--output', 'json', ...(format ? ['-f', format] : []), image];
  for (const e of JSON.parse(must('qemu-img', args).stdout) as Array<{ start: number; length: number; data: boolean }>) {
    const last = runs[runs.length - 1];
    if (last && last[2] === e.data && last[0] + last[1] === e.start) last[1] += e.length;
    else runs.push([e.start, e.length, e.data]);
  }
  return runs;
}
