/**
 * The Parallels driver's wiring: probe, describe (`info`), open, create and check. The format's pieces live
 * in layout.ts (header and BAT codecs), device.ts (reads, writes, the in-use mark), create.ts and check.ts.
 * Only the probe and the option list are loaded with it; the rest on first use, so other formats' commands do
 * not compile it.
 */
import * as nodePath from 'node:path';
import { ImageFile } from '../../block/file';
import type { CheckOptions, CheckReport } from '../../block/types';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import type * as Bundle from './bundle';
import { PARALLELS_CREATE_OPTIONS } from './create-options';
import { HEADER_SIZE, INUSE_MAGIC, SECTOR, dataOffsetBytes, parseHeader, probeParallels, validateHeader } from './layout';

let bundleModule: typeof Bundle | undefined;
/** bundle.ts, loaded on first use; synchronously, since the probe that may need it is synchronous. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bundle = (): typeof Bundle => (bundleModule ??= require('./bundle') as typeof Bundle);

/**
 * bundle.ts's isDescriptorHead, which accepts only a file named DiskDescriptor.xml: asking the name first keeps
 * bundle.ts (and the device and check it brings) from being loaded to probe every other file.
 */
function isDescriptorHead(head: Uint8Array, path: string): boolean {
  return nodePath.basename(path).toLowerCase() === 'diskdescriptor.xml' && bundle().isDescriptorHead(head, path);
}

/** True when the file at `path` is a bundle's DiskDescriptor.xml (its name and an XML head naming Parallels_disk_image). */
async function isDescriptor(path: string): Promise<boolean> {
  const file = await ImageFile.open(path, false);
  try {
    const head = new Uint8Array(Math.min(2048, file.size));
    await file.readExact(0, head, 'header');
    return isDescriptorHead(head, path);
  } finally {
    await file.close();
  }
}

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const first = new Uint8Array(Math.min(2048, file.size));
  await file.readExact(0, first, 'header');
  if (isDescriptorHead(first, file.path)) return bundle().describeBundle(file);
  const head = await file.readBlock(0, Math.min(HEADER_SIZE, file.size), 'parallels header');
  const h = parseHeader(head, file.path);
  validateHeader(h, file.path, file.size);
  return {
    format: 'parallels',
    'virtual-size': h.nbSectors * SECTOR,
    'cluster-size': h.tracks * SECTOR,
    // in_use set means the image was open read-write and not closed: qemu refuses to write it until checked.
    'dirty-flag': h.inUse === INUSE_MAGIC,
    'format-specific': {
      type: 'parallels',
      data: {
        subformat: h.extended ? 'WithouFreSpacExt' : 'WithoutFreeSpace',
        'bat-entries': h.batEntries,
        'data-offset': dataOffsetBytes(h),
        heads: h.heads,
        cylinders: h.cylinders,
        ...(h.extOff ? { 'format-extension-offset': h.extOff * SECTOR } : {}),
        empty: (h.flags & 1) !== 0,
      },
    },
    'data-readable': true,
  };
}

export const parallelsDriver: FormatDriver = {
  name: 'parallels',
  label: 'Parallels',
  description: 'Parallels Desktop expanding disk (.hdd/.hds)',
  extensions: ['hds', 'hdd'],
  preload: async () => {
    await Promise.all([import('./device')]);
  },
  concurrentCalls: false,
  probe: (head: Uint8Array, path: string) => probeParallels(head) || (isDescriptorHead(head, path) ? 100 : 0),
  describe,
  measure: async (size, opts, data) => (await import('./measure')).measureParallels(size, opts, data),
  createOptions: PARALLELS_CREATE_OPTIONS,
  async check(path: string, repair: 'none' | 'leaks' | 'all', opts?: CheckOptions): Promise<CheckReport> {
    return (await isDescriptor(path)) ? bundle().checkBundle(path, repair, opts ?? {}) : (await import('./check')).checkParallels(path, repair, opts);
  },
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await isDescriptor(path)) ? bundle().openBundle(path, opts) : (await import('./device')).openParallels(path, opts);
  },
  folderEntry: (dir: string) => bundle().descriptorIn(dir),
  spansFiles: isDescriptor,
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createParallels(path, size, opts);
  },
};
