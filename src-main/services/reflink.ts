/**
 * Whether a convert should offload its copy by default (without -C): only where the target's file system shares
 * blocks between files (a reflink: btrfs, XFS made with reflink=1) and the source lies on that same file system.
 * There copy_file_range makes the new image share the source's blocks: the data is neither read nor written,
 * and takes no new space.
 *
 * Elsewhere the plain copy stays the default. copy_file_range copies a data range whole, zeros inside it
 * included, where the plain copy (like qemu-img convert's) leaves all-zero blocks out: on ext4 or tmpfs that
 * would allocate space the plain copy does not, and the target's map would differ from qemu-img's. Measured on
 * ext4 it costs less CPU than reading and writing (docs/performance.md), but it is not the same result, so it
 * is left to -C there, as qemu-img leaves it.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { tempPathFor } from './atomic';

/** statfs f_type of the file systems that can share blocks between files. */
const BTRFS_SUPER_MAGIC = 0x9123683e;
const XFS_SUPER_MAGIC = 0x58465342;
const MAY_REFLINK = new Set([BTRFS_SUPER_MAGIC, XFS_SUPER_MAGIC]);

/**
 * True when a new image at `target` could share blocks with `source`: same file system, one that may reflink,
 * and a trial clone of a 4 KiB file beside the target worked (XFS without reflink=1 refuses it). The trial's two
 * files carry the names of a convert's temporary files, so one left by a crash is removed as those are.
 */
export async function reflinksBetween(source: string, target: string): Promise<boolean> {
  const dir = nodePath.dirname(nodePath.resolve(target));
  try {
    const fsInfo = await fsp.statfs(dir);
    if (!MAY_REFLINK.has(Number(fsInfo.type))) return false;
    const [src, there] = await Promise.all([fsp.stat(source), fsp.stat(dir)]);
    if (src.dev !== there.dev) return false;
  } catch {
    return false;
  }
  const a = tempPathFor(target);
  const b = tempPathFor(target);
  try {
    await fsp.writeFile(a, Buffer.alloc(4096, 1), { flag: 'wx' });
    await fsp.copyFile(a, b, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    await fsp.rm(a, { force: true }).catch(() => undefined);
    await fsp.rm(b, { force: true }).catch(() => undefined);
  }
}
