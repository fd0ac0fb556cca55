/**
 * The Parallels driver's wiring: probe, describe (`info`), open, create and check. The format's pieces live
 * in layout.ts (header and BAT codecs), device.ts (reads, writes, the in-use mark), create.ts and check.ts.
 */
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { checkParallels } from './check';
import { createParallels, PARALLELS_CREATE_OPTIONS } from './create';
import { openParallels } from './device';
import { HEADER_SIZE, INUSE_MAGIC, SECTOR, dataOffsetBytes, parseHeader, probeParallels, validateHeader } from './layout';

async function describe(file: ImageFile): Promise<HeaderInfo> {
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
  probe: (head: Uint8Array) => probeParallels(head),
  describe,
  createOptions: PARALLELS_CREATE_OPTIONS,
  check: checkParallels,
  open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return openParallels(path, opts);
  },
  create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return createParallels(path, size, opts);
  },
};
