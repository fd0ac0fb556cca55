/**
 * The VDI (VirtualBox) driver's wiring: probe, describe (`info`), open, create, check and measure. The format's
 * pieces live in layout.ts (header and block-map codecs), image.ts (reading them, the map's damage),
 * device.ts (reads, writes, commit and rebase), parent.ts (a differencing image's parent, found by UUID),
 * create.ts, check.ts and measure.ts. Only the probe and the option list are loaded with it; the rest on first use.
 */
import * as nodePath from 'node:path';
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { VDI_CREATE_OPTIONS } from './create-options';
import { probeVdi } from './layout';

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const [{ readHeader }, layout, { findByUuid }] = await Promise.all([import('./image'), import('./layout'), import('./parent')]);
  const { header: h } = await readHeader(file);
  const differencing = layout.isDifferencing(h);
  const parent = differencing ? await findByUuid(file.path, h.uuidLink) : undefined;
  const geometry = (g: { cylinders: number; heads: number; sectors: number }) => ({ cylinders: g.cylinders, heads: g.heads, sectors: g.sectors });
  return {
    format: 'vdi',
    'virtual-size': layout.guestSize(h),
    'cluster-size': h.blockSize,
    // The parent is named by UUID; info shows the file found beside the image with that UUID.
    ...(parent !== undefined ? { 'backing-filename': nodePath.basename(parent), 'backing-filename-format': 'vdi' as const } : {}),
    'dirty-flag': false,
    'format-specific': {
      type: 'vdi',
      data: {
        subformat: differencing ? 'differencing' : layout.typeName(h.imageType),
        text: h.text.replace(/\n$/, ''),
        ...(h.description ? { description: h.description } : {}),
        'header-size': h.headerSize,
        'block-map-offset': h.offsetBmap,
        'data-offset': h.offsetData,
        'blocks-in-image': h.blocksInImage,
        'blocks-allocated': h.blocksAllocated,
        ...(h.blockExtra ? { 'block-extra': h.blockExtra } : {}),
        'image-uuid': h.uuidImage,
        'last-modification-uuid': h.uuidLastSnap,
        ...(differencing ? { 'parent-uuid': h.uuidLink, 'parent-modification-uuid': h.uuidParent } : {}),
        ...(h.legacy.cylinders ? { 'legacy-geometry': geometry(h.legacy) } : {}),
        ...(h.lchs && h.lchs.cylinders ? { 'lchs-geometry': geometry(h.lchs) } : {}),
        ...(differencing && parent === undefined ? { 'parent-missing': true } : {}),
      },
    },
    'data-readable': true,
  };
}

export const vdiDriver: FormatDriver = {
  name: 'vdi',
  label: 'VDI',
  description: 'VirtualBox disk image: dynamic, static or differencing',
  extensions: ['vdi'],
  preload: async () => {
    await Promise.all([import('./device'), import('./image'), import('./layout'), import('./parent')]);
  },
  // Reads overlap freely; the device queues its mutations in call order (device.ts).
  concurrentCalls: true,
  probe: (head: Uint8Array) => probeVdi(head),
  describe,
  measure: async (size, opts, data) => (await import('./measure')).measureVdi(size, opts, data),
  createOptions: VDI_CREATE_OPTIONS,
  check: async (path, repair, opts) => (await import('./check')).checkVdi(path, repair, opts),
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await import('./device')).openVdi(path, opts);
  },
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createVdi(path, size, opts);
  },
};
