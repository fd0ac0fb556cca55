/**
 * The registry: probe, open and look up drivers over the one list in formats/index.ts. It lives above the
 * formats (block/ never imports a format); formats reach other images only through OpenOptions.openBacking.
 */
import type { FormatName, FormatSummary } from '../src-shared/api';
import { statPath } from './block/open-file';
import { FORMAT_NAMES } from '../src-shared/api';
import { ChainGuard, chainOf } from './block/chain';
import { DiskError } from './block/errors';
import { ImageFile, openingChecked } from './block/file';
import { checksFolder } from './block/backing-path';
import type { BackingPolicy, BlockDevice, FormatDriver, OpenOptions } from './block/types';
import { FORMAT_DRIVERS } from './formats/index';
import { askForKey, keyFor } from './keyring';
import { keyRefusal } from './crypto/secret';

/** Every driver, in probe order; raw is last and matches anything with the lowest score. */
export const DRIVERS = FORMAT_DRIVERS;

/** Loads every driver's open and describe code now (the app's first image then opens as fast as the next). */
export async function preloadDrivers(): Promise<void> {
  for (const d of FORMAT_DRIVERS) await d.preload?.();
}

// The contract's FormatName union and the driver list must name the same formats, once each.
for (const name of FORMAT_NAMES) {
  if (DRIVERS.filter((d) => d.name === name).length !== 1) throw new Error(`formats/index.ts must list exactly one driver named '${name}'`);
}
if (DRIVERS.length !== FORMAT_NAMES.length) throw new Error('formats/index.ts lists a driver whose name is not in the contract\'s FormatName');
const rawDriver = DRIVERS[DRIVERS.length - 1];

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

/**
 * The format (other than raw, which takes any file) whose probe recognises these first bytes of a file, or
 * undefined when none does. probeDriver picks the same driver when this gives one; the app uses it to tell a
 * recognised image from a file it would only be guessing is raw, and to label a folder's images.
 */
export function recognisedFormat(head: Uint8Array, path: string): FormatName | undefined {
  let best: FormatName | undefined;
  let bestScore = 0;
  for (const d of DRIVERS) {
    if (d === rawDriver) continue;
    const score = d.probe(head, path);
    if (score > bestScore) {
      best = d.name;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The file that stands for the image at `path`: `path` itself, or, when it is a folder that a format keeps
 * its images in (a Parallels .hdd bundle), the file inside it that the format names. A folder no format
 * claims is returned as it is, and opening it gives the plain "is a folder" error.
 */
export async function imageEntry(path: string): Promise<string> {
  let isDir = false;
  try {
    isDir = (await statPath(path)).isDirectory();
  } catch {
    return path; // a missing file gets its own plain error where it is opened
  }
  if (!isDir) return path;
  for (const d of DRIVERS) {
    const entry = d.folderEntry ? await d.folderEntry(path) : undefined;
    if (entry !== undefined) return entry;
  }
  return path;
}

/** Opens just long enough to find the format (given or probed). `path` is a file (see imageEntry for folders). */
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

export { resolveBackingPath } from './block/backing-path';

export interface OpenImageOptions {
  format?: string;
  readOnly?: boolean;
  backingPolicy?: BackingPolicy;
  /** Reads backing files that changed since their children were made (OpenOptions.acceptChangedBacking), all down the chain. */
  acceptChangedBacking?: boolean;
  /** Opens the top image as it was at this internal snapshot (OpenOptions.snapshot), read-only. */
  snapshot?: string;
  /** The top image's actual backing file, where its recorded name is not where it lies (OpenOptions.backingOverride). */
  backingOverride?: string;
  /**
   * Opens encrypted images of the chain whose key the keyring does not hold, for work that reads no data
   * (OpenOptions.withoutKey); their data reads and writes then refuse with "a passphrase is needed".
   */
  withoutKey?: boolean;
}

/** Opens an image and, unless the policy is 'none', its whole backing chain (read-only). */
export async function openImage(givenPath: string, opts: OpenImageOptions = {}): Promise<BlockDevice> {
  const path = await imageEntry(givenPath);
  const readOnly = opts.readOnly ?? true;
  const backingPolicy = opts.backingPolicy ?? 'inside-folder';
  const driver = await resolveDriver(path, opts.format);
  if (opts.snapshot !== undefined && !driver.snapshots) {
    throw new DiskError('EUNSUPPORTED', `${path}: ${driver.label} images have no internal snapshots to open`, path);
  }
  const guard = new ChainGuard(path);
  const accept = { acceptChangedBacking: opts.acceptChangedBacking, withoutKey: opts.withoutKey };
  const openBacking = async (backingPath: string, format: FormatName | undefined, backingReadOnly: boolean, declaredSize?: number): Promise<BlockDevice> => {
    guard.visit(backingPath);
    backingPath = await imageEntry(backingPath);
    const open = async () => {
      const d = await resolveDriver(backingPath, format);
      return openCutting(d, backingPath, { readOnly: backingReadOnly, backingPolicy, openBacking, ...accept, passphrase: keyFor(backingPath), declaredSize });
    };
    // Under a folder policy the format checked the real path it hands us: the file opened must be that one.
    return checksFolder(backingPolicy) ? openingChecked(backingPath, open) : open();
  };
  return openCutting(driver, path, { readOnly, backingPolicy, openBacking, ...accept, passphrase: keyFor(path), backingOverride: opts.backingOverride, snapshot: opts.snapshot });
}

/**
 * Opens one image of a chain. Under a grant policy with ungranted 'cut', an image whose chain runs into a
 * backing file the user has not allowed is opened again without its backing: the chain ends there and the
 * ranges it left unallocated read as unallocated, instead of the whole open failing with EOUTSIDE. A
 * refusal deeper down was already cut at its own level, so the one caught here is this image's own.
 */
async function openCutting(driver: FormatDriver, path: string, opts: OpenOptions): Promise<BlockDevice> {
  try {
    return await driver.open(path, opts);
  } catch (err) {
    // An encrypted image refused for want of its key (or a wrong one): a face that can ask a person (the CLI's
    // prompt on a terminal) gives the key to try, and this one image is opened again with it.
    const refusal = keyRefusal(err);
    const key = refusal ? await askForKey(path, refusal === 'needed') : undefined;
    if (key) return openCutting(driver, path, { ...opts, passphrase: key });
    const policy = opts.backingPolicy;
    if (typeof policy !== 'object' || policy.ungranted !== 'cut' || !(err instanceof DiskError) || err.code !== 'EOUTSIDE') throw err;
    return driver.open(path, { ...opts, backingPolicy: 'none' });
  }
}

/** True when every device of the chain takes overlapping calls safely (FormatDriver.concurrentCalls). */
export function takesConcurrentCalls(top: BlockDevice): boolean {
  return chainOf(top).every((d) => driverFor(d.format).concurrentCalls);
}

/** What the faces show about each format, from the drivers alone (wizards, dialogs, usage text). */
export function formatSummaries(): FormatSummary[] {
  return DRIVERS.map((d) => ({
    name: d.name,
    label: d.label,
    description: d.description,
    extensions: [...d.extensions],
    canCreate: d.create !== undefined,
    compresses: d.writesCompressed === true,
    backing: d.backingFiles ?? 'none',
    canCheck: d.check !== undefined,
    hasSnapshots: d.snapshots !== undefined,
  }));
}
