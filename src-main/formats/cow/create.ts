/**
 * Creating a COW file over a backing file, byte for byte as uml_mkcow does: the header with the backing
 * file's absolute name, its size and mtime, then a sparse file of data_offset + size bytes (the bitmap and the
 * data area all zeros, i.e. every sector still reads the backing file). Version 3 (uml_mkcow's: 512-byte
 * sectors, 4096-byte alignment) by default; version 2 (the kernel's packed layout) on request.
 */
import { COW_CREATE_OPTIONS } from './create-options';
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { SECTOR } from '../../block/bytes';
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { backingFacts } from './backing';
import { cowSizes, PATH_LEN_V3, serializeHeader, type CowLayout } from './layout';

/** uml_mkcow's alignment of the bitmap and the data in version 3 (the page size). */
export const UML_ALIGNMENT = 4096;


/**
 * The backing file's name as uml_mkcow records it: its folder made absolute with symlinks resolved (uml_mkcow
 * changes into it and asks for the working folder), then its last component as given. uml_mkcow starts from
 * the current folder; we start from the COW file's folder, where our relative backing names live.
 */
export async function absoluteBackingName(cowPath: string, backingName: string): Promise<string> {
  const joined = nodePath.isAbsolute(backingName) ? backingName : nodePath.dirname(nodePath.resolve(cowPath)) + '/' + backingName;
  const slash = joined.lastIndexOf('/');
  const dir = joined.slice(0, slash) || '/';
  let real: string;
  try {
    real = await fsp.realpath(dir);
  } catch (err) {
    throw toDiskError(err, dir);
  }
  return (real === '/' ? '' : real) + joined.slice(slash);
}

/** Writes a new COW file at `path` over `opts.backingFile` (required: a COW file without one is of no use to UML). */
export async function createCow(path: string, size: number, opts: CreateOptions): Promise<void> {
  if (opts.backingFile === undefined || opts.backingFile === '') {
    throw new DiskError('EINVAL', 'a UML COW file needs a backing file (-b)');
  }
  if (opts.backingFormat !== undefined && opts.backingFormat !== 'raw') {
    throw new DiskError('EUNSUPPORTED', `UML reads a COW file's backing file as a raw disk; ${opts.backingFile} is ${opts.backingFormat}`);
  }
  const version = String(opts.options.version ?? '3');
  if (version !== '3' && version !== '2') throw new DiskError('EINVAL', `COW version ${version} cannot be created (3 or 2 can)`);
  const layout: CowLayout = version === '3' ? 'v3' : 'v2-time32';
  const name = await absoluteBackingName(path, opts.backingFile);
  if (new TextEncoder().encode(name).length > PATH_LEN_V3 - 1) throw new DiskError('EINVAL', `the backing file name ${name} is longer than ${PATH_LEN_V3 - 1} bytes`);
  const facts = await backingFacts(path, name);
  // The disk is exactly as large as its backing file; a size that says otherwise is a mistake.
  if (size !== facts.size && size !== Math.ceil(facts.size / SECTOR) * SECTOR) {
    throw new DiskError('EINVAL', `a UML COW file is as large as its backing file (${facts.size} bytes); leave out the size`);
  }
  const alignment = layout === 'v3' ? UML_ALIGNMENT : SECTOR;
  const header = serializeHeader({ layout, littleEndian: false, backingFile: name, mtime: facts.mtime, size: facts.size, sectorSize: SECTOR, alignment, cowFormat: 0 });
  const { dataOffset } = cowSizes(layout, facts.size, SECTOR, alignment);
  const file = await ImageFile.create(path);
  try {
    await file.write(0, header);
    await file.truncate(dataOffset + facts.size);
    await file.sync();
  } finally {
    await file.close();
  }
}

export { COW_CREATE_OPTIONS };
