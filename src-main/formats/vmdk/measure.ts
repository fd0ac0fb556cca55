/**
 * measure for VMDK targets (qemu-img has none for VMDK), per subformat, summed over all the files the image is made
 * of. A hosted sparse extent is its overhead (header, descriptor, both grain directories and all grain tables,
 * rounded up to a grain: sparseGeometry, as qemu's vmdk_init_extent lays it out) plus one 64 KiB grain for each
 * grain the source holds data in. A flat extent is as large as its part of the disk. A streamOptimized file holds
 * deflated grains, so its figures are upper bounds: every grain at deflate's worst case, behind its marker.
 * Descriptor files are counted as one file-system block each (they are a few hundred bytes of text).
 */
import { touchedUnits } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { GRAIN_MARKER_BYTES, SECTOR, sparseGeometry } from './layout';
import { GRAIN_SECTORS, settingsFrom, SPLIT_BYTES } from './settings';

const GRAIN = GRAIN_SECTORS * SECTOR;
/** A descriptor file (a few hundred bytes plus one line per extent) takes this much room on disk for each 4 KiB of text. */
const FS_BLOCK = 4096;
/** Longest extent file name we allow for in a descriptor line (a file name's limit on Linux). */
const NAME_ALLOWANCE = 255;
/** Where stream.ts puts the first grain (STREAM_OVERHEAD: 128 sectors). */
const STREAM_HEAD = 128 * SECTOR;
const GTES_PER_GT = 512;

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** zlib's deflateBound for one grain (zlib wrapper included): deflate never grows data by more than this. */
function deflateBound(n: number): number {
  return n + (n >> 12) + (n >> 14) + (n >> 25) + 13 + 6;
}
/** The room one compressed grain takes in a stream at worst: marker, deflated data, padding to a sector. */
const STREAM_GRAIN = roundUp(GRAIN_MARKER_BYTES + deflateBound(GRAIN), SECTOR);

function descriptorFile(extents: number): number {
  return roundUp(1024 + extents * (40 + NAME_ALLOWANCE), FS_BLOCK);
}

export async function measureVmdk(requested: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  // The options as create decodes and checks them (settings.ts): measure refuses what create would refuse.
  const { subformat, backingFile } = settingsFrom(opts);
  const backing = backingFile !== undefined;
  const sectors = Math.ceil(requested / SECTOR);
  const size = sectors * SECTOR;
  // What data the new image would store: none for --size, every grain over a backing file (nothing is known about
  // what the target shares with it, as qemu assumes for qcow2), else the grains the source holds data in.
  const grainsIn = (lo: number, hi: number): number => {
    if (data === undefined) return 0;
    if (backing) return Math.ceil((hi - lo) / GRAIN);
    return touchedUnits(data, GRAIN, lo, hi);
  };
  const allGrains = (lo: number, hi: number) => Math.ceil((hi - lo) / GRAIN);

  switch (subformat) {
    case 'monolithicSparse': {
      const overhead = sparseGeometry(sectors, GRAIN_SECTORS).overhead * SECTOR;
      return { required: overhead + grainsIn(0, size) * GRAIN, fullyAllocated: overhead + allGrains(0, size) * GRAIN };
    }
    case 'streamOptimized': {
      // Two writers: qemu keeps the sparse layout's directories and tables up front; ours writes each grain table
      // after its grains and the directory, footer and end marker at the end. The larger of the two is counted.
      const g = sparseGeometry(sectors, GRAIN_SECTORS);
      const tableBytes = (1 + g.gtSectors) * SECTOR;
      const tail = (1 + Math.max(1, g.gdSectors)) * SECTOR + 3 * SECTOR;
      const figure = (grains: number, tables: number) =>
        Math.max(g.overhead * SECTOR + grains * STREAM_GRAIN + SECTOR, STREAM_HEAD + grains * STREAM_GRAIN + tables * tableBytes + tail);
      const used = grainsIn(0, size);
      const usedTables = data === undefined ? 0 : backing ? g.gtCount : touchedUnits(data, GRAIN * GTES_PER_GT);
      return { required: figure(used, usedTables), fullyAllocated: figure(allGrains(0, size), g.gtCount) };
    }
    case 'monolithicFlat': {
      const total = descriptorFile(1) + roundUp(size, FS_BLOCK);
      return { required: total, fullyAllocated: total };
    }
    case 'twoGbMaxExtentFlat':
    case 'twoGbMaxExtentSparse': {
      const count = Math.max(1, Math.ceil(size / SPLIT_BYTES));
      let required = descriptorFile(count);
      let fullyAllocated = required;
      for (let i = 0; i < count; i++) {
        const lo = i * SPLIT_BYTES;
        const hi = Math.min(size, lo + SPLIT_BYTES);
        if (subformat === 'twoGbMaxExtentFlat') {
          required += roundUp(hi - lo, FS_BLOCK);
          fullyAllocated += roundUp(hi - lo, FS_BLOCK);
        } else {
          const overhead = sparseGeometry((hi - lo) / SECTOR, GRAIN_SECTORS).overhead * SECTOR;
          required += overhead + grainsIn(lo, hi) * GRAIN;
          fullyAllocated += overhead + allGrains(lo, hi) * GRAIN;
        }
      }
      return { required, fullyAllocated };
    }
    default:
      throw new DiskError('EINVAL', `Unknown subformat: ${subformat}`);
  }
}
