/** The oracles (test/oracles.ts) bound to VHDX, and what the VHDX interop suites add: 7zz's reading, log surgery. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { run } from '../helpers';
import { assertQemuAccepts as accepts, assertSameContent as sameContent, qemuIo } from '../oracles';
import {
  BAT_GUID,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SIZE,
  REGION_TABLE1_OFFSET,
  REGION_TABLE_SIZE,
  parseHeader,
  parseRegionTable,
  readGuid,
  serializeHeader,
} from '../../src-main/formats/vhdx/layout';

export const MiB = 1024 * 1024;

export const io = (image: string, commands: string[]): void => void qemuIo(image, 'vhdx', commands);
export const assertSameContent = (image: string, scratchPath: (n: string) => string, label = image): void => sameContent(image, 'vhdx', scratchPath, label);
export const assertQemuAccepts = (image: string, raw?: string): void => accepts(image, 'vhdx', raw);

/** 7-Zip extracts the image's disk (as raw bytes); they equal `raw` (7zz drops a zero tail, so compare padded). */
export function assert7zipReads(image: string, raw: Buffer, label = image): void {
  const r = run('7zz', ['e', '-so', '-tvhdx', image]);
  assert.equal(r.status, 0, `7zz e ${image}: ${r.stderr}`);
  const got = r.stdoutBytes;
  assert.ok(got.length <= raw.length, `${label}: 7zz gave ${got.length} bytes, more than ${raw.length}`);
  assert.ok(got.equals(raw.subarray(0, got.length)), `${label}: 7zz's bytes differ`);
  assert.ok(raw.subarray(got.length).every((b) => b === 0), `${label}: 7zz's bytes are short of data`);
}

/** The current header's file offset in `bytes`. */
export function currentHeaderOffset(bytes: Buffer, path: string): number {
  const a = parseHeader(bytes.subarray(HEADER1_OFFSET, HEADER1_OFFSET + HEADER_SIZE), path);
  const b = parseHeader(bytes.subarray(HEADER2_OFFSET, HEADER2_OFFSET + HEADER_SIZE), path);
  if (!a) return HEADER2_OFFSET;
  if (!b) return HEADER1_OFFSET;
  return a.sequenceNumber >= b.sequenceNumber ? HEADER1_OFFSET : HEADER2_OFFSET;
}

export function batRegion(bytes: Buffer, path: string): { fileOffset: number; length: number } {
  const regions = parseRegionTable(bytes.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE), path, bytes.length);
  return regions.find((r) => r.guid === BAT_GUID)!;
}

/**
 * Makes an image whose only record of a qemu-io write's BAT update is the log: qemu writes the BAT entry through
 * its log and then in place; we put the BAT bytes from before the write back and set the current header's log
 * GUID to the entry's, as if the machine had stopped between the log write and the in-place write.
 */
export function makePendingLog(path: string, qemuIoCmd: string): void {
  const before = readFileSync(path);
  io(path, [qemuIoCmd]);
  const after = readFileSync(path);
  const bat = batRegion(after, path);
  assert.ok(!before.subarray(bat.fileOffset, bat.fileOffset + bat.length).equals(after.subarray(bat.fileOffset, bat.fileOffset + bat.length)), 'the write changed the BAT');
  after.set(before.subarray(bat.fileOffset, bat.fileOffset + bat.length), bat.fileOffset);
  const hOff = currentHeaderOffset(after, path);
  const h = parseHeader(after.subarray(hOff, hOff + HEADER_SIZE), path)!;
  const logGuid = readGuid(after, h.logOffset + 32);
  assert.equal(after.toString('latin1', h.logOffset, h.logOffset + 4), 'loge', 'qemu left its log entry');
  after.set(serializeHeader({ ...h, logGuid }), hOff);
  writeFileSync(path, after);
}

export { assertPlainError } from '../helpers';
