/**
 * Growing a fixed VHD (qemu-img cannot resize a VHD at all; lint --fix for Azure needs it). A fixed VHD is its
 * data followed by the footer, so growing means a footer further on: the new footer (current size = the new
 * size) is written at its place and synced BEFORE the old footer — now inside the data area — is zeroed, so the
 * file ends with a valid footer at every step. A crash between the two leaves the new size with the old
 * footer's 512 bytes readable inside the grown area (guest data already there is never touched). When the data
 * area was longer than the disk (a file padded past its footer's size), the new footer goes at the new size and
 * the file is cut after it, in that order (a crash before the cut still ends with the old, valid footer).
 * A dynamic or differencing VHD would need a larger BAT, which may overlap its first block: refused, with the
 * way round (convert).
 */
import { DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { roundedImageSize } from './geometry';
import type { VpcLayout } from './image';
import { FOOTER_SIZE, MAX_CHS_SECTORS, MAX_SECTORS, SECTOR, serializeFooter, type Footer } from './layout';

const ZERO_CHUNK = 1 << 20;

/** The footer a fixed VHD of `size` bytes has: current size = size, and a CHS geometry that says it exactly
 * when one does (Virtual PC reads CHS), else the largest geometry, which tells qemu and Hyper-V to read the
 * current size (as qemu-img create -o force_size=on writes it). */
export function footerForSize(old: Footer, size: number): Footer {
  const chs = roundedImageSize(size, false);
  const g = chs.size === size && chs.geometry.cylinders * chs.geometry.heads * chs.geometry.sectorsPerTrack !== MAX_CHS_SECTORS
    ? chs.geometry
    : { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };
  return { ...old, currentSize: BigInt(size), cylinders: g.cylinders, heads: g.heads, sectorsPerTrack: g.sectorsPerTrack };
}

/**
 * Makes the fixed VHD in `file` a disk of `newSize` bytes (growing, or — the same size — rewriting a footer whose
 * current size or file length disagree with it). Returns the footer now in force.
 */
export async function resizeFixed(file: ImageFile, layout: VpcLayout, oldSize: number, newSize: number, noFlush: boolean): Promise<Footer> {
  const path = file.path;
  if (layout.dyn) throw new DiskError('EUNSUPPORTED', `${path}: only a fixed VHD can be resized (a dynamic or differencing VHD's block table cannot grow in place); convert it to a new size instead`, path);
  if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % SECTOR !== 0) throw new DiskError('EINVAL', `${path}: a VHD's size is a whole number of 512-byte sectors (asked for ${newSize})`, path);
  if (newSize < oldSize) throw new DiskError('EUNSUPPORTED', `${path}: shrinking a VHD is not supported (it would cut off data); convert to a smaller size with care instead`, path);
  if (newSize / SECTOR > MAX_SECTORS) throw new DiskError('EINVAL', 'Disk size is too large, max size is 2040 GiB', path);
  if (layout.footerFrom !== 'end' || !layout.endFooterOk) throw new DiskError('ECORRUPT', `${path}: the VHD's footer at the end of the file is not valid; repair it (check -r all) before resizing`, path);
  const sync = async () => {
    if (!noFlush) await file.sync();
  };
  const dataEnd = file.size - FOOTER_SIZE;
  const footer = footerForSize(layout.footer, newSize);
  const bytes = serializeFooter(footer);
  // Bytes the guest did not see before (between the old size and the old footer) must read as zeros now.
  for (let at = oldSize; at < Math.min(dataEnd, newSize); ) {
    const n = Math.min(ZERO_CHUNK, Math.min(dataEnd, newSize) - at);
    await file.write(at, new Uint8Array(n));
    at += n;
  }
  if (newSize > dataEnd) {
    await file.write(newSize, bytes); // the file grows; the gap is a hole, reading as zeros
    await sync();
    await file.write(dataEnd, new Uint8Array(FOOTER_SIZE));
  } else {
    await file.write(newSize, bytes);
    if (newSize < dataEnd) {
      await sync();
      await file.truncate(newSize + FOOTER_SIZE);
    }
  }
  await sync();
  return footer;
}
