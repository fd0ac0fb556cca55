import type { ImageFile } from '../../block/file';
import { headerOnlyDriver } from '../../block/header-only';
import type { HeaderInfo } from '../../block/types';
import { MAX_HEADER_SIZE, parseHeader, probeCow } from './layout';

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const head = await file.readBlock(0, Math.min(MAX_HEADER_SIZE, file.size), 'COW header');
  const h = parseHeader(head, file.path, file.size);
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
    'data-readable': false,
  };
}

export const cowDriver = headerOnlyDriver('cow', { label: 'UML COW', description: 'User-Mode Linux copy-on-write overlay of a backing file', extensions: ['cow'] }, (head) => probeCow(head), describe);
