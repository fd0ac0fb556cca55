/**
 * Creating Parallels images as qemu-img create -f parallels does: the extended header, a zeroed BAT, and a
 * file that ends at the data area (the first cluster boundary after the BAT). The bytes are qemu-img's.
 */
import { PARALLELS_CREATE_OPTIONS } from './create-options';
import * as nodePath from 'node:path';
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { createBundle } from './bundle';
import { createHeader, DEFAULT_CLUSTER_SIZE, SECTOR, serializeHeader, type ParallelsHeader } from './layout';

const ZERO_CHUNK = 1 << 20;


/**
 * Creates a Parallels image at `path`; a target whose name ends in .hdd becomes a bundle folder
 * (DiskDescriptor.xml and one expanding image). The target's name is `path`, or `targetPath` when the
 * caller writes a temporary path beside the target (services/create.ts).
 */
export async function createParallels(path: string, size: number, opts: CreateOptions): Promise<void> {
  if (opts.backingFile) throw new DiskError('EUNSUPPORTED', 'parallels images made by create have no backing file');
  const target = opts.targetPath ?? path;
  if (target.toLowerCase().endsWith('.hdd')) return createBundle(path, nodePath.basename(target), (image) => createImage(image, size, opts));
  await createImage(path, size, opts);
}

async function createImage(path: string, size: number, opts: CreateOptions): Promise<ParallelsHeader> {
  const clusterSize = Number(opts.options.cluster_size ?? DEFAULT_CLUSTER_SIZE);
  const prealloc = String(opts.options.preallocation ?? 'off');
  const h = createHeader(size, clusterSize);
  const dataOff = h.dataOff * SECTOR;
  const file = await ImageFile.create(path);
  try {
    const first = new Uint8Array(SECTOR);
    first.set(serializeHeader(h));
    await file.write(0, first);
    if (prealloc !== 'off') {
      const zero = new Uint8Array(Math.min(ZERO_CHUNK, dataOff));
      for (let pos = SECTOR; pos < dataOff; pos += zero.length) await file.write(pos, zero.subarray(0, Math.min(zero.length, dataOff - pos)));
    }
    await file.truncate(dataOff);
    await file.sync();
  } finally {
    await file.close();
  }
  return h;
}

export { PARALLELS_CREATE_OPTIONS };
