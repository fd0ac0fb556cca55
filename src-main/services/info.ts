/**
 * Info: what `qemu-img info` reports about an image and its backing chain (the contract's ImageInfo, qemu-img's
 * JSON keys), read from headers without touching guest data.
 */
import * as nodePath from 'node:path';
import type { ImageInfo } from '../../src-shared/api';
import { ChainGuard } from '../block/chain';
import { lockingAvailable } from '../block/lock';
import { toDiskError } from '../block/errors';
import { ImageFile } from '../block/file';
import type { BackingPolicy } from '../block/types';
import { driverFor, imageEntry, probeDriver, resolveBackingPath } from '../registry';

export interface InspectOptions {
  format?: string;
  /** Describe the whole backing chain under 'backing-image'. */
  backingChain?: boolean;
  backingPolicy?: BackingPolicy;
  /**
   * What a backing file that cannot be followed (missing, outside the folder without a grant, a loop) does
   * to a chain walk: 'throw' fails the whole inspect (the CLI, as qemu-img); 'record' keeps every level up
   * to the image naming it and says why on the top image's 'backing-error' (the app).
   */
  chainErrors?: 'throw' | 'record';
}

/** Header-level facts about an image (and its backing chain), read without touching guest data; never modifies a file. */
export async function inspectImage(path: string, opts: InspectOptions = {}): Promise<ImageInfo> {
  const top = await inspectOne(path, opts.format);
  if (!lockingAvailable()) top['locking-unavailable'] = true;
  if (!opts.backingChain) return top;
  const policy = opts.backingPolicy ?? 'inside-folder';
  const guard = new ChainGuard(path);
  for (let cur = top; cur['backing-filename'] !== undefined; ) {
    try {
      const full = resolveBackingPath(cur.filename, cur['backing-filename'], policy);
      guard.visit(full);
      const next = await inspectOne(full, cur['backing-filename-format']);
      cur['backing-image'] = next;
      cur = next;
    } catch (err) {
      if (opts.chainErrors !== 'record') throw err;
      top['backing-error'] = toDiskError(err).toDto();
      break;
    }
  }
  return top;
}

async function inspectOne(givenPath: string, format: string | undefined): Promise<ImageInfo> {
  const path = await imageEntry(givenPath);
  const file = await ImageFile.open(path, false);
  let info: ImageInfo;
  try {
    const driver = format !== undefined ? driverFor(format) : await probeDriver(file);
    const header = await driver.describe(file);
    info = { filename: path, ...header, 'actual-size': header['actual-size'] ?? (await file.allocatedSize()) };
  } finally {
    await file.close();
  }
  const backingName = info['backing-filename'];
  // As qemu-img shows it: the backing name joined to the image's folder as the user gave it (relative stays relative).
  if (backingName !== undefined) info['full-backing-filename'] = nodePath.isAbsolute(backingName) ? backingName : nodePath.join(nodePath.dirname(path), backingName);
  return info;
}
