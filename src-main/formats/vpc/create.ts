/**
 * Creating VHD images as `qemu-img create -f vpc` makes them: the size rounded up to a CHS geometry (or kept,
 * with force_size, and the creator 'qem2' that tells readers to use current_size), a fixed image as the disk
 * followed by the footer, a dynamic image as the footer copy, the dynamic header at 512, the BAT at 1536 and the
 * footer after it, with 2 MiB blocks. A differencing image (our addition: qemu cannot make one) puts its parent
 * locators (W2ku, W2ru) between the header and the BAT, so that a writer allocating after the BAT, as qemu does,
 * never overwrites them.
 */
import { randomUuidQuick } from '../../block/random';
import * as nodePath from 'node:path';
import { DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CreateOptions } from '../../block/types';
import { roundedImageSize, type Geometry } from './geometry';
import {
  DEFAULT_BLOCK_SIZE,
  DISK_DIFFERENCING,
  DISK_DYNAMIC,
  DISK_FIXED,
  encodeLocatorData,
  FOOTER_SIZE,
  HEADER_SIZE,
  LOCATOR_W2KU,
  LOCATOR_W2RU,
  SECTOR,
  serializeDynamicHeader,
  serializeFooter,
  usesCurrentSize,
  vhdTime,
  ZERO_UUID,
  type Footer,
  type ParentLocator,
} from './layout';
import { parentFacts, type ParentFacts } from './parent';
import { readVpcLayout } from './image';
import { vpcSettings } from './settings';

const roundUp = (n: number) => Math.ceil(n / SECTOR) * SECTOR;
const ALL_ONES = 0xffffffffffffffffn;

/** The geometry and footer sizes of a new image: qemu's rounding, or a parent's own figures for a child of the same size. */
async function sizing(requested: number, force: boolean, parentPath: string | undefined): Promise<{ size: number; geometry: Geometry; force: boolean }> {
  if (parentPath !== undefined) {
    const file = await ImageFile.open(parentPath, false);
    try {
      const l = await readVpcLayout(file);
      const f = l.footer;
      if (Math.ceil(requested / SECTOR) * SECTOR === l.virtualSize) {
        // The child sees exactly the parent's disk: same geometry, and current_size where the parent means it.
        return { size: l.virtualSize, geometry: { cylinders: f.cylinders, heads: f.heads, sectorsPerTrack: f.sectorsPerTrack }, force: usesCurrentSize(f) };
      }
    } finally {
      await file.close();
    }
  }
  return { ...roundedImageSize(requested, force), force };
}

export async function createVpc(path: string, requested: number, opts: CreateOptions): Promise<void> {
  const { subformat, forceSize, backingFile } = vpcSettings(opts);
  const dir = nodePath.dirname(nodePath.resolve(opts.targetPath ?? path));
  const parentPath = backingFile !== undefined ? nodePath.resolve(dir, backingFile) : undefined;
  const parent = parentPath !== undefined ? await parentFacts(dir, parentPath) : undefined;
  const { size, geometry, force } = await sizing(requested, forceSize, parentPath);
  const type = parent ? DISK_DIFFERENCING : subformat === 'fixed' ? DISK_FIXED : DISK_DYNAMIC;
  const footer: Footer = {
    features: 2,
    version: 0x00010000,
    dataOffset: type === DISK_FIXED ? ALL_ONES : BigInt(SECTOR),
    timestamp: vhdTime(Date.now() / 1000),
    creatorApp: force ? 'qem2' : 'qemu',
    creatorVersion: 0x00050003, // Virtual PC 2007, as qemu writes
    creatorOs: 'Wi2k',
    originalSize: BigInt(size),
    currentSize: BigInt(size),
    cylinders: geometry.cylinders,
    heads: geometry.heads,
    sectorsPerTrack: geometry.sectorsPerTrack,
    diskType: type,
    checksum: 0,
    uuid: randomUuidQuick(),
    savedState: 0,
  };
  const fb = serializeFooter(footer);
  const file = await ImageFile.create(path);
  try {
    if (type === DISK_FIXED) {
      await file.truncate(size);
      await file.write(size, fb);
    } else {
      await writeDynamic(file, fb, size, parent);
    }
    await file.sync();
  } finally {
    await file.close();
  }
}

async function writeDynamic(file: ImageFile, fb: Uint8Array, size: number, parent: ParentFacts | undefined): Promise<void> {
  const blockSize = DEFAULT_BLOCK_SIZE;
  const entries = Math.ceil(size / SECTOR / (blockSize / SECTOR));
  const locators: ParentLocator[] = [];
  let at = SECTOR + HEADER_SIZE;
  if (parent) {
    for (const [code, text] of [
      [LOCATOR_W2KU, parent.absolute],
      [LOCATOR_W2RU, parent.relative],
    ] as const) {
      const data = encodeLocatorData(code, text);
      const space = Math.max(SECTOR, roundUp(data.length));
      await file.write(at, data);
      locators.push({ platformCode: code, dataSpace: space, dataLength: data.length, dataOffset: at });
      at += space;
    }
  }
  while (locators.length < 8) locators.push({ platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 });
  const batOffset = at;
  const batBytes = roundUp(entries * 4);
  const header = serializeDynamicHeader({
    dataOffset: ALL_ONES,
    tableOffset: BigInt(batOffset),
    version: 0x00010000,
    maxTableEntries: entries,
    blockSize,
    checksum: 0,
    parentUuid: parent?.uuid ?? ZERO_UUID,
    parentTimestamp: parent?.timestamp ?? 0,
    parentName: parent?.name ?? '',
    locators,
  });
  await file.write(0, fb);
  await file.write(SECTOR, header);
  const chunk = new Uint8Array(Math.min(batBytes, 1 << 20)).fill(0xff);
  for (let done = 0; done < batBytes; done += chunk.length) await file.write(batOffset + done, chunk.subarray(0, Math.min(chunk.length, batBytes - done)));
  await file.write(batOffset + batBytes, fb);
  if (file.size !== batOffset + batBytes + FOOTER_SIZE) throw new DiskError('EIO', `${file.path}: the new VHD has an unexpected length`, file.path);
}
