/**
 * Changing a descriptor that is already on disk: the text edits (a new CID after the first write, a new parent
 * for rebase and commit) that touch only the lines they concern, and writing the text back where it lives.
 * An embedded descriptor (monolithicSparse) has a fixed room in its file and is rewritten in place; a
 * descriptor file is written beside itself and renamed over the old one, so a crash leaves one or the other.
 */
import { randomBytesQuick } from '../../block/random';
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile, syncsSkippedFor } from '../../block/file';
import { MAX_BACKING_NAME } from './layout';
export { PARENT_CID_BEFORE_COMMIT } from './layout';
import type { DescriptorPlace } from './open';

/** qemu writes CIDs with %x: lower-case hex, no padding. */
const hex = (n: number) => (n >>> 0).toString(16);
export const hexCid = hex;

/**
 * The text with the ddb entry `key` set to `value` (a line `ddb.KEY = "VALUE"` at the end, as the Disk Data Base
 * lines are laid out), or removed when `value` is undefined. Every other line is kept as it was.
 */
export function withDdb(text: string, key: string, value: string | undefined): string {
  const eol = eolOf(text);
  const lines = text.split(/\r?\n/);
  const escaped = key.replace(/[.]/g, '\\.');
  const re = new RegExp(`^\\s*ddb\\.${escaped}\\s*=`);
  const at = lines.findIndex((l) => re.test(l));
  const line = value === undefined ? undefined : `ddb.${key} = "${value}"`;
  if (at >= 0) {
    if (line === undefined) lines.splice(at, 1);
    else lines[at] = line;
  } else if (line !== undefined) {
    // Before the trailing empty lines, so the text keeps ending as it did.
    let end = lines.length;
    while (end > 0 && lines[end - 1] === '') end--;
    lines.splice(end, 0, line);
  }
  return lines.join(eol);
}

function eolOf(text: string): string {
  return text.includes('\r\n') ? '\r\n' : '\n';
}

/** The text with `CID=` set to `cid` (qemu's vmdk_write_cid); unchanged when it has no CID line. */
export function withCid(text: string, cid: number): string {
  return text.replace(/^CID=[^\r\n]*/m, `CID=${hex(cid)}`);
}

/** Refuses a parent name a descriptor line cannot hold. */
export function checkParentName(name: string, path: string): void {
  if (name === '' || name.length > MAX_BACKING_NAME || /["\r\n\0]/.test(name)) {
    throw new DiskError('EINVAL', `${path}: a VMDK parent file name must be 1 to ${MAX_BACKING_NAME} characters, without quotes or line breaks`, path);
  }
}

/**
 * The text with `parentCID` set and `parentFileNameHint` set to `hint` (or its line emptied when undefined: the
 * image stands alone). Laid out as qemu-img create lays it out: the hint on the line after createType, which is
 * empty when there is no parent. Every other line is kept as it was.
 */
export function withParent(text: string, hint: string | undefined, parentCid: number): string {
  const eol = eolOf(text);
  const lines = text.split(/\r?\n/);
  const find = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const pcid = `parentCID=${hex(parentCid)}`;
  const pi = find(/^\s*parentCID\s*=/);
  if (pi >= 0) lines[pi] = pcid;
  else lines.splice(Math.max(find(/^\s*CID\s*=/), 0) + 1, 0, pcid);
  const hi = find(/^\s*parentFileNameHint\s*=/);
  const hintLine = hint === undefined ? '' : `parentFileNameHint="${hint}"`;
  if (hi >= 0) lines[hi] = hintLine;
  else if (hint !== undefined) {
    const ct = find(/^\s*createType\s*=/);
    const after = (ct >= 0 ? ct : find(/^\s*parentCID\s*=/)) + 1;
    if (lines[after] === '') lines[after] = hintLine;
    else lines.splice(after, 0, hintLine);
  }
  return lines.join(eol);
}

const decoder = new TextDecoder('utf-8');

/** The descriptor text as it is on disk now (up to its first NUL). */
export async function readPlaceText(pl: DescriptorPlace): Promise<string> {
  const len = Math.max(0, Math.min(pl.room, pl.file.size - pl.offset));
  const old = decoder.decode(await pl.file.readBlock(pl.offset, len, 'vmdk descriptor'));
  const nul = old.indexOf('\0');
  return nul >= 0 ? old.slice(0, nul) : old;
}

/**
 * Writes `text` where the descriptor lives. Embedded: in place, zero-padded over what the old text took, refused
 * plainly when it does not fit in the room the header gives it. A descriptor file: a new file beside it, synced,
 * renamed over it; the place then holds the new file, opened for writing, and the old handle is returned so that
 * the caller can swap it out of its list of files and close it.
 */
export async function writePlaceText(pl: DescriptorPlace, text: string, path: string): Promise<ImageFile | undefined> {
  const bytes = new TextEncoder().encode(text);
  if (pl.embedded) {
    if (bytes.length >= pl.room) {
      throw new DiskError('EINVAL', `${path}: the new descriptor (${bytes.length} bytes) does not fit in the ${pl.room} bytes this image keeps for it; use a shorter parent file name`, path);
    }
    const used = Math.max(0, Math.min(pl.room, pl.file.size - pl.offset));
    const padded = new Uint8Array(Math.max(used, bytes.length));
    padded.set(bytes);
    await pl.file.write(pl.offset, padded);
    return undefined;
  }
  const dir = nodePath.dirname(pl.file.path);
  const tmp = textTempPath(pl.file.path);
  try {
    const f = await ImageFile.create(tmp);
    try {
      await f.write(0, bytes);
      await f.sync();
    } finally {
      await f.close();
    }
    await fsp.rename(tmp, pl.file.path).catch((err: unknown) => {
      throw toDiskError(err, pl.file.path);
    });
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(dir, pl.file.path);
  const old = pl.file;
  pl.file = await ImageFile.open(old.path, true);
  return old;
}

/**
 * The name the new text is written under: `.NAME.diskwright-XXXXXXXX.tmp` beside the descriptor, which the
 * services clean up after a killed job. A descriptor that is itself a job's temporary file (convert writes the new
 * image as `.NAME.diskwright-TOKEN.tmp`) names its text `.NAME.diskwright-TOKEN.descriptor-XXXXXXXX.tmp`, a file
 * of that job the same clean-up recognises (services/atomic.ts removeStaleTemporaries).
 */
function textTempPath(path: string): string {
  const rand = randomBytesQuick(4).toString('hex');
  const base = nodePath.basename(path);
  const m = /^(\..+\.diskwright-[0-9a-f]{8})\.tmp$/.exec(base);
  return nodePath.join(nodePath.dirname(path), m ? `${m[1]}.descriptor-${rand}.tmp` : `.${base}.diskwright-${rand}.tmp`);
}

/**
 * Makes the rename to `renamed` durable: the folder's entry is synced too (best effort: not every file system
 * allows it); not where the file's syncs are skipped (a convert -t unsafe target's temporary).
 */
async function syncDir(dir: string, renamed: string): Promise<void> {
  if (syncsSkippedFor(renamed)) return;
  const fh = await fsp.open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}
