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
  const l = await readVhdxLayout(new VhdxFile(file), false);
  const backing = l.parentLocator ? parentDisplayName(file.path, l.parentLocator) : undefined;
  const pending = l.replayed.length > 0;
  return {
    format: 'vhdx',
    'virtual-size': l.virtualSize,
    'cluster-size': l.blockSize,
    ...(backing !== undefined ? { 'backing-filename': backing, 'backing-filename-format': 'vhdx' } : {}),
    // A non-zero log GUID means the image was not closed cleanly: its log may hold updates not yet in place.
    'dirty-flag': l.header.logGuid !== ZERO_GUID,
    'format-specific': {
      type: 'vhdx',
      data: {
        subformat: l.hasParent ? 'differencing' : l.leaveBlocksAllocated ? 'fixed' : 'dynamic',
        'block-size': l.blockSize,
        'logical-sector-size': l.logicalSectorSize,
        'physical-sector-size': l.physicalSectorSize,
        'log-size': l.header.logLength,
        'log-guid': l.header.logGuid,
        'log-needs-replay': pending,
        ...(pending ? { 'log-entries-pending': l.replayed.length } : {}),
        'data-write-guid': l.header.dataWriteGuid,
        ...(l.diskId !== undefined ? { 'disk-id': l.diskId } : {}),
        ...(l.creator ? { creator: l.creator } : {}),
        ...(l.parentLocator ? { 'parent-locator': l.parentLocator.entries } : {}),
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
