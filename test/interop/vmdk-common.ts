/** Helpers shared by the VMDK interop suites: qemu-img and qemu-io are the oracles for content, maps and checks. */
import assert from 'node:assert/strict';
import type { MapEntry } from '../../src-shared/api';
import { dwOk, must, run } from '../helpers';

function parseMap(text: string): MapEntry[] {
  const rows = JSON.parse(text) as Array<Record<string, unknown>>;
  // File names differ only in spelling (qemu names the extent file); compressed is qemu's extra key.
  for (const r of rows) for (const k of ['filename', 'compressed']) delete r[k];
  return rows as unknown as MapEntry[];
}

export const qemuMap = (image: string): MapEntry[] => parseMap(must('qemu-img', ['map', '--output', 'json', image]).stdout);
export const ourMap = (image: string): MapEntry[] => parseMap(dwOk(['map', '--output', 'json', image]).stdout);

/**
 * `diskwright convert -O raw` of the image equals qemu-img's reading of the same image: qemu-img compare, which
 * walks holes by block status, so multi-GiB sparse images cost little.
 */
export function assertSameContent(image: string, scratchPath: (n: string) => string, label = image): void {
  const ours = scratchPath(`our-view-${Math.random().toString(36).slice(2)}.raw`);
  dwOk(['convert', '-O', 'raw', image, ours]);
  const r = run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', image, ours]);
  assert.equal(r.status, 0, `${label}: our reading differs from qemu-img's: ${r.stdout}${r.stderr}`);
  must('rm', ['-f', ours]);
}

export function assertReadsLikeQemu(image: string, scratchPath: (n: string) => string, label = image): void {
  assertSameContent(image, scratchPath, label);
  assert.deepEqual(ourMap(image), qemuMap(image), `${label}: map differs from qemu-img map`);
}

/** qemu-img check finds nothing wrong and, when given, qemu-img compare finds the content equal to `raw`. */
export function assertQemuAccepts(image: string, raw?: string): void {
  const c = run('qemu-img', ['check', '-f', 'vmdk', image]);
  assert.equal(c.status, 0, `qemu-img check ${image}: ${c.stdout}${c.stderr}`);
  if (raw !== undefined) {
    const r = run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', image, raw]);
    assert.equal(r.status, 0, `qemu-img compare ${image} ${raw}: ${r.stdout}${r.stderr}`);
  }
}


export const io = (image: string, commands: string[]): void => {
  must('qemu-io', ['-f', 'vmdk', ...commands.flatMap((c) => ['-c', c]), image]);
};

export function qemuCreate(path: string, opts: string, size: string, backing?: string): void {
  must('qemu-img', ['create', '-q', '-f', 'vmdk', ...(opts ? ['-o', opts] : []), ...(backing ? ['-b', backing, '-F', 'vmdk'] : []), path, size]);
}

/** Data, zero writes, unaligned writes over a few MiB. */
export const MIXED = [
  'write -P 0x11 0 4k',
  'write -P 0x22 100k 70k',
  'write -z 300k 128k',
  'write -P 0x33 1M 64k',
  'write -P 0x44 2M 128k',
  'write -z 2M 64k',
  'write -P 0x55 3001000 5000',
  'write -P 0x66 4095k 1k',
];

export { assertPlainError } from '../helpers';
