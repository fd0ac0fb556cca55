/**
 * The oracles as the tests ask them, written once: qemu-io to write into images, and qemu-img's reading of an
 * image (its map, its check, its content) set beside ours. Every format's interop suite uses these; its
 * *-common.ts only binds them to its format and adds what is its own (image makers, header patches).
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import type { MapEntry } from '../src-shared/api';
import { dwOk, must, run } from './helpers';

/** qemu-io over an image with a list of -c commands; kept in helpers.ts beside `must`, which the e2e tests share. */
export { qemuIo } from './helpers';

/** A `map --output json` without the keys the two programs spell differently (file names, qemu's `compressed`). */
function mapRows(json: string): MapEntry[] {
  const rows = JSON.parse(json) as Array<Record<string, unknown>>;
  for (const r of rows) for (const k of ['filename', 'compressed']) delete r[k];
  return rows as unknown as MapEntry[];
}

/** qemu-img's view of the image's allocation (probed, or as `format`). */
export function qemuMap(image: string, format?: string): MapEntry[] {
  return mapRows(must('qemu-img', ['map', ...(format ? ['-f', format] : []), '--output', 'json', image]).stdout);
}

/** Our view of the same, to set beside qemuMap. */
export function ourMap(image: string): MapEntry[] {
  return mapRows(dwOk(['map', '--output', 'json', image]).stdout);
}

/** What qemu-img reads from the image (`qemu-img convert -O raw`), for a test that needs the bytes themselves. */
export function qemuReads(image: string, format: string, scratchPath: (n: string) => string): Buffer {
  const raw = scratchPath(`qemu-view-${Math.random().toString(36).slice(2)}.raw`);
  must('qemu-img', ['convert', '-f', format, '-O', 'raw', image, raw]);
  try {
    return readFileSync(raw);
  } finally {
    rmSync(raw, { force: true });
  }
}

/**
 * `diskwright convert -O raw` of the image reads as qemu-img reads it: the same virtual size, and qemu-img compare
 * finds the content equal (it walks holes by block status, so multi-GiB sparse images cost little).
 */
export function assertSameContent(image: string, format: string, scratchPath: (n: string) => string, label = image): void {
  const ours = scratchPath(`our-view-${Math.random().toString(36).slice(2)}.raw`);
  try {
    dwOk(['convert', '-O', 'raw', image, ours]);
    const size = (JSON.parse(must('qemu-img', ['info', '-f', format, '--output', 'json', image]).stdout) as { 'virtual-size': number })['virtual-size'];
    assert.equal(statSync(ours).size, size, `${label}: our reading is not the image's virtual size`);
    const r = run('qemu-img', ['compare', '-f', format, '-F', 'raw', image, ours]);
    assert.equal(r.status, 0, `${label}: our reading differs from qemu-img's: ${r.stdout}${r.stderr}`);
  } finally {
    rmSync(ours, { force: true });
  }
}

/** Content and map both agree with qemu-img. */
export function assertReadsLikeQemu(image: string, format: string, scratchPath: (n: string) => string, label = image): void {
  assertSameContent(image, format, scratchPath, label);
  assert.deepEqual(ourMap(image), qemuMap(image, format), `${label}: map differs from qemu-img map`);
}

/** qemu-img check finds nothing wrong (exit 0) and, when given, qemu-img compare finds the content equal to `raw`. */
export function assertQemuAccepts(image: string, format: string, raw?: string): void {
  const c = run('qemu-img', ['check', '-f', format, image]);
  assert.equal(c.status, 0, `qemu-img check ${image}: ${c.stdout}${c.stderr}`);
  if (raw !== undefined) {
    const r = run('qemu-img', ['compare', '-f', format, '-F', 'raw', image, raw]);
    assert.equal(r.status, 0, `qemu-img compare ${image} ${raw}: ${r.stdout}${r.stderr}`);
  }
}
