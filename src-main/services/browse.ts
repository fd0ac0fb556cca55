/** The browser host's folder list (with each image's probed format) and the wizards' look at a target path. */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import type { DirListing, DirEntry, TargetInfo } from '../../src-shared/api';
import { toDiskError } from '../block/errors';
import { PROBE_BYTES, recognisedFormat } from '../registry';
import { isRecognisedImage } from './create';

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
  // The same test the create job applies before it replaces a file (services/create.ts), so the wizard asks
  // the second question exactly when the job would want it.
  const notImage = exists && !(await isRecognisedImage(full));
  return { path: full, folderExists, exists, ...(notImage ? { notImage } : {}), ...(freeBytes !== undefined ? { freeBytes } : {}) };
}

/** How many files of one folder have their first bytes probed; the rest are listed without a format. */
export const PROBE_FILES = 300;
/** How many probes run at once. */
const PROBE_PARALLEL = 8;

/** File names in the order a person counts: "disk2" before "disk10", case set aside. */
const natural = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/**
 * Lists a folder for the browser host's file picker: folders first, then files, each in natural order,
 * hidden ones left out. Regular files (not symbolic links, which may point anywhere) have their first
 * PROBE_BYTES read to name the format that recognises them; at most PROBE_FILES of them per folder.
 */
export async function listDir(path?: string): Promise<DirListing> {
  const dir = nodePath.resolve(path && path.length ? path : os.homedir());
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    throw toDiskError(err, dir);
  }
  const entries: DirEntry[] = [];
  const probe: DirEntry[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const full = nodePath.join(dir, name);
    try {
      const link = await fsp.lstat(full);
      // A link is listed as what it points at, but never opened here.
      const st = link.isSymbolicLink() ? await fsp.stat(full) : link;
      if (st.isDirectory()) entries.push({ name, path: full, kind: 'dir' });
      else if (st.isFile()) {
        const entry: DirEntry = { name, path: full, kind: 'file', size: st.size };
        entries.push(entry);
        if (link.isFile() && st.size > 0) probe.push(entry);
      }
    } catch {
      // unreadable entries (dangling links, permissions) are not listed
    }
  }
  entries.sort((x, y) => (x.kind === y.kind ? natural.compare(x.name, y.name) : x.kind === 'dir' ? -1 : 1));
  const toProbe = probe.sort((x, y) => natural.compare(x.name, y.name)).slice(0, PROBE_FILES);
  for (let i = 0; i < toProbe.length; i += PROBE_PARALLEL) {
    await Promise.all(toProbe.slice(i, i + PROBE_PARALLEL).map(probeEntry));
  }
  const parent = nodePath.dirname(dir);
  return { path: dir, ...(parent !== dir ? { parent } : {}), entries };
}

/**
 * Names the format of one regular file from its first bytes. O_NOFOLLOW refuses a file swapped for a link
 * since it was listed, O_NONBLOCK keeps a file swapped for a FIFO from hanging the listing; anything that
 * goes wrong just leaves the entry without a format.
 */
async function probeEntry(entry: DirEntry): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(entry.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    if (!(await fh.stat()).isFile()) return;
    const head = new Uint8Array(PROBE_BYTES);
    const { bytesRead } = await fh.read(head, 0, PROBE_BYTES, 0);
    const format = recognisedFormat(head.subarray(0, bytesRead), entry.path);
    if (format !== undefined) entry.format = format;
  } catch {
    // not readable: listed without a format
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
