import type { ImageFile } from '../../block/file';
import { headerOnlyDriver } from '../../block/header-only';
import type { HeaderInfo } from '../../block/types';
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
    'data-readable': false,
  };
}

export const parallelsDriver = headerOnlyDriver('parallels', { label: 'Parallels', description: 'Parallels Desktop expanding disk (.hdd/.hds)', extensions: ['hds', 'hdd'] }, (head) => probeParallels(head), describe);
