/**
 * Create: a new, empty image of a format, its options read against the driver's OptionSpec list (defaults filled
 * by options.ts) and its backing file looked up first; the file appears only once it is complete.
 */
import { keyFor } from '../keyring';
import type { FormatName } from '../../src-shared/api';
import type { OptionValues } from '../../src-shared/options';
import { DiskError } from '../block/errors';
import { promises as fsp } from 'node:fs';
import { driverFor, imageEntry, isFormatName, openImage, PROBE_BYTES, recognisedFormat, resolveBackingPath } from '../registry';
import { ImageFile } from '../block/file';
import { resolveOptions } from './options';
import type { CreatedFiles } from '../block/types';
import { ExtraFiles, writeAtomically } from './atomic';

export interface CreateRequest {
  path: string;
  format: string;
  /** Virtual size in bytes; may be omitted when a backing file gives it. */
  size?: number;
  options?: Record<string, string | number | boolean | undefined>;
  backingFile?: string;
  backingFormat?: string;
  /**
   * A file already at `path`: 'replace' (the default, qemu-img's behaviour: the CLI), 'refuse', 'replace-image'
   * (only a disk image this build recognises) — what the app's jobs ask for; see existingRule.
   */
  existing?: ExistingRule;
}

export type ExistingRule = 'replace' | 'refuse' | 'replace-image';

/**
 * The rule for a job of the app or the browser host, which writes for whoever holds the window or the token:
 * a file already there is replaced only when the request says so, and one that is not a disk image only when
 * it says so twice (replaceNotImage), so a mistyped name cannot overwrite a document.
 */
export function existingRule(spec: { replace?: boolean; replaceNotImage?: boolean }): ExistingRule {
  if (spec.replace !== true) return 'refuse';
  return spec.replaceNotImage === true ? 'replace' : 'replace-image';
}

/** Refuses to create over an existing file when the request's rule says so (EEXIST, in plain words). */
async function checkExisting(path: string, rule: ExistingRule): Promise<void> {
  if (rule === 'replace') return;
  const st = await fsp.lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (rule === 'refuse') throw new DiskError('EEXIST', `${path}: a file of that name already exists; creating would replace it (confirm replacing it first)`, path);
  if (!(await isRecognisedImage(path))) {
    throw new DiskError('EEXIST', `${path}: the file there is not a disk image diskwright recognises; replacing it needs a second confirmation`, path);
  }
}

/** True when `path` is a regular file (or an image folder, a .hdd bundle) whose first bytes a format other than raw recognises. */
export async function isRecognisedImage(path: string): Promise<boolean> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (st === undefined || st.isSymbolicLink()) return false;
  const entry = st.isDirectory() ? await imageEntry(path) : path;
  if (entry === path && st.isDirectory()) return false;
  try {
    const file = await ImageFile.open(entry, false);
    try {
      if (file.size === 0) return false;
      const head = await file.readExact(0, new Uint8Array(Math.min(PROBE_BYTES, file.size)), 'header');
      return recognisedFormat(head, entry) !== undefined;
    } finally {
      await file.close();
    }
  } catch {
    return false;
  }
}

/**
 * Creates a new image; the file appears only once it is complete, and so do the files written beside it (VMDK
 * extents), whose final paths it returns.
 */
export async function createImage(req: CreateRequest): Promise<string[]> {
  const make = await prepare(req);
  const extras = await writeAtomically(req.path, async (tmp) => new ExtraFiles(await make(tmp)), (extras) => extras);
  return extras.finals;
}

/**
 * Creates the image at `writeTo` as is, for a caller that fills it and renames it into place itself (convert).
 * The files written beside it stay under temporary names until the caller places them (ExtraFiles.place, just
 * before its rename; settle after it; discard if its job fails). `durable: false` tells a driver that honours it
 * (CreateOptions.durable: qcow2) that the caller flushes the whole image before its rename, so the create need not.
 */
export async function createUnplaced(req: CreateRequest, writeTo: string, durable = true): Promise<ExtraFiles> {
  const make = await prepare(req);
  return new ExtraFiles(await make(writeTo, durable));
}

/** Validates the request and looks the backing file up; returns the create itself, given the path to write. */
async function prepare(req: CreateRequest): Promise<(path: string, durable?: boolean) => Promise<CreatedFiles | undefined>> {
  const driver = driverFor(req.format);
  await checkExisting(req.path, req.existing ?? 'replace');
  if (!driver.create) throw new DiskError('EUNSUPPORTED', `${req.format}: creating images is not supported yet by this build`);
  const options: OptionValues = resolveOptions(req.format, driver.createOptions, req.options ?? {});
  let size = req.size;
  let backingSize: number | undefined;
  let backingFormat: FormatName | undefined;
  if (req.backingFile !== undefined) {
    if (req.backingFormat !== undefined && !isFormatName(req.backingFormat)) driverFor(req.backingFormat); // throws the plain message
    // The backing file must exist and be readable now; its size is the default size.
    const full = resolveBackingPath(req.path, req.backingFile, 'anywhere');
    // Only its size and format are read: an encrypted backing file needs no key here (qemu opens it without I/O too).
    const backing = await openImage(full, { format: req.backingFormat, readOnly: true, backingPolicy: 'anywhere', withoutKey: true });
    backingSize = backing.size;
    backingFormat = backing.format;
    await backing.close();
    size ??= backingSize;
  }
  if (size === undefined) throw new DiskError('EINVAL', 'an image size is required (e.g. 10G)');
  if (!Number.isSafeInteger(size) || size < 0) throw new DiskError('EINVAL', `invalid image size ${size}`);
  const bytes = size;
  return async (path, durable = true) => {
    const made = await driver.create!(path, bytes, {
      durable,
      options,
      backingFile: req.backingFile,
      backingFormat: (req.backingFormat as FormatName | undefined) ?? backingFormat,
      backingSize,
      targetPath: req.path,
      // An encrypted create (encrypt.format) takes its passphrase from the keyring, held under the target's name.
      passphrase: keyFor(req.path),
    });
    return made ?? undefined;
  };
}
