import * as nodePath from 'node:path';
import type { FormatName } from '../../src-shared/api';
import { FORMAT_NAMES } from '../../src-shared/api';
import { DiskError } from './errors';
import { ImageFile } from './file';
import type { BackingPolicy, BlockDevice, FormatDriver, OpenOptions } from './types';
import { rawDriver } from '../formats/raw/driver';
import { qcow2Driver } from '../formats/qcow2/driver';
import { vmdkDriver } from '../formats/vmdk/driver';
import { vhdxDriver } from '../formats/vhdx/driver';
import { parallelsDriver } from '../formats/parallels/driver';
import { cowDriver } from '../formats/cow/driver';

/** Every driver, in probe order; raw is last and matches anything with the lowest score. */
export const DRIVERS: readonly FormatDriver[] = [qcow2Driver, vmdkDriver, vhdxDriver, parallelsDriver, cowDriver, rawDriver];

/** How many bytes of a file the probes look at. */
export const PROBE_BYTES = 2048;

export function isFormatName(name: string): name is FormatName {
  return (FORMAT_NAMES as readonly string[]).includes(name);
}

export function driverFor(name: string): FormatDriver {
  const d = DRIVERS.find((drv) => drv.name === name);
  if (!d) throw new DiskError('EINVAL', `unknown format '${name}' (known: ${FORMAT_NAMES.join(', ')})`);
  return d;
}

/** Picks the driver for an open file: the one whose probe scores highest. An empty file is no image. */
export async function probeDriver(file: ImageFile): Promise<FormatDriver> {
  if (file.size === 0) throw new DiskError('EINVAL', `${file.path}: the file is empty; it is not a disk image (give -f raw to use it as one)`, file.path);
  const head = new Uint8Array(Math.min(PROBE_BYTES, file.size));
  await file.readExact(0, head, 'header');
  let best: FormatDriver = rawDriver;
  let bestScore = 0;
  for (const d of DRIVERS) {
    const score = d.probe(head, file.path);
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  return best;
}

/** Opens just long enough to find the format (given or probed). */
export async function resolveDriver(path: string, format?: string): Promise<FormatDriver> {
  if (format !== undefined) {
    const d = driverFor(format);
    // Still open the file so that a missing file or a directory gives its own plain error.
    const f = await ImageFile.open(path, false);
    await f.close();
    return d;
  }
  const file = await ImageFile.open(path, false);
  try {
    return await probeDriver(file);
  } finally {
    await file.close();
  }
}

export { resolveBackingPath } from './backing-path';

export interface OpenImageOptions {
  format?: string;
  readOnly?: boolean;
  backingPolicy?: BackingPolicy;
}

/** Opens an image and, unless the policy is 'none', its whole backing chain (read-only). */
export async function openImage(path: string, opts: OpenImageOptions = {}): Promise<BlockDevice> {
  const readOnly = opts.readOnly ?? true;
  const backingPolicy = opts.backingPolicy ?? 'inside-folder';
  const driver = await resolveDriver(path, opts.format);
  const seen = new Set<string>([nodePath.resolve(path)]);
  const openBacking = async (backingPath: string, format: FormatName | undefined, backingReadOnly: boolean): Promise<BlockDevice> => {
    const key = nodePath.resolve(backingPath);
    if (seen.has(key)) throw new DiskError('ECORRUPT', `${path}: the backing chain loops back to ${backingPath}`, path);
    seen.add(key);
    if (seen.size > 256) throw new DiskError('ECORRUPT', `${path}: the backing chain is deeper than 256 images`, path);
    const d = await resolveDriver(backingPath, format);
    return openCutting(d, backingPath, backingReadOnly, backingPolicy, openBacking);
  };
  return openCutting(driver, path, readOnly, backingPolicy, openBacking);
}

/**
 * Opens one image of a chain. Under a grant policy with ungranted 'cut', an image whose chain runs into a
 * backing file the user has not allowed is opened again without its backing: the chain ends there and the
 * ranges it left unallocated read as unallocated, instead of the whole open failing with EOUTSIDE. A
 * refusal deeper down was already cut at its own level, so the one caught here is this image's own.
 */
async function openCutting(
  driver: FormatDriver,
  path: string,
  readOnly: boolean,
  backingPolicy: BackingPolicy,
  openBacking: OpenOptions['openBacking'],
): Promise<BlockDevice> {
  try {
    return await driver.open(path, { readOnly, backingPolicy, openBacking });
  } catch (err) {
    if (typeof backingPolicy !== 'object' || backingPolicy.ungranted !== 'cut' || !(err instanceof DiskError) || err.code !== 'EOUTSIDE') throw err;
    return driver.open(path, { readOnly, backingPolicy: 'none', openBacking });
  }
}
