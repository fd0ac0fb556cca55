import * as nodePath from 'node:path';
import type { ImageInfo } from '../../src-shared/api';
import { ImageFile } from '../block/file';
import { driverFor, probeDriver, resolveBackingPath } from '../block/registry';
import type { BackingPolicy } from '../block/types';

export interface InspectOptions {
  format?: string;
  /** Describe the whole backing chain under 'backing-image'. */
  backingChain?: boolean;
  backingPolicy?: BackingPolicy;
}

/** Header-level facts about an image, read without touching guest data; never modifies the file. */
export async function inspectImage(path: string, opts: InspectOptions = {}): Promise<ImageInfo> {
  return inspectOne(path, opts, 0);
}

async function inspectOne(path: string, opts: InspectOptions, depth: number): Promise<ImageInfo> {
  const file = await ImageFile.open(path, false);
  let info: ImageInfo;
  try {
    const driver = opts.format !== undefined && depth === 0 ? driverFor(opts.format) : await probeDriver(file);
    const header = await driver.describe(file);
    info = { filename: path, ...header, 'actual-size': header['actual-size'] ?? (await file.allocatedSize()) };
  } finally {
    await file.close();
  }
  const backingName = info['backing-filename'];
  if (backingName !== undefined) {
    const policy = opts.backingPolicy ?? 'inside-folder';
    // As qemu-img shows it: the backing name joined to the image's folder as the user gave it (relative stays relative).
    info['full-backing-filename'] = nodePath.isAbsolute(backingName) ? backingName : nodePath.join(nodePath.dirname(path), backingName);
    if (opts.backingChain && depth < 256) {
      const resolved = resolveBackingPath(path, backingName, policy);
      info['backing-image'] = await inspectOne(resolved, { ...opts, format: info['backing-filename-format'] }, depth + 1);
    }
  }
  return info;
}
