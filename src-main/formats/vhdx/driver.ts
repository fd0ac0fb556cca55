/**
 * The VHDX FormatDriver: wiring of probe, describe (info), open, create and check. Only the probe and the option
 * list are loaded with it; the rest on first use (`await import`), so other formats' commands do not compile it.
 */
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { VHDX_CREATE_OPTIONS } from './create-options';
import { probeVhdx, ZERO_GUID } from './layout';

async function describe(file: ImageFile): Promise<HeaderInfo> {
  // A pending log is replayed in memory, so info shows the image as Hyper-V would see it; the file is not changed.
  const [{ readVhdxLayout, VhdxFile }, { parentDisplayName }] = await Promise.all([import('./image'), import('./parent')]);
  const layout = await readVhdxLayout(new VhdxFile(file), false);
  const backing = layout.parentLocator ? parentDisplayName(file.path, layout.parentLocator) : undefined;
  const pending = layout.replayed.length > 0;
  return {
    format: 'vhdx',
    'virtual-size': layout.virtualSize,
    'cluster-size': layout.blockSize,
    ...(backing !== undefined ? { 'backing-filename': backing, 'backing-filename-format': 'vhdx' } : {}),
    // A non-zero log GUID means the image was not closed cleanly: its log may hold updates not yet in place.
    'dirty-flag': layout.header.logGuid !== ZERO_GUID,
    'format-specific': {
      type: 'vhdx',
      data: {
        subformat: layout.hasParent ? 'differencing' : layout.leaveBlocksAllocated ? 'fixed' : 'dynamic',
        'block-size': layout.blockSize,
        'logical-sector-size': layout.logicalSectorSize,
        'physical-sector-size': layout.physicalSectorSize,
        'log-size': layout.header.logLength,
        'log-guid': layout.header.logGuid,
        'log-needs-replay': pending,
        ...(pending ? { 'log-entries-pending': layout.replayed.length } : {}),
        'data-write-guid': layout.header.dataWriteGuid,
        ...(layout.diskId !== undefined ? { 'disk-id': layout.diskId } : {}),
        ...(layout.creator ? { creator: layout.creator } : {}),
        ...(layout.parentLocator ? { 'parent-locator': layout.parentLocator.entries } : {}),
      },
    },
    'data-readable': true,
  };
}

export const vhdxDriver: FormatDriver = {
  name: 'vhdx',
  label: 'VHDX',
  description: 'Hyper-V virtual hard disk: fixed, dynamic or differencing',
  extensions: ['vhdx'],
  preload: async () => {
    await Promise.all([import('./device'), import('./image'), import('./parent')]);
  },
  concurrentCalls: false,
  backingFiles: 'optional',
  probe: (head: Uint8Array) => probeVhdx(head),
  describe,
  measure: async (size, opts, data) => (await import('./measure')).measureVhdx(size, opts, data),
  createOptions: VHDX_CREATE_OPTIONS,
  check: async (path, repair, opts) => (await import('./check')).checkVhdx(path, repair, opts),
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await import('./device')).openVhdx(path, opts);
  },
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createVhdx(path, size, opts);
  },
};
