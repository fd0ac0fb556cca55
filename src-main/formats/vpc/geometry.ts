/**
 * CHS geometry and the size of a new image, as qemu-img computes them (block/vpc.c calculate_geometry and
 * calculate_rounded_image_size): Virtual PC sees cylinders x heads x sectors, so a requested size is rounded UP
 * to the next size a geometry gives exactly; with force_size (or past what a geometry can give) the size is kept
 * and the geometry set to the largest one, which tells readers to use the footer's current_size instead.
 */
import { DiskError } from '../../block/errors';
import { MAX_CHS_SECTORS, MAX_SECTORS, SECTOR } from './layout';

export interface Geometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

/** The spec's geometry for `totalSectors` (it may round down), with qemu's cap at 65535 x 16 x 255. */
export function calculateGeometry(totalSectors: number): Geometry {
  const total = Math.min(totalSectors, MAX_CHS_SECTORS);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.ceil(cth / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

const product = (g: Geometry) => g.cylinders * g.heads * g.sectorsPerTrack;

/**
 * The size and geometry qemu-img create gives a new image for `requested` bytes: whole sectors, then (without
 * force_size) the smallest geometry holding them. Sizes past 2040 GiB are refused as qemu refuses them.
 */
export function roundedImageSize(requested: number, forceSize: boolean): { size: number; geometry: Geometry } {
  const sectors = Math.ceil(requested / SECTOR);
  let g: Geometry = { cylinders: 0, heads: 0, sectorsPerTrack: 0 };
  if (forceSize) {
    g = { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };
  } else {
    const want = Math.min(MAX_CHS_SECTORS, sectors);
    for (let i = 0; want > product(g); i++) g = calculateGeometry(want + i);
  }
  let total: number;
  if (product(g) === MAX_CHS_SECTORS) {
    total = sectors;
    if (total > MAX_SECTORS) throw new DiskError('EINVAL', 'Disk size is too large, max size is 2040 GiB');
  } else {
    total = product(g);
  }
  return { size: total * SECTOR, geometry: g };
}
