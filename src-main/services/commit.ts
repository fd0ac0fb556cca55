/**
 * Commit: writes an overlay's data down into its backing file (or a named image further down the chain), as
 * `qemu-img commit` does (qemu-img.c img_commit, block/commit.c via the active-commit mirror job):
 * - every range allocated anywhere above the base (the overlay and the images between) is copied into the
 *   base; ranges the overlay marks zero are written as zeros; the base grows when the overlay is larger;
 * - without -b, the overlay is then emptied (its ranges read through to the base again), unless -d;
 * - -b implies -d: the overlay is kept as it is and keeps naming the image under it. Its guest view stays
 *   the same, but the images between it and the base no longer read what they read before (qemu-img says
 *   they "will be invalid"), since the base now holds data that was written over them.
 * Format-neutral: it works on BlockDevices from registry.openImage and the hooks makeEmpty, setBackingFile and
 * the identity handover (planContentChange, adoptContentChange, begin/endParentChange: see commitImage).
 *
 * A failure or a cancel leaves the overlay's data untouched (it then names the base's new identity, under which
 * it reads the same) and the base holding part of the data (every range it got is whole and flushed), as with
 * qemu-img; the error says so.
 */
import * as nodePath from 'node:path';
import { promises as fsp } from 'node:fs';
import { checksFolder } from '../block/backing-path';
import { chainOf } from '../block/chain';
import { openingChecked } from '../block/file';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import type { BackingPolicy, BlockDevice } from '../block/types';
import { openImage } from '../registry';

export interface CommitRequest {
  path: string;
  format?: string;
  /** The image of the chain to commit into (-b), as a path; default: the overlay's own backing file. */
  base?: string;
  /** -d: leave the overlay as it is (implied by `base`). */
  keepOverlay: boolean;
  backingPolicy?: BackingPolicy;
  /** Read a COW overlay whose backing file changed since it was made (OpenOptions.acceptChangedBacking). */
  acceptChangedBacking?: boolean;
  /** The overlay's actual backing file where its recorded name is not where it lies (uml_moo -b). */
  backingOverride?: string;
  signal?: AbortSignal;
  /** Guest bytes looked at, done ≤ total (the overlay's size). */
  onProgress?: (done: number, total: number) => void;
}

export interface CommitResult {
  /** Guest bytes written into the base (data and zeros). */
  copiedBytes: number;
  base: string;
  /** True when the overlay was emptied (not with -d or -b, nor for formats that cannot be emptied). */
  emptied: boolean;
}

/** Which files a commit changes, for the app's confirmation. */
export interface CommitPlan {
  overlay: string;
  base: string;
  /** Images between the overlay and the base, top first: they no longer read as before after the commit. */
  between: string[];
  /** Whether the overlay will be emptied (its data then lives in the base only). */
  emptiesOverlay: boolean;
}

/** Bytes looked at per step: large enough that status calls are few, small enough to cancel promptly. */
const STEP = 4 << 20;
/**
 * Bytes copied per read and write: the one buffer's size (qemu-img commit's too). Each fresh MiB is 256
 * first-touch page faults (~3 ms on a VM); more calls of a smaller piece cost less than that.
 */
const PIECE = 1 << 20;

/** Finds `base` among the chain below `top` (by the file it is, whatever the spelling); qemu's words otherwise. */
async function findBase(chain: BlockDevice[], request: CommitRequest): Promise<number> {
  if (chain.length < 2) throw new DiskError('EINVAL', 'Image does not have a backing file', request.path);
  if (request.base === undefined) return 1;
  const real = (p: string) => fsp.realpath(p).catch(() => nodePath.resolve(p));
  const wanted = new Set([await real(request.base), await real(nodePath.resolve(nodePath.dirname(request.path), request.base))]);
  for (let i = 1; i < chain.length; i++) if (wanted.has(await real(chain[i].path))) return i;
  throw new DiskError('EINVAL', `Did not find '${request.base}' in the backing chain of '${request.path}'`, request.path);
}

function openTop(r: CommitRequest, readOnly: boolean): Promise<BlockDevice> {
  return openImage(r.path, {
    format: r.format,
    readOnly,
    backingPolicy: r.backingPolicy ?? 'anywhere',
    acceptChangedBacking: r.acceptChangedBacking,
    backingOverride: r.backingOverride,
  });
}

/** What commitImage would change (given the image's path, or the request as commitImage takes it), read without changing anything. */
export async function commitPlan(req: string | (Omit<CommitRequest, 'keepOverlay'> & { keepOverlay?: boolean })): Promise<CommitPlan> {
  const r: CommitRequest = { keepOverlay: false, ...(typeof req === 'string' ? { path: req } : req) };
  const top = await openTop(r, true);
  try {
    const chain = chainOf(top);
    const b = await findBase(chain, r);
    const drop = !r.keepOverlay && r.base === undefined && top.makeEmpty !== undefined;
    return { overlay: top.path, base: chain[b].path, between: chain.slice(1, b).map((d) => d.path), emptiesOverlay: drop };
  } finally {
    await top.close();
  }
}

/**
 * Where [pos, pos + len) stands above the base: 'copy' (data in some image above it), 'zero' (an image above
 * it says zeros, or a shorter image between ends there), or 'skip' (it reads the base); and for how long.
 */
async function above(chain: BlockDevice[], baseIndex: number, pos: number, len: number): Promise<{ what: 'copy' | 'zero' | 'skip'; length: number }> {
  for (let i = 0; i < baseIndex; i++) {
    const dev = chain[i];
    if (pos >= dev.size) return { what: 'zero', length: len }; // past a shorter image: reads as zeros
    const st = await dev.status(pos, Math.min(len, dev.size - pos));
    len = Math.min(len, st.length);
    if (st.kind === 'data') return { what: 'copy', length: len };
    if (st.kind === 'zero') return { what: 'zero', length: len };
  }
  return { what: 'skip', length: len };
}

/**
 * Copies what the overlay (and the images above the base) hold into the base, then empties the overlay unless -d/-b.
 *
 * Crash safety: the base's child (the overlay, when the base is its own backing file) records the base's
 * identity (VMDK parentCID, VHDX parent_linkage, UML COW mtime), which the base's first write replaces. So that
 * a kill at any step leaves a chain that opens and reads as before or after, the identity is handed over in
 * this order: the base plans its next identity; the child records that it accepts the base as it is or as it
 * will be (synced); the base takes the new identity (synced) and the data; the child then records only the new
 * identity, in one write; only after that is the child emptied. A base written by anything else still gets an
 * identity the child never recorded, and is refused as before.
 */
export async function commitImage(req: CommitRequest): Promise<CommitResult> {
  const drop = !req.keepOverlay && req.base === undefined;
  // The overlay is written only to be emptied (then it also takes part in the handover below); -d and -b leave
  // it byte for byte as it was, as qemu-img and uml_moo -d do. The chain under it is opened read-only by openImage.
  const top = await openTop(req, !drop);
  let base: BlockDevice | undefined;
  let copied = 0;
  let basePath = '';
  // The child while it accepts the base in either identity: a failure or a cancel leaves it recording the new one.
  let handover: BlockDevice | undefined;
  try {
    const chain = chainOf(top);
    const b = await findBase(chain, req);
    basePath = chain[b].path;
    if (drop && !top.makeEmpty) {
      // qemu-img skips emptying formats without bdrv_make_empty; we say it before anything is written.
      throw new DiskError('EUNSUPPORTED', `${top.path}: ${top.format} images cannot be emptied after a commit; give -d to keep the overlay as it is`, top.path);
    }
    // The base is opened a second time, for writing (with its own chain, which partial writes may read). Our
    // locks are one set per file for the whole process, so this does not conflict with the read-only open.
    const policy = req.backingPolicy ?? 'anywhere';
    const openBase = () => openImage(basePath, { format: chain[b].format, readOnly: false, backingPolicy: policy });
    // Under a folder policy the chain was checked by real paths: the base opened for writing must still be that file.
    base = await (checksFolder(policy) ? openingChecked(basePath, openBase) : openBase());
    // The image that records the base's identity takes part in the handover when it is the overlay being
    // emptied. With -d it is left as it was and keeps naming the base's old identity, as qemu-img and uml_moo -d
    // leave it; with -b it is an image between, which the commit makes invalid (qemu-img says so).
    const child = drop && b === 1 ? top : undefined;
    if (child?.beginParentChange) {
      await child.beginParentChange(base.planContentChange?.());
      await base.adoptContentChange?.();
      handover = child;
    }
    const written = async () => {
      if (child?.parentWritten) await child.parentWritten();
    };
    if (top.size > base.size) {
      if (!base.resize) throw new DiskError('EUNSUPPORTED', `${basePath}: the base (${base.size} bytes) is smaller than ${top.path} (${top.size} bytes) and ${base.format} images cannot grow`, basePath);
      await base.resize(top.size, false);
      await written();
    }
    const buf = new Uint8Array(PIECE);
    for (let pos = 0; pos < top.size; ) {
      throwIfAborted(req.signal);
      const stepEnd = Math.min(top.size, pos + STEP);
      while (pos < stepEnd) {
        const a = await above(chain, b, pos, stepEnd - pos);
        if (a.what === 'copy') {
          for (let at = pos; at < pos + a.length; ) {
            // Pieces end at offsets aligned to the buffer's size, so a run of clusters is written whole.
            const part = buf.subarray(0, Math.min(pos + a.length - at, buf.length - (at % buf.length)));
            await top.read(at, part);
            await base.write(at, part);
            await written();
            at += part.length;
            copied += part.length;
          }
        } else if (a.what === 'zero') {
          await base.writeZeroes(pos, a.length);
          await written();
          copied += a.length;
        }
        pos += a.length;
      }
      req.onProgress?.(pos, top.size);
    }
    // The base holds everything before the overlay loses anything.
    await base.flush();
    await base.close();
    base = undefined;
    await written();
    handover = undefined;
    if (child?.endParentChange) await child.endParentChange();
    if (drop) await top.makeEmpty!();
    return { copiedBytes: copied, base: basePath, emptied: drop };
  } catch (err) {
    if (handover?.endParentChange) {
      // The base has its new identity and part of the data; the overlay still holds all of its own, so it reads
      // the same over the base as it is now, which it then names.
      await base?.close().catch(() => undefined);
      base = undefined;
      await handover.endParentChange().catch(() => undefined);
    }
    const e = toDiskError(err, req.path);
    if (copied > 0 && e.code !== 'ECANCELLED') {
      throw new DiskError(e.code, `${e.message} (the commit stopped; ${basePath} may hold part of the data, ${req.path} still holds all of its data)`, e.path);
    }
    throw e;
  } finally {
    await base?.close().catch(() => undefined);
    await top.close();
  }
}
