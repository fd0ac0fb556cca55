/**
 * Whether a compaction in place will refuse, decided once, before anything is written: the dry run reports it
 * (a note, and the report's inPlaceRefusal for the app) and the in-place run throws it before it opens the image
 * for writing, so the preview and the run cannot disagree (issue 23).
 *
 * Each device that can discard says why its discard would refuse through `discardRefusal()`, from the open
 * image's own facts, in the words its discard throws (qcow2, VHDX, VDI, VHD, VMDK, Parallels); a read-only device
 * answers it, so nothing is opened for writing, and nothing inspected, to know it.
 */
import type { BlockDevice } from '../../block/types';

/** Why sparsify --in-place refuses this image, in words after "cannot compact in place (…)"; undefined when it runs. */
export function inPlaceRefusalReason(dev: BlockDevice): string | undefined {
  if (!dev.discard) return `${dev.format} images cannot release space in place`;
  return dev.discardRefusal?.();
}
