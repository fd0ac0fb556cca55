/**
 * The mark a COW file carries while a commit writes into its backing file (services/commit.ts's handover).
 * UML ties a COW file to its backing file by the backing file's mtime, which every write into the backing file
 * changes, and a header has room for one mtime only. So before the commit touches the backing file, the header
 * records the mtime the commit will leave it with, and this mark keeps what else is accepted meanwhile: the
 * backing file's mtime from before (nothing written yet), or any mtime from the commit's start on (a write
 * made, its mtime not yet set back). The commit clears the mark in the same header write that ends it.
 *
 * The mark lives in the last 16 bytes of the backing file name field, past the name's terminating zero, where
 * UML, uml_moo and qemu read nothing (they take the name as a C string): "DWCOMMIT", then the previous mtime
 * and the start as 32-bit big-endian seconds. A name too long to leave that room cannot be marked.
 */
import { view } from '../../block/bytes';
import { LAYOUTS, type CowHeader } from './layout';

const MAGIC = new TextEncoder().encode('DWCOMMIT');
const MARK_BYTES = 16;

export interface CommitMark {
  /** The backing file's mtime (whole seconds) before the commit wrote into it. */
  previousMtime: number;
  /** When the commit began (whole seconds): a write of the commit leaves an mtime from then on. */
  since: number;
}

function markOffset(h: CowHeader): number {
  const o = LAYOUTS[h.layout];
  return o.path + o.pathLen - MARK_BYTES;
}

/** True when the name leaves room for the mark after its terminating zero. */
export function hasRoomForMark(h: CowHeader): boolean {
  return new TextEncoder().encode(h.backingFile).length < LAYOUTS[h.layout].pathLen - MARK_BYTES;
}

/** The mark in a header's bytes, if it carries one (and its name leaves it room). */
export function commitMarkOf(head: Uint8Array, h: CowHeader): CommitMark | undefined {
  if (!hasRoomForMark(h)) return undefined;
  const at = markOffset(h);
  if (head.length < at + MARK_BYTES) return undefined;
  for (let i = 0; i < MAGIC.length; i++) if (head[at + i] !== MAGIC[i]) return undefined;
  const v = view(head);
  return { previousMtime: v.getUint32(at + 8, false), since: v.getUint32(at + 12, false) };
}

/** A copy of a header's bytes carrying `mark`, or without any when it is undefined (zeros, as uml_mkcow leaves the field). */
export function withCommitMark(head: Uint8Array, h: CowHeader, mark: CommitMark | undefined): Uint8Array {
  const out = head.slice();
  const at = markOffset(h);
  out.fill(0, at, at + MARK_BYTES);
  if (mark) {
    out.set(MAGIC, at);
    const v = view(out);
    v.setUint32(at + 8, mark.previousMtime >>> 0, false);
    v.setUint32(at + 12, mark.since >>> 0, false);
  }
  return out;
}

/** Whether a backing file with `mtime` is accepted under the mark (its size is checked as always). */
export function markAccepts(mark: CommitMark, mtime: number): boolean {
  return mtime === mark.previousMtime || mtime >= mark.since;
}
