/** VDI images for the interop suites: made by qemu-img and qemu-io, or laid out by hand as VirtualBox lays them out. */
import { closeSync, openSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { must } from '../helpers';
import { openImage } from '../../src-main/registry';
import { createHeader, HEADER_SIZE_1_1_PLUS, KNOWN_TEXTS, serializeBmap, serializeHeader, TYPE_DIFFERENCING, UNALLOCATED, type VdiHeader } from '../../src-main/formats/vdi/layout';

export const MiB = 1 << 20;

export const qimg = (args: string[]) => must('qemu-img', args);
export const io = (path: string, cmds: string[], format = 'vdi') => must('qemu-io', ['-f', format, ...cmds.flatMap((c) => ['-c', c]), path]);

/** One write: offset, length, pattern byte. */
export type W = [number, number, number];

/** The writes as qemu-io commands. */
export const ioCmds = (writes: W[]) => writes.map(([off, len, pat]) => `write -P ${pat} ${off} ${len}`);

/** Applies the writes through our driver (opened for writing, in this process). */
export async function ourWrites(path: string, writes: W[]): Promise<void> {
  const dev = await openImage(path, { readOnly: false });
  try {
    for (const [off, len, pat] of writes) await dev.write(off, new Uint8Array(len).fill(pat));
  } finally {
    await dev.close();
  }
}

/** Reads the whole guest through our driver. */
export async function ourRead(path: string, opts: { acceptChangedBacking?: boolean } = {}): Promise<Buffer> {
  const dev = await openImage(path, { readOnly: true, ...opts });
  try {
    const out = Buffer.alloc(dev.size);
    await dev.read(0, out);
    return out;
  } finally {
    await dev.close();
  }
}

/**
 * A VDI laid out as VirtualBox lays it out (its pre-header text, the 400-byte 1.1 header with LCHS geometry, the
 * block map at 1 MiB and the data at 2 MiB), with `blocks` (guest block → pattern byte) stored in the order
 * given, so host order differs from guest order. `patch` adjusts the header (a differencing image's UUIDs).
 */
export function vboxImage(path: string, size: number, blocks: Array<[number, number]>, patch: Partial<VdiHeader> = {}, discarded: number[] = []): VdiHeader {
  const base = createHeader(size, false, randomUUID(), randomUUID());
  const h: VdiHeader = {
    ...base,
    text: KNOWN_TEXTS[0],
    headerSize: HEADER_SIZE_1_1_PLUS,
    offsetBmap: MiB,
    offsetData: 2 * MiB,
    lchs: { cylinders: 20, heads: 16, sectors: 63, sectorSize: 512 },
    blocksAllocated: blocks.length,
    ...patch,
  };
  const bmap = new Uint32Array(h.blocksInImage).fill(UNALLOCATED);
  for (const g of discarded) bmap[g] = 0xfffffffe;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, serializeHeader(h), 0, 512, 0);
    blocks.forEach(([g, pat], i) => {
      bmap[g] = i;
      writeSync(fd, Buffer.alloc(MiB, pat), 0, MiB, h.offsetData + i * MiB);
    });
    writeSync(fd, serializeBmap(bmap), 0, bmap.length * 4, h.offsetBmap);
    // VirtualBox ends the file at the last block (or the data area when none).
    if (blocks.length === 0) writeSync(fd, Buffer.alloc(1), 0, 1, h.offsetData - 1);
  } finally {
    closeSync(fd);
  }
  return h;
}

export { TYPE_DIFFERENCING };
