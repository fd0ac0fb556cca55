/**
 * Opening a VHD: its structures (image.ts), and for a differencing image its parent, found by its locators
 * through the backing-path policy and opened through OpenOptions.openBacking. The parent must be the disk the
 * child was made over: its footer's unique id must be the one the child's header names, else the pair is
 * refused with EBACKINGCHANGED (as for VMDK's parentCID and UML COW's mtime) unless acceptChangedBacking.
 */
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, OpenOptions } from '../../block/types';
import { VpcDevice } from './device';
import { readVpcLayout } from './image';
import { DISK_DIFFERENCING } from './layout';
import { parentCandidates, readLocatorTexts, resolveParent } from './parent';

export async function openVpc(path: string, opts: OpenOptions): Promise<VpcDevice> {
  const file = await ImageFile.open(path, !opts.readOnly);
  return openVpcFile(file, opts);
}

/** Opens an image on an already open file. */
export async function openVpcFile(file: ImageFile, opts: OpenOptions): Promise<VpcDevice> {
  const path = file.path;
  let parent: BlockDevice | undefined;
  try {
    const l = await readVpcLayout(file);
    if (l.diskType === DISK_DIFFERENCING && opts.backingPolicy !== 'none') {
      const dyn = l.dyn!;
      const candidates = parentCandidates(await readLocatorTexts(file, dyn), dyn.header.parentName);
      const parentPath = opts.backingOverride ?? resolveParent(path, candidates, opts.backingPolicy);
      parent = await opts.openBacking(parentPath, 'vpc', true);
      const theirs = parent instanceof VpcDevice ? parent.uuid : undefined;
      if (theirs !== undefined && theirs !== dyn.header.parentUuid && !opts.acceptChangedBacking) {
        throw new DiskError(
          'EBACKINGCHANGED',
          `${path}: its parent ${parentPath} is not the disk this image was made over (the image names parent id ${dyn.header.parentUuid}, the parent's id is ${theirs}); accept the change only if the parent still holds what the image was made over`,
          path,
        );
      }
    }
    return new VpcDevice(file, l, opts.readOnly, parent, parent?.path);
  } catch (err) {
    await parent?.close().catch(() => undefined);
    await file.close();
    throw toDiskError(err, path);
  }
}
