/**
 * A differencing VDI names its parent by identity, not by file name: its link UUID is the parent's image UUID
 * (VirtualBox keeps the file names in its own registry). So the parent is looked for beside the image: the
 * .vdi files of its folder are read (their headers only, a bounded number of them) and the one whose image
 * UUID is the link UUID is the parent. qemu refuses such images; VirtualBox reads them, and so do we.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { resolveBackingPath } from '../../block/backing-path';
import { DiskError } from '../../block/errors';
import type { BackingPolicy } from '../../block/types';
import { HEADER_SIZE, parseHeader, SIGNATURE } from './layout';

/** Most files of a folder looked at for a parent: a folder of thousands of disks is not searched through. */
export const MAX_CANDIDATES = 4096;

/** The path of the .vdi file in `imagePath`'s folder whose image UUID is `uuid`, or undefined. */
export async function findByUuid(imagePath: string, uuid: string): Promise<string | undefined> {
  const self = nodePath.resolve(imagePath);
  const dir = nodePath.dirname(self);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return undefined;
  }
  const vdis = names.filter((n) => n.toLowerCase().endsWith('.vdi')).sort().slice(0, MAX_CANDIDATES);
  const head = new Uint8Array(HEADER_SIZE);
  for (const name of vdis) {
    const full = nodePath.join(dir, name);
    if (full === self) continue;
    let fh: fsp.FileHandle | undefined;
    try {
      const st = await fsp.stat(full);
      if (!st.isFile() || st.size < HEADER_SIZE) continue;
      fh = await fsp.open(full, 'r');
      const { bytesRead } = await fh.read(head, 0, HEADER_SIZE, 0);
      if (bytesRead < HEADER_SIZE) continue;
      const h = parseHeader(head, full);
      if (h.signature === SIGNATURE && h.uuidImage === uuid) return full;
    } catch {
      // An unreadable neighbour is simply not the parent.
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }
  return undefined;
}

/** The parent's path under `policy` (it lies in the image's folder, so only 'none' keeps it from being followed). */
export async function resolveParent(imagePath: string, uuid: string, policy: BackingPolicy): Promise<string> {
  const found = await findByUuid(imagePath, uuid);
  if (found === undefined) {
    throw new DiskError('ENOENT', `${imagePath}: its parent image (a VDI whose image UUID is ${uuid}) was not found among the .vdi files beside it`, imagePath);
  }
  return resolveBackingPath(imagePath, nodePath.basename(found), policy);
}
