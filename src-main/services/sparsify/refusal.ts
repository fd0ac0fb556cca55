/**
 * Whether a compaction in place will refuse, decided once, before anything is written: the dry run reports it
 * (a note, and the report's inPlaceRefusal for the app) and the in-place run throws it before it opens the image
 * for writing, so the preview and the run cannot disagree (issue 23).
 *
 * A device says why its discard refuses through `discardRefusal()` (VHD, VMDK, Parallels: their own facts, the
 * same their discard acts on). qcow2, VDI and VHDX devices do not say it yet; for them the facts are read from
 * what info reports of the image (format-specific), the conditions their discard refuses on.
 */
import type { ImageInfo } from '../../../src-shared/api';
import { nativeFileOps } from '../../block/native';
import type { BlockDevice } from '../../block/types';

/** A device that can tell, from the open image's own facts, why its discard would refuse (undefined: it would not). */
interface DiscardFacts {
  discardRefusal(): string | undefined;
}

function saysDiscardRefusal(dev: BlockDevice): dev is BlockDevice & DiscardFacts {
  return typeof (dev as Partial<DiscardFacts>).discardRefusal === 'function';
}

/** Why sparsify --in-place refuses this image, in words after "cannot compact in place (…)"; undefined when it runs. */
export function inPlaceRefusalReason(dev: BlockDevice, info: ImageInfo | undefined): string | undefined {
  if (!dev.discard) return `${dev.format} images cannot release space in place`;
  if (saysDiscardRefusal(dev)) return dev.discardRefusal();
  return refusalFromInfo(dev, info);
}

/** qcow2, VDI and VHDX: their discard's refusals, from info's facts (until their devices say it themselves). */
function refusalFromInfo(dev: BlockDevice, info: ImageInfo | undefined): string | undefined {
  const specific = info?.['format-specific']?.data as Record<string, unknown> | undefined;
  if (dev.format === 'qcow2' && specific?.compat === '0.10' && (dev.backing !== undefined || info?.['backing-filename'] !== undefined)) {
    return "a version 2 (compat=0.10) image with a backing file cannot discard: it has no zero flag, so released clusters would show the backing file's data";
  }
  if (dev.format === 'vhdx' && specific?.subformat === 'fixed') return 'a fixed VHDX image keeps every block allocated; nothing can be discarded';
  if (dev.format === 'vdi' && specific?.subformat === 'static' && typeof nativeFileOps?.punchHole !== 'function') {
    return 'a static VDI keeps every block in place, and this system cannot punch holes in the file';
  }
  return undefined;
}
