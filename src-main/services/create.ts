import type { FormatName } from '../../src-shared/api';
import type { OptionValues } from '../../src-shared/options';
import { DiskError } from '../block/errors';
import { driverFor, isFormatName, openImage, resolveBackingPath } from '../registry';
import { validateOptions } from './options';
import { writeAtomically } from './atomic';

export interface CreateRequest {
  path: string;
  format: string;
  /** Virtual size in bytes; may be omitted when a backing file gives it. */
  size?: number;
  options?: Record<string, string | number | boolean | undefined>;
  backingFile?: string;
  backingFormat?: string;
  /** Write the image at this path instead, as is; the caller renames it into place (convert does). */
  writeTo?: string;
}

/**
 * Creates a new image; the file appears only once it is complete. Returns the files written beside it under
 * their final names (VMDK extents), which a caller writing to `writeTo` removes if its job then fails.
 */
export async function createImage(req: CreateRequest): Promise<string[]> {
  const driver = driverFor(req.format);
  if (!driver.create) throw new DiskError('EUNSUPPORTED', `${req.format}: creating images is not supported yet by this build`);
  const options: OptionValues = validateOptions(req.format, driver.createOptions, req.options ?? {});
  let size = req.size;
  let backingSize: number | undefined;
  let backingFormat: FormatName | undefined;
  if (req.backingFile !== undefined) {
    if (req.backingFormat !== undefined && !isFormatName(req.backingFormat)) driverFor(req.backingFormat); // throws the plain message
    // The backing file must exist and be readable now; its size is the default size.
    const full = resolveBackingPath(req.path, req.backingFile, 'anywhere');
    const backing = await openImage(full, { format: req.backingFormat, readOnly: true, backingPolicy: 'anywhere' });
    backingSize = backing.size;
    backingFormat = backing.format;
    await backing.close();
    size ??= backingSize;
  }
  if (size === undefined) throw new DiskError('EINVAL', 'an image size is required (e.g. 10G)');
  if (!Number.isSafeInteger(size) || size < 0) throw new DiskError('EINVAL', `invalid image size ${size}`);
  const create = async (path: string): Promise<string[]> => {
    const made = await driver.create!(path, size!, {
      options,
      backingFile: req.backingFile,
      backingFormat: (req.backingFormat as FormatName | undefined) ?? backingFormat,
      backingSize,
      targetPath: req.path,
    });
    return made ? made.extraFiles : [];
  };
  if (req.writeTo !== undefined) return create(req.writeTo);
  return writeAtomically(req.path, create, (extra) => extra);
}
