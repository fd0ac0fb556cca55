/** Helpers shared by the VHD (vpc) interop suites: qemu-img, qemu-io and 7-Zip are the oracles. */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { dwOk, must, run } from '../helpers';

/** qemu-io on a VHD (named as vpc: a fixed VHD would otherwise be probed as raw, by qemu as by us). */
export function io(image: string, cmds: string[]): void {
  must('qemu-io', ['-f', 'vpc', ...cmds.flatMap((c) => ['-c', c]), image]);
}

/** The guest bytes as qemu-img reads them. */
export function qemuBytes(image: string, tmp: string): Buffer {
  must('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', image, tmp]);
  const b = readFileSync(tmp);
  rmSync(tmp);
  return b;
}

/** The guest bytes as we read them. */
export function ourBytes(image: string, tmp: string, extra: string[] = []): Buffer {
  dwOk(['convert', '-f', 'vpc', ...extra, '-O', 'raw', image, tmp]);
  const b = readFileSync(tmp);
  rmSync(tmp);
  return b;
}

function mapRows(text: string): Array<Record<string, unknown>> {
  const rows = JSON.parse(text) as Array<Record<string, unknown>>;
  for (const r of rows) {
    delete r.filename;
    delete r.compressed;
  }
  return rows;
}

/** Content and map agree with qemu-img's. Returns the bytes. */
export function assertReadsLikeQemu(image: string, tmp: (n: string) => string, label: string): Buffer {
  const q = qemuBytes(image, tmp('q.raw'));
  const o = ourBytes(image, tmp('o.raw'));
  assert.equal(o.length, q.length, `${label}: size`);
  assert.ok(o.equals(q), `${label}: content differs from qemu-img's reading`);
  const qm = mapRows(must('qemu-img', ['map', '-f', 'vpc', '--output', 'json', image]).stdout);
  const om = mapRows(dwOk(['map', '-f', 'vpc', '--output', 'json', image]).stdout);
  assert.deepEqual(om, qm, `${label}: map differs from qemu-img map`);
  return q;
}

/** 7-Zip extracts the image's disk; its bytes equal `raw` (7zz may drop a zero tail, so a shorter output is padded). */
export function assert7zipReads(image: string, raw: Buffer, label = image): void {
  const r = run('7zz', ['e', '-so', '-tvhd', image]);
  assert.equal(r.status, 0, `7zz e ${image}: ${r.stderr}`);
  const got = r.stdoutBytes;
  assert.ok(got.length <= raw.length, `${label}: 7zz gave ${got.length} bytes, more than ${raw.length}`);
  assert.ok(got.equals(raw.subarray(0, got.length)), `${label}: 7zz's bytes differ`);
  assert.ok(raw.subarray(got.length).every((b) => b === 0), `${label}: 7zz's bytes are short of data`);
}

/** qemu-img compare of a VHD with a raw file finds them identical. */
export function assertQemuCompares(image: string, raw: string): void {
  const r = run('qemu-img', ['compare', '-f', 'vpc', '-F', 'raw', image, raw]);
  assert.equal(r.status, 0, `qemu-img compare ${image} ${raw}: ${r.stdout}${r.stderr}`);
}

/** qemu-img info's JSON of a VHD. */
export function qemuInfo(image: string): Record<string, unknown> {
  return JSON.parse(must('qemu-img', ['info', '-f', 'vpc', '--output', 'json', image]).stdout) as Record<string, unknown>;
}

export { assertPlainError } from '../helpers';
