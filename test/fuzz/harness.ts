/**
 * What every image-format fuzz suite shares: the seed and case count (DISKWRIGHT_FUZZ_SEED / _CASES), a watch
 * on every buffer the drivers hand to ImageFile (none may be larger than the file), one attempt that accepts a
 * DiskError with a real message and fails on anything else or on a hang, and the look that a read-only step
 * must leave the file as it was. Each suite keeps only its own images and mutations.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, statSync, writeSync, type Stats } from 'node:fs';
import { DiskError } from '../../src-main/block/errors';
import { ImageFile } from '../../src-main/block/file';
import { driverFor } from '../../src-main/registry';
import type { FormatName } from '../../src-main/block/types';

export const SEED = Number(process.env.DISKWRIGHT_FUZZ_SEED ?? 0x5eed);
/** The suite's own default number of cases, unless DISKWRIGHT_FUZZ_CASES says otherwise. */
export const caseCount = (dflt: number): number => Number(process.env.DISKWRIGHT_FUZZ_CASES ?? dflt);
/**
 * One mutated image must be handled within this; longer is a hang. A real hang never ends, so the limit is
 * generous: a full test run on two loaded cores once took 5 s over a legitimate case.
 */
const CASE_LIMIT_MS = Number(process.env.DISKWRIGHT_FUZZ_CASE_LIMIT_MS ?? 15_000);

/** The largest buffer any read asked for, and the reads that asked for more than the file holds. */
export const watch = { largest: 0, overFile: [] as string[] };
{
  const proto = ImageFile.prototype as unknown as {
    readExact: (this: ImageFile, pos: number, into: Uint8Array, what?: string) => Promise<Uint8Array>;
    readBlock: (this: ImageFile, pos: number, length: number, what?: string) => Promise<Uint8Array>;
  };
  const readExact = proto.readExact;
  const readBlock = proto.readBlock;
  // A buffer handed to readExact was allocated by the caller: it must never be larger than the file.
  proto.readExact = function (pos, into, what) {
    watch.largest = Math.max(watch.largest, into.length);
    if (into.length > this.size) watch.overFile.push(`${what ?? 'read'}: ${into.length} bytes from a ${this.size}-byte file`);
    return readExact.call(this, pos, into, what);
  };
  proto.readBlock = function (pos, length, what) {
    if (Number.isFinite(length)) watch.largest = Math.max(watch.largest, length);
    return readBlock.call(this, pos, length, what);
  };
}

/** Runs one step of a case: 'ok', or 'refused' with a DiskError; anything else (or a hang) fails the test. */
export async function attempt(label: string, fn: () => Promise<unknown>): Promise<'ok' | 'refused'> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`hang: ${label} took longer than ${CASE_LIMIT_MS} ms`)), CASE_LIMIT_MS);
  });
  try {
    await Promise.race([fn(), limit]);
    return 'ok';
  } catch (err) {
    if (err instanceof DiskError) {
      assert.ok(err.message.length > 0 && !err.message.includes('undefined'), `${label}: message '${err.message}'`);
      return 'refused';
    }
    const e = err as Error;
    return assert.fail(e?.message?.startsWith('hang:') ? e.message : `${label}: threw ${e?.name ?? typeof err} instead of a DiskError: ${e?.message}\n${e?.stack ?? ''}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Rewrites the working copy in place, whole, so truncation and extension are real (and the inode stays). */
export function rewriteFile(path: string, bytes: Uint8Array): Stats {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, bytes, 0, bytes.length, 0);
  } finally {
    closeSync(fd);
  }
  watch.overFile = [];
  return statSync(path);
}

/** The driver's describe of the file: a sound size, JSON-able info (no bigints, no cycles). */
export function describeStep(format: FormatName, work: string, label: string, extra?: (f: ImageFile) => Promise<void>): Promise<'ok' | 'refused'> {
  return attempt(`${label}: describe`, async () => {
    const f = await ImageFile.open(work, false);
    try {
      const info = await driverFor(format).describe(f);
      assert.ok(Number.isSafeInteger(info['virtual-size']) && info['virtual-size'] >= 0, `${label}: virtual-size ${info['virtual-size']}`);
      if (info['cluster-size'] !== undefined) assert.ok(Number.isSafeInteger(info['cluster-size']) && info['cluster-size'] > 0, `${label}: cluster-size`);
      JSON.stringify(info);
      await extra?.(f);
    } finally {
      await f.close();
    }
  });
}

/** After the read-only steps of a case: no read larger than the file, and the file as it was. */
export function assertLookedOnly(work: string, before: Stats, label: string): void {
  assert.deepEqual(watch.overFile, [], `${label}: read buffers larger than the file`);
  const now = statSync(work);
  assert.equal(now.size, before.size, `${label}: a read-only look changed the file's size`);
  assert.equal(now.mtimeMs, before.mtimeMs, `${label}: a read-only look wrote to the file`);
}

/** Sometimes cuts the file short (8%) or extends it with junk (2%), as a torn copy or a bad tool would. */
export function truncateOrExtend(bytes: Buffer, r: () => number, labels: string[], extend = true): Buffer {
  const cut = r();
  if (cut < 0.08) {
    const len = Math.floor(r() * bytes.length);
    labels.push(`truncate ${len}`);
    return bytes.subarray(0, len);
  }
  if (extend && cut < 0.1) {
    const out = Buffer.concat([bytes, Buffer.alloc(1 + Math.floor(r() * 4096), 0xa5)]);
    labels.push(`extend ${out.length}`);
    return out;
  }
  return bytes;
}
