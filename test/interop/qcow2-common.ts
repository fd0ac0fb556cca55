/** Helpers shared by the qcow2 interop suites: qemu-img is the oracle for content, maps and consistency. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { MapEntry } from '../../src-shared/api';
import { dwOk, must, run } from '../helpers';

/** One row of `map --output json`: the contract's MapEntry, qemu-img's keys. */
export type MapRow = MapEntry;

function parseMap(text: string, drop: string[]): MapRow[] {
  const rows = JSON.parse(text) as Array<Record<string, unknown>>;
  for (const r of rows) for (const k of drop) delete r[k];
  return rows as unknown as MapRow[];
}

/** qemu-img's view of the image's allocation (without file names, which differ only in spelling). */
export function qemuMap(image: string): MapRow[] {
  return parseMap(must('qemu-img', ['map', '--output', 'json', image]).stdout, ['filename', 'compressed']);
}

export function ourMap(image: string): MapRow[] {
  return parseMap(dwOk(['map', '--output', 'json', image]).stdout, ['filename']);
}

/** `diskwright convert -O raw` gives the bytes `qemu-img convert -O raw` gives. */
export function assertSameContent(image: string, scratchPath: (n: string) => string, label = image): Buffer {
  const a = scratchPath('qemu-view.raw');
  const b = scratchPath('our-view.raw');
  must('qemu-img', ['convert', '-O', 'raw', image, a]);
  dwOk(['convert', '-O', 'raw', image, b]);
  const qa = readFileSync(a);
  const qb = readFileSync(b);
  assert.equal(qb.length, qa.length, `${label}: size`);
  assert.ok(qa.equals(qb), `${label}: content differs from qemu-img's reading`);
  return qa;
}

/** Content and map both agree with qemu-img. */
export function assertReadsLikeQemu(image: string, scratchPath: (n: string) => string, label = image): void {
  assertSameContent(image, scratchPath, label);
  assert.deepEqual(ourMap(image), qemuMap(image), `${label}: map differs from qemu-img map`);
}

/** qemu-img check finds nothing wrong (exit 0) and, when given, qemu-img compare finds the content equal. */
export function assertQemuAccepts(image: string, expectedRaw?: string): void {
  const c = run('qemu-img', ['check', image]);
  assert.equal(c.status, 0, `qemu-img check ${image}: ${c.stdout}${c.stderr}`);
  if (expectedRaw !== undefined) {
    const r = run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', image, expectedRaw]);
    assert.equal(r.status, 0, `qemu-img compare ${image} ${expectedRaw}: ${r.stdout}${r.stderr}`);
  }
}

/** qemu-io commands over an image. */
export function io(image: string, commands: string[], format = 'qcow2'): void {
  must('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), image]);
}

export { assertPlainError } from '../helpers';
