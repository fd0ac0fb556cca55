import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import type { DirListing, DirEntry, TargetInfo } from '../../src-shared/api';
import { toDiskError } from '../block/errors';

/** Whether a new image can be written at `path` (see TargetInfo). */
export async function targetInfo(path: string): Promise<TargetInfo> {
  const full = nodePath.resolve(path);
  const dir = nodePath.dirname(full);
  const dirStat = await fsp.stat(dir).catch(() => undefined);
  const folderExists = dirStat?.isDirectory() ?? false;
  const exists = (await fsp.lstat(full).catch(() => undefined)) !== undefined;
  let freeBytes: number | undefined;
  if (folderExists) {
    const fs = await fsp.statfs(dir).catch(() => undefined);
    if (fs) freeBytes = Number(fs.bavail) * Number(fs.bsize);
  }
  return { path: full, folderExists, exists, ...(freeBytes !== undefined ? { freeBytes } : {}) };
}

/** Lists a folder for the browser host's file picker: folders first, then files, hidden ones left out. */
export async function listDir(path?: string): Promise<DirListing> {
  const dir = nodePath.resolve(path && path.length ? path : os.homedir());
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    throw toDiskError(err, dir);
  }
  const entries: DirEntry[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const full = nodePath.join(dir, name);
    try {
      const st = await fsp.stat(full);
      if (st.isDirectory()) entries.push({ name, path: full, kind: 'dir' });
      else if (st.isFile()) entries.push({ name, path: full, kind: 'file', size: st.size });
    } catch {
      // unreadable entries (dangling links, permissions) are not listed
    }
  }
  entries.sort((x, y) => (x.kind === y.kind ? x.name.localeCompare(y.name) : x.kind === 'dir' ? -1 : 1));
  const parent = nodePath.dirname(dir);
  return { path: dir, ...(parent !== dir ? { parent } : {}), entries };
}
