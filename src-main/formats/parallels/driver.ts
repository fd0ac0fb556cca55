/**
 * The Parallels driver's wiring: probe, describe (`info`), open, create and check. The format's pieces live
 * in layout.ts (header and BAT codecs), device.ts (reads, writes, the in-use mark), create.ts and check.ts.
 */
import { ImageFile } from '../../block/file';
import type { CheckOptions, CheckReport } from '../../block/types';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { PARALLELS_CREATE_OPTIONS } from './create-options';
import { openParallels } from './device';
import { checkBundle, describeBundle, descriptorIn, isDescriptorHead, openBundle } from './bundle';
import { HEADER_SIZE, INUSE_MAGIC, SECTOR, dataOffsetBytes, parseHeader, probeParallels, validateHeader } from './layout';

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
  if (isDescriptorHead(first, file.path)) return describeBundle(file);
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
  concurrentCalls: false,
  probe: (head: Uint8Array, path: string) => probeParallels(head) || (isDescriptorHead(head, path) ? 100 : 0),
  describe,
  // check and measure are loaded on first use: most commands need neither, and start-up time counts.
  measure: async (size, opts, data) => (await import('./measure')).measureParallels(size, opts, data),
  createOptions: PARALLELS_CREATE_OPTIONS,
  async check(path: string, repair: 'none' | 'leaks' | 'all', opts?: CheckOptions): Promise<CheckReport> {
    return (await isDescriptor(path)) ? checkBundle(path, repair, opts ?? {}) : (await import('./check')).checkParallels(path, repair, opts);
  },
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await isDescriptor(path)) ? openBundle(path, opts) : openParallels(path, opts);
  },
  folderEntry: descriptorIn,
  spansFiles: isDescriptor,
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createParallels(path, size, opts);
  },
};
