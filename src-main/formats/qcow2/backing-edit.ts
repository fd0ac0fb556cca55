/**
 * The two qcow2 hooks commit and rebase use (BlockDevice.setBackingFile and makeEmpty):
 * - setBackingFile rewrites the backing file name and the backing-format header extension, as qemu's
 *   qcow2_change_backing_file → qcow2_update_header does: the first cluster holds the header, then the
 *   extensions (backing format first, the others kept as they are, in their order), the end marker, then the
 *   name; it is written in one piece. A name that does not fit in the first cluster is refused (qemu: ENOSPC).
 * - makeEmpty makes every cluster unallocated again, as qemu's qcow2_make_empty does by discarding every
 *   cluster with full_discard (entries become 0, not zero clusters, so reads go through to the backing file).
 *   Per L2 table: the entries are cleared and flushed before any refcount drops, so a crash between the two
 *   leaks clusters (check -r leaks fixes it) and never leaves an entry pointing at a freed cluster. qemu's fast
 *   path (make_completely_empty, which rebuilds the file) gives the same guest view; we always take the
 *   discard path, so the file keeps its length and the freed clusters are reused by later writes.
 */
import { DiskError, toDiskError } from '../../block/errors';
import { EMPTY_ENTRY, readEntry, type L2Entry } from './entry';
import { EXT_BACKING_FORMAT, MAX_BACKING_NAME, parseExtensions, serializeExtensions, V2_HEADER_LENGTH } from './layout';
import type { Qcow2State } from './state';
import { replaceEntries, type EntryChange } from './write';

/** BlockDevice.setBackingFile: `name` undefined makes the image stand alone. `format` is recorded when given. */
export async function setBackingFile(d: Qcow2State, name: string | undefined, format: string | undefined): Promise<void> {
  d.checkWritable();
  const enc = new TextEncoder();
  const nameBytes = name === undefined ? new Uint8Array(0) : enc.encode(name);
  if (name !== undefined && (nameBytes.length === 0 || nameBytes.length > MAX_BACKING_NAME)) {
    throw new DiskError('EINVAL', `${d.path}: a backing file name must be 1 to ${MAX_BACKING_NAME} bytes long`, d.path);
  }
  await d.order
    .serial(async () => {
      const h = d.header;
      const headerLength = h.version === 2 ? V2_HEADER_LENGTH : h.headerLength;
      const first = await d.file.readBlock(0, Math.min(d.geometry.clusterSize, d.file.size), 'qcow2 header cluster');
      const exts = parseExtensions(first, headerLength, d.path).filter((e) => e.type !== EXT_BACKING_FORMAT);
      if (name !== undefined && format !== undefined) exts.unshift({ type: EXT_BACKING_FORMAT, data: enc.encode(format) });
      const extBytes = serializeExtensions(exts);
      const nameAt = headerLength + extBytes.length;
      if (nameAt + nameBytes.length > first.length) {
        throw new DiskError('EUNSUPPORTED', `${d.path}: the backing file name does not fit in the image's first cluster (${first.length} bytes) after its header extensions`, d.path);
      }
      const out = first.slice();
      const v = new DataView(out.buffer);
      v.setBigUint64(8, BigInt(name === undefined ? 0 : nameAt));
      v.setUint32(16, nameBytes.length);
      out.fill(0, headerLength);
      out.set(extBytes, headerLength);
      out.set(nameBytes, nameAt);
      await d.file.write(0, out);
      await d.file.sync();
      h.backingFileOffset = name === undefined ? 0 : nameAt;
      h.backingFileSize = nameBytes.length;
      d.layout.extensions = exts;
      d.layout.backingFile = name;
      d.layout.backingFormat = name === undefined ? undefined : format;
    })
    .catch((err) => {
      throw toDiskError(err, d.path);
    });
}

const isEmpty = (e: L2Entry) => (e.hi | e.lo | e.zeroBits | e.allocBits) === 0;

/** BlockDevice.makeEmpty: every L2 entry becomes unallocated; host clusters go back to the free space. */
export async function makeEmpty(d: Qcow2State): Promise<void> {
  d.checkWritable();
  const ext = d.geometry.extendedL2;
  await d.order
    .serial(async () => {
      for (let l1i = 0; l1i < d.header.l1Size; l1i++) {
        const { offset } = d.tables.l1Entry(l1i);
        if (!offset) continue;
        const before = await d.tables.l2Table(offset);
        const changes: EntryChange[] = [];
        for (let idx = 0; idx < d.geometry.l2Entries; idx++) {
          const old = readEntry(before, idx, ext);
          if (!isEmpty(old)) changes.push({ idx, next: EMPTY_ENTRY, old });
        }
        if (changes.length === 0) continue;
        await d.beginWrite();
        // A table shared with an internal snapshot is copied first (the snapshot keeps its own); cleared
        // entries are on disk before their clusters are freed (see the file comment).
        await replaceEntries(d, l1i, changes);
      }
      await d.file.sync();
    })
    .catch((err) => {
      throw toDiskError(err, d.path);
    });
}
