/**
 * The UML COW driver: wiring only. The header codecs are in layout.ts, the bitmap in bitmap.ts, the backing
 * file's checks in backing.ts, the device in device.ts, creation in create.ts, the check in check.ts and the
 * in-place merge in merge.ts. Only the probe and the option list are loaded with it; the rest on first use
 * (`await import`), so other formats' commands do not compile it.
 */
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import type * as Backing from './backing';
import type * as Merge from './merge';
import { COW_CREATE_OPTIONS } from './create-options';
import { probeCow } from './layout';

export type { CowOpenOptions } from './backing';

/** Accepts a changed backing file (backing.ts, loaded when called). */
export async function acceptBackingChange(...args: Parameters<typeof Backing.acceptBackingChange>): ReturnType<typeof Backing.acceptBackingChange> {
  return (await import('./backing')).acceptBackingChange(...args);
}

/** Merges the COW file into its backing file (merge.ts, loaded when called). */
export async function mergeIntoBacking(...args: Parameters<typeof Merge.mergeIntoBacking>): ReturnType<typeof Merge.mergeIntoBacking> {
  return (await import('./merge')).mergeIntoBacking(...args);
}

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const { header: h } = await (await import('./backing')).readCowHeader(file);
  return {
    format: 'cow',
    'virtual-size': h.size,
    // UML reads the backing file of a COW file as a plain disk image.
    ...(h.backingFile !== '' ? { 'backing-filename': h.backingFile, 'backing-filename-format': 'raw' } : {}),
    'dirty-flag': false,
    'format-specific': {
      type: 'cow',
      data: {
        version: h.version,
        layout: h.layout,
        'sector-size': h.sectorSize,
        alignment: h.alignment,
        'bitmap-offset': h.bitmapOffset,
        'data-offset': h.dataOffset,
        // The backing file's modification time when the COW file was made; UML refuses a backing file that changed.
        'backing-mtime': h.mtime,
      },
    },
    'data-readable': true,
  };
}

export const cowDriver: FormatDriver = {
  name: 'cow',
  label: 'UML COW',
  description: 'User-Mode Linux copy-on-write overlay of a backing file',
  extensions: ['cow'],
  preload: async () => {
    await Promise.all([import('./device')]);
  },
  // One call at a time: a write's read-modify-write of edge sectors and its bitmap update must not interleave.
  concurrentCalls: false,
  backingFiles: 'required',
  probe: (head: Uint8Array) => probeCow(head),
  describe,
  check: async (path, repair, opts) => (await import('./check')).checkCow(path, repair, opts),
  measure: async (size, opts, data) => (await import('./measure')).measureCow(size, opts, data),
  createOptions: COW_CREATE_OPTIONS,
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await import('./device')).openCow(path, opts);
  },
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createCow(path, size, opts);
  },
};
