/**
 * Creating VDI images as qemu-img create -f vdi does: the size rounded up to a sector, the header (qemu's
 * pre-header text, version 1.1 with a 0x180-byte header, fresh image and modification UUIDs), the block map
 * right after it (all unallocated, or for a static image every guest block at its own data block), and for a
 * static image a file cut to its full length (sparse). The bytes are qemu-img's but for the UUIDs.
 */
import { randomUuidQuick } from '../../block/random';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { VDI_CREATE_OPTIONS } from './create-options';
import { bmapAsStored, createHeader, HEADER_SIZE, serializeHeader, UNALLOCATED } from './layout';
import { vdiSettings } from './settings';

const MAP_CHUNK_ENTRIES = 1 << 18;

export async function createVdi(path: string, size: number, opts: CreateOptions): Promise<void> {
  const p = vdiSettings(size, opts);
  const h = createHeader(p.size, p.isStatic, randomUuidQuick(), randomUuidQuick());
  const file = await ImageFile.create(path);
  try {
    await file.write(0, serializeHeader(h));
    // The map in pieces, so a huge disk does not need its whole map in memory at once; padded to a sector.
    const chunk = new Uint32Array(Math.min(MAP_CHUNK_ENTRIES, h.blocksInImage));
    if (!p.isStatic) chunk.fill(UNALLOCATED);
    for (let from = 0; from < h.blocksInImage; from += MAP_CHUNK_ENTRIES) {
      const to = Math.min(h.blocksInImage, from + MAP_CHUNK_ENTRIES);
      const entries = chunk.subarray(0, to - from);
      if (p.isStatic) for (let i = from; i < to; i++) entries[i - from] = i;
      await file.write(HEADER_SIZE + from * 4, bmapAsStored(entries));
    }
    if (h.offsetData > file.size) await file.truncate(h.offsetData);
    if (p.isStatic) await file.truncate(h.offsetData + h.blocksInImage * h.blockSize);
    await file.sync();
  } finally {
    await file.close();
  }
}

export { VDI_CREATE_OPTIONS };
