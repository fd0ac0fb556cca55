/**
 * Merging a COW file into its backing file in place, as `uml_moo -d` does: every sector whose bit is set is
 * copied to the same offset of the backing file; the rest of the backing file is left alone. The result is
 * byte for byte the one uml_moo -d gives, quirks included: uml_moo merges whole sectors only
 * (size / sector_size of them), so the tail of a disk whose size is not a multiple of the sector size keeps
 * the backing file's bytes, and a zero sector is not written where the backing file already reads zeros
 * (that keeps the file sparse; the bytes are the same). Afterwards the backing file's mtime has changed, so
 * the COW file no longer fits it (UML and uml_moo refuse the pair), exactly as after uml_moo -d.
 */
import { isZero } from '../../block/bytes';
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import { locateBacking, readCowHeader, verifyBacking, type CowOpenOptions } from './backing';
import { commitMarkOf } from './commit-mark';
import { CowBitmap } from './bitmap';
import { sectorsWithBits } from './layout';

/** Sectors are copied in pieces of at most this many bytes. */
const PIECE = 1 << 20;

export interface MergeOptions extends CowOpenOptions {
  signal?: AbortSignal;
  /** Progress in sectors of the disk, done ≤ total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Copies the COW file's sectors into its backing file (the recorded one, or `backingOverride` as with
 * `uml_moo -b`). Refuses a backing file whose size or mtime changed, as uml_moo does, unless
 * `acceptChangedBacking`. The COW file is only read. Returns how many sectors were copied.
 */
export async function mergeIntoBacking(cowPath: string, opts: MergeOptions = {}): Promise<{ sectorsCopied: number; backingPath: string }> {
  const cow = await ImageFile.open(cowPath, false);
  let back: ImageFile | undefined;
  try {
    const { head, header: h } = await readCowHeader(cow);
    const full = locateBacking(cowPath, h, 'anywhere', opts.backingOverride);
    if (full === undefined) throw new DiskError('EINVAL', `${cowPath}: the COW file names no backing file to merge into`, cowPath);
    await verifyBacking(cowPath, h, full, opts.acceptChangedBacking === true, commitMarkOf(head, h));
    back = await ImageFile.open(full, true);
    const ss = h.sectorSize;
    const sectors = Math.floor(h.size / ss);
    const bitmap = new CowBitmap(cow, h.bitmapOffset, Math.min(sectors, sectorsWithBits(h)));
    const piece = Math.max(1, Math.floor(PIECE / ss));
    let copied = 0;
    for (let s = 0; s < sectors; ) {
      throwIfAborted(opts.signal);
      const run = await bitmap.run(s, Math.min(sectors, s + piece));
      if (run.set) {
        const buf = new Uint8Array((run.end - s) * ss);
        await cow.readZeroPadded(h.dataOffset + s * ss, buf);
        await copySectors(back, buf, s, ss, sectors);
        copied += run.end - s;
      }
      s = run.end;
      opts.onProgress?.(s, sectors);
    }
    await back.sync();
    return { sectorsCopied: copied, backingPath: full };
  } catch (err) {
    throw toDiskError(err, cowPath);
  } finally {
    await cow.close();
    await back?.close();
  }
}

/**
 * Writes sectors [first, first + buf.length / ss) of `buf` to the backing file, skipping zero sectors where the
 * backing file already reads zeros, except the disk's last sector, which uml_moo always writes.
 */
async function copySectors(back: ImageFile, buf: Uint8Array, first: number, ss: number, sectors: number): Promise<void> {
  const n = buf.length / ss;
  const old = new Uint8Array(ss);
  let pending = -1; // first sector of a run still to be written
  const flush = async (upTo: number) => {
    if (pending >= 0) await back.write((first + pending) * ss, buf.subarray(pending * ss, upTo * ss));
    pending = -1;
  };
  for (let k = 0; k < n; k++) {
    const sector = buf.subarray(k * ss, (k + 1) * ss);
    let skip = false;
    if (first + k < sectors - 1 && isZero(sector)) {
      await back.readZeroPadded((first + k) * ss, old);
      skip = isZero(old);
    }
    if (skip) await flush(k);
    else if (pending < 0) pending = k;
  }
  await flush(n);
}
